"""WebQSP / CWQ in the RoG format (Luo et al. 2024, "Reasoning on Graphs"): one question per JSON line
with its own retrieved subgraph.

Fields: ``id``, ``question``, ``answer`` (names), ``q_entity`` (topic entities), ``a_entity`` (answer
entities), ``graph`` (``[[head, relation, tail], ...]``). Each question's graph becomes a
:class:`GraphSnapshot` and is answered by the zero-shot path reasoner from its topic entities;
metrics are Hits@1 and answer-set F1 as in RoG. ``--data`` is a folder holding ``dev.jsonl`` /
``validation.jsonl`` and ``test.jsonl``, or one ``.jsonl`` file.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kgllm.eval import metrics
from kgllm.eval.kgdata import snapshot_from_triples
from kgllm.eval.registry import Benchmark, EvalRequest, benchmark, numeric_options
from kgllm.exceptions import BenchmarkError, LoadError
from kgllm.loaders import iter_json_objects
from kgllm.loaders._io import shorten

__all__ = ["RoGQuestion", "read_rog", "rog_file", "run_rog", "SPLIT_NAMES"]

SPLIT_NAMES = {"dev": ("dev.jsonl", "validation.jsonl", "valid.jsonl"), "test": ("test.jsonl",),
               "train": ("train.jsonl",)}


@dataclass
class RoGQuestion:
    id: str
    question: str
    answers: list[str]
    q_entity: list[str]
    a_entity: list[str]
    graph: list[tuple[str, str, str]]

    @property
    def gold(self) -> set[str]:
        return set(self.a_entity or self.answers)


def rog_file(data: Path, split: str) -> Path:
    """The question file of ``split`` (``data`` itself when it is a file)."""
    data = Path(data)
    if data.is_file():
        return data
    if split not in SPLIT_NAMES:
        raise BenchmarkError(f"unknown split {split!r}; known splits: {', '.join(SPLIT_NAMES)}")
    for name in SPLIT_NAMES[split]:
        if (data / name).is_file():
            return data / name
    raise BenchmarkError(f"{data}: no {split} questions; expected one of: {', '.join(SPLIT_NAMES[split])}")


def read_rog(path: Path) -> Iterator[RoGQuestion]:
    """Questions of a RoG jsonl file.

    Raises:
        LoadError: invalid JSON, a missing field, or a graph edge that is not ``[head, relation, tail]``.
    """
    for lineno, line, row in iter_json_objects(Path(path)):
        missing = [k for k in ("question", "q_entity", "graph") if k not in row]
        if missing:
            raise LoadError(f"missing field(s) {missing}; expected id, question, answer, q_entity, a_entity, "
                            "graph", path=path, line=lineno, value=shorten(line))
        if not isinstance(row["question"], str):
            raise LoadError(f"field 'question' must be a string, got {_kind(row['question'])}", path=path,
                            line=lineno, value=shorten(line))
        if not isinstance(row["graph"], list):
            raise LoadError(f"field 'graph' must be a list of [head, relation, tail] edges, got {_kind(row['graph'])}",
                            path=path, line=lineno, value=shorten(line))
        entities = {key: _strings(row, key, path, lineno) for key in ("q_entity", "answer", "a_entity")}
        graph = []
        for edge in row["graph"]:
            if not (isinstance(edge, list) and len(edge) == 3 and all(isinstance(x, str) for x in edge)):
                raise LoadError("graph edges must be [head, relation, tail] strings", path=path, line=lineno,
                                value=edge)
            graph.append((edge[0], edge[1], edge[2]))
        yield RoGQuestion(id=str(row.get("id", lineno)), question=row["question"], answers=entities["answer"],
                          q_entity=entities["q_entity"], a_entity=entities["a_entity"], graph=graph)


def _strings(row: dict[str, Any], key: str, path: Path, lineno: int) -> list[str]:
    """A list-of-names field (absent or null: empty); a bare string would otherwise be read letter by letter."""
    value = row.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise LoadError(f"field {key!r} must be a list of strings, got {_kind(value)}", path=path, line=lineno,
                        value=value if isinstance(value, str) else shorten(json.dumps(value)))
    return list(value)


def _kind(value: Any) -> str:
    """A value's JSON type, or the offending item of a list, for error messages."""
    if isinstance(value, list):  # a list is only wrong for an item that is not a string
        return "the item " + json.dumps(next(x for x in value if not isinstance(x, str)))
    return {dict: "an object", str: "a string", bool: "a boolean", type(None): "null"}.get(type(value), "a number")


def run_rog(request: EvalRequest, *, name: str) -> dict[str, Any]:
    """Answer every question on its own subgraph; Hits@1, F1 and answer recall."""
    from kgllm.embed import Embedder
    from kgllm.reasoning.paths import RelationGraph
    from kgllm.reasoning.reasoner import PathReasoner
    from kgllm.reasoning.scorer import ZeroShotScorer

    try:
        path = rog_file(request.data, request.split)
    except BenchmarkError as exc:
        raise BenchmarkError(f"{name}: {exc}") from exc
    # checked before the embedder loads: a bad value is a ConfigError naming it (the reasoner's range, 1-4)
    max_hops = numeric_options(request.options, {"max_hops": (int, 1, 4)}).get("max_hops", 2)
    embedder = Embedder(request.options.get("embedder"))
    hits, f1s, recalls, latencies, predictions = [], [], [], [], []
    for i, q in enumerate(read_rog(path)):
        if request.limit is not None and i >= request.limit:
            break
        started = time.perf_counter()
        snap = snapshot_from_triples(q.graph, domain=f"{name}:{q.id}") if q.graph else None
        topic = [snap.index[e] for e in q.q_entity if snap is not None and e in snap.index]
        ranked: list[str] = []
        answer_set: list[str] = []
        score = 0.0
        if snap is not None and topic:
            graph = RelationGraph(snap)
            reasoner = PathReasoner(graph, ZeroShotScorer(graph, embedder), max_hops=max_hops)
            state = reasoner.prepare([q.question])[0]
            result = reasoner.reason(state, topic)
            ranked = [a.id for a in result.answers]
            answer_set = result.answer_set
            score = result.answers[0].score if result.answers else 0.0
        latencies.append((time.perf_counter() - started) * 1000)
        gold = q.gold
        hits.append(metrics.hits_at_k(ranked, gold, 1))
        f1s.append(metrics.answer_f1(answer_set, gold))
        recalls.append(len(set(answer_set) & gold) / len(gold) if gold else 0.0)
        predictions.append({"question": q.question, "gold": sorted(gold), "predicted": ranked[0] if ranked else None,
                            "score": float(min(1.0, max(0.0, score))), "correct": bool(hits[-1])})
    return {"n": len(hits), "metrics": {"hits@1": metrics.mean(hits), "f1": metrics.mean(f1s),
                                        "answer_recall": metrics.mean(recalls)},
            "latencies_ms": latencies, "predictions": predictions,
            "config": {"reasoner": "zero-shot paths", "max_hops": max_hops, "embedder": embedder.model_name,
                       "file": path.name}}


#: The ``-o`` keys of ``kgllm eval webqsp|cwq``.
OPTIONS = frozenset({"max_hops", "embedder"})
# No required_files: rog_file names every file name a split accepts (dev.jsonl, validation.jsonl, ...).
for _name, _title in (("webqsp", "WebQSP"), ("cwq", "CWQ")):
    benchmark(Benchmark(name=_name, description=f"{_title} in the RoG format (per-question subgraphs): Hits@1, F1",
                        primary_metric="hits@1", run=functools.partial(run_rog, name=_name), options=OPTIONS))
