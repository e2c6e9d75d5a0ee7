"""Training, evaluation and checkpoints of the multiple-choice graph adapter.

The frozen encoder's features come from :class:`kgllm.fusion.features.FeatureBuilder`; here only the
trainable :class:`~kgllm.fusion.adapter.MultipleChoiceAdapter` runs. A model directory holds
``manifest.json`` (encoder name and width, adapter dims, graph vocabulary hash, seed, metrics),
``adapter.pt`` (weights), ``graph.tsv`` (the concept graph it was trained with), ``node_vectors.npy`` (its
concepts' embeddings) and optionally ``documents.txt`` and ``document_vectors.npy`` (retrieved facts and
their embeddings); :func:`load_model` refuses a directory that does not fit.
"""

from __future__ import annotations

import json
import pickle
import random
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kgllm.exceptions import ConfigError, ModelError
from kgllm.fusion.adapter import MultipleChoiceAdapter
from kgllm.fusion.features import MCFeatures
from kgllm.fusion.grounding import NODE_CHOICE, NODE_QUESTION, ConceptGraph, QASubgraph
from kgllm.fusion.pyg import Batch, Data
from kgllm.model_manifest import read_model_manifest

__all__ = ["TrainConfig", "GraphData", "qa_batch", "train_adapter", "predict", "save_model", "load_model",
           "MANIFEST", "CONTEXT_RELATIONS", "load_saved_vectors", "load_graph", "resolve_device"]

MANIFEST = "manifest.json"
WEIGHTS = "adapter.pt"
GRAPH = "graph.tsv"
DOCUMENTS = "documents.txt"
NODE_VECTORS = "node_vectors.npy"
DOCUMENT_VECTORS = "document_vectors.npy"
#: Extra relation ids after the graph's: context->question, context->choice and their inverses.
CONTEXT_RELATIONS = 4


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run (saved in the manifest)."""

    epochs: int = 10
    lr: float = 1e-3
    weight_decay: float = 0.01
    batch_size: int = 32  # questions per step (all their choices go in the same step)
    hidden: int = 64
    layers: int = 2
    heads: int = 4
    dropout: float = 0.2
    use_graph: bool = True
    interaction: bool = False
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def _graph_data(g: QASubgraph, n_graph_relations: int) -> Data:
    """One QA graph with the context node prepended (node 0) and linked to question/choice concepts."""
    n = len(g.nodes)
    concept = torch.from_numpy(np.concatenate([[-1], g.nodes])).long()
    node_type = torch.from_numpy(np.concatenate([[0], g.types])).long()
    relevance = torch.from_numpy(np.concatenate([[1.0], g.relevance])).float()
    edges = torch.from_numpy(g.edge_index).long() + 1
    etype = torch.from_numpy(g.edge_type).long()
    linked = [i + 1 for i in range(n) if g.types[i] in (NODE_QUESTION, NODE_CHOICE)]
    if linked:
        targets = torch.tensor(linked)
        rel = torch.tensor([n_graph_relations + (0 if g.types[i - 1] == NODE_QUESTION else 1) for i in linked])
        ctx = torch.zeros_like(targets)
        edges = torch.cat([edges, torch.stack([ctx, targets]), torch.stack([targets, ctx])], dim=1)
        etype = torch.cat([etype, rel, rel + 2])
    return Data(concept=concept, node_type=node_type, relevance=relevance, edge_index=edges, edge_type=etype,
                num_nodes=n + 1)


class GraphData:
    """Per-pair torch_geometric graphs of an :class:`MCFeatures`, built once (on first use) and batched per step."""

    def __init__(self, feats: MCFeatures, n_graph_relations: int) -> None:
        self.feats = feats
        self.n_graph_relations = n_graph_relations
        self._graphs: list[Data] | None = None
        self.node_vectors = torch.from_numpy(np.ascontiguousarray(feats.node_vectors, dtype=np.float32))
        self.lm = torch.from_numpy(feats.lm)

    @property
    def graphs(self) -> list[Data]:
        if self._graphs is None:  # the no-graph baseline never pays for these
            self._graphs = [_graph_data(g, self.n_graph_relations) for g in self.feats.graphs]
        return self._graphs

    def batch(self, questions: np.ndarray | list[int], *, graphs: bool = True) -> tuple[torch.Tensor, Batch | None]:
        """LM features ``(len(questions) * k, lm_dim)`` and the batched graphs of those questions."""
        k = self.feats.n_choices
        pairs = [q * k + j for q in questions for j in range(k)]
        lm = self.lm[list(questions)].reshape(len(pairs), -1)
        if not graphs:
            return lm, None
        return lm, qa_batch([self.graphs[p] for p in pairs], self.node_vectors)


def qa_batch(graphs: list[Data], node_vectors: torch.Tensor) -> Batch:
    """Batch graphs and fill ``x`` from the concept embeddings (the context node's row is zero)."""
    batch = Batch.from_data_list(graphs)
    concept = batch.concept
    batch.x = node_vectors[concept.clamp(min=0)] * (concept >= 0).unsqueeze(-1)
    return batch


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """Where the adapter runs: ``None`` (or ``"auto"``) is the first CUDA GPU when torch sees one, else the CPU.

    Raises:
        ConfigError: not ``cpu``, ``cuda`` or ``cuda:N``, or a GPU that torch does not see.
    """
    if device is None or str(device).strip().lower() in ("", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(str(device).strip().lower())
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {str(device)!r}; use cpu, cuda or cuda:N") from exc
    if chosen.type not in ("cpu", "cuda"):
        raise ConfigError(f"unknown device {str(device)!r}; use cpu, cuda or cuda:N")
    if chosen.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not count or (chosen.index or 0) >= count:
            raise ConfigError(f"device {str(device)!r} asked for, but torch sees {count} CUDA GPU(s)")
    return chosen


def _model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_model(lm_dim: int, node_dim: int, n_graph_relations: int, cfg: TrainConfig) -> MultipleChoiceAdapter:
    return MultipleChoiceAdapter(lm_dim, node_dim, n_graph_relations + CONTEXT_RELATIONS, hidden=cfg.hidden,
                                 layers=cfg.layers, heads=cfg.heads, dropout=cfg.dropout, use_graph=cfg.use_graph,
                                 interaction=cfg.interaction)


@torch.no_grad()
def predict(model: MultipleChoiceAdapter, data: GraphData, *, batch_size: int = 64) -> np.ndarray:
    """Scores of every choice, shape ``(n_questions, n_choices)``."""
    model.eval()
    device = _model_device(model)  # the inputs go where the model is
    out = []
    k = data.feats.n_choices
    for start in range(0, len(data.feats), batch_size):
        idx = list(range(start, min(start + batch_size, len(data.feats))))
        lm, graphs = data.batch(idx, graphs=model.use_graph)
        out.append(model(lm.to(device), graphs.to(device) if graphs is not None else None).view(len(idx), k).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, k), dtype=np.float32)


def train_adapter(train: GraphData, cfg: TrainConfig, *, dev: GraphData | None = None, n_graph_relations: int,
                  progress: bool = False, device: str | torch.device | None = "cpu"
                  ) -> tuple[MultipleChoiceAdapter, list[dict[str, float]]]:
    """Train a :class:`MultipleChoiceAdapter` with cross-entropy over each question's choices.

    Args:
        device: Where to train (see :func:`resolve_device`; ``None`` picks a CUDA GPU when there is
            one). Only the CPU gives bit-identical models for one seed: CUDA's scatter sums are
            not deterministic.

    Returns:
        The model, on the CPU (the epoch with the best dev accuracy when ``dev`` is given, else the
        last), and a per-epoch history of ``loss``, ``train_accuracy``, ``seconds`` and ``dev_accuracy``.
    """
    where = resolve_device(device)
    seed_everything(cfg.seed)
    feats = train.feats
    if (feats.answers < 0).any():
        raise ValueError("training questions need answers")
    model = build_model(feats.lm.shape[-1], feats.node_vectors.shape[1], n_graph_relations, cfg).to(where)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * ((len(feats) + cfg.batch_size - 1) // cfg.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=max(steps, 1),
                                                   pct_start=0.1)
    answers = torch.from_numpy(feats.answers).to(where)
    generator = np.random.default_rng(cfg.seed)
    history: list[dict[str, float]] = []
    best: tuple[float, dict[str, torch.Tensor]] | None = None
    for epoch in range(cfg.epochs):
        model.train()
        order = generator.permutation(len(feats))
        started, total_loss, correct, seen = time.perf_counter(), 0.0, 0, 0
        chunks = [order[i:i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(chunks, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="step")
        for chunk in bar if bar is not None else chunks:
            lm, graphs = train.batch(chunk, graphs=cfg.use_graph)
            scores = model(lm.to(where), graphs.to(where) if graphs is not None else None).view(len(chunk),
                                                                                               feats.n_choices)
            loss = torch.nn.functional.cross_entropy(scores, answers[chunk])
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            total_loss += loss.item() * len(chunk)
            correct += int((scores.argmax(1) == answers[chunk]).sum())
            seen += len(chunk)
            if bar is not None:
                bar.set_postfix(loss=f"{total_loss / seen:.3f}", accuracy=f"{correct / seen:.3f}")
        record = {"epoch": epoch + 1, "loss": total_loss / len(feats), "train_accuracy": correct / len(feats),
                  "seconds": time.perf_counter() - started}
        if dev is not None:
            record["dev_accuracy"] = accuracy(predict(model, dev), dev.feats.answers)
            if best is None or record["dev_accuracy"] > best[0]:
                best = (record["dev_accuracy"], {k: v.clone() for k, v in model.state_dict().items()})
        history.append(record)
        if bar is not None:
            bar.close()
    if best is not None:
        model.load_state_dict(best[1])
    model.cpu().eval()
    return model, history


def accuracy(scores: np.ndarray, answers: np.ndarray) -> float:
    return float((scores.argmax(1) == answers).mean()) if len(answers) else 0.0


def save_model(model_dir: Path, model: MultipleChoiceAdapter, cfg: TrainConfig, *, encoder: str, encoder_dim: int,
               graph_path: Path, vocab_hash: str, n_graph_relations: int, node_dim: int,
               documents: list[str] | None = None, node_vectors: np.ndarray | None = None,
               document_vectors: np.ndarray | None = None, info: dict[str, Any] | None = None) -> Path:
    """Write weights, the concept graph, its node embeddings, documents and a manifest into ``model_dir``."""
    model_dir.mkdir(parents=True, exist_ok=True)
    # A model saved over an earlier one must not inherit its optional files (an OBQA model's facts would
    # be retrieved for a CSQA model trained without them).
    for name, kept in ((NODE_VECTORS, node_vectors is not None), (DOCUMENTS, bool(documents)),
                       (DOCUMENT_VECTORS, bool(documents) and document_vectors is not None)):
        if not kept:
            (model_dir / name).unlink(missing_ok=True)
    # Saved embeddings spare every process that loads the model re-encoding each concept name and fact.
    if node_vectors is not None:
        np.save(model_dir / NODE_VECTORS, node_vectors.astype(np.float16))
    if documents and document_vectors is not None:  # float32: the values the training features used
        np.save(model_dir / DOCUMENT_VECTORS, document_vectors.astype(np.float32))
    torch.save(model.state_dict(), model_dir / WEIGHTS)
    if Path(graph_path).resolve() != (model_dir / GRAPH).resolve():
        shutil.copyfile(graph_path, model_dir / GRAPH)
    if documents:
        (model_dir / DOCUMENTS).write_text("\n".join(documents) + "\n", encoding="utf-8")
    manifest = {"kind": "kgllm-mcqa-adapter", "format": 2, "encoder": encoder, "encoder_dim": encoder_dim,
                "lm_dim": model.lm_dim, "node_dim": node_dim, "graph_vocab_hash": vocab_hash,
                "n_graph_relations": n_graph_relations, "config": asdict(cfg), "seed": cfg.seed, **(info or {})}
    (model_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return model_dir


#: What :func:`load_model` and its callers read from a manifest.
_REQUIRED = ("encoder", "lm_dim", "node_dim", "graph_vocab_hash", "n_graph_relations", "config")


def read_manifest(model_dir: Path) -> dict[str, Any]:
    """The manifest of an adapter directory, checked to hold every entry loading needs.

    Raises:
        ModelError: missing or unreadable, another kind of model, or an entry missing or unknown.
    """
    manifest = read_model_manifest(model_dir, MANIFEST, key="kind", expected="kgllm-mcqa-adapter",
                                   what="multiple-choice adapter")
    path = Path(model_dir) / MANIFEST
    missing = [k for k in _REQUIRED if k not in manifest]
    if missing:
        raise ModelError(f"{path}: incomplete manifest, missing {', '.join(missing)}")
    config = manifest["config"]
    known = {f.name for f in fields(TrainConfig)}
    if not isinstance(config, dict) or set(config) - known:
        unknown = sorted(set(config) - known) if isinstance(config, dict) else config
        raise ModelError(f"{path}: config has entries this version does not know: {unknown!r}")
    return manifest


def load_graph(model_dir: Path) -> ConceptGraph:
    """The concept graph saved in ``model_dir`` (``graph.tsv``).

    Raises:
        ModelError: the file is missing.
        LoadError: a line that is not a triple, or a file that is not UTF-8 text.
    """
    path = Path(model_dir) / GRAPH
    if not path.is_file():
        raise ModelError(f"{model_dir}: the adapter's concept graph {GRAPH} is missing")
    return ConceptGraph.from_triples(path)


def load_model(model_dir: Path, *, encoder: str | None = None, vocab_hash: str | None = None
               ) -> tuple[MultipleChoiceAdapter, dict[str, Any]]:
    """Load an adapter, checking it fits the encoder and graph vocabulary it will be used with.

    Raises:
        ModelError: missing/unreadable manifest, another encoder, or another graph vocabulary.
    """
    manifest = read_manifest(model_dir)
    if encoder is not None and manifest["encoder"] != encoder:
        raise ModelError(f"{model_dir} was trained with encoder {manifest['encoder']!r}, not {encoder!r}")
    if vocab_hash is not None and manifest["graph_vocab_hash"] != vocab_hash:
        raise ModelError(f"{model_dir} was trained on graph vocabulary {manifest['graph_vocab_hash']!r}; "
                         f"the graph given has vocabulary {vocab_hash!r}")
    cfg = TrainConfig(**manifest["config"])
    model = build_model(manifest["lm_dim"], manifest["node_dim"], manifest["n_graph_relations"], cfg)
    if not (Path(model_dir) / WEIGHTS).is_file():
        raise ModelError(f"{model_dir}: the adapter's weights {WEIGHTS} are missing")
    try:
        model.load_state_dict(torch.load(Path(model_dir) / WEIGHTS, map_location="cpu", weights_only=True))
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        raise ModelError(f"{model_dir}: weights {WEIGHTS} unreadable or not fitting the manifest "
                         f"({type(exc).__name__}: {exc})") from exc
    model.eval()
    return model, manifest


def load_saved_vectors(model_dir: Path, builder: Any) -> None:
    """Give ``builder`` the concept and fact embeddings saved in ``model_dir`` (those present).

    Raises:
        ModelError: a saved embeddings file is unreadable or does not fit the graph, the facts or the
            encoder.
    """
    for name, use in ((NODE_VECTORS, builder.use_node_vectors), (DOCUMENT_VECTORS, builder.use_document_vectors)):
        path = Path(model_dir) / name
        if path.exists():
            try:
                use(np.load(path))
            except (ValueError, OSError, EOFError) as exc:  # EOFError: an empty (cut) file
                raise ModelError(f"{path}: {exc}") from exc
