"""Bulk loads into Neo4j that a failure undoes: the writer behind ``Neo4jGraphStore.writer``.

A 133k-triple load cannot be one cheap transaction, so a load is many batch transactions whose
new nodes and relationships carry the load's id (``load`` property). A ``:KgllmLoad {id}`` node marks
the load as pending; deleting it (with the domain's bookkeeping, in one transaction) is the commit
point, after which the tags are cleared in batches. ``abort`` deletes what the load created, so
the database is as before; a load whose process died is undone by
``Neo4jGraphStore.rollback_pending_loads``.

Writes within one load:

* nodes are ``MERGE``\\ d on their unique key, returning their element id and whether this load created
  them (cached, so each node is merged once per load);
* a triple touching a node created by this load cannot exist yet and is ``CREATE``\\ d, untagged (the
  node's removal on abort takes it along); one between two older nodes is ``MERGE``\\ d and tagged;
  triples already seen in this load are dropped in Python.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from kgllm.exceptions import LoadError, StoreError
from kgllm.stores.base import WriterLifecycle

if TYPE_CHECKING:
    from kgllm.stores.neo4j import Neo4jGraphStore

__all__ = ["Neo4jBulkWriter"]

# Queries are constant strings: every value travels as a parameter.
_MERGE_NODES = """
UNWIND $rows AS row
MERGE (n:Entity {key: row[0]})
  ON CREATE SET n.id = row[1], n.name = row[2], n.lname = row[3], n.domain = $domain, n.load = $load
RETURN row[1] AS id, elementId(n) AS eid, n.load = $load AS created
"""
_CREATE_RELS = """
UNWIND $rows AS row
MATCH (h) WHERE elementId(h) = row[0]
MATCH (t) WHERE elementId(t) = row[2]
CREATE (h)-[:REL {type: row[1], source: row[3], line: row[4]}]->(t)
"""
_MERGE_RELS = """
UNWIND $rows AS row
MATCH (h) WHERE elementId(h) = row[0]
MATCH (t) WHERE elementId(t) = row[2]
MERGE (h)-[r:REL {type: row[1]}]->(t)
  ON CREATE SET r.source = row[3], r.line = row[4], r.load = $load
RETURN count(CASE WHEN r.load = $load THEN 1 END) AS created
"""
_SET_NAMES = """
UNWIND $rows AS row
MATCH (n:Entity {key: row[0]})
SET n.name = row[1], n.lname = row[2]
"""
_END_LOAD = "MATCH (l:KgllmLoad {id: $load}) DELETE l RETURN count(*) AS n"
_TOUCH_DOMAIN = """
MERGE (d:KgllmDomain {name: $domain})
  ON CREATE SET d.uid = randomUUID()
WITH d, coalesce(d.relations, []) AS old
SET d.relations = old + [x IN $relations WHERE NOT x IN old], d.generation = coalesce(d.generation, 0) + 1
"""
# Any change a cached snapshot must not outlive bumps the domain's generation.
BUMP_DOMAIN = "MATCH (d:KgllmDomain {name: $domain}) SET d.generation = coalesce(d.generation, 0) + 1"
_UNTAG_RELS = "MATCH ()-[r:REL]->() WHERE r.load = $load WITH r LIMIT $batch REMOVE r.load RETURN count(*) AS n"
_UNTAG_NODES = "MATCH (n:Entity) WHERE n.load = $load WITH n LIMIT $batch REMOVE n.load RETURN count(*) AS n"
_DROP_RELS = "MATCH ()-[r:REL]->() WHERE r.load = $load WITH r LIMIT $batch DELETE r RETURN count(*) AS n"
_DROP_NODES = "MATCH (n:Entity) WHERE n.load = $load WITH n LIMIT $batch DETACH DELETE n RETURN count(*) AS n"


def _check_row(row: Any) -> tuple[str, str, str, str | None, int | None]:
    """A RawTriple or plain tuple as ``(head, relation, tail, source, line)``, or a LoadError."""
    try:
        head, rel, tail = row[0], row[1], row[2]
    except (TypeError, IndexError, KeyError):
        raise LoadError("expected (head, relation, tail) triples", value=row) from None
    source = row[3] if len(row) > 3 else None
    line = row[4] if len(row) > 4 else None
    if not (isinstance(head, str) and head and isinstance(rel, str) and rel and isinstance(tail, str) and tail):
        raise LoadError("entity ids and relation names must be non-empty strings",
                        path=source if isinstance(source, str) else None, line=line, value=(head, rel, tail))
    if source is not None and not isinstance(source, str):
        raise LoadError("a triple's source must be a file name (str) or None", value=source)
    if line is not None and not isinstance(line, int):
        raise LoadError("a triple's line must be an int or None", path=source, value=line)
    return head, rel, tail, source, line or None


class _Rename:
    """A transaction function setting display names (a class, so retries rerun the same rows)."""

    def __init__(self, rows: list[list[str]]) -> None:
        self.rows = rows

    def __call__(self, tx: Any) -> None:
        tx.run(_SET_NAMES, rows=self.rows).consume()


class Neo4jBulkWriter(WriterLifecycle):
    """Stages one load into one domain of a :class:`~kgllm.stores.neo4j.Neo4jGraphStore`.

    Use as a context manager (commits at the end of the block, aborts on an exception), or call
    :meth:`add` then :meth:`commit` / :meth:`abort`. ``added`` is set by ``commit``.
    """

    def __init__(self, store: Neo4jGraphStore, domain: str, *, batch_size: int) -> None:
        self._store = store
        self.domain = domain
        self.load_id = uuid.uuid4().hex
        self.added: int | None = None
        self._batch_size = max(1, int(batch_size))
        self._prefix = store._key(domain, "")
        self._nodes: dict[str, str] = {}  # entity id -> element id, for nodes this load touched
        self._created: set[str] = set()  # entity ids of nodes this load created
        self._seen: set[tuple[str, str, str]] = set()
        self._relations: set[str] = set()
        self._names: dict[str, str] = {}
        self._named: dict[str, str] = {}  # display names given to nodes at their creation
        self._new = 0
        self._started = False
        self._status = "open"

    def __repr__(self) -> str:
        return f"Neo4jBulkWriter(domain={self.domain!r}, load={self.load_id!r}, status={self._status!r})"

    # -- staging -------------------------------------------------------------------------------
    def add(self, triples: Iterable[Any]) -> None:
        """Write ``triples`` (RawTriples or plain 3-tuples) in batch transactions, tagged with this load.

        Raises:
            LoadError: an id or relation is not a non-empty string (names the source and line).
            StoreError / StoreUnavailable: the server failed. On any error the load is aborted.
        """
        self._check_open()
        try:
            if not self._started:
                self._store._begin_load(self.domain, self.load_id)
                self._started = True
            iterator = iter(triples)
            while batch := list(itertools.islice(iterator, self._batch_size)):
                self._write_batch([_check_row(row) for row in batch])
        except BaseException:
            self.abort()
            raise

    def _write_batch(self, rows: list[tuple[str, str, str, str | None, int | None]]) -> None:
        fresh = []
        for row in rows:
            key = row[:3]
            if key not in self._seen:
                self._seen.add(key)
                fresh.append(row)
        if not fresh:
            return
        missing = list(dict.fromkeys(x for h, _, t, _, _ in fresh for x in (h, t) if x not in self._nodes))
        node_rows = []
        for eid in missing:
            name = self._names.get(eid, eid)
            node_rows.append([self._prefix + eid, eid, name, name.lower()])
        create: list[list[Any]] = []
        merge: list[list[Any]] = []
        load = self.load_id

        def work(tx: Any) -> tuple[list[Any], int]:
            nodes = []
            for start in range(0, len(node_rows), self._batch_size):
                part = node_rows[start:start + self._batch_size]
                nodes.extend(tx.run(_MERGE_NODES, rows=part, domain=self.domain, load=load).values())
            known = dict(self._nodes)
            created = set(self._created)
            for eid, element, was_created in nodes:
                known[eid] = element
                if was_created:
                    created.add(eid)
            create.clear()
            merge.clear()
            for h, r, t, source, line in fresh:
                row = [known[h], r, known[t], source, line]
                (create if h in created or t in created else merge).append(row)
            if create:
                tx.run(_CREATE_RELS, rows=create).consume()
            merged = tx.run(_MERGE_RELS, rows=merge, load=load).single()["created"] if merge else 0
            return nodes, merged

        nodes, merged = self._store._write(work)
        # Only after the transaction committed: a retried transaction must start from the old caches.
        for eid, element, was_created in nodes:
            self._nodes[eid] = element
            if was_created:
                self._created.add(eid)
                if eid in self._names:
                    self._named[eid] = self._names[eid]
        self._new += len(create) + merged
        self._relations.update(r for _, r, _, _, _ in fresh)

    # -- ending --------------------------------------------------------------------------------
    def commit(self) -> int:
        """Make the load permanent; returns the number of new triples.

        Raises:
            StoreError / StoreUnavailable: the commit failed; what the load wrote is removed again.
        """
        self._check_open()
        try:
            renames = [[self._prefix + eid, name, name.lower()] for eid, name in self._names.items()
                       if self._named.get(eid) != name]
            # Names of existing nodes change before the commit point: a commit failing after this
            # keeps the new display names (the triples and nodes of the load are removed).
            if self._started or (renames and self.domain in self._store.domains()):
                for start in range(0, len(renames), self._batch_size):
                    self._store._write(_Rename(renames[start:start + self._batch_size]))
            if self._started:
                self._store._write(self._finish_load)
            elif renames:
                self._store._write(lambda tx: tx.run(BUMP_DOMAIN, domain=self.domain).consume())
        except BaseException:
            self.abort()
            raise
        self._status = "committed"
        self.added = self._new
        self._release()
        if self._started:  # committed already; leftover tags would only cost a later rollback's time
            self._store._drain(_UNTAG_RELS, load=self.load_id)
            self._store._drain(_UNTAG_NODES, load=self.load_id)
        return self._new

    def _finish_load(self, tx: Any) -> None:
        """The commit point: the pending mark goes and the domain's bookkeeping changes, atomically."""
        if not tx.run(_END_LOAD, load=self.load_id).single()["n"]:
            raise StoreError(f"load {self.load_id} into domain {self.domain!r} was rolled back by someone else")
        if self._seen:
            tx.run(_TOUCH_DOMAIN, domain=self.domain, relations=sorted(self._relations)).consume()
        elif self._names:
            tx.run(BUMP_DOMAIN, domain=self.domain).consume()

    def abort(self) -> None:
        """Delete what this load created (batched); the database is left as before. Idempotent."""
        if self._status != "open":
            return
        self._status = "aborted"
        try:
            if self._started:
                self._store._rollback(self.load_id, self.domain)
        finally:
            self._release()

    def _release(self) -> None:
        self._nodes.clear()
        self._created.clear()
        self._named.clear()
        self._seen.clear()
        self._store._writer_done(self)



DROP_QUERIES = (_DROP_RELS, _DROP_NODES)
