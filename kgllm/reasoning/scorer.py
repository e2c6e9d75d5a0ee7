"""Path scorers: how well a relation chain fits a question.

* :class:`ZeroShotScorer` — cosine similarity between the question (topic mention masked) and the
  chain written as text ("inverse of starred actors then release year"); no training. Each distinct
  chain text is embedded once and cached.
* :class:`LearnedScorer` — a small torch MLP over the question embedding that predicts the step at
  each hop (or *stop*), conditioned on the previous step; a chain's score is its log-probability.
  Trained by :func:`kgllm.reasoning.training.train_path_scorer`; saved with a manifest that pins
  the knowledge base (relation list + entity count), the embedding model and the dimensions.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from kgllm.exceptions import ModelError

if TYPE_CHECKING:
    import torch

    from kgllm.embed import Embedder
    from kgllm.reasoning.paths import Chain, RelationGraph

__all__ = ["QuestionState", "PathScorer", "ZeroShotScorer", "LearnedScorer", "StepModel", "kb_fingerprint",
           "MANIFEST_NAME"]

MANIFEST_NAME = "manifest.json"
_FORMAT = "kgllm-path-scorer"


@dataclass
class QuestionState:
    """A question as scorers see it: the masked text and its embedding."""

    text: str
    vector: np.ndarray
    cache: dict[Any, Any] | None = None


class PathScorer(Protocol):
    """Scores chains for a question; larger is better, comparable across chain lengths when ``complete``."""

    name: str

    def prepare(self, texts: Sequence[str]) -> list[QuestionState]:
        """States for (masked) question texts, embedded in one batch."""
        ...

    def score(self, state: QuestionState, chains: Sequence[Chain], *, complete: bool) -> np.ndarray: ...


def kb_fingerprint(relations: Sequence[str], num_entities: int) -> str:
    """A short hash of what a trained scorer depends on: the relation list and the entity count."""
    payload = json.dumps({"relations": list(relations), "entities": int(num_entities)}, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


class ZeroShotScorer:
    """Question ↔ chain-text similarity with the sentence embedder.

    Args:
        graph: the domain's relation graph (for relation names).
        embedder: the sentence embedder.
        relation_text: natural-language text per relation name.
        hop_penalty: subtracted per hop beyond the first, so that a longer chain must fit clearly better.
    """

    name = "zero-shot"
    mask = "it"  # a pronoun reads naturally to a sentence encoder ("who directed it")

    def __init__(self, graph: RelationGraph, embedder: Embedder, relation_text: dict[str, str] | None = None,
                 *, hop_penalty: float = 0.01) -> None:
        self.graph = graph
        self.embedder = embedder
        self.relation_text = relation_text or {}
        self.hop_penalty = hop_penalty
        self._vectors: dict[Chain, np.ndarray] = {}

    def chain_text(self, chain: Chain) -> str:
        return " then ".join(self.graph.code_text(code, self.relation_text) for code in chain)

    def _chain_vectors(self, chains: Sequence[Chain]) -> np.ndarray:
        missing = list(dict.fromkeys(c for c in chains if c not in self._vectors))
        if missing:
            vectors = self.embedder.encode([self.chain_text(c) for c in missing])
            self._vectors.update(zip(missing, vectors, strict=False))
        return np.stack([self._vectors[c] for c in chains])

    def prepare(self, texts: Sequence[str]) -> list[QuestionState]:
        vectors = self.embedder.encode(list(texts))
        return [QuestionState(text, vector) for text, vector in zip(texts, vectors, strict=False)]

    def score(self, state: QuestionState, chains: Sequence[Chain], *, complete: bool) -> np.ndarray:
        if not chains:
            return np.zeros(0, dtype=np.float32)
        sims = self._chain_vectors(chains) @ state.vector
        lengths = np.array([len(c) for c in chains], dtype=np.float32)
        return sims - self.hop_penalty * (lengths - 1)


class StepModel:
    """The torch module of :class:`LearnedScorer` (built lazily so importing kgllm stays light).

    Shapes: question ``(B, dim)``, previous step ``(B,)`` (``num_codes`` = start), hop ``(B,)`` →
    logits ``(B, num_codes + 1)``; the last class is *stop*.
    """

    @staticmethod
    def build(dim: int, num_codes: int, max_hops: int, hidden: int) -> torch.nn.Module:
        import torch
        from torch import nn

        class _Step(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.prev = nn.Embedding(num_codes + 1, 64)
                self.hop = nn.Embedding(max_hops + 1, 16)
                self.mlp = nn.Sequential(nn.Linear(dim + 64 + 16, hidden), nn.GELU(), nn.Dropout(0.1),
                                         nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, num_codes + 1))

            def forward(self, question: torch.Tensor, prev: torch.Tensor, hop: torch.Tensor) -> torch.Tensor:
                return self.mlp(torch.cat([question, self.prev(prev), self.hop(hop)], dim=-1))

            def extra_repr(self) -> str:
                return f"dim={dim}, steps={num_codes}, max_hops={max_hops}, hidden={hidden}"

        return _Step()


class LearnedScorer:
    """A trained step model: ``score(chain) = Σ log p(step_t | q, step_{t-1}) [+ log p(stop)]``."""

    name = "learned"

    def __init__(self, module: torch.nn.Module, manifest: dict[str, Any], embedder: Embedder) -> None:
        self.module = module.eval()
        self.manifest = manifest
        self.embedder = embedder
        self.num_codes = int(manifest["num_codes"])
        self.mask = str(manifest.get("mask", "NE"))
        self.max_hops = int(manifest["max_hops"])

    # -- persistence -----------------------------------------------------------------------------
    @staticmethod
    def make_manifest(graph: RelationGraph, embedder: Embedder, *, max_hops: int, hidden: int,
                      **extra: Any) -> dict[str, Any]:
        snap = graph.snapshot
        return {"format": _FORMAT, "version": 1, "domain": snap.domain, "relations": list(snap.relations),
                "num_entities": snap.num_nodes, "fingerprint": kb_fingerprint(snap.relations, snap.num_nodes),
                "embedder": embedder.model_name, "dim": int(embedder.dim), "num_codes": graph.num_codes,
                "max_hops": max_hops, "hidden": hidden, "mask": "NE", **extra}

    def save(self, directory: str | Path) -> Path:
        import torch

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(self.module.state_dict(), directory / "model.pt")
        (directory / MANIFEST_NAME).write_text(json.dumps(self.manifest, indent=2), encoding="utf-8")
        return directory

    @staticmethod
    def read_manifest(directory: str | Path) -> dict[str, Any]:
        path = Path(directory) / MANIFEST_NAME
        if not path.is_file():
            raise ModelError(f"{directory}: not a trained path scorer (no {MANIFEST_NAME})")
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ModelError(f"{path}: corrupt manifest ({exc})") from exc
        if manifest.get("format") != _FORMAT:
            raise ModelError(f"{path}: format {manifest.get('format')!r}, expected {_FORMAT!r}")
        return manifest

    @classmethod
    def load(cls, directory: str | Path, graph: RelationGraph, embedder: Embedder) -> LearnedScorer:
        """Load a trained scorer, refusing one trained for another KB or embedding model.

        Raises:
            ModelError: missing/corrupt files, other relations or entity count, other embedder or dimension.
        """
        import torch

        manifest = cls.read_manifest(directory)
        snap = graph.snapshot
        if manifest["relations"] != list(snap.relations) or manifest["num_entities"] != snap.num_nodes:
            raise ModelError(
                f"{directory}: path scorer trained for another knowledge base (fingerprint "
                f"{manifest.get('fingerprint')!r}: {len(manifest['relations'])} relations, {manifest['num_entities']} "
                f"entities) but domain {snap.domain!r} has fingerprint "
                f"{kb_fingerprint(snap.relations, snap.num_nodes)!r} ({len(snap.relations)} relations, "
                f"{snap.num_nodes} entities)")
        if manifest["embedder"] != embedder.model_name or manifest["dim"] != embedder.dim:
            raise ModelError(f"{directory}: path scorer trained with embedder {manifest['embedder']!r} "
                             f"(dim {manifest['dim']}), but the KB uses {embedder.model_name!r} (dim {embedder.dim})")
        module = StepModel.build(manifest["dim"], manifest["num_codes"], manifest["max_hops"], manifest["hidden"])
        try:
            state = torch.load(Path(directory) / "model.pt", map_location="cpu", weights_only=True)
            module.load_state_dict(state)
        except (OSError, RuntimeError) as exc:
            raise ModelError(f"{directory}: cannot load model weights ({exc})") from exc
        return cls(module, manifest, embedder)

    # -- scoring ---------------------------------------------------------------------------------
    def prepare(self, texts: Sequence[str]) -> list[QuestionState]:
        vectors = self.embedder.encode(list(texts))
        return [QuestionState(text, vector, {}) for text, vector in zip(texts, vectors, strict=False)]

    def _log_probs(self, state: QuestionState, prefixes: list[Chain]) -> dict[Chain, np.ndarray]:
        """Log-distribution over the next step after each prefix (memoised per question)."""
        import torch

        assert state.cache is not None
        missing = [p for p in dict.fromkeys(prefixes) if p not in state.cache]
        if missing:
            prev = torch.tensor([p[-1] if p else self.num_codes for p in missing], dtype=torch.long)
            hop = torch.tensor([len(p) for p in missing], dtype=torch.long)
            question = torch.from_numpy(np.repeat(state.vector[None, :], len(missing), axis=0))
            with torch.inference_mode():
                logp = torch.log_softmax(self.module(question, prev, hop), dim=-1).numpy()
            state.cache.update(zip(missing, logp, strict=False))
        return state.cache

    def score(self, state: QuestionState, chains: Sequence[Chain], *, complete: bool) -> np.ndarray:
        if not chains:
            return np.zeros(0, dtype=np.float32)
        needed: list[Chain] = []
        for chain in chains:
            needed.extend(chain[:t] for t in range(len(chain) + (1 if complete else 0)))
        table = self._log_probs(state, needed)
        stop = self.num_codes
        out = np.empty(len(chains), dtype=np.float32)
        for i, chain in enumerate(chains):
            total = sum(float(table[chain[:t]][chain[t]]) for t in range(len(chain)))
            if complete and len(chain) < self.max_hops:
                total += float(table[chain][stop])
            out[i] = total
        return out
