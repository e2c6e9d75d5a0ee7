"""MetaQA benchmarks (``metaqa-1hop|2hop|3hop``, ``metaqa-1hop-ntm``) and the ``metaqa`` path-scorer trainer.

``--data`` is the MetaQA folder: ``kb.txt`` (``head|relation|tail``) and ``N-hop/qa_<split>.txt`` (question
with the ``[topic]`` bracketed, TAB, answers joined by ``|``); ``N-hop/qa_<split>_qtype.txt`` (optional) gives
per-type scores; ``1-hop/ntm/qa_<split>.txt`` is the paraphrased 1-hop set.

The KB is loaded once into a knowledge base directory keyed by the checksum of ``kb.txt`` (a folder under the
system temp dir) and reused by later runs. ``kgllm eval`` ignores the global ``--kb``, so a KB of your own is
never changed. In Python ``EvalRequest.kb`` (and ``-o kb=DIR`` for ``kgllm train metaqa``) chooses another
directory: a ``movies`` domain there that was not loaded from this ``kb.txt`` is deleted and loaded again, so
never point it at a KB of your own. Its relations carry the schema description a user would give them
(:data:`RELATION_TEXT`, :data:`RELATION_ALIASES`; the bundled movies pack uses the same).

There are no MetaQA training questions here, so the trainer uses a fixed half of each dev file (chosen by a
hash of the hop count and line number, the same lines for the vanilla and the paraphrased 1-hop file) and
``held_out=True`` evaluates on the other half only.
"""

from __future__ import annotations

import functools
import hashlib
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kgllm.eval import registry
from kgllm.exceptions import BenchmarkError, LoadError
from kgllm.loaders._io import iter_lines

__all__ = ["MetaQAQuestion", "read_questions", "in_training_half", "metaqa_kb", "evaluate", "train"]

_BRACKET = re.compile(r"\[([^\[\]]+)\]")
DOMAIN = "movies"
#: How the WikiMovies schema's relations read in a path.
RELATION_TEXT = {
    "directed_by": "directed by", "written_by": "written by", "starred_actors": "starring",
    "release_year": "released in", "in_language": "in language", "has_genre": "has genre",
    "has_tags": "tagged", "has_imdb_rating": "has IMDb rating", "has_imdb_votes": "has IMDb votes",
}
#: Everyday words for those relations (zero-shot cues): a genre is a kind of film, tags are words
#: describing it, many IMDb votes mean a popular film.
RELATION_ALIASES = {
    "directed_by": ["director"], "written_by": ["writer", "screenwriter", "screenplay", "author"],
    "starred_actors": ["actor", "actress", "cast", "appear"], "release_year": ["year"],
    "in_language": ["language", "speak"], "has_genre": ["genre", "kind", "type", "sort", "category"],
    "has_tags": ["describe", "description", "words", "about"], "has_imdb_rating": ["rated", "rating"],
    "has_imdb_votes": ["votes", "popular", "famous"],
}


@dataclass
class MetaQAQuestion:
    question: str
    topic: str
    answers: list[str]
    line: int
    qtype: str | None = None


def _question_file(data: Path, hops: int, split: str, ntm: bool) -> Path:
    return data / f"{hops}-hop" / ("ntm" if ntm else "") / f"qa_{split}.txt"


def read_questions(path: Path, qtype_path: Path | None = None) -> list[MetaQAQuestion]:
    """Questions of one MetaQA file; ``LoadError`` names the file, line and value of a bad line."""
    types: list[str] | None = None
    if qtype_path is not None and qtype_path.is_file():  # iter_lines: a bad byte is a LoadError naming its line
        types = [text for _, text in iter_lines(qtype_path)]
    out: list[MetaQAQuestion] = []
    for number, line in iter_lines(path):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2:
            raise LoadError("expected 'question<TAB>answer1|answer2'", path=path, line=number, value=line)
        match = _BRACKET.search(parts[0])
        if match is None:
            raise LoadError("question has no [topic entity]", path=path, line=number, value=parts[0])
        qtype = types[number - 1] if types is not None and number <= len(types) else None
        out.append(MetaQAQuestion(parts[0], match.group(1), [a for a in parts[1].split("|") if a], number, qtype))
    return out


def in_training_half(hops: int, line: int) -> bool:
    """The fixed, hash-based half of the dev lines used for training (the rest is held out)."""
    digest = hashlib.sha1(f"metaqa:{hops}:{line}".encode()).digest()
    return digest[0] % 2 == 0


def _checksum(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()[:16]


def metaqa_kb(data: Path, kb_dir: Path | None = None, *, progress: bool = False) -> Any:
    """The KB holding MetaQA's ``kb.txt`` as domain ``movies``, loaded once per checksum and reused.

    A ``movies`` domain in ``kb_dir`` not loaded from this ``kb.txt`` is deleted and loaded again.
    """
    from kgllm.kb import open_kb

    kb_file = data / "kb.txt"
    if not kb_file.is_file():
        raise BenchmarkError(f"{data}: no kb.txt (expected the MetaQA folder)")
    checksum = _checksum(kb_file)
    path = kb_dir or Path(tempfile.gettempdir()) / "kgllm-metaqa" / checksum
    kb = open_kb(path)
    if DOMAIN in kb.domains:
        if kb.domain_info(DOMAIN).get("kb_checksum") == checksum:
            if kb.domain_info(DOMAIN).get("relation_aliases") != RELATION_ALIASES:  # a KB from an older version
                kb.set_domain_info(DOMAIN, relation_text=RELATION_TEXT, relation_aliases=RELATION_ALIASES)
            return kb
        kb.delete_domain(DOMAIN)  # another kb.txt (or a half-finished load): rebuild
    kb.load_triples(DOMAIN, kb_file, format="pipe", progress=progress,
                    description="Films, their directors, writers, actors, genres, languages, years and tags (MetaQA).")
    kb.set_domain_info(DOMAIN, kb_checksum=checksum, relation_text=RELATION_TEXT, relation_aliases=RELATION_ALIASES)
    return kb


def _files(name: str) -> tuple[int, bool]:
    hops = int(name.split("-")[1][0])
    return hops, name.endswith("-ntm")


def evaluate(request: registry.EvalRequest, *, hops: int, ntm: bool = False) -> dict[str, Any]:
    """Run one MetaQA benchmark; see the module docstring."""
    from kgllm.eval.metrics import answer_f1, hits_at_k, latency_summary

    # checked before the KB is built: int() made "abc" a ValueError and 0 a range() error after the load
    batch = registry.numeric_options(request.options, {"batch_size": (int, 1, None)}).get("batch_size", 64)
    path = _question_file(request.data, hops, request.split, ntm)
    if not path.is_file():
        raise BenchmarkError(f"{request.data}: missing {path.relative_to(request.data)}")
    questions = read_questions(path, path.parent / f"qa_{request.split}_qtype.txt" if not ntm else
                               request.data / f"{hops}-hop" / f"qa_{request.split}_qtype.txt")
    held_out = registry.flag(request.options.get("held_out", False), "held_out")
    if held_out:
        questions = [q for q in questions if not in_training_half(hops, q.line)]
    if request.limit is not None:
        questions = questions[: request.limit]
    if request.model is not None:
        registry.require_model(request.model, "kgllm-path-scorer", f"kgllm eval metaqa-{hops}hop{'-ntm' if ntm else ''}")
    kb = metaqa_kb(request.data, request.kb, progress=request.progress)
    pipeline = kb.pipeline
    model = str(request.model) if request.model else None
    pipeline.ask_many(["warm up [Kismet]"], domain=DOMAIN, model=model, top_k=1)
    started = time.perf_counter()
    hits: list[float] = []
    f1s: list[float] = []
    recalls: list[float] = []
    latencies: list[float] = []
    per_type: dict[str, list[float]] = {}
    halves: dict[bool, list[tuple[float, float, float]]] = {True: [], False: []}
    predictions: list[dict[str, Any]] = []  # per question, for the report's calibration plot and predictions file
    bar = None
    if request.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(questions), desc=f"metaqa {hops}-hop questions", unit="q", leave=False)
    for begin in range(0, len(questions), batch):
        chunk = questions[begin:begin + batch]
        answers = pipeline.ask_many([q.question for q in chunk], domain=DOMAIN, model=model, top_k=None,
                                    batch_size=batch)
        for q, answer in zip(chunk, answers, strict=False):
            gold = set(q.answers)
            ranked = [a.name for a in answer.answers]
            top = answer.answers[0].score if answer.answers else 0.0
            predicted = [a.name for a in answer.answers if a.score >= 0.5 * top]
            hit = hits_at_k(ranked, gold, 1)
            hits.append(hit)
            f1s.append(answer_f1(predicted, gold))
            recalls.append(len(gold & set(ranked)) / len(gold) if gold else 1.0)
            latencies.append(sum(answer.timings.get(k, 0.0) for k in ("route", "link", "reason", "generate")))
            if q.qtype:
                per_type.setdefault(q.qtype, []).append(hit)
            halves[in_training_half(hops, q.line)].append((hit, f1s[-1], recalls[-1]))
            predictions.append({"question": q.question, "gold": sorted(gold),
                                "predicted": ranked[0] if ranked else None, "score": min(1.0, max(0.0, float(top))),
                                "correct": bool(hit), "type": q.qtype, "line": q.line})
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    n = len(questions)

    def mean(xs: list[float]) -> float:
        return round(sum(xs) / len(xs), 4) if xs else 0.0

    halves_report = {name: {"n": len(rows), "hits@1": mean([r[0] for r in rows]), "f1": mean([r[1] for r in rows]),
                            "answer_recall": mean([r[2] for r in rows])}
                     for name, rows in (("held_out", halves[False]), ("training", halves[True]))}
    scorer = "learned" if model else "zero-shot"
    return {
        "n": n,
        "metrics": {"hits@1": mean(hits), "f1": mean(f1s), "answer_recall": mean(recalls)},
        "latency_ms": latency_summary(latencies) if latencies else {},
        "latencies_ms": latencies,
        "predictions": predictions,
        "per_type": {t: {"n": len(v), "hits@1": mean(v)} for t, v in sorted(per_type.items())},
        "config": {"scorer": scorer, "model": model, "held_out": held_out, "hops": hops, "ntm": ntm,
                   "file": str(path.relative_to(request.data)), "batch_size": batch, "kb": str(kb.path),
                   "latency": "per-question share of batched ask_many (extractive)",
                   "questions_per_second": round(n / max(time.perf_counter() - started, 1e-9), 1),
                   # the same run split by the trainer's halves: "held_out" is what a trained scorer never saw
                   "halves": halves_report},
    }


#: The ``-o`` keys of the benchmarks and of the trainer (any other is refused before the KB is built).
EVAL_OPTIONS = frozenset({"batch_size", "held_out"})
_TRAIN_NUMBERS: registry.NumericSpec = {"epochs": (int, 1, None), "lr": (float, [0], None), "hidden": (int, 1, None),
                                        "min_steps": (int, 0, None), "seed": (int, 0, registry.SEED_MAX)}
TRAIN_OPTIONS = frozenset({*_TRAIN_NUMBERS, "ntm", "all_lines", "kb"})


def train(request: registry.TrainRequest) -> dict[str, Any]:
    """Train the learned path scorer on the training half of the dev files (1/2/3-hop + 1-hop ntm)."""
    import numpy as np

    from kgllm.reasoning.reasoner import PathReasoner
    from kgllm.reasoning.training import TrainingExample, train_path_scorer

    numbers = registry.numeric_options(request.options, _TRAIN_NUMBERS)  # bad values fail before any work
    with_ntm = registry.flag(request.options.get("ntm", True), "ntm")
    every = registry.flag(request.options.get("all_lines", False), "all_lines")  # small data sets: train on every line
    split = request.split if request.split != "train" else "dev"
    kb = metaqa_kb(request.data, request.options.get("kb"), progress=request.progress)
    ctx = kb.pipeline.context(DOMAIN)
    index = ctx.snapshot.index
    examples: list[TrainingExample] = []
    sources = [(1, False), (2, False), (3, False)]
    if with_ntm:
        sources.append((1, True))
    counts: dict[str, int] = {}
    for hops, ntm in sources:
        path = _question_file(request.data, hops, split, ntm)
        if not path.is_file():
            raise BenchmarkError(f"{request.data}: missing {path.relative_to(request.data)}")
        used = 0
        for q in read_questions(path):
            if not (every or in_training_half(hops, q.line)) or q.topic not in index:
                continue
            match = _BRACKET.search(q.question)
            assert match is not None
            text = PathReasoner.mask(q.question, match.start(1), match.end(1))
            answers = [index[a] for a in q.answers if a in index]
            examples.append(TrainingExample(text, [index[q.topic]], answers, hops))
            used += 1
        counts[str(path.relative_to(request.data))] = used
    scorer, stats = train_path_scorer(ctx.graph, kb.embedder, examples, max_hops=3, epochs=numbers.get("epochs", 30),
                                      lr=numbers.get("lr", 2e-3), hidden=numbers.get("hidden", 256),
                                      min_steps=numbers.get("min_steps", 800), seed=numbers.get("seed", 0),
                                      progress=request.progress)
    half = "all lines" if every else "metaqa hash (hops, line) even"
    scorer.manifest["training"] = {"split": split, "half": half, "files": counts}
    scorer.save(request.out)
    return {"out": str(request.out), "files": counts, **stats, "seed": numbers.get("seed", 0),
            "relations": len(ctx.snapshot.relations), "entities": int(np.int64(ctx.snapshot.num_nodes))}


def _required(hops: int, ntm: bool):  # type: ignore[no-untyped-def]
    def files(data: Path, split: str) -> list[str]:
        return ["kb.txt", str(Path(f"{hops}-hop") / ("ntm" if ntm else "") / f"qa_{split}.txt")]
    return files


for _name in ("metaqa-1hop", "metaqa-2hop", "metaqa-3hop", "metaqa-1hop-ntm"):
    _hops, _ntm = _files(_name)
    registry.benchmark(registry.Benchmark(
        name=_name,
        description=f"MetaQA {_hops}-hop{' (paraphrased NTM questions)' if _ntm else ''}: multi-hop KGQA over "
                    "the WikiMovies KB; options held_out=true, batch_size",
        primary_metric="hits@1",
        run=functools.partial(evaluate, hops=_hops, ntm=_ntm),
        required_files=_required(_hops, _ntm),
        options=EVAL_OPTIONS,
    ))

registry.trainer(registry.Trainer(
    name="metaqa",
    description="learned path scorer on the training half of MetaQA dev (1/2/3-hop + 1-hop ntm)",
    run=train,
    options=TRAIN_OPTIONS,
))
