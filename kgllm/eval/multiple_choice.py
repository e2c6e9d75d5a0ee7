"""CommonsenseQA and OpenBookQA: ``kgllm train csqa|obqa`` and ``kgllm eval csqa|obqa``.

Both train the multiple-choice graph adapter (:mod:`kgllm.fusion.adapter`) on frozen-encoder
features, or with ``--no-graph`` the same encoder and head without the graph (the baseline).

Options (``-o KEY=VALUE``): ``graph`` (concept triples, default ``<data>/../conceptnet_100k/train.txt``),
``wordnet`` (``true`` or a WordNet 3.0 folder: add WordNet's triples to the graph, see :mod:`kgllm.fusion.wordnet`),
``cache_dir`` (feature cache, default ``~/.cache/kgllm/mcqa``), ``max_nodes``, ``hops``, ``hidden``,
``layers``, ``heads``, ``dropout``, ``batch_size``, ``interaction``, ``dev_fraction`` (share of the
training questions held out to pick the best epoch), ``threads`` (torch CPU threads), ``device`` (where the
adapter trains and scores: ``cpu``, the default and the only bit-reproducible one, ``cuda``, ``cuda:N``, or
``auto`` for a GPU when torch sees one; the frozen encoder picks its own), and ``encoder``, ``epochs``, ``lr``,
``weight_decay``, ``seed``, ``top_documents``, ``limit`` (train on the first N questions), ``no_graph``. Any other
key is refused. ``kgllm eval csqa|obqa`` uses ``encoder``, ``cache_dir``, ``device`` and ``threads``; it accepts
the trainer's other keys with a report warning that they had no effect (the model directory fixes them).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

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
from kgllm.exceptions import BenchmarkError, ConfigError, LoadError

__all__ = ["SPLIT_FILES", "DOCUMENTS", "run_benchmark", "run_training"]

SPLIT_FILES: dict[str, dict[str, str]] = {
    "csqa": {"train": "train_inhouse.jsonl", "dev": "dev.jsonl", "test": "test_inhouse.jsonl"},
    "obqa": {"train": "train.jsonl", "dev": "dev.jsonl", "test": "test.jsonl"},
}
#: Open-book facts retrieved as documents (OpenBookQA only).
DOCUMENTS = {"obqa": "openbook.txt"}
_FEATURE_OPTIONS = ("max_nodes", "hops", "top_documents")
_CONFIG_OPTIONS = ("epochs", "lr", "weight_decay", "batch_size", "hidden", "layers", "heads", "dropout", "seed")
#: The numeric options (see :func:`~kgllm.eval.registry.numeric_options`). (``max_nodes``: the feature cache
#: stores a subgraph's local node ids as int16.)
_NUMBERS: NumericSpec = {
    "epochs": (int, 1, None), "batch_size": (int, 1, None), "hidden": (int, 1, None), "layers": (int, 0, None),
    "heads": (int, 1, None), "seed": (int, 0, SEED_MAX), "max_nodes": (int, 1, 32_000), "hops": (int, 2, 3),
    "top_documents": (int, 0, None), "limit": (int, 1, None), "threads": (int, 1, None), "lr": (float, [0], None),
    "weight_decay": (float, 0, None), "dropout": (float, 0, [1]), "dev_fraction": (float, 0, [1])}
_NO = {"false", "0", "no", "off", ""}
#: The ``-o`` keys of ``kgllm train csqa|obqa`` (``--epochs``, ``--lr``, ``--seed``, ``--no-graph`` among them).
TRAIN_OPTIONS = frozenset({*_NUMBERS, "no_graph", "interaction", "device", "graph", "wordnet", "cache_dir", "encoder"})
#: The keys that change ``kgllm eval csqa|obqa``; it also accepts the trainer's (the model directory fixes
#: them: a report warning says they had no effect), so one option set serves training and evaluation.
_EVAL_USED = frozenset({"encoder", "cache_dir", "device", "threads"})
EVAL_OPTIONS = TRAIN_OPTIONS | _EVAL_USED


def _split_file(name: str, data: Path, split: str) -> Path:
    files = SPLIT_FILES[name]
    if split not in files:
        raise BenchmarkError(f"unknown split {split!r} for {name}; valid splits: {', '.join(files)}")
    path = Path(data) / files[split]
    if not path.is_file():
        raise BenchmarkError(f"{name}: {path} not found (the {split!r} split of --data {data})")
    return path


def _read_questions(name: str, path: Path, limit: int | None = None) -> list[Any]:
    """The first ``limit`` questions of ``path``, checked to be scorable together.

    Raises:
        LoadError: the file holds no questions, or questions with different numbers of choices (the
            adapter scores a fixed number of choices per batch).
    """
    from kgllm.fusion.features import read_mc_jsonl

    questions = read_mc_jsonl(path)
    questions = questions[:limit] if limit else questions
    if not questions:
        raise LoadError(f"no {name} questions", path=path)
    first = len(questions[0].choices)
    odd = next((q for q in questions if len(q.choices) != first), None)
    if odd is not None:
        raise LoadError(f"every question needs the same number of choices: the first has {first}, "
                        f"question {odd.id!r} has {len(odd.choices)}", path=path, value=odd.stem)
    return questions


def _graph_path(data: Path, options: dict[str, Any]) -> Path:
    path = Path(options.get("graph") or Path(data).resolve().parent / "conceptnet_100k" / "train.txt")
    if not path.is_file():
        raise BenchmarkError(f"concept graph {path} not found; pass -o graph=PATH "
                             "(relation<TAB>head<TAB>tail triples, e.g. CN-100K train.txt)")
    return path


def _with_wordnet(graph_path: Path, options: dict[str, Any]) -> Path:
    """``graph_path`` joined with WordNet's triples when ``-o wordnet=`` asks for it (written once, cached)."""
    value = options.get("wordnet")
    off = value.strip().lower() in _NO if isinstance(value, str) else not value  # -o wordnet=0 arrives as 0
    if off:
        return graph_path
    from kgllm.fusion.wordnet import with_wordnet

    return with_wordnet(graph_path, None if flag(value) else value, cache_dir=_cache_dir(options))


def _documents(name: str, data: Path) -> list[str]:
    from kgllm.fusion.features import read_facts

    if name not in DOCUMENTS:
        return []
    path = Path(data) / DOCUMENTS[name]
    if not path.is_file():
        raise BenchmarkError(f"{name}: open-book facts {path} not found in --data {data}")
    return read_facts(path)


def _set_threads(options: dict[str, Any]) -> None:
    threads = numeric_options(options, _NUMBERS).get("threads")
    if threads:
        import torch

        torch.set_num_threads(threads)


def _cache_dir(options: dict[str, Any]) -> Path:
    return Path(options.get("cache_dir") or Path.home() / ".cache" / "kgllm" / "mcqa")


def run_training(name: str, request: TrainRequest) -> dict[str, Any]:
    """Train the adapter (or the no-graph baseline) on ``name``'s training split and save it."""
    from kgllm.embed import Embedder
    from kgllm.fusion.features import FeatureBuilder
    from kgllm.fusion.grounding import ConceptGraph
    from kgllm.fusion.training import GraphData, TrainConfig, resolve_device, save_model, train_adapter

    opts = dict(request.options)
    numbers = numeric_options(opts, _NUMBERS)  # bad values fail before any work; dev_fraction leaves a question to train on
    use_graph = not flag(opts.get("no_graph", False), "no_graph")
    interaction = flag(opts.get("interaction", False), "interaction")
    fraction = numbers.get("dev_fraction", 0.1)
    hidden, heads = numbers.get("hidden", TrainConfig.hidden), numbers.get("heads", TrainConfig.heads)
    if hidden % heads:
        raise ConfigError(f"hidden ({hidden}) must be divisible by heads ({heads})")
    device = resolve_device(opts.get("device", "cpu"))
    _set_threads(opts)
    train_path = _split_file(name, request.data, request.split)
    source_graph = _graph_path(request.data, opts)
    graph_path = _with_wordnet(source_graph, opts)
    graph = ConceptGraph.from_triples(graph_path)
    documents = _documents(name, request.data)
    embedder = Embedder(opts.get("encoder"), cache_dir=_cache_dir(opts))
    feat_opts = {k: numbers[k] for k in _FEATURE_OPTIONS if k in numbers}
    builder = FeatureBuilder(graph, embedder, documents=documents, cache_dir=_cache_dir(opts), **feat_opts)
    questions = _read_questions(name, train_path, numbers.get("limit"))
    started = time.perf_counter()
    feats = builder.build(questions, progress=request.progress)
    feature_seconds = time.perf_counter() - started
    cfg = TrainConfig(**{k: numbers[k] for k in _CONFIG_OPTIONS if k in numbers},
                      use_graph=use_graph, interaction=interaction)
    # Hold out part of the training questions to pick the epoch; the dev split stays untouched.
    order = np.random.default_rng(cfg.seed).permutation(len(questions))
    n_hold = int(len(questions) * fraction) if fraction > 0 else 0
    held, kept = sorted(order[:n_hold].tolist()), sorted(order[n_hold:].tolist())
    train_data = GraphData(_subset(feats, kept), graph.n_relation_ids)
    hold_data = GraphData(_subset(feats, held), graph.n_relation_ids) if held else None
    model, history = train_adapter(train_data, cfg, dev=hold_data, n_graph_relations=graph.n_relation_ids,
                                   progress=request.progress, device=device)
    info = {"benchmark": name, "train_file": train_path.name, "n_train": len(kept), "n_heldout": len(held),
            "device": str(device), "graph_source": str(source_graph.resolve()),
            "wordnet": graph_path != source_graph, "options": {k: str(v) for k, v in request.options.items()},
            "history": history, "feature_seconds": feature_seconds,
            "features": {"max_nodes": builder.max_nodes, "hops": builder.hops,
                         "top_documents": builder.top_documents}}
    save_model(request.out, model, cfg, encoder=embedder.model_name, encoder_dim=embedder.dim, graph_path=graph_path,
               vocab_hash=graph.vocab_hash, n_graph_relations=graph.n_relation_ids, node_dim=embedder.dim,
               documents=documents, node_vectors=builder.node_vectors, document_vectors=builder.document_vectors,
               info=info)
    epoch_seconds = [h["seconds"] for h in history]
    return {"model_dir": str(request.out), "n": len(kept), "history": history, "seconds_per_epoch":
            float(np.mean(epoch_seconds)) if epoch_seconds else 0.0, "feature_seconds": feature_seconds,
            "use_graph": cfg.use_graph, "seed": cfg.seed}


def _subset(feats, rows: list[int]):  # noqa: ANN001, ANN202
    from kgllm.fusion.features import MCFeatures

    k = feats.n_choices
    return MCFeatures(lm=feats.lm[rows], answers=feats.answers[rows],
                      graphs=[feats.graphs[r * k + j] for r in rows for j in range(k)],
                      node_vectors=feats.node_vectors, ids=[feats.ids[r] for r in rows])


def run_benchmark(name: str, request: EvalRequest) -> dict[str, Any]:
    """Accuracy of a trained model directory (``--model``) on a split."""
    from kgllm.embed import Embedder
    from kgllm.eval.metrics import latency_summary
    from kgllm.fusion.features import FeatureBuilder
    from kgllm.fusion.training import (
        GraphData,
        accuracy,
        load_graph,
        load_model,
        load_saved_vectors,
        predict,
        read_manifest,
        resolve_device,
    )

    if request.model is None:
        raise BenchmarkError(f"'kgllm eval {name}' needs --model MODEL_DIR (from 'kgllm train {name}')")
    require_model(request.model, "kgllm-mcqa-adapter", f"kgllm eval {name}")
    opts = dict(request.options)
    _set_threads(opts)
    unused = sorted(set(opts) - _EVAL_USED)
    path = _split_file(name, request.data, request.split)
    manifest = read_manifest(request.model)
    graph = load_graph(Path(request.model))
    embedder = Embedder(opts.get("encoder") or manifest["encoder"], cache_dir=_cache_dir(opts))
    model, manifest = load_model(request.model, encoder=embedder.model_name, vocab_hash=graph.vocab_hash)
    model.to(resolve_device(opts.get("device", "cpu")))
    docs = Path(request.model) / "documents.txt"
    documents = docs.read_text(encoding="utf-8").splitlines() if docs.exists() else []
    builder = FeatureBuilder(graph, embedder, documents=documents, cache_dir=_cache_dir(opts),
                             **manifest.get("features", {}))
    load_saved_vectors(Path(request.model), builder)
    questions = _read_questions(name, path, request.limit)
    started = time.perf_counter()
    feats = builder.build(questions, progress=request.progress)
    feature_seconds = time.perf_counter() - started
    started = time.perf_counter()
    scores = predict(model, GraphData(feats, graph.n_relation_ids))
    model_seconds = time.perf_counter() - started
    acc = accuracy(scores, feats.answers)
    ungrounded = feats.ungrounded()
    probs = np.exp(scores - scores.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    predictions = []
    for i, q in enumerate(questions):
        best = int(scores[i].argmax())
        row = {"id": q.id, "predicted": q.labels[best], "gold": q.labels[q.answer] if q.answer is not None else None,
               "score": float(probs[i, best]), "ungrounded": bool(ungrounded[i])}
        if q.answer is not None:  # the calibration plot needs both score and correctness
            row["correct"] = best == q.answer
        predictions.append(row)
    per_question_ms = (feature_seconds + model_seconds) * 1000 / len(questions)
    return {
        "n": len(questions),
        "metrics": {"accuracy": acc},
        "latency_ms": latency_summary([per_question_ms] * len(questions)),
        "config": {"model": str(request.model), "use_graph": manifest["config"]["use_graph"],
                   "interaction": manifest["config"]["interaction"], "seed": manifest["seed"],
                   "encoder": manifest["encoder"], "graph_vocab_hash": manifest["graph_vocab_hash"],
                   "latency": "per-question share of batched feature building and adapter scoring"},
        "ungrounded_questions": int(ungrounded.sum()),
        "timing": {"feature_seconds": feature_seconds, "adapter_seconds": model_seconds,
                   "questions_per_second": len(questions) / max(feature_seconds + model_seconds, 1e-9)},
        "predictions": predictions,
        **({"warnings": [f"-o {', '.join(unused)}: no effect on 'kgllm eval {name}' (training options; the "
                         f"model directory fixes them)"]} if unused else {}),
    }


def _required(name: str):  # noqa: ANN202
    def files(data: Path, split: str) -> list[str]:  # noqa: ARG001
        return [SPLIT_FILES[name][split]] + ([DOCUMENTS[name]] if name in DOCUMENTS else [])
    return files


def _register(name: str, title: str) -> None:
    def run(request: EvalRequest) -> dict[str, Any]:
        return run_benchmark(name, request)

    def train(request: TrainRequest) -> dict[str, Any]:
        return run_training(name, request)

    benchmark(Benchmark(name=name, description=f"{title}: multiple choice with the graph adapter",
                        primary_metric="accuracy", run=run, required_files=_required(name), options=EVAL_OPTIONS))
    trainer(Trainer(name=name, description=f"{title}: train the graph adapter (--no-graph: encoder alone)",
                    run=train, options=TRAIN_OPTIONS))


_register("csqa", "CommonsenseQA (in-house split)")
_register("obqa", "OpenBookQA")
