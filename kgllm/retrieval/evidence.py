"""An expert's evidence beyond its reasoning paths: what the ``retrieve`` stage of ``ask`` adds to an answer.

Which retrievers run is the expert's ``reasoning.retrievers`` setting (a pack manifest's
``reasoning: {retrievers: [...]}`` or ``kb.add_expert(..., reasoning=...)``):

- ``paths``: the facts the reasoning paths walk (always in the answer; listed for completeness);
- ``ppr``: facts among the nodes personalized PageRank ranks highest from the linked entities;
- ``subgraph``: facts within the expert's hops of the linked entities, nearest first;
- ``facts``: the facts nearest to the question in the expert's fact-vector index, when that index is
  built (``kb.index(domain, "facts")``) or the graph is small enough to build it on first use;
- ``chunks``: the document chunks nearest to the question (their index is built on first use).

Graph facts (``ppr``, ``subgraph``, ``facts``) are fused by reciprocal rank and feed an LLM's context
only; chunks are kept in ``Answer.chunks`` with every backend, the extractive one included.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from kgllm.exceptions import ConfigError
from kgllm.retrieval.base import Retrieved, Retriever
from kgllm.retrieval.hybrid import HybridRetriever
from kgllm.retrieval.ppr import PPRRetriever
from kgllm.retrieval.subgraph import SubgraphRetriever
from kgllm.retrieval.vector import FactResolver, VectorRetriever
from kgllm.stores.snapshot import GraphSnapshot
from kgllm.types import Chunk

__all__ = ["RETRIEVERS", "DEFAULT_RETRIEVERS", "FACT_INDEX_MAX", "ExpertEvidence", "check_retrievers"]

RETRIEVERS = ("paths", "ppr", "subgraph", "facts", "chunks")
DEFAULT_RETRIEVERS = ("paths", "ppr", "facts", "chunks")
FACT_INDEX_MAX = 2_000
"""A fact-vector index is built on first use only for graphs up to this many facts, so that a first
question waits seconds, not minutes, on a CPU; a larger graph's index is used once
``kb.index(domain, "facts")`` has built it."""


def check_retrievers(names: Sequence[str]) -> list[str]:
    """``names`` as a list, each a known retriever.

    Raises:
        ConfigError: an unknown name (the message lists the known ones).
    """
    unknown = [name for name in names if name not in RETRIEVERS]
    if unknown:
        raise ConfigError(f"unknown retriever(s) {', '.join(map(repr, unknown))}; known: {', '.join(RETRIEVERS)}")
    return list(names)


class ExpertEvidence:
    """The retrievers of one expert, built on first use from its knowledge base and graph snapshot.

    Args:
        kb: the knowledge base (``embedder``; ``index(domain, kind)``, ``has_index(domain, kind)``,
            ``has_documents(domain)`` and ``chunks(domain)`` where it has them).
        domain: the expert's name.
        snapshot: the expert's graph.
        names: the retrievers to run (:data:`RETRIEVERS`).
        hops: the radius of the ``subgraph`` retriever.
    """

    def __init__(self, kb: Any, domain: str, snapshot: GraphSnapshot, names: Sequence[str], *, hops: int = 2) -> None:
        self.kb, self.domain, self.snapshot, self.hops = kb, domain, snapshot, hops
        self.names = check_retrievers(names)
        self._graph: HybridRetriever | None = None
        self._facts_pending = False  # the fact-vector index was not built yet: looked for again per question
        self._chunk_index: Any = None
        self._chunks: VectorRetriever | None = None

    def graph_facts(self, question: str, seeds: Sequence[str], k: int) -> Retrieved:
        """Facts for the question from the graph retrievers, fused by reciprocal rank (best first)."""
        if self._graph is None or (self._facts_pending and self._fact_index() is not None):
            retrievers = self._graph_retrievers()  # again once kb.index has built the fact-vector index
            self._graph = HybridRetriever(retrievers) if retrievers else None
        if self._graph is None:
            return Retrieved()
        return self._graph.retrieve(question, seeds=seeds, k=k)

    def chunks(self, question: str, k: int) -> list[Chunk]:
        """The ``k`` document chunks nearest to the question (none when the expert has no documents)."""
        has_documents = getattr(self.kb, "has_documents", None)
        if "chunks" not in self.names or not callable(has_documents) or not has_documents(self.domain):
            return []
        index = self.kb.index(self.domain, "chunks")  # the KB's copy: replaced when documents are added
        if index is not self._chunk_index or self._chunks is None:
            self._chunk_index = index
            by_id = {chunk.id: chunk for chunk in self.kb.chunks(self.domain)}
            self._chunks = VectorRetriever(lambda: index, self.kb.embedder, kind="chunks", chunks=by_id)
        return self._chunks.retrieve(question, k=k).chunks

    def _graph_retrievers(self) -> list[Retriever]:
        snap = self.snapshot
        if not snap.num_edges:
            return []
        retrievers: list[Retriever] = []
        if "ppr" in self.names:
            retrievers.append(PPRRetriever(snap))
        if "subgraph" in self.names:
            retrievers.append(SubgraphRetriever(snap, hops=self.hops))
        provider = self._fact_index()
        self._facts_pending = "facts" in self.names and provider is None
        if provider is not None:
            retrievers.append(VectorRetriever(provider, self.kb.embedder, kind="facts", resolve=FactResolver(snap)))
        return retrievers

    def _fact_index(self) -> Callable[[], Any] | None:
        """The fact-vector index, if the expert uses one and it is built or cheap enough to build."""
        if "facts" not in self.names or not callable(getattr(self.kb, "index", None)):
            return None
        has_index = getattr(self.kb, "has_index", None)
        built = callable(has_index) and has_index(self.domain, "facts")
        if not built and self.snapshot.num_edges > FACT_INDEX_MAX:
            return None
        return lambda: self.kb.index(self.domain, "facts")
