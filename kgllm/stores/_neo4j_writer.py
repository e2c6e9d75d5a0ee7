"""Bulk loads into Neo4j that a failure undoes: the writer behind ``Neo4jGraphStore.writer``.

A 133k-triple load cannot be one cheap transaction, so a load is many batch transactions whose
new nodes and relationships carry the load's id (``load`` property). A ``:KgllmLoad {id}`` node marks
the load as pending; deleting it (with the domain's bookkeeping and the display names the load gives to
existing nodes, in one transaction) is the commit point, after which the tags are cleared in batches.
``abort`` deletes what the load created, so the database is as before; a load whose process died is
undone by ``Neo4jGraphStore.rollback_pending_loads``, or by the next load into its domain.

From its first batch to its end a load holds its domain's lock (kgllm/stores/_neo4j_lock.py), so no other
client loads into or deletes the domain meanwhile; each batch transaction first checks it still does.

Writes within one load, per batch of triples:

* a node transaction ``MERGE``\\ s the batch's new nodes on their unique key and returns, in one
  record, their element ids and whether this load created them (cached, so each node is merged
  once per load);
* a relationship transaction then writes the batch's triples, looking their ends up by element id:
  a triple touching a node created by this load cannot exist yet and is ``CREATE``\\ d, untagged (the
  node's removal on abort takes it along); one between two older nodes is ``MERGE``\\ d and tagged;
  triples already seen in this load are dropped in Python.

The relationship transaction of one batch runs on a background thread while the node transaction of
the next batch runs: the server works on both at once and the client prepares rows meanwhile. At
most one relationship transaction is in flight, so they never contend for the same dense nodes, and
it never needs a node that is not committed yet. A failure anywhere waits for it, then aborts.
"""

from __future__ import annotations

import contextlib
import itertools
import uuid
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

from kgllm.exceptions import KGLLMError, LoadError, StoreError
from kgllm.stores.base import MAX_LINE, WriterLifecycle, bad_line

if TYPE_CHECKING:
    from kgllm.stores._neo4j_lock import DomainLock
    from kgllm.stores.neo4j import Neo4jGraphStore

__all__ = ["Neo4jBulkWriter"]

# Queries are constant strings: every value travels as a parameter.
# One record per batch, not one per node: 43k records cost the client more than the merge costs the
# server. ``coalesce``: an older node has no tag, and a null would be dropped by ``collect``.
_MERGE_NODES = """
UNWIND $rows AS row
MERGE (n:Entity {key: row[0]})
  ON CREATE SET n.id = row[1], n.name = row[2], n.lname = row[3], n.domain = $domain, n.load = $load
RETURN collect([row[1], elementId(n), coalesce(n.load, '') = $load]) AS nodes
"""
# Both return how many rows found their two nodes: a node deleted by someone else mid-load must fail
# the load, not silently drop its triples.
_CREATE_RELS = """
UNWIND $rows AS row
MATCH (h) WHERE elementId(h) = row[0]
MATCH (t) WHERE elementId(t) = row[2]
CREATE (h)-[:REL {type: row[1], source: row[3], line: row[4]}]->(t)
RETURN count(*) AS found
"""
_MERGE_RELS = """
UNWIND $rows AS row
MATCH (h) WHERE elementId(h) = row[0]
MATCH (t) WHERE elementId(t) = row[2]
MERGE (h)-[r:REL {type: row[1]}]->(t)
  ON CREATE SET r.source = row[3], r.line = row[4], r.load = $load
RETURN count(*) AS found, count(CASE WHEN r.load = $load THEN 1 END) AS created
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


# Neo4j's range indexes (on the node key, domain + id, and on the lower-cased name) refuse a value of
# more than about 8,160 bytes of UTF-8 with a bare database error: such ids and names are bad input.
MAX_INDEXED_BYTES = 8000


def _too_long(text: str) -> bool:
    return len(text) * 4 > MAX_INDEXED_BYTES and len(text.encode("utf-8")) > MAX_INDEXED_BYTES


def _cut(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
    if bad_line(line):
        raise LoadError(f"a triple's line must be an int from 0 to {MAX_LINE} or None", path=source, value=line)
    return head, rel, tail, source, line or None


_LIVE_DOMAIN = "MATCH (d:KgllmDomain {name: $domain}) WHERE d.deleting IS NULL RETURN count(d) AS n"


def _rename(tx: Any, rows: list[list[str]], chunk: int) -> None:
    """Set display names (``[key, name, lname]`` rows) in ``tx``, ``chunk`` rows a statement."""
    for start in range(0, len(rows), chunk):
        tx.run(_SET_NAMES, rows=rows[start:start + chunk]).consume()


class _Rename:
    """The transaction of a commit that only renames: names and generation change together, and only in a
    domain that exists (a class, so retries rerun the same rows)."""

    def __init__(self, rows: list[list[str]], domain: str, chunk: int) -> None:
        self.rows, self.domain, self.chunk = rows, domain, chunk

    def __call__(self, tx: Any) -> None:
        if tx.run(_LIVE_DOMAIN, domain=self.domain).single()["n"]:
            _rename(tx, self.rows, self.chunk)
            tx.run(BUMP_DOMAIN, domain=self.domain).consume()


class _MergeNodes:
    """Node transaction of a batch: ``[id, element id, created by this load]`` for each row."""

    def __init__(self, rows: list[list[str]], domain: str, load: str, chunk: int, lock: DomainLock) -> None:
        self.rows, self.domain, self.load, self.chunk, self.lock = rows, domain, load, chunk, lock

    def __call__(self, tx: Any) -> list[list[Any]]:
        self.lock.fence(tx)
        nodes: list[list[Any]] = []
        for start in range(0, len(self.rows), self.chunk):
            part = self.rows[start:start + self.chunk]
            nodes += tx.run(_MERGE_NODES, rows=part, domain=self.domain, load=self.load).single()["nodes"]
        return nodes


class _WriteRels:
    """Relationship transaction of a batch; returns how many triples it added."""

    def __init__(self, create: list[list[Any]], merge: list[list[Any]], load: str, domain: str,
                 lock: DomainLock) -> None:
        self.create, self.merge, self.load, self.domain, self.lock = create, merge, load, domain, lock

    def __call__(self, tx: Any) -> int:
        from neo4j.exceptions import Neo4jError

        self.lock.fence(tx)
        found = merged = 0
        try:
            if self.create:
                found += tx.run(_CREATE_RELS, rows=self.create).single()["found"]
            if self.merge:
                row = tx.run(_MERGE_RELS, rows=self.merge, load=self.load).single()
                found, merged = found + row["found"], row["created"]
        except Neo4jError as exc:  # a node deleted while this transaction was matching it, not before
            if exc.code != "Neo.ClientError.Statement.EntityNotFound":
                raise
            raise StoreError(f"nodes of domain {self.domain!r} were deleted by someone else during load "
                             f"{self.load}: a triple lost an end ({exc.message})") from exc
        if found < len(self.create) + len(self.merge):
            raise StoreError(f"nodes of domain {self.domain!r} were deleted by someone else during load "
                             f"{self.load}: {len(self.create) + len(self.merge) - found} triples lost an end")
        return len(self.create) + int(merged)


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
        self._relations: dict[str, None] = {}  # first-seen order, as the local store numbers them
        self._names: dict[str, str] = {}
        self._named: dict[str, str] = {}  # display names given to nodes at their creation
        self._new = 0
        self._started = False
        self._lock: DomainLock | None = None  # the domain's lock, from the first batch to the end
        self._status = "open"
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future[int] | None = None  # the relationship transaction in flight

    def __repr__(self) -> str:
        return f"Neo4jBulkWriter(domain={self.domain!r}, load={self.load_id!r}, status={self._status!r})"

    # -- staging -------------------------------------------------------------------------------
    def add(self, triples: Iterable[Any]) -> None:
        """Write ``triples`` (RawTriples or plain 3-tuples) in batch transactions, tagged with this load.

        The first call takes the domain's lock, waiting (up to the store's ``lock_wait`` seconds) while
        another client loads into or deletes the domain.

        Raises:
            LoadError: an id or relation is not a non-empty string (names the source and line).
            StoreError / StoreUnavailable: the server failed, another client kept the domain locked, or this
                load lost its lock. On any error the load is aborted.
        """
        self._check_open()
        try:
            if self._lock is None:
                self._lock = self._store._begin_load(self.domain, self.load_id)
                self._started = True
            lock = self._lock
            iterator = iter(triples)
            while batch := list(itertools.islice(iterator, self._batch_size)):
                lock.check()
                self._write_batch([_check_row(row) for row in batch])
            self._settle()
        except BaseException:
            self.abort()
            raise

    def _write_batch(self, rows: list[tuple[str, str, str, str | None, int | None]]) -> None:
        assert self._lock is not None
        fresh = []
        for row in rows:
            key = row[:3]
            if key not in self._seen:
                self._seen.add(key)
                fresh.append(row)
        if not fresh:
            return
        missing = list(dict.fromkeys(x for h, _, t, _, _ in fresh for x in (h, t) if x not in self._nodes))
        if missing:
            node_rows = []
            for eid in missing:
                name = self._names.get(eid, eid)
                if _too_long(self._prefix + eid) or _too_long(name.lower()):
                    source, line = next((row[3], row[4]) for row in fresh if eid in (row[0], row[2]))
                    what = "entity id" if name == eid else f"display name of entity {_cut(eid)!r}"
                    raise LoadError(f"{what} too long for the Neo4j store (at most {MAX_INDEXED_BYTES} bytes "
                                    f"of UTF-8, with the domain name)", path=source, line=line, value=_cut(name))
                node_rows.append([self._prefix + eid, eid, name, name.lower()])
            nodes = self._store._write(_MergeNodes(node_rows, self.domain, self.load_id, self._batch_size,
                                                   self._lock))
            # Only after the transaction committed: a retried transaction must start from the old caches.
            for eid, element, was_created in nodes:
                self._nodes[eid] = element
                if was_created:
                    self._created.add(eid)
                    if eid in self._names:
                        self._named[eid] = self._names[eid]
        known, created = self._nodes, self._created
        create: list[list[Any]] = []
        merge: list[list[Any]] = []
        for h, r, t, source, line in fresh:
            (create if h in created or t in created else merge).append([known[h], r, known[t], source, line])
        self._relations.update(dict.fromkeys(r for _, r, _, _, _ in fresh))
        self._settle()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kgllm-neo4j-load")
        self._pending = self._pool.submit(self._store._write,
                                          _WriteRels(create, merge, self.load_id, self.domain, self._lock))

    def _settle(self) -> None:
        """Wait for the relationship transaction in flight; count its triples or raise its error."""
        pending, self._pending = self._pending, None
        if pending is not None:
            self._new += pending.result()

    # -- ending --------------------------------------------------------------------------------
    def commit(self) -> int:
        """Make the load permanent; returns the number of new triples.

        Raises:
            StoreError / StoreUnavailable: the commit failed; what the load wrote is removed again.
        """
        self._check_open()
        try:
            self._settle()
            renames = [[self._prefix + eid, name, name.lower()] for eid, name in self._names.items()
                       if self._named.get(eid) != name]
            long_name = next((row for row in renames if _too_long(row[2])), None)
            if long_name is not None:
                raise LoadError(f"display name of entity {_cut(long_name[0][len(self._prefix):])!r} too long for the "
                                f"Neo4j store (at most {MAX_INDEXED_BYTES} bytes of UTF-8)", value=_cut(long_name[1]))
            # Names of existing nodes change in the commit transaction: a failed load renames nothing.
            if self._started:
                self._store._write(_FinishLoad(self, renames))
                assert self._lock is not None
                self._lock.held = False  # freed by that transaction
            elif renames:
                self._store._write(_Rename(renames, self.domain, self._batch_size))
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

    def abort(self) -> None:
        """Delete what this load created (batched); the database is left as before. Idempotent."""
        if self._status != "open":
            return
        self._status = "aborted"
        try:
            if self._pending is not None:  # let it end (its error is the one already raised, if any)
                wait([self._pending])
                self._pending = None
            if self._started:
                self._store._rollback(self.load_id, self.domain)
        finally:
            self._release()

    def _release(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._lock is not None:  # a lock not freed here (server gone) expires with its lease
            with contextlib.suppress(KGLLMError):
                self._lock.release()
        self._nodes.clear()
        self._created.clear()
        self._named.clear()
        self._seen.clear()
        self._store._writer_done(self)


class _FinishLoad:
    """The commit point: with the domain's lock confirmed ours, the pending mark goes, existing nodes get
    their new display names, the domain's bookkeeping changes and the lock is freed, atomically."""

    def __init__(self, writer: Neo4jBulkWriter, renames: list[list[str]]) -> None:
        self.writer, self.renames = writer, renames

    def __call__(self, tx: Any) -> None:
        w = self.writer
        assert w._lock is not None
        w._lock.confirm(tx)
        if not tx.run(_END_LOAD, load=w.load_id).single()["n"]:
            raise StoreError(f"load {w.load_id} into domain {w.domain!r} was rolled back by someone else")
        _rename(tx, self.renames, w._batch_size)
        if w._seen:
            tx.run(_TOUCH_DOMAIN, domain=w.domain, relations=list(w._relations)).consume()
        elif w._names:
            tx.run(BUMP_DOMAIN, domain=w.domain).consume()
        w._lock.free(tx)


DROP_QUERIES = (_DROP_RELS, _DROP_NODES)
