"""The learned path scorer: a small torch MLP over the question embedding that predicts the step at
each hop (or *stop*), conditioned on the previous step; a chain's score is its log-probability.

Trained by :func:`kgllm.reasoning.training.train_path_scorer`; saved with a manifest that pins the
knowledge base (relation list + entity count), the embedding model and the dimensions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kgllm.exceptions import ModelError
from kgllm.model_manifest import read_model_manifest
from kgllm.reasoning.scorer import QuestionState, kb_fingerprint

if TYPE_CHECKING:
    import torch

    from kgllm.embed import Embedder
    from kgllm.reasoning.paths import Chain, RelationGraph

__all__ = ["StepModel", "LearnedScorer", "MANIFEST_NAME"]

MANIFEST_NAME = "manifest.json"
_FORMAT = "kgllm-path-scorer"


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

            # Inference in two parts (the same function as forward): the first layer is linear in
            # [question, prev, hop], so its question part is computed once per question and its
            # step part once per (prev, hop) pair, instead of once per scored prefix.
            def project(self, question: torch.Tensor) -> torch.Tensor:
                first: nn.Linear = self.mlp[0]  # type: ignore[assignment]
                return question @ first.weight[:, :dim].T + first.bias

            def step_table(self) -> torch.Tensor:
                """``(num_codes + 1, max_hops + 1, hidden)``: the first layer's (prev, hop) part."""
                first: nn.Linear = self.mlp[0]  # type: ignore[assignment]
                w = first.weight
                prev = self.prev.weight @ w[:, dim:dim + 64].T
                hop = self.hop.weight @ w[:, dim + 64:].T
                return prev[:, None, :] + hop[None, :, :]

            def finish(self, hidden: torch.Tensor) -> torch.Tensor:
                return self.mlp[1:](hidden)

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
        self._step_table: torch.Tensor | None = None

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
        return read_model_manifest(directory, MANIFEST_NAME, key="format", expected=_FORMAT, what="path scorer")

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

    def _log_probs(self, states: Sequence[QuestionState], prefixes: Sequence[Sequence[Chain]]) -> None:
        """Fill each state's cache with the log-distribution over the next step after each of its
        prefixes (memoised per question); all questions' missing prefixes go through one model pass."""
        import torch

        rows: list[tuple[int, Chain]] = []
        for i, (state, wanted) in enumerate(zip(states, prefixes, strict=True)):
            cache = state.cache
            assert cache is not None
            new: set[Chain] = set()
            for prefix in wanted:
                if prefix not in cache and prefix not in new:
                    new.add(prefix)
                    rows.append((i, prefix))
        if not rows:
            return
        which = torch.tensor([i for i, _ in rows], dtype=torch.long)
        prev = torch.tensor([p[-1] if p else self.num_codes for _, p in rows], dtype=torch.long)
        hop = torch.tensor([len(p) for _, p in rows], dtype=torch.long)
        module: Any = self.module  # the StepModel's own methods (torch types them as Tensor | Module)
        with torch.inference_mode():
            if self._step_table is None:
                self._step_table = module.step_table()
            question = module.project(torch.from_numpy(np.stack([state.vector for state in states])))
            hidden = question[which] + self._step_table[prev, hop]
            logp = torch.log_softmax(module.finish(hidden), dim=-1).numpy()
        for (i, prefix), row in zip(rows, logp, strict=True):
            states[i].cache[prefix] = row  # type: ignore[index]

    def score(self, state: QuestionState, chains: Sequence[Chain], *, complete: bool) -> np.ndarray:
        return self.score_many([state], [chains], complete=complete)[0]

    def score_many(self, states: Sequence[QuestionState], chains: Sequence[Sequence[Chain]], *,
                   complete: bool) -> list[np.ndarray]:
        """:meth:`score` for many questions with one model pass for all of them."""
        stop = self.num_codes

        def stops(chain: Chain) -> bool:  # a complete chain shorter than max_hops ends with *stop*
            return complete and len(chain) < self.max_hops

        self._log_probs(states, [[chain[:t] for chain in group for t in range(len(chain) + stops(chain))]
                                 for group in chains])
        out: list[np.ndarray] = []
        for state, group in zip(states, chains, strict=True):
            table = state.cache
            assert table is not None
            scores = np.empty(len(group), dtype=np.float32)
            for i, chain in enumerate(group):
                total = sum(float(table[chain[:t]][chain[t]]) for t in range(len(chain)))
                if stops(chain):
                    total += float(table[chain][stop])
                scores[i] = total
            out.append(scores)
        return out
