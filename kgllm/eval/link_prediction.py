"""Knowledge-reasoning benchmarks over a KG itself: Countries S1-S3 (AUC-PR) and UMLS, Kinships,
Nations (filtered MRR / Hits@k), answered by learned rules, a ComplEx embedding, or both combined.

Protocol: models learn from ``train.txt`` for ``--split dev`` (scored on ``valid.txt``) and from
``train.txt`` + ``valid.txt`` for ``--split test`` (scored on ``test.txt``). Ranking is filtered
against every known true triple of all splits present, in both directions (``(h, r, ?)`` and
``(?, r, t)``), with ties counted as half (see :func:`kgllm.eval.metrics.filtered_rank`).

The standard protocol filters the true triples of train, valid *and test*: scoring ``valid.txt``
needs ``test.txt`` in the folder even though nothing is learned from it. Without it, the test
split's true answers stay in the ranking and outrank the gold answer on these dense graphs; the
result then carries ``config.filter_complete = false`` and a ``config.filter_warning``. Option
``simulate_split=true`` (``split_seed=``) measures that cost without test data: ``train.txt`` is
re-split into train'/valid'/test' (:meth:`KGDataset.simulated`), models learn from train' (and
valid.txt with ``learn_valid=true``, as ``--split test`` learns from train + valid), valid' is
ranked filtered with and without test' (``config.by_method_without_test_filter``); filtering test'
raised MRR by 0.11 (UMLS), 0.08 (Kinships), 0.06 (Nations), mostly at Hits@1
(``bench/link_prediction_filter.py``). Whenever test.txt is absent, ``config.estimated_complete_filter``
also gives the numbers a complete filter would give, *estimated* with the scored split's other answers
standing in for the missing ones (:func:`kgllm.eval.metrics.swap_estimated_ranks`); when simulating,
``config.estimated_from_without_test_filter`` checks that estimate against the real with-test' numbers.
Countries ranks ``locatedin(country, region)`` over the five regions of ``regions.list``, as in
NTP / MINERVA; rule scores are normalised over the candidate regions per country.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path
from typing import Any

import numpy as np

from kgllm.eval import metrics
from kgllm.eval.kgdata import SPLIT_FILES, KGDataset, split_file
from kgllm.eval.registry import (
    SEED_MAX,
    Benchmark,
    EvalRequest,
    NumericSpec,
    Trainer,
    TrainRequest,
    benchmark,
    flag,
    numeric_options,
    require_model,
    trainer,
)
from kgllm.exceptions import BenchmarkError, ConfigError, DomainNotFound, ModelError
from kgllm.loaders._io import iter_lines
from kgllm.reasoning.rules import RuleSet

__all__ = ["run_countries", "run_link_prediction", "train_rules", "METHODS", "DEFAULT_RULE_WEIGHT"]

METHODS = ("rules", "kge", "combined")
# Weight of rule scores added to the embedding's softmax probabilities (``combine``). Rule confidences
# are not calibrated like probabilities: a full weight lets weak Kinships rules override a better
# embedding. Selected on the re-split of train.txt (bench/link_prediction_filter.py, seed 0), never on
# valid.txt: mean MRR over UMLS, Kinships, Nations 0.685 / 0.689 / 0.693 / 0.700 / 0.690 / 0.667 at
# rule_weight 0 / 0.01 / 0.03 / 0.1 / 0.3 / 1 (noisy-or rule scores: 0.698 at best). Option ``rule_weight``.
DEFAULT_RULE_WEIGHT = 0.1
_FILTER_SPLITS = ("train", "dev", "test")
_TRAIN_SPLITS = {"dev": ("train",), "valid": ("train",), "test": ("train", "dev")}


def _training_splits(split: str) -> tuple[str, ...]:
    if split not in _TRAIN_SPLITS:
        raise BenchmarkError(f"unknown split {split!r}; known splits: {', '.join(_TRAIN_SPLITS)}")
    return _TRAIN_SPLITS[split]


def _rules_for(request: EvalRequest, ds: KGDataset, train_splits: tuple[str, ...]) -> tuple[RuleSet, float]:
    """Rules from ``--model`` when given (checked against the data), else mined now; and the mining time."""
    if request.model is not None:
        require_model(request.model, "kgllm-rules", f"kgllm eval {ds.name}")
        rules = RuleSet.load(request.model)
        unknown = sorted({r.head[0] for r in rules.rules} - set(ds.relations))
        if unknown:
            raise ModelError(f"{request.model}: rules predict relations absent from {request.data}: {unknown[:5]}")
        return rules, 0.0
    started = time.perf_counter()
    rules = RuleSet.mine(ds.snapshot(*train_splits), progress=request.progress, **_mine_options(request.options))
    return rules, time.perf_counter() - started


def _mine_options(options: dict[str, Any]) -> dict[str, Any]:
    """The rule-mining options given; ``constants`` as a yes/no flag (``-o constants=False`` is the string
    "False", which is true)."""
    opts = {k: v for k, v in options.items() if k in _MINE_OPTIONS}
    if "constants" in opts:
        opts["constants"] = flag(opts["constants"], "constants")
    return opts


_MINE_OPTIONS = {"max_length", "min_support", "min_confidence", "smoothing", "constants", "max_bodies", "beam",
                 "max_path_rules", "max_constants"}
# The numeric options of rule mining, ComplEx and their combination, checked before any work.
_NUMBERS: NumericSpec = {
    "max_length": (int, 1, 3), "min_support": (int, 1, None), "min_confidence": (float, 0, 1),
    "smoothing": (float, 0, None), "max_bodies": (int, 1, None), "beam": (int, 1, None),
    "max_path_rules": (int, 1, None), "max_constants": (int, 0, None), "dim": (int, 1, None),
    "epochs": (int, 1, None), "batch_size": (int, 1, None), "lr": (float, [0], None), "n3": (float, 0, None),
    "init_scale": (float, [0], None), "seed": (int, 0, SEED_MAX), "threads": (int, 1, None),
    "rule_weight": (float, 0, None), "split_seed": (int, 0, SEED_MAX)}
# The ``-o`` keys each accepts (any other is refused before the data is read). Countries uses rules alone;
# UMLS, Kinships and Nations add ComplEx (the fields of ``KGEConfig``, checked by a test) and the re-split.
_KGE_OPTIONS = frozenset({"dim", "epochs", "batch_size", "lr", "n3", "init_scale", "seed", "threads"})
COUNTRIES_OPTIONS = frozenset(_MINE_OPTIONS)
LINK_PREDICTION_OPTIONS = frozenset({*_MINE_OPTIONS, *_KGE_OPTIONS, "rule_weight", "simulate_split", "split_seed",
                                     "learn_valid"})
RULES_TRAIN_OPTIONS = frozenset({*_MINE_OPTIONS, "kb", "domain"})


def _checked(request: Any) -> Any:
    """``request`` with its numeric options converted; a bad one is a ConfigError naming it."""
    return dataclasses.replace(request, options={**request.options, **numeric_options(request.options, _NUMBERS)})


def _limit(n: int, limit: int | None) -> int:
    return n if limit is None or limit >= n else max(0, int(limit))


# -- Countries -------------------------------------------------------------------------------------
def _countries_required(data: Path, split: str) -> list[str]:
    return ["train.txt", SPLIT_FILES.get(split, "valid.txt"), "regions.list"]


def _check_regions(path: Path, regions: list[str]) -> None:
    """Every tail of the split must be a candidate region, or its question could never be scored right."""
    with open(path, encoding="utf-8") as fh:
        for number, raw in enumerate(fh, 1):
            parts = raw.rstrip("\r\n").split("\t")
            if len(parts) == 3 and parts[2].strip() not in regions:  # read_split has checked the lines
                raise BenchmarkError(f"{path} line {number}: tail {parts[2].strip()!r} is not a region of "
                                     f"regions.list ({', '.join(regions)})")


def run_countries(request: EvalRequest, *, name: str) -> dict[str, Any]:
    """AUC-PR of ``locatedin(country, region)`` over the regions, for the countries of the split."""
    request = _checked(request)
    split = request.split
    # --split test learns from valid.txt too: without it the models would silently learn from train.txt alone
    ds = KGDataset.load(request.data, name=name, need=(*_training_splits(split), split))
    regions_file = Path(request.data) / "regions.list"
    if not regions_file.is_file():
        raise BenchmarkError(f"{name}: {request.data}: missing regions.list; expected files: "
                             f"{', '.join(_countries_required(request.data, split))}")
    regions = [line.strip() for _, line in iter_lines(regions_file) if line.strip()]  # bad bytes: a LoadError
    unknown = [r for r in regions if r not in ds.entities]
    if unknown:
        raise BenchmarkError(f"{regions_file}: regions not in the graph: {unknown}")
    _check_regions(split_file(request.data, split), regions)
    rules, mine_seconds = _rules_for(request, ds, _training_splits(split))
    snap = ds.snapshot(*_training_splits(split))
    queries = ds.splits[split][:_limit(len(ds.splits[split]), request.limit)]
    region_idx = np.array([snap.index[r] for r in regions])
    if queries:  # builds the rule bodies' matrices once, so latencies are per question
        rules.score(snap, [snap.index[queries[0][0]]], queries[0][1])
    labels: list[list[int]] = []
    scores: list[np.ndarray] = []
    latencies: list[float] = []
    predictions: list[dict[str, Any]] = []
    for head, rel, tail in queries:
        started = time.perf_counter()
        row = rules.score(snap, [snap.index[head]], rel)[0, region_idx]
        total = row.sum()
        row = row / total if total > 0 else np.full(len(regions), 1.0 / len(regions))
        latencies.append((time.perf_counter() - started) * 1000)
        labels.append([int(r == tail) for r in regions])
        scores.append(row)
        best = int(np.argmax(row))
        # ties count half, as in link prediction: argmax picks the first of tied regions (all of them when no
        # rule fires), which made a question right whenever its region came first in regions.list
        rank = metrics.filtered_rank(row, regions.index(tail))
        predictions.append({"question": f"{rel}({head}, ?)", "gold": [tail], "predicted": regions[best],
                            "score": float(row[best]), "correct": rank == 1.0, "rank": rank, "type": rel,
                            "explanation": _explain(rules, snap, snap.index[head], int(region_idx[best]), rel)})
    y, s = np.asarray(labels).ravel(), np.asarray(scores).ravel()
    result_metrics = {"auc_pr": metrics.auc_pr(y, s) if len(queries) else 0.0,
                      "hits@1": metrics.hits_from_ranks([p["rank"] for p in predictions], 1)}
    return {"n": len(queries), "metrics": result_metrics, "latencies_ms": latencies, "predictions": predictions,
            "config": {"method": "rules", "rules": len(rules), "mine_seconds": round(mine_seconds, 3),
                       "trained_on": list(_training_splits(split)), "regions": regions}}


# -- UMLS / Kinships / Nations ----------------------------------------------------------------------
def run_link_prediction(request: EvalRequest, *, name: str) -> dict[str, Any]:
    """Filtered MRR and Hits@1/3/10 for rules, ComplEx and their combination (the headline metrics)."""
    from kgllm.reasoning.kge import KGEConfig, combine, train_complex

    request = _checked(request)
    split = request.split
    simulate = flag(request.options.get("simulate_split", False), "simulate_split")
    train_splits = _training_splits(split)
    ds = KGDataset.load(request.data, name=name, need=("train", "dev") if simulate else (*train_splits, split))
    if simulate:  # train.txt re-split, so a test split exists to filter without touching test data
        ds = ds.simulated(seed=int(request.options.get("split_seed", 0)))
        if flag(request.options.get("learn_valid", False), "learn_valid"):  # as --split test learns from train + valid
            train_splits = ("train", "known")
    elif not ds.splits[split]:  # said now, not after mining rules and training ComplEx (a minute on UMLS)
        raise BenchmarkError(f"{name}: no questions in the {split!r} split of {request.data}")
    snap = ds.snapshot(*train_splits)
    rules, mine_seconds = _rules_for(request, ds, train_splits)
    kge_opts = {k: v for k, v in request.options.items() if k in KGEConfig.__dataclass_fields__}
    train = np.concatenate([ds.indexed(s) for s in train_splits])
    kge, kge_stats = train_complex(train, len(ds.entities), len(ds.relations), KGEConfig(**kge_opts),
                                   progress=request.progress)
    rule_weight = float(request.options.get("rule_weight", DEFAULT_RULE_WEIGHT))

    # ``partial``: the filter without test.txt, to show what an incomplete filter costs (dev only).
    partial_splits = [s for s in ds.splits if s != "test"] if split in ("dev", "valid") and "test" in ds.splits else []
    known = _known_answers(ds, list(ds.splits))
    known_partial = _known_answers(ds, partial_splits) if partial_splits else None
    # Without test.txt (always so when simulating), the scored split's other answers stand in for the
    # missing test answers: the complete-filter ranks are estimated (metrics.swap_estimated_ranks).
    peers = _known_answers(ds, [split]) if simulate or "test" not in ds.splits else None
    scale = len(ds.splits["known"]) / len(ds.splits[split]) if simulate else 1.0  # test.txt assumed as large
    queries = ds.indexed(split)[:_limit(len(ds.splits[split]), request.limit)]
    ranks: dict[str, list[float]] = {m: [] for m in METHODS}
    ranks_partial: dict[str, list[float]] = {m: [] for m in METHODS}
    ranks_estimated: dict[str, list[float]] = {m: [] for m in METHODS}
    ranks_partial_estimated: dict[str, list[float]] = {m: [] for m in METHODS}
    per_type: dict[str, list[float]] = {}
    latencies: list[float] = []
    predictions: list[dict[str, Any]] = []
    for inverse in (False, True):
        for rel in np.unique(queries[:, 1]) if len(queries) else []:
            sel = queries[queries[:, 1] == rel]
            q, a = (sel[:, 2], sel[:, 0]) if inverse else (sel[:, 0], sel[:, 2])
            started = time.perf_counter()
            by_method = {"rules": rules.score(snap, q, ds.relations[rel], inverse=inverse),
                         "kge": kge.score(q, np.full(q.size, rel), inverse=inverse)}
            by_method["combined"] = combine(by_method["kge"], by_method["rules"], rule_weight=rule_weight)
            latencies.extend([(time.perf_counter() - started) * 1000 / max(1, q.size)] * q.size)
            mask = _answer_mask(known, q, int(rel), inverse, (q.size, len(ds.entities)))
            for method, scores in by_method.items():
                ranks[method].extend(metrics.filtered_ranks(scores, a, mask))
            peer = _answer_mask(peers, q, int(rel), inverse, mask.shape) if peers is not None else None
            if peer is not None:
                for method, scores in by_method.items():
                    ranks_estimated[method].extend(metrics.swap_estimated_ranks(scores, a, mask, peer, scale=scale))
            if known_partial is not None:
                partial = _answer_mask(known_partial, q, int(rel), inverse, mask.shape)
                for method, scores in by_method.items():
                    ranks_partial[method].extend(metrics.filtered_ranks(scores, a, partial))
                    if peer is not None and simulate:  # test' is missing here: valid' answers stand in
                        ranks_partial_estimated[method].extend(metrics.swap_estimated_ranks(
                            scores, a, partial, peer, scale=len(ds.splits["test"]) / len(ds.splits[split])))
            combined_ranks = ranks["combined"][-q.size:]
            per_type.setdefault(ds.relations[rel], []).extend(combined_ranks)
            probs = by_method["combined"]
            for i in range(q.size):
                masked = np.where(mask[i] & (np.arange(mask.shape[1]) != a[i]), -np.inf, probs[i])
                best = int(np.argmax(masked))
                predictions.append({"question": f"{'~' if inverse else ''}{ds.relations[rel]}({ds.entities[q[i]]}, ?)",
                                    "gold": [ds.entities[a[i]]], "predicted": ds.entities[best],
                                    "score": float(min(1.0, probs[i, best])), "correct": bool(best == a[i]),
                                    "type": ds.relations[rel], "rank": float(combined_ranks[i]),
                                    "explanation": _explain(rules, snap, int(q[i]), best, ds.relations[rel],
                                                            inverse=inverse)})
    result = {m: metrics.ranking_metrics(r) for m, r in ranks.items()}
    headline = result["combined"]
    missing = [SPLIT_FILES[s] for s in _FILTER_SPLITS if s not in ds.splits]
    filtered_with = [SPLIT_FILES[s] for s in _FILTER_SPLITS if s in ds.splits]
    extra: dict[str, Any] = {}
    if simulate:  # the primes name the parts of train.txt; the real test.txt is never among the filtered
        names = {"train": "train'", "dev": "valid'", "test": "test'", "known": "valid.txt"}
        extra["simulated_split"] = {"seed": int(request.options.get("split_seed", 0)), "from": "train.txt",
                                    **{names[s]: len(t) for s, t in ds.splits.items()}}
        filtered_with, missing = [names[s] for s in ds.splits], ["test.txt"]
        extra["trained_on"] = [names[s] for s in train_splits]
    if missing:  # kept in ``config``: the report envelope passes it through unchanged
        extra["filter_warning"] = (f"{request.data}: {', '.join(missing)} absent, so its true triples are not filtered; "
                                   "scores are below the standard filtered protocol (train+valid+test)")
    if known_partial is not None:
        extra["by_method_without_test_filter"] = {m: metrics.ranking_metrics(r) for m, r in ranks_partial.items()}
    if peers is not None:
        extra["estimated_complete_filter"] = {m: metrics.ranking_metrics(r) for m, r in ranks_estimated.items()}
    if simulate and known_partial is not None:  # checks the estimator against the with-test' numbers
        extra["estimated_from_without_test_filter"] = {m: metrics.ranking_metrics(r)
                                                       for m, r in ranks_partial_estimated.items()}
    return {"n": len(queries), "metrics": headline, "by_method": result, "latencies_ms": latencies,
            "per_type": {t: metrics.ranking_metrics(r) for t, r in sorted(per_type.items())},
            "predictions": predictions,
            "config": {"method": "combined", "rule_weight": rule_weight, "rules": len(rules),
                       "mine_seconds": round(mine_seconds, 3), "kge": {**KGEConfig(**kge_opts).__dict__, **kge_stats},
                       "trained_on": list(train_splits), "filtered": True, "directions": "both",
                       "filtered_with": filtered_with,
                       "filter_complete": not missing, **extra}}


def _explain(rules: RuleSet, snap: Any, node: int, answer: int, relation: str, *, inverse: bool = False) -> str | None:
    """The best rule deriving the predicted answer and one grounding path of stored edges (None when no
    rule fires: the embedding alone ranked it first)."""
    why = rules.explain(snap, node, answer, relation, inverse=inverse)
    return None if why is None else f"{why.rule.text()} [conf {why.rule.confidence:.3f}] via {why.path.text()}"


def _answer_mask(answers: dict[tuple[int, int, bool], list[int]], queries: np.ndarray, rel: int, inverse: bool,
                 shape: tuple[int, ...]) -> np.ndarray:
    """``(b, n)`` bool mask of the answers known for each query entity of ``queries``."""
    mask = np.zeros(shape, dtype=bool)
    for i, node in enumerate(queries):
        mask[i, answers.get((int(node), rel, inverse), [])] = True
    return mask


def _known_answers(ds: KGDataset, splits: list[str]) -> dict[tuple[int, int, bool], list[int]]:
    """(entity, relation, inverse) -> the true answers in ``splits``, for filtering."""
    known: dict[tuple[int, int, bool], list[int]] = {}
    for s in splits:
        for h, r, t in ds.indexed(s):
            known.setdefault((h, r, False), []).append(t)
            known.setdefault((t, r, True), []).append(h)
    return known


# -- trainer ----------------------------------------------------------------------------------------
def train_rules(request: TrainRequest) -> dict[str, Any]:
    """Mine rules from ``train.txt`` (``--split test`` also uses ``valid.txt``) and save them to ``--out``.

    With options ``kb=DIR`` and ``domain=NAME`` the rules are then attached to that KB's expert
    (``kb.use_rules``; ``min_confidence=`` sets the least confidence of an inferred edge).
    """
    request = _checked(request)
    if request.split not in ("train", *_TRAIN_SPLITS):  # a typo (--split tset) silently learned from train.txt alone
        raise BenchmarkError(f"unknown split {request.split!r} for 'kgllm train rules'; known splits: train, dev, "
                             "test (test also learns from valid.txt)")
    split = "test" if request.split == "test" else "dev"
    attach = {k: request.options.get(k) for k in ("kb", "domain")}
    if any(attach.values()) and not all(attach.values()):
        raise BenchmarkError("attaching rules needs both -o kb=DIR and -o domain=NAME")
    least = request.options.get("min_confidence")
    if attach["kb"] and least is not None and least <= 0:  # kb.use_rules refuses it, after mining and writing
        raise ConfigError(f"min_confidence must be above 0 when attaching rules to a KB, got {least!r}")
    ds = KGDataset.load(request.data, name="rules", need=_training_splits(split))
    if attach["kb"]:  # a KB or domain that is not there fails before anything is mined or written
        import kgllm

        with kgllm.open(attach["kb"], create=False) as kb:
            if str(attach["domain"]) not in kb.domains:
                raise DomainNotFound(str(attach["domain"]), kb.domains)
    rules = RuleSet.mine(ds.snapshot(*_training_splits(split)), progress=request.progress,
                         **_mine_options(request.options))
    rules.save(request.out)
    info = {"rules": len(rules), "out": str(request.out), "seconds": rules.params.get("seconds"),
            "trained_on": list(_training_splits(split))}
    if attach["kb"]:
        with kgllm.open(attach["kb"], create=False) as kb:
            kb.use_rules(str(attach["domain"]), request.out, min_confidence=request.options.get("min_confidence"))
        info["attached_to"] = {"kb": str(attach["kb"]), "domain": attach["domain"]}
    return info


def _register() -> None:
    for level in ("s1", "s2", "s3"):
        bench_name = f"countries-{level}"
        benchmark(Benchmark(
            name=bench_name, description=f"Countries {level.upper()}: AUC-PR of locatedin(country, region)",
            primary_metric="auc_pr", run=functools.partial(run_countries, name=bench_name),
            required_files=_countries_required, options=COUNTRIES_OPTIONS))
    for bench_name, title in (("umls", "UMLS"), ("kinships", "Kinships"), ("nations", "Nations")):
        benchmark(Benchmark(
            name=bench_name, description=f"{title}: filtered link prediction (rules + ComplEx)",
            primary_metric="mrr", run=functools.partial(run_link_prediction, name=bench_name),
            required_files=lambda data, split: ["train.txt", SPLIT_FILES.get(split, "valid.txt")],
            options=LINK_PREDICTION_OPTIONS))
    trainer(Trainer(name="rules", description="mine weighted relation-path rules from a KG folder (train.txt)",
                    run=train_rules, options=RULES_TRAIN_OPTIONS))


_register()
