"""Dense retrieval: FAISS over verbalized facts ("Kismet directed by William Dieterle") or document chunks.

The index is given as a callable so that it is built (embedding every fact takes minutes on a large
domain) only when this retriever is first used; ids are resolved back to :class:`Fact` / :class:`Chunk`
objects, facts with their provenance from the snapshot.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Literal

from kgllm.retrieval.base import BaseRetriever, Retrieved
from kgllm.types import Chunk, Fact

if TYPE_CHECKING:
    import numpy as np

    from kgllm.embed import Embedder
    from kgllm.index import VectorIndex
    from kgllm.stores.snapshot import GraphSnapshot

__all__ = ["VectorRetriever", "fact_id", "FactResolver"]

SEP = "\x1f"


def fact_id(head: str, relation: str, tail: str) -> str:
    """The id of a fact in a facts index (as the knowledge base writes it)."""
    return f"{head}{SEP}{relation}{SEP}{tail}"


class FactResolver:
    """Facts index id → the stored :class:`Fact` with provenance (``None`` when no longer stored)."""

    def __init__(self, snapshot: GraphSnapshot) -> None:
        self.snapshot = snapshot

    def __call__(self, item_id: str) -> Fact | None:
        parts = item_id.split(SEP)
        if len(parts) != 3:
            return None
        head, relation, tail = parts
        snap = self.snapshot
        h, t, r = snap.node(head), snap.node(tail), snap.relation_index(relation)
        if h is None or t is None or r is None:
            return None
        edges = snap.out_edges(h)
        hits = edges[(snap.tail[edges] == t) & (snap.rel[edges] == r)]
        return snap.fact(int(hits[0])) if hits.size else None


class VectorRetriever(BaseRetriever):
    """Nearest facts or chunks to the question embedding.

    Equally scored facts are ordered by (head, relation, tail) names, then ids, whatever order the index
    was filled in (it follows each store's edge order); a tie at the ``k``-th place is settled the same way.

    Args:
        index: returns the :class:`~kgllm.index.VectorIndex` (called on first use only).
        embedder: encodes the question (same model as the index).
        kind: ``facts`` or ``chunks``.
        resolve: fact id → :class:`Fact` (e.g. :class:`FactResolver`), for ``facts``.
        chunks: chunk id → :class:`Chunk`, for ``chunks``.
    """

    name = "vector"

    def __init__(self, index: Callable[[], VectorIndex], embedder: Embedder, *,
                 kind: Literal["facts", "chunks"] = "facts", resolve: Callable[[str], Fact | None] | None = None,
                 chunks: Mapping[str, Chunk] | None = None) -> None:
        self._index_provider = index
        self._index: VectorIndex | None = None
        self.embedder = embedder
        self.kind = kind
        self.resolve = resolve
        self.chunks = dict(chunks or {})
        self.name = f"vector-{kind}"

    @property
    def index(self) -> VectorIndex:
        if self._index is None:
            self._index = self._index_provider()
        return self._index

    def _retrieve(self, query: str, seeds: list[str], k: int) -> Retrieved:
        if not query.strip() or len(self.index) == 0:
            return Retrieved()
        vector = self.embedder.encode([query])
        out = Retrieved()
        if self.kind == "facts":
            for item_id, score in self._search_with_ties(vector, k):
                fact = self.resolve(item_id) if self.resolve is not None else None
                if fact is not None:  # ids of facts deleted since the index was built are skipped
                    out.facts.append(fact.model_copy(update={"score": round(float(score), 6)}))
            # the index lists equal scores in an order that depends on how it was filled (the store's
            # edge order): order them by (head, relation, tail) names, then ids, as the graph retrievers do
            out.facts = sorted(out.facts, key=_fact_rank_key)[:k]
            return out
        for item_id, score in self.index.search(vector, k)[0]:
            chunk = self.chunks.get(item_id)
            if chunk is not None:
                out.chunks.append(chunk.model_copy(update={"score": round(float(score), 6)}))
        return out

    def _search_with_ties(self, vector: np.ndarray, k: int) -> list[tuple[str, float]]:
        """The ``k`` nearest ids and every further one whose (rounded) score equals the ``k``-th's."""
        fetch = k
        while True:
            hits = self.index.search(vector, fetch + 1)[0]
            if len(hits) <= k:
                return hits
            last = round(hits[k - 1][1], 6)
            if len(hits) <= fetch or round(hits[fetch][1], 6) != last:
                return [hit for hit in hits if round(hit[1], 6) >= last]
            fetch *= 2


def _fact_rank_key(fact: Fact) -> tuple[float, str, str, str, str, str]:
    """Best score first; equal ones in the order of :meth:`GraphSnapshot.edge_order`."""
    return (-(fact.score or 0.0), fact.head_name or "", fact.head, fact.relation, fact.tail_name or "", fact.tail)
