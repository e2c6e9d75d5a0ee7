"""Hybrid retrieval: several retrievers fused by reciprocal-rank fusion (Cormack et al. 2009).

``score(item) = Σ_r weight_r / (k_rrf + rank_r(item))`` over the retrievers that returned the item
(rank 1-based); facts are matched by ``(domain, head, relation, tail)``, chunks by id, nodes by id.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

from kgllm.exceptions import ConfigError
from kgllm.retrieval.base import BaseRetriever, Retrieved, Retriever

__all__ = ["HybridRetriever", "reciprocal_rank_fusion"]


def reciprocal_rank_fusion(rankings: Sequence[Sequence[Hashable]], *, weights: Sequence[float] | None = None,
                           k: int = 60) -> list[tuple[Hashable, float]]:
    """Items of several rankings with their fused scores, best first (ties: first seen first)."""
    weights = list(weights) if weights is not None else [1.0] * len(rankings)
    if len(weights) != len(rankings):
        raise ConfigError(f"{len(weights)} weights for {len(rankings)} rankings")
    scores: dict[Hashable, float] = {}
    for ranking, weight in zip(rankings, weights, strict=False):
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    return sorted(scores.items(), key=lambda pair: -pair[1])


class HybridRetriever(BaseRetriever):
    """Runs every retriever and fuses their facts, chunks and nodes by reciprocal rank.

    Args:
        retrievers: the retrievers to fuse.
        weights: one weight per retriever (default 1).
        k_rrf: the RRF constant (60 in the original paper).
        depth: how many items each retriever is asked for (default: ``2 * k``).
    """

    name = "hybrid"

    def __init__(self, retrievers: Sequence[Retriever], *, weights: Sequence[float] | None = None,
                 k_rrf: int = 60, depth: int | None = None) -> None:
        if not retrievers:
            raise ConfigError("a hybrid retriever needs at least one retriever")
        if weights is not None and len(weights) != len(retrievers):
            raise ConfigError(f"{len(weights)} weights for {len(retrievers)} retrievers")
        self.retrievers = list(retrievers)
        self.weights = list(weights) if weights is not None else [1.0] * len(self.retrievers)
        self.k_rrf = k_rrf
        self.depth = depth

    def _retrieve(self, query: str, seeds: list[str], k: int) -> Retrieved:
        results = [r.retrieve(query, seeds=seeds, k=self.depth or 2 * k) for r in self.retrievers]
        out = Retrieved(truncated=any(r.truncated for r in results))
        out.facts = self._fuse([r.facts for r in results], lambda f: f.key, k)
        out.chunks = self._fuse([r.chunks for r in results], lambda c: c.id, k)
        node_lists = [[node for node, _ in r.nodes] for r in results]
        out.nodes = [(str(node), round(score, 6)) for node, score in
                     reciprocal_rank_fusion(node_lists, weights=self.weights, k=self.k_rrf)[:k]]
        return out

    def _fuse(self, lists: list[list[Any]], key: Any, k: int) -> list[Any]:
        first: dict[Hashable, Any] = {}
        rankings = []
        for items in lists:
            keys = []
            for item in items:
                first.setdefault(key(item), item)
                keys.append(key(item))
            rankings.append(keys)
        fused = reciprocal_rank_fusion(rankings, weights=self.weights, k=self.k_rrf)[:k]
        return [first[item].model_copy(update={"score": round(score, 6)}) for item, score in fused]
