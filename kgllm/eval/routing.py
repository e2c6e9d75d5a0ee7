"""Routing evaluation (``kgllm eval routing``) and router training (``kgllm train router``).

Data: JSON lines ``{"question": ..., "domain": ...}``. The experts are those of a KB given with
``-o kb=DIR``, or a temporary KB loaded from the bundled packs (``-o graphs=DIR`` to choose others).
``kgllm train router ... -o kb=DIR`` also makes that KB route with the trained model.
"""

from __future__ import annotations

import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from kgllm.eval.registry import (
    SEED_MAX,
    Benchmark,
    EvalRequest,
    Trainer,
    TrainRequest,
    benchmark,
    numeric_options,
    require_model,
    trainer,
)
from kgllm.exceptions import BenchmarkError, LoadError
from kgllm.loaders import iter_json_objects
from kgllm.loaders._io import shorten

__all__ = ["read_routing_file", "evaluate_routing", "plot_confusion"]


def read_routing_file(path: Path, limit: int | None = None) -> list[tuple[str, str]]:
    """``(question, domain)`` pairs from a JSONL file; errors name the file and line."""
    if path.is_dir():
        path = path / "dev.jsonl"
    if not path.exists():
        raise BenchmarkError(f"routing data not found: {path} (expected JSON lines with 'question' and 'domain')")
    rows: list[tuple[str, str]] = []
    for number, line, item in iter_json_objects(path):
        if "question" not in item or "domain" not in item:
            raise LoadError("expected a JSON object with 'question' and 'domain'", path=path, line=number,
                            value=shorten(line))
        rows.append((str(item["question"]), str(item["domain"])))
        if limit is not None and len(rows) >= limit:
            break
    if not rows:
        raise LoadError("no routing questions", path=path)
    return rows


@contextmanager
def _experts_kb(options: dict[str, Any]):  # type: ignore[no-untyped-def]
    import kgllm
    from kgllm.demo import bundled_graphs_dir

    if options.get("kb"):
        with kgllm.open(options["kb"], create=False) as kb:
            yield kb
        return
    graphs = Path(options["graphs"]) if options.get("graphs") else bundled_graphs_dir()
    with tempfile.TemporaryDirectory(prefix="kgllm-routing-") as tmp, kgllm.open(Path(tmp) / "kb") as kb:
        for manifest in sorted(graphs.glob("*/manifest.yaml")):
            kb.load(manifest.parent)
        yield kb


def evaluate_routing(kb: Any, rows: list[tuple[str, str]], *, model_dir: Path | None = None) -> dict[str, Any]:
    """Accuracy@1, per-domain accuracy, confusion matrix and routing latency over ``rows``."""
    from kgllm.experts import Router, RouterModel

    model = RouterModel.load(model_dir, model=kb.embedder.model_name) if model_dir else None
    router = Router(kb, model=model)
    labels = sorted(set(kb.domains) | {domain for _, domain in rows})
    unknown = sorted({domain for _, domain in rows} - set(kb.domains))
    if unknown:
        raise BenchmarkError(f"routing data names domains the KB lacks: {', '.join(unknown)}; "
                             f"KB domains: {', '.join(kb.domains)}")
    position = {name: i for i, name in enumerate(labels)}
    vectors = kb.embedder.encode([question for question, _ in rows])
    for name in kb.domains:  # profiles are built once; keep that out of the per-question latency
        router.profile(name)
    confusion = np.zeros((len(labels), len(labels)), dtype=int)
    latencies, predictions = [], []
    for (question, gold), vector in zip(rows, vectors):
        start = time.perf_counter()
        ranked = router.route(question, vector=vector)
        latencies.append((time.perf_counter() - start) * 1000)
        predicted = ranked[0].name
        confusion[position[gold], position[predicted]] += 1
        predictions.append({"question": question, "gold": gold, "predicted": predicted,
                            "scores": {c.name: c.score for c in ranked}})
    correct = np.trace(confusion)
    per_domain = {name: float(confusion[i, i] / confusion[i].sum()) for name, i in position.items()
                  if confusion[i].sum()}
    return {"n": len(rows), "metrics": {"accuracy@1": float(correct / len(rows)), **{
                f"accuracy@1/{name}": value for name, value in per_domain.items()}},
            "latencies_ms": latencies,
            "confusion": {"labels": labels, "matrix": confusion.tolist()},
            "config": {"router": "trained" if model else "zero-shot", "model": str(model_dir) if model_dir else None,
                       "experts": kb.domains},
            "predictions": predictions}


def plot_confusion(confusion: dict[str, Any], path: Path, title: str = "routing confusion") -> Path:
    """Write the confusion matrix as a PNG heat map."""
    from kgllm.eval.report import pyplot, save_figure

    plt = pyplot()

    labels, matrix = confusion["labels"], np.array(confusion["matrix"])
    fig, ax = plt.subplots(figsize=(1.2 * len(labels) + 2, 1.0 * len(labels) + 1.5))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("routed to")
    ax.set_ylabel("gold domain")
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center",
                    color="white" if matrix[i, j] > matrix.max() / 2 else "black")
    ax.set_title(title)
    return save_figure(fig, path)


def _run(request: EvalRequest) -> dict[str, Any]:
    rows = read_routing_file(request.data, request.limit)
    if request.model is not None:
        require_model(request.model, "kgllm-router", "kgllm eval routing")
    with _experts_kb(request.options) as kb:
        result = evaluate_routing(kb, rows, model_dir=request.model)
    plot_to = request.options.get("plot")
    if plot_to:
        result["plot"] = str(plot_confusion(result["confusion"], Path(plot_to)))
    return result


def _train(request: TrainRequest) -> dict[str, Any]:
    from kgllm.experts import RouterModel

    numbers = numeric_options(request.options, {"c": (float, [0], None), "seed": (int, 0, SEED_MAX)})
    rows = read_routing_file(request.data)
    with _experts_kb(request.options) as kb:
        questions = [question for question, _ in rows]
        vectors = kb.embedder.encode(questions)
        model = RouterModel.fit(questions, vectors, [domain for _, domain in rows], model=kb.embedder.model_name,
                                c=numbers.get("c", 10.0), seed=numbers.get("seed", 0))
        model.save(request.out)
        if request.options.get("kb"):  # trained on a user's KB: that KB now routes with it
            kb.use_router_model(request.out)
    predicted = np.array(model.labels)[model.probabilities(questions, vectors).argmax(1)]
    train_accuracy = float(np.mean(predicted == np.array([d for _, d in rows])))
    return {"out": str(request.out), "n": len(rows), "labels": model.labels, "train_accuracy": train_accuracy}


def _required(data: Path, split: str) -> list[str]:
    return [] if Path(data).is_file() else [f"{split}.jsonl"]


#: The ``-o`` keys of ``kgllm eval routing`` and ``kgllm train router``.
EVAL_OPTIONS = frozenset({"kb", "graphs", "plot"})
TRAIN_OPTIONS = frozenset({"kb", "graphs", "c", "seed"})
benchmark(Benchmark(name="routing", description="Expert routing accuracy on labelled questions (JSONL).",
                    primary_metric="accuracy@1", run=_run, required_files=_required, splits=("dev",),
                    options=EVAL_OPTIONS))
trainer(Trainer(name="router", description="Softmax router over question embeddings, from labelled JSONL.",
                run=_train, options=TRAIN_OPTIONS))
