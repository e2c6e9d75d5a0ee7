"""The ``GraphStore`` protocol every backend implements, and the raw row type loaders produce.

A store holds several *domains* (one per expert); entity ids are stable strings unique within a
domain, relation names keep their original spelling. Bulk loads go through a :class:`BulkWriter`
so that a load failing half-way leaves the store exactly as it was (``abort``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Literal, NamedTuple, Protocol, runtime_checkable

from kgllm.types import Entity, Fact, Subgraph

if TYPE_CHECKING:
    import networkx as nx

    from kgllm.stores.snapshot import GraphSnapshot

__all__ = ["RawTriple", "Direction", "BulkWriter", "WriterLifecycle", "GraphStore", "subgraph_to_networkx",
           "MAX_LINE", "bad_line"]

Direction = Literal["out", "in", "both"]

# A triple's line is a 1-based int (0 or None: unknown); the local store keeps it as int32, so every
# backend accepts the same range and a KB moves between them unchanged.
MAX_LINE = 2**31 - 1


def bad_line(line: object) -> bool:
    """Whether ``line`` is not a triple's line number: None, or an int from 0 to :data:`MAX_LINE`."""
    return line is not None and not (isinstance(line, int) and 0 <= line <= MAX_LINE)


class RawTriple(NamedTuple):
    """A triple as loaders yield it: cheap to make by the million; provenance optional."""

    head: str
    relation: str
    tail: str
    source: str | None = None
    line: int | None = None  # 1-based; see MAX_LINE


@runtime_checkable
class BulkWriter(Protocol):
    """Stages one load into one domain; nothing is visible until ``commit``.

    Use as a context manager: commits when the block ends normally, aborts on an exception.
    """

    def add(self, triples: Iterable[RawTriple]) -> None: ...

    def set_names(self, names: Mapping[str, str]) -> None:
        """Display names for entity ids (RDF labels); ids without one are their own name."""
        ...

    def commit(self) -> int:
        """Make the staged triples visible; returns how many were new (duplicates are not stored twice)."""
        ...

    def abort(self) -> None: ...

    def __enter__(self) -> BulkWriter: ...

    def __exit__(self, exc_type, exc, tb) -> None: ...  # type: ignore[no-untyped-def]


class WriterLifecycle:
    """The open → committed | aborted life of a bulk writer, shared by the backends' writers.

    Subclasses set ``domain``, ``_status = "open"`` and ``_names = {}`` and implement ``commit`` and
    ``abort``. Names given for ids no triple mentions are ignored at commit.
    """

    domain: str
    _status: str
    _names: dict[str, str]

    def set_names(self, names: Mapping[str, str]) -> None:
        """Display names for entity ids (e.g. RDF labels)."""
        from kgllm.exceptions import LoadError

        self._check_open()
        for eid, name in names.items():
            if not isinstance(eid, str) or not isinstance(name, str):
                raise LoadError("entity names must map id (str) to name (str)", value=(eid, name))
        self._names.update(names)

    def _check_open(self) -> None:
        from kgllm.exceptions import StoreError

        if self._status != "open":
            raise StoreError(f"writer for domain {self.domain!r} is already {self._status}")

    def commit(self) -> int:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self

    def __exit__(self, exc_type, exc, tb) -> None:  # type: ignore[no-untyped-def]
        if exc_type is not None:
            self.abort()
        elif self._status == "open":
            self.commit()


@runtime_checkable
class GraphStore(Protocol):
    """What the rest of kgllm knows of a graph backend (local embedded store, Neo4j)."""

    backend: str

    def writer(self, domain: str) -> BulkWriter: ...

    def add_triples(self, domain: str, triples: Iterable[RawTriple], *, batch_size: int = 50_000) -> int:
        """Load triples atomically into ``domain``; returns the number of new triples."""
        ...

    def domains(self) -> list[str]: ...

    def entity(self, id: str, domain: str) -> Entity | None: ...

    def find_entities(self, name: str, *, domain: str | None = None, limit: int = 10) -> list[Entity]:
        """Entities whose name matches ``name`` (case-insensitive exact first, then prefix)."""
        ...

    def neighbors(self, ids: Sequence[str], *, domain: str, relations: Sequence[str] | None = None,
                  direction: Direction = "out", limit: int | None = None) -> list[Fact]:
        """Facts touching ``ids`` in the given direction, optionally only some relations."""
        ...

    def k_hop(self, seeds: Sequence[str], k: int, *, domain: str, limit: int = 10_000) -> Subgraph:
        """Nodes within ``k`` undirected hops of ``seeds`` and the facts among them (at most ``limit``).

        Facts come nearest first, then by (head name, head id, relation, tail name, tail id); when ``limit``
        cuts, the first ones in that order are kept, so every backend returns the same subgraph.
        """
        ...

    def relations(self, domain: str) -> list[str]: ...

    def count(self, domain: str | None = None) -> dict[str, int]:
        """``{"entities": n, "triples": m}`` for one domain or the whole store."""
        ...

    def delete_domain(self, domain: str) -> None: ...

    def iter_triples(self, domain: str) -> Iterator[Fact]: ...

    def snapshot(self, domain: str) -> GraphSnapshot:
        """The domain's graph as compact in-memory CSR arrays (for traversal, PageRank, reasoning)."""
        ...

    def to_networkx(self, subgraph: Subgraph) -> nx.MultiDiGraph: ...

    def close(self) -> None: ...


def subgraph_to_networkx(subgraph: Subgraph) -> nx.MultiDiGraph:
    """A networkx export of a subgraph (for users; kgllm itself traverses CSR arrays)."""
    import networkx as nx

    graph = nx.MultiDiGraph()
    for node in subgraph.nodes:
        graph.add_node(node.id, name=node.name, domain=node.domain)
    for fact in subgraph.facts:
        graph.add_edge(fact.head, fact.tail, key=fact.relation, relation=fact.relation, domain=fact.domain,
                       source=fact.source, line=fact.line)
    return graph
