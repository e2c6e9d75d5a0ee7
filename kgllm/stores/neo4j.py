"""The Neo4j graph store: the :class:`~kgllm.stores.base.GraphStore` protocol over the official driver.

Graph model (several domains share one database; each is deleted without touching the others)::

    (:Entity {key, id, name, lname, domain})   key = domain + U+001F + id  (unique constraint)
    (:Entity)-[:REL {type, source, line}]->(:Entity)
    (:KgllmDomain {name, relations, deleting}) a committed domain and its relation names
    (:KgllmLoad {id, domain, started})         a load in progress (see kgllm/stores/_neo4j_writer.py)
    (:KgllmLock {domain, owner, expires, ...}) the lease of the load or delete of a domain running now
                                               (see kgllm/stores/_neo4j_lock.py)

Relations are one generic relationship type with the relation name in a ``type`` property, so any
spelling round-trips and no user value ever reaches query text: every query of the store is a constant
string and values travel as parameters. The alternative, one relationship type per relation, was
measured against this one (``bench/neo4j_bench.py --designs 30000``, MetaQA, second of two alternating
rounds): loading 7.6k vs 4.9k triples/s, relation-filtered 1-hop p50 4.3 vs 4.8 ms, 2-hop p50 11.9 vs
13.3 ms. Per-type relationships bought no speed here, only dynamic query text and per-type indexes.

Besides this module: kgllm/stores/_neo4j_client.py (driver, transactions, errors), _neo4j_reads.py (read
queries and their isolation from pending loads), _neo4j_writer.py (loads), _neo4j_domains.py (starting and
undoing loads, deleting domains) and _neo4j_lock.py (domain locks).

Connection failures, refused credentials and servers other than Neo4j 5 raise
:class:`~kgllm.exceptions.StoreUnavailable`; other server errors :class:`~kgllm.exceptions.StoreError`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from kgllm.exceptions import ConfigError, DomainNotFound, StoreError
from kgllm.stores import _neo4j_domains
from kgllm.stores._neo4j_client import URI_SCHEMES, Neo4jClient
from kgllm.stores._neo4j_lock import LOCK_SCHEMA, DomainLock, free_lock
from kgllm.stores._neo4j_reads import (
    COUNT,
    EXACT,
    EXPAND,
    LIVE,
    MAX_LIMIT,
    NEIGHBOR_READINGS,
    NODES,
    PAGE,
    PREFIX,
    build_snapshot,
    row_fact,
)
from kgllm.stores._neo4j_writer import Neo4jBulkWriter
from kgllm.stores.base import Direction, RawTriple, subgraph_to_networkx
from kgllm.stores.snapshot import GraphSnapshot, fact_key
from kgllm.types import Entity, Fact, Subgraph

if TYPE_CHECKING:
    import networkx as nx

__all__ = ["Neo4jGraphStore", "Neo4jBulkWriter", "SEPARATOR", "URI_SCHEMES"]

SEPARATOR = "\u001f"  # joins domain and id into the unique node key; not allowed in domain names
SNAPSHOT_TRIES = 5  # reads of a domain that other clients keep changing before snapshot() gives up
LOCK_WAIT = 600.0  # seconds a load or delete waits for another client's lock on its domain
LOCK_LEASE = 60.0  # seconds a domain lock outlives the last renewal by its holder (renewed every third)

_SCHEMA = (
    "CREATE CONSTRAINT kgllm_entity_key IF NOT EXISTS FOR (n:Entity) REQUIRE n.key IS UNIQUE",
    "CREATE INDEX kgllm_entity_domain IF NOT EXISTS FOR (n:Entity) ON (n.domain)",
    "CREATE INDEX kgllm_entity_lname IF NOT EXISTS FOR (n:Entity) ON (n.lname)",
    "CREATE INDEX kgllm_entity_load IF NOT EXISTS FOR (n:Entity) ON (n.load)",
    "CREATE INDEX kgllm_rel_load IF NOT EXISTS FOR ()-[r:REL]-() ON (r.load)",
    "CREATE CONSTRAINT kgllm_domain_name IF NOT EXISTS FOR (d:KgllmDomain) REQUIRE d.name IS UNIQUE",
    "CREATE CONSTRAINT kgllm_load_id IF NOT EXISTS FOR (l:KgllmLoad) REQUIRE l.id IS UNIQUE",
    LOCK_SCHEMA,
)


class Neo4jGraphStore(Neo4jClient):
    """A :class:`~kgllm.stores.base.GraphStore` on a Neo4j 5 server.

    Args:
        uri: the server, e.g. ``bolt://127.0.0.1:7687`` or ``neo4j://host``.
        user: user name; with ``password`` None, authentication is not sent.
        password: the user's password.
        database: database name (the server's default when None).
        batch_size: rows per write transaction.
        lock_wait: seconds a load or ``delete_domain`` waits for another client's load or delete of the
            same domain before failing (attribute ``lock_wait``).
        lock_lease: seconds after its holder's last renewal that a domain lock expires (attribute
            ``lock_lease``; the holder renews it every third of that).

    Raises:
        ConfigError: ``uri`` is not a Neo4j URI.
        StoreUnavailable: the server cannot be reached, refuses the credentials, or is not Neo4j 5.
    """

    backend = "neo4j"

    def __init__(self, *, uri: str, user: str | None = None, password: str | None = None,
                 database: str | None = None, batch_size: int = 5000, lock_wait: float = LOCK_WAIT,
                 lock_lease: float = LOCK_LEASE) -> None:
        self.uri, self.user, self.database = uri, user, database
        self.batch_size = int(batch_size)
        self.lock_wait, self.lock_lease = float(lock_wait), float(lock_lease)
        self._lock = threading.Lock()
        self._writers: dict[str, Neo4jBulkWriter] = {}
        self._snapshots: dict[str, tuple[tuple[str, int], GraphSnapshot]] = {}
        self._schema_ready = False
        self._connect(password)

    def __repr__(self) -> str:
        return f"Neo4jGraphStore(uri={self.uri!r}, database={self.database!r})"

    def __enter__(self) -> Neo4jGraphStore:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:  # type: ignore[no-untyped-def]
        self.close()

    # -- schema and node keys (the driver plumbing is Neo4jClient's) -----------------------------
    def _ensure_schema(self) -> None:
        if self._schema_ready:
            return
        with self._errors(), self._driver.session(database=self.database) as session:
            for statement in _SCHEMA:
                session.run(statement).consume()
            session.run("CALL db.awaitIndexes(300)").consume()
        self._schema_ready = True

    @staticmethod
    def _key(domain: str, id: str) -> str:
        return domain + SEPARATOR + id

    # -- writing -------------------------------------------------------------------------------
    def writer(self, domain: str, *, batch_size: int | None = None) -> Neo4jBulkWriter:
        """A writer for one load into ``domain`` (created by the first commit that adds triples).

        Raises:
            ConfigError: ``domain`` is empty or contains U+001F.
            StoreError: another writer of this store for ``domain`` is still open.
        """
        if not isinstance(domain, str) or not domain or SEPARATOR in domain:
            raise ConfigError(f"a domain name must be a non-empty string without U+001F, got {domain!r}")
        with self._lock:
            if domain in self._writers:
                raise StoreError(f"a writer for domain {domain!r} is already open; commit or abort it first")
            writer = Neo4jBulkWriter(self, domain, batch_size=batch_size or self.batch_size)
            self._writers[domain] = writer
            return writer

    def _writer_done(self, writer: Neo4jBulkWriter) -> None:
        with self._lock:
            if self._writers.get(writer.domain) is writer:
                del self._writers[writer.domain]

    def _begin_load(self, domain: str, load_id: str) -> DomainLock:
        """Take the domain's lock and mark a load as pending (see :func:`_neo4j_domains.begin_load`)."""
        return _neo4j_domains.begin_load(self, domain, load_id)

    def _rollback(self, load_id: str, domain: str) -> None:
        _neo4j_domains.rollback(self, load_id, domain)

    def add_triples(self, domain: str, triples: Iterable[RawTriple], *, batch_size: int | None = None) -> int:
        """Load ``triples`` into ``domain`` atomically (undone on failure); returns the number of new ones."""
        with self.writer(domain, batch_size=batch_size) as writer:
            writer.add(triples)
        return writer.added or 0

    def pending_loads(self) -> list[dict[str, Any]]:
        """Loads begun but neither committed nor aborted (``id``, ``domain``, ``started``)."""
        return self._query("MATCH (l:KgllmLoad) RETURN l.id AS id, l.domain AS domain, "
                           "toString(l.started) AS started ORDER BY started")

    def rollback_pending_loads(self) -> int:
        """Undo loads whose process died before commit or abort, and free the domain locks of other clients;
        returns how many loads were undone.

        Run it only when no other process is loading into or deleting from this database (a dead process's
        load is also undone by the next load into its domain once its lock's lease expires).
        """
        ours = {w.load_id for w in self._writers.values()}
        stale = [(row["id"], row["domain"]) for row in self.pending_loads() if row["id"] not in ours]
        for load_id, domain in stale:
            self._rollback(load_id, domain)
        held = {w.domain for w in self._writers.values()}
        for row in self._query("MATCH (l:KgllmLock) WHERE l.owner IS NOT NULL RETURN l.domain AS domain"):
            if row["domain"] not in held:
                self.unlock_domain(row["domain"])
        return len(stale)

    def unlock_domain(self, domain: str) -> bool:
        """Free the lock on ``domain`` whoever holds it; returns whether it was held.

        For a lock whose holder is known to have died, when its lease should not be waited for. A holder
        still running fails at its next batch or at its commit (its load is rolled back).
        """
        return bool(self._write(lambda tx: free_lock(tx, domain, None)))

    def delete_domain(self, domain: str) -> None:
        """Remove ``domain``; other domains are untouched.

        The domain is marked as being deleted first, in one transaction: from then on readers see it
        neither in :meth:`domains` nor in any read, and its data goes in batches. A delete cut short leaves
        nothing readable; it is finished by calling this again or by the next load into the domain. Waits
        (up to ``lock_wait`` seconds) for a load or delete of the domain by another client.

        Raises:
            DomainNotFound: no such domain.
            StoreError: a writer of this store for it is open, or another client kept it locked.
        """
        _neo4j_domains.delete_domain(self, domain)

    # -- reading -------------------------------------------------------------------------------
    def domains(self) -> list[str]:
        return [row["name"] for row in self._query("MATCH (d:KgllmDomain) WHERE d.deleting IS NULL "
                                                   "RETURN d.name AS name ORDER BY name")]

    def _require(self, domain: str) -> None:
        if not self._query(LIVE + "RETURN 1 AS ok", d=domain):
            raise DomainNotFound(domain, self.domains())

    def count(self, domain: str | None = None) -> dict[str, int]:
        """``{"entities": n, "triples": m}`` for one domain or summed over all committed domains."""
        if domain is not None:
            self._require(domain)
        names = [domain] if domain is not None else self.domains()
        rows = self._query(COUNT, domains=names)
        return {"entities": int(rows[0]["entities"] or 0), "triples": int(rows[0]["triples"] or 0)}

    def relations(self, domain: str) -> list[str]:
        """The domain's relation names, sorted, with their original spelling."""
        rows = self._query(LIVE + "RETURN d.relations AS relations", d=domain)
        if not rows:
            raise DomainNotFound(domain, self.domains())
        return sorted(rows[0]["relations"] or [])

    def entity(self, id: str, domain: str) -> Entity | None:
        rows = self._query(NODES, keys=[self._key(domain, id)])
        if not rows:
            self._require(domain)
            return None
        return Entity(id=id, name=rows[0]["name"], domain=domain)

    def find_entities(self, name: str, *, domain: str | None = None, limit: int = 10) -> list[Entity]:
        """Entities named ``name`` ignoring case, then those whose name starts with it.

        ``name`` is stripped (an empty query finds nothing). Exact matches come ordered by (domain, id),
        prefix matches by (lowercased name, domain, id).
        """
        query = name.strip().lower()
        if not query or limit <= 0:
            return []
        if domain is not None:
            self._require(domain)
        names = [domain] if domain is not None else self.domains()
        rows = self._query(EXACT, q=query, domains=names, limit=min(limit, MAX_LIMIT))
        if len(rows) < limit:
            rows += self._query(PREFIX, q=query, domains=names, limit=min(limit - len(rows), MAX_LIMIT))
        return [Entity(id=r["id"], name=r["name"], domain=r["domain"]) for r in rows]

    def neighbors(self, ids: Sequence[str], *, domain: str, relations: Sequence[str] | None = None,
                  direction: Direction = "out", limit: int | None = None) -> list[Fact]:
        """Facts leaving (``out``), entering (``in``) or touching (``both``) any of ``ids``.

        Unknown ids and relations are ignored; each fact appears once (a self-loop too), ordered by
        the position of its node in ``ids``, outgoing before incoming.
        """
        if direction not in ("out", "in", "both"):
            raise ValueError(f"direction must be one of 'out', 'in', 'both', got {direction!r}")
        keys = [self._key(domain, i) for i in dict.fromkeys(ids)]
        rels = list(relations) if relations is not None else None
        rows: list[tuple[int, int, dict[str, Any]]] = []
        for rank, side in enumerate(("out", "in")):
            if direction in (side, "both") and keys:
                rows += [(row["i"], rank, row)
                         for row in self._query(NEIGHBOR_READINGS[side], keys=keys, relations=rels)]
        if not rows:
            self._require(domain)
            return []
        rows.sort(key=lambda item: item[:2])
        seen: set[str] = set()
        facts = []
        for _, _, row in rows:
            if row["rid"] not in seen:
                seen.add(row["rid"])
                facts.append(row_fact(row, domain))
        return facts if limit is None else facts[:max(limit, 0)]

    def k_hop(self, seeds: Sequence[str], k: int, *, domain: str, limit: int = 10_000) -> Subgraph:
        """Nodes within ``k`` undirected hops of ``seeds`` and the facts on paths of length ≤ k from them.

        Breadth-first, one query per level, each level's facts in (head name, head id, relation, tail name,
        tail id) order; once ``limit`` facts are gathered it stops (``truncated``), keeping the first facts
        in that order and the nodes they reach (in the order they are reached). Unknown seeds are ignored.
        """
        if k < 0 or limit < 0:
            raise ValueError(f"k and limit must be >= 0, got k={k!r}, limit={limit!r}")
        found = self._query(NODES, keys=[self._key(domain, s) for s in dict.fromkeys(seeds)])
        if not found:
            self._require(domain)
            return Subgraph(seeds=[])
        depth = {row["id"]: 0 for row in found}
        nodes = [Entity(id=row["id"], name=row["name"], domain=domain) for row in found]
        frontier = list(depth)
        facts: list[Fact] = []
        taken: set[str] = set()
        truncated = False
        for level in range(k):
            if not frontier or truncated:
                break
            # Rows repeat the edges taken at the previous level: this cap leaves room for one edge
            # more than fits under ``limit``, so a full answer says the level was cut.
            room = limit - len(facts)
            rows = self._query(EXPAND, keys=[self._key(domain, i) for i in frontier],
                               cap=min(room + len(taken) + 1, MAX_LIMIT))
            new = [(row_fact(row, domain), row) for row in rows if row["rid"] not in taken]
            new.sort(key=lambda item: fact_key(item[0]))  # as the query, but in Python's string order
            if len(new) > room:
                new, truncated = new[:room], True
            taken = {row["rid"] for _, row in new}
            frontier = []
            for fact, row in new:
                facts.append(fact)
                for end, name in ((row["h"], row["hn"]), (row["t"], row["tn"])):
                    if end not in depth:
                        depth[end] = level + 1
                        frontier.append(end)
                        nodes.append(Entity(id=end, name=name, domain=domain))
        return Subgraph(nodes=nodes, facts=facts, seeds=[row["id"] for row in found], truncated=truncated)

    def _pages(self, domain: str, page: int = 2000) -> Iterator[list[dict[str, Any]]]:
        """The domain's nodes in key order, ``page`` at a time, each with its outgoing edges."""
        self._require(domain)
        prefix, after = self._key(domain, ""), ""
        while True:
            rows = self._query(PAGE, prefix=prefix, after=after, page=page)
            if not rows:
                return
            yield rows
            after = rows[-1]["key"]

    def iter_triples(self, domain: str) -> Iterator[Fact]:
        """Every stored fact of ``domain`` with names and provenance (read page by page)."""
        for rows in self._pages(domain):
            names = {row["id"]: row["name"] for row in rows}
            missing = {t for row in rows for rel, t, _, _ in row["out"] if rel is not None and t not in names}
            if missing:
                names.update((row["id"], row["name"]) for row in self._query(
                    NODES, keys=[self._key(domain, t) for t in missing]))
            for row in rows:
                for rel, tail, source, line in row["out"]:
                    if rel is None:  # a node without outgoing edges
                        continue
                    yield Fact(head=row["id"], relation=rel, tail=tail, domain=domain, head_name=row["name"],
                               tail_name=names[tail], source=source, line=line)

    def snapshot(self, domain: str) -> GraphSnapshot:
        """The domain read into CSR arrays (nodes in key order); cached until the domain changes.

        Every commit, rollback and rename bumps the domain's generation, so a cached snapshot is
        reused only while the domain is unchanged, whichever process changed it. The pages are read in
        several transactions: a snapshot during which the generation changed mixes two versions, and is
        read again.

        Raises:
            DomainNotFound: no such domain.
            StoreError: the domain changed during each of ``SNAPSHOT_TRIES`` reads.
        """
        for _ in range(SNAPSHOT_TRIES):
            version, relations = self._version(domain)
            cached = self._snapshots.get(domain)
            if cached is not None and cached[0] == version:
                return cached[1]
            snap = build_snapshot(domain, self._pages(domain, page=10_000), relations)
            if snap is not None and self._version(domain)[0] == version:
                self._snapshots[domain] = (version, snap)
                return snap
        raise StoreError(f"domain {domain!r} changed during each of {SNAPSHOT_TRIES} attempts to read it; "
                         f"try again when the loads into it are done")

    def _version(self, domain: str) -> tuple[tuple[str, int], list[str]]:
        """The domain's version (uid, generation) and relation names, or DomainNotFound."""
        rows = self._query(LIVE + "RETURN d.uid AS uid, d.generation AS generation, d.relations AS relations",
                           d=domain)
        if not rows:
            self._snapshots.pop(domain, None)
            raise DomainNotFound(domain, self.domains())
        return (str(rows[0]["uid"]), int(rows[0]["generation"] or 0)), list(rows[0]["relations"] or [])

    def to_networkx(self, subgraph: Subgraph) -> nx.MultiDiGraph:
        return subgraph_to_networkx(subgraph)

    def close(self) -> None:
        """Abort open writers and close the driver."""
        for writer in list(self._writers.values()):
            writer.abort()
        self._snapshots.clear()
        self._driver.close()
