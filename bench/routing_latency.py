"""Routing latency with N synthetic experts (targets: p50 <= 5 ms with 5 experts, <= 20 ms with 50).

Builds, for each N in ``--experts``, a fresh knowledge base of N synthetic experts: each a small graph
(``--triples`` triples over its own entity vocabulary: two-word invented names, unique across experts),
five topic relations with natural-language texts and a one-line description, all generated
deterministically from ``--seed``. Then it measures:

* ``profile_build_ms``: the one-time cost of each expert's router profile (store snapshot, relation
  and entity sample texts embedded with an empty embedding cache);
* ``route_cached_ms``: ``kb.router.route(question)`` when the question's embedding is already in the
  embedder cache, which is the case inside ``ask`` (the pipeline embeds the question for reasoning);
  this is what routing *adds* to ``ask`` and what the targets apply to;
* ``route_given_vector_ms``: the same with the vector passed in (``route(question, vector=v)``): the
  router's own work without the cache lookup;
* ``route_cold_ms``: new question texts, so every call runs the MiniLM encoder on one question;
* ``trained_route_cached_ms``: the same cached timing through a trained :class:`RouterModel` (logistic
  regression over embeddings and character n-grams), fitted on separate synthetic questions.

Each question names an entity of one expert (bracketed or not) or only its topic, so routing
accuracy@1 is reported as a sanity check. Writes ``bench/results/routing_latency.json``.

    python bench/routing_latency.py [--experts 5,50] [--questions 200] [--triples 300] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np
from benchjson import machine_info, write_result

if TYPE_CHECKING:
    from kgllm.types import ExpertChoice

T = TypeVar("T")
R = TypeVar("R")

RESULTS = Path(__file__).resolve().parent / "results" / "routing_latency.json"
TARGET_P50_MS = {5: 5.0, 50: 20.0}

TOPICS = [
    "astronomy", "botany", "chess", "cooking", "geology", "jazz music", "sailing", "architecture",
    "mythology", "genetics", "railways", "aviation", "perfumery", "heraldry", "beekeeping", "cartography",
    "ceramics", "coin collecting", "volcanology", "birdwatching", "textiles", "winemaking", "glassmaking",
    "typography", "robotics", "falconry", "mining", "brewing", "puppetry", "forestry", "meteorology",
    "cryptography", "epidemiology", "dentistry", "optics", "acoustics", "hydrology", "paleontology",
    "entomology", "linguistics", "metallurgy", "clockmaking", "origami", "surfing", "mountaineering",
    "fencing", "archery", "calligraphy", "tea culture", "cheesemaking", "bookbinding", "glaciology",
]
RELATIONS = [
    "is part of", "was made by", "is used in", "is located near", "was named after", "influenced",
    "is a variant of", "is measured with", "was discovered by", "competes with", "is stored in",
    "precedes", "requires", "produces", "is found in", "belongs to", "was restored by",
    "is documented in", "depends on", "replaced",
]
_ONSETS = ["b", "br", "c", "ch", "d", "dr", "f", "g", "gl", "h", "j", "k", "kr", "l", "m", "n", "p", "pr",
           "qu", "r", "s", "sh", "st", "t", "th", "tr", "v", "w", "z"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ea", "ou", "y"]
_CODAS = ["", "", "n", "r", "l", "s", "th", "x", "m", "nd", "rk"]


@dataclass
class SyntheticExpert:
    """One generated domain: its name, description, relation texts, entities and triples."""

    name: str
    topic: str
    description: str
    relation_text: dict[str, str]
    entities: list[str]
    triples: list[tuple[str, str, str]]


def _word(rng: np.random.Generator) -> str:
    syllables = int(rng.integers(2, 4))
    return "".join(str(rng.choice(_ONSETS)) + str(rng.choice(_VOWELS)) + str(rng.choice(_CODAS))
                   for _ in range(syllables)).capitalize()


def synthetic_experts(n: int, triples: int, seed: int = 0) -> list[SyntheticExpert]:
    """``n`` experts with ``triples`` triples each over disjoint, deterministic entity vocabularies."""
    rng = np.random.default_rng(seed)
    taken: set[str] = set()
    experts = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)] + (f" {i // len(TOPICS) + 1}" if i >= len(TOPICS) else "")
        slug = re.sub(r"\W+", "_", topic)
        phrases = [RELATIONS[j] for j in rng.choice(len(RELATIONS), 5, replace=False)]
        relation_text = {re.sub(r"\W+", "_", p): p for p in phrases}
        entities: list[str] = []
        while len(entities) < max(4, triples // 3):
            name = f"{_word(rng)} {_word(rng)}"
            if name.lower() not in taken:  # names are compared case-folded by the router
                taken.add(name.lower())
                entities.append(name)
        rels = list(relation_text)
        rows: set[tuple[str, str, str]] = set()
        while len(rows) < triples:
            h, t = rng.choice(len(entities), 2, replace=False)
            rows.add((entities[int(h)], rels[int(rng.integers(len(rels)))], entities[int(t)]))
        description = (f"{topic.capitalize()}: the objects, people and places of {topic}, and how they relate "
                       f"({', '.join(phrases[:3])}).")
        experts.append(SyntheticExpert(f"x{i:02d}_{slug}", topic, description, relation_text, entities,
                                       sorted(rows)))
    return experts


_TEMPLATES = [
    "Which {topic} item {rel} [{entity}]?",
    "What {rel} {entity}?",
    "In {topic}, what is connected to {entity}?",
    "Tell me what {entity} {rel}.",
    "Name something in {topic} that {rel} something else.",  # no entity: semantic signals only
]


def make_questions(experts: Sequence[SyntheticExpert], n: int, seed: int,
                   exclude: Collection[str] = ()) -> list[tuple[str, str]]:
    """``n`` distinct ``(question, gold expert)`` pairs, none of them in ``exclude``."""
    rng = np.random.default_rng(seed)
    out: dict[str, str] = {}
    for _ in range(100 * n):
        if len(out) == n:
            break
        expert = experts[int(rng.integers(len(experts)))]
        template = _TEMPLATES[int(rng.integers(len(_TEMPLATES)))]
        question = template.format(topic=expert.topic, rel=str(rng.choice(list(expert.relation_text.values()))),
                                   entity=expert.entities[int(rng.integers(len(expert.entities)))])
        if question not in exclude:
            out.setdefault(question, expert.name)
    if len(out) < n:
        raise ValueError(f"could generate only {len(out)} distinct questions of {n}; use more --triples")
    return list(out.items())


def stats_ms(values: Sequence[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=np.float64)
    return {"p50": round(float(np.percentile(arr, 50)), 3), "p95": round(float(np.percentile(arr, 95)), 3),
            "mean": round(float(arr.mean()), 3), "max": round(float(arr.max()), 3), "n": int(arr.size)}


def time_each(items: Sequence[T], call: Callable[[T], R]) -> tuple[list[float], list[R]]:
    """Call ``call`` on each item; milliseconds per call and the results."""
    times: list[float] = []
    results: list[R] = []
    for item in items:
        start = time.perf_counter()
        results.append(call(item))
        times.append((time.perf_counter() - start) * 1000)
    return times, results


def accuracy(results: Sequence[list[ExpertChoice]], gold: Sequence[str]) -> float:
    return round(float(np.mean([bool(r) and r[0].name == g for r, g in zip(results, gold, strict=True)])), 4)


def run_case(n_experts: int, args: argparse.Namespace, workdir: Path) -> dict[str, object]:
    import kgllm
    from kgllm.experts import Router, RouterModel

    experts = synthetic_experts(n_experts, args.triples, args.seed)
    data = workdir / f"data{n_experts}"
    data.mkdir()
    kb = kgllm.open(workdir / f"kb{n_experts}")
    started = time.perf_counter()
    for expert in experts:
        path = data / f"{expert.name}.tsv"
        path.write_text("".join(f"{h}\t{r}\t{t}\n" for h, r, t in expert.triples), encoding="utf-8")
        kb.load_triples(expert.name, path, format="tsv", description=expert.description,
                        relation_text=expert.relation_text)
    load_s = time.perf_counter() - started

    router = kb.router
    kb.embedder.encode(["loads the model before timing"])  # model load is a process cost, not a profile's
    profile_times, _ = time_each([e.name for e in experts], router.profile)
    texts_per_profile = [1 + len(router.profile(e.name).samples) for e in experts]

    questions = make_questions(experts, args.questions, args.seed + 1)
    cold = make_questions(experts, args.questions, args.seed + 2, exclude={q for q, _ in questions})
    warmup = make_questions(experts, 10, args.seed + 3, exclude={q for q, _ in questions + cold})
    texts, gold = [q for q, _ in questions], [g for _, g in questions]
    vectors = kb.embedder.encode(texts)  # what the pipeline does for reasoning: the cache now holds them
    kb.embedder.encode([q for q, _ in warmup])
    for question, _ in warmup:  # first calls pay one-off costs (imports, allocator); keep them out
        router.route(question)

    cached_times, cached = time_each(texts, router.route)
    given_times, given = time_each(list(range(len(texts))),
                                   lambda i: router.route(texts[i], vector=vectors[i]))
    identical = all([c.model_dump() for c in a] == [c.model_dump() for c in b]
                    for a, b in zip(cached, given, strict=True))
    encoded_before = kb.embedder.stats.encoded
    cold_times, cold_results = time_each([q for q, _ in cold], router.route)
    cold_encoded = kb.embedder.stats.encoded - encoded_before

    trained: dict[str, object] | None = None
    if args.train_per_expert > 0:
        train = make_questions(experts, args.train_per_expert * n_experts, args.seed + 4,
                               exclude={q for q, _ in questions + cold + warmup})
        started = time.perf_counter()
        train_vectors = kb.embedder.encode([q for q, _ in train])
        model = RouterModel.fit([q for q, _ in train], train_vectors, [g for _, g in train],
                                model=kb.embedder.model_name)
        fit_s = time.perf_counter() - started
        trained_router = Router(kb, model=model)
        for question, _ in warmup:
            trained_router.route(question)
        trained_times, trained_results = time_each(texts, trained_router.route)
        trained = {"train_questions": len(train), "fit_s": round(fit_s, 3),
                   "route_cached_ms": stats_ms(trained_times), "accuracy@1": accuracy(trained_results, gold)}

    target = TARGET_P50_MS.get(n_experts)
    cached_stats = stats_ms(cached_times)
    result: dict[str, object] = {
        "experts": n_experts,
        "triples_per_expert": args.triples,
        "entities_per_expert": len(experts[0].entities),
        "questions": len(texts),
        "load_s": round(load_s, 3),
        "profile_build_ms": {**stats_ms(profile_times), "total_s": round(sum(profile_times) / 1000, 3),
                             "texts_per_profile": int(np.mean(texts_per_profile))},
        "route_cached_ms": cached_stats,
        "route_given_vector_ms": stats_ms(given_times),
        "route_cold_ms": stats_ms(cold_times),
        "cold_questions_encoded": cold_encoded,
        "given_vector_same_ranking": identical,
        "accuracy@1": {"cached": accuracy(cached, gold),
                       "cold": accuracy(cold_results, [g for _, g in cold])},
        "trained_router": trained,
        "target_p50_ms": target,
        "meets_target": None if target is None else bool(cached_stats["p50"] <= target),
    }
    kb.close()
    return result


def main(argv: Sequence[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experts", default="5,50", help="comma-separated expert counts (default 5,50)")
    parser.add_argument("--questions", type=int, default=200, help="timed questions per mode (default 200)")
    parser.add_argument("--triples", type=int, default=300, help="triples per expert (default 300)")
    parser.add_argument("--train-per-expert", type=int, default=8,
                        help="labelled questions per expert for the trained router; 0 skips it (default 8)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch

    from kgllm.index.manifest import kgllm_version

    if args.threads:
        torch.set_num_threads(args.threads)
    counts = [int(x) for x in args.experts.split(",") if x.strip()]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="kgllm-routing-bench-") as tmp:
        cases = [run_case(n, args, Path(tmp)) for n in counts]
    result = {
        "benchmark": "routing_latency",
        "command": "python bench/routing_latency.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "cases": cases,
        "targets_p50_ms": {str(k): v for k, v in TARGET_P50_MS.items()},
        "passed": all(case["meets_target"] is not False for case in cases),
        "seconds": round(time.perf_counter() - started, 1),
        "torch_threads": torch.get_num_threads(),
        "kgllm_version": kgllm_version(),
        "machine": machine_info(),
    }
    return write_result(args.out, result)


if __name__ == "__main__":
    main()
