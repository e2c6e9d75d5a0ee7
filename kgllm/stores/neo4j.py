"""The Neo4j graph store: the :class:`~kgllm.stores.base.GraphStore` protocol over the official driver.

Graph model (several domains share one database; each is deleted without touching the others)::

    (:Entity {key, id, name, lname, domain})   key = domain + U+001F + id  (unique constraint)
    (:Entity)-[:REL {type, source, line}]->(:Entity)
    (:KgllmDomain {name, relations, deleting}) a committed domain and its relation names
    (:KgllmLoad {id, domain, started})         a load in progress (see kgllm/stores/_neo4j_writer.py)
    (:KgllmLock {domain, owner, expires, ...}) the lease of the load or delete of a domain running now
                                               (see kgllm/stores/_neo4j_lock.py)

Relations are one generic relationship type with the relation name in a ``type`` property, so any
spelling round-trips and no user value ever reaches query text: every query here is a constant
string and values travel as parameters. The alternative, one relationship type per relation, was
measured against this one (``bench/neo4j_bench.py --designs 30000``, MetaQA, second of two alternating
rounds): loading 7.6k vs 4.9k triples/s, relation-filtered 1-hop p50 4.3 vs 4.8 ms, 2-hop p50 11.9 vs
13.3 ms. Per-type relationships bought no speed here, only dynamic query text and per-type indexes.

Connection failures, refused credentials and servers other than Neo4j 5 raise
:class:`~kgllm.exceptions.StoreUnavailable`; other server errors :class:`~kgllm.exceptions.StoreError`.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import numpy as np

from kgllm.exceptions import ConfigError, DomainNotFound, KGLLMError, StoreError, StoreUnavailable
from kgllm.stores._neo4j_lock import LOCK_SCHEMA, DomainLock, free_lock
from kgllm.stores._neo4j_writer import BUMP_DOMAIN, DROP_QUERIES, Neo4jBulkWriter
from kgllm.stores.base import Direction, RawTriple, subgraph_to_networkx
from kgllm.stores.snapshot import GraphSnapshot, fact_key
from kgllm.types import Entity, Fact, Subgraph

if TYPE_CHECKING:
    import networkx as nx

__all__ = ["Neo4jGraphStore", "Neo4jBulkWriter", "SEPARATOR", "URI_SCHEMES"]

URI_SCHEMES = ("bolt", "bolt+s", "bolt+ssc", "neo4j", "neo4j+s", "neo4j+ssc")
SEPARATOR = "\u001f"  # joins domain and id into the unique node key; not allowed in domain names
T = TypeVar("T")
CONNECT_TIMEOUT = 5.0  # seconds to open a connection: how long a host that does not answer is waited for
RETRY_TIME = 15.0  # seconds a transaction is retried on transient errors of a server that answers
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
# What a load has written before its commit point is invisible to readers, as in the local store: while
# loads are pending (``$pending``, their ids, read by _query in the same transaction), reads skip nodes and
# relationships tagged with one. Relationships created untagged touch a tagged node: both ends are checked.
# Likewise a domain being deleted (``$gone``) is gone for readers before its first node is: its nodes are
# skipped, so a delete cut short leaves nothing readable.
_PENDING = ("CALL () { MATCH (l:KgllmLoad) RETURN collect(l.id) AS ids } "
            "CALL () { MATCH (d:KgllmDomain) WHERE d.deleting IS NOT NULL RETURN collect(d.name) AS gone } "
            "RETURN ids, gone")
_LIVE = "MATCH (d:KgllmDomain {name: $d}) WHERE d.deleting IS NULL "
# A load starts at once into a live domain without pending loads (those of dead clients, under the lock).
_STARTABLE = ("OPTIONAL MATCH (d:KgllmDomain {name: $d}) "
              "RETURN d IS NOT NULL AND d.deleting IS NULL AND NOT EXISTS { MATCH (l:KgllmLoad {domain: $d}) } AS ok")
_START_LOAD = "CREATE (:KgllmLoad {id: $id, domain: $d, started: datetime()})"


class _Reading(NamedTuple):
    """A read query as it runs when no load is pending, and as it runs while some are."""

    plain: str
    filtered: str


def _reading(template: str) -> _Reading:
    """``template`` without its ``[[...]]`` parts, and with them, where ``COMMITTED(a, b)`` is the condition
    that the variables ``a`` and ``b`` (constants of this module) belong to no pending load, and that the
    first of them, a node, belongs to no domain being deleted (all others are of the same domain)."""
    def committed(match: re.Match[str]) -> str:
        names = [v.strip() for v in match.group(1).split(",")]
        return " AND ".join([f"NOT {names[0]}.domain IN $gone"]
                            + [f"({v}.load IS NULL OR NOT {v}.load IN $pending)" for v in names])

    plain = re.sub(r"\[\[.*?\]\]", "", template, flags=re.S)
    filtered = re.sub(r"COMMITTED\(([^)]*)\)", committed, template.replace("[[", "").replace("]]", ""))
    return _Reading(plain, filtered)


_FACT = ("elementId(r) AS rid, h.id AS h, r.type AS r, t.id AS t, h.name AS hn, t.name AS tn, "
         "r.source AS source, r.line AS line")
_NEIGHBORS = {
    "out": "MATCH (n)-[r:REL]->(t) WITH i, n AS h, r, t",
    "in": "MATCH (n)<-[r:REL]-(h) WITH i, h, r, n AS t",
}
_NEIGHBOR_QUERY = """
UNWIND range(0, size($keys) - 1) AS i
MATCH (n:Entity {{key: $keys[i]}})
{pattern}
WHERE ($relations IS NULL OR r.type IN $relations)[[ AND COMMITTED(h, r, t)]]
RETURN i, {fact}
"""
_NEIGHBOR_READINGS = {side: _reading(_NEIGHBOR_QUERY.format(pattern=pattern, fact=_FACT))
                      for side, pattern in _NEIGHBORS.items()}
# The first $cap edges touching the nodes, in fact_key order (kgllm/stores/snapshot.py).
_EXPAND = _reading("""
UNWIND $keys AS key
MATCH (n:Entity {key: key})-[r:REL]-([[m]])[[ WHERE COMMITTED(n, r, m)]]
WITH DISTINCT r
WITH r, startNode(r) AS h, endNode(r) AS t
ORDER BY h.name, h.id, r.type, t.name, t.id LIMIT $cap
RETURN """ + _FACT)
# Cypher integers are 64-bit: a larger LIMIT (``limit=sys.maxsize`` plus the rows already taken) fails
# in the driver with an OverflowError, so limits are clamped to this.
_MAX_LIMIT = 2**63 - 1
# Without pending loads, COUNT reads each node's degree; with them, it has to look at the relationships.
_COUNT = _Reading(plain="""
UNWIND $domains AS d
MATCH (n:Entity {domain: d})
RETURN count(n) AS entities, sum(COUNT { (n)-[:REL]->() }) AS triples""", filtered=_reading("""
UNWIND $domains AS d
MATCH (n:Entity {domain: d}) WHERE COMMITTED(n)
RETURN count(n) AS entities, sum(COUNT { (n)-[r:REL]->(t) WHERE COMMITTED(t, r) }) AS triples""").filtered)
_NODES = _reading("UNWIND $keys AS key MATCH (n:Entity {key: key})[[ WHERE COMMITTED(n)]] "
                  "RETURN n.id AS id, n.name AS name")
_EXACT = _reading("""
MATCH (n:Entity) WHERE n.lname = $q AND n.domain IN $domains[[ AND COMMITTED(n)]]
WITH n ORDER BY n.domain, n.id LIMIT $limit
RETURN n.id AS id, n.name AS name, n.domain AS domain""")
_PREFIX = _reading("""
MATCH (n:Entity) WHERE n.lname STARTS WITH $q AND n.lname <> $q AND n.domain IN $domains[[ AND COMMITTED(n)]]
WITH n ORDER BY n.lname, n.domain, n.id LIMIT $limit
RETURN n.id AS id, n.name AS name, n.domain AS domain""")
_PAGE = _reading("""
MATCH (n:Entity) WHERE n.key STARTS WITH $prefix AND n.key > $after[[ AND COMMITTED(n)]]
WITH n ORDER BY n.key LIMIT $page
CALL (n) {
  OPTIONAL MATCH (n)-[r:REL]->(t)[[ WHERE COMMITTED(t, r)]]
  RETURN collect([r.type, t.id, r.source, r.line]) AS out
}
RETURN n.key AS key, n.id AS id, n.name AS name, out
""")


class Neo4jGraphStore:
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
        import neo4j

        self.uri, self.user, self.database = uri, user, database
        self.batch_size = int(batch_size)
        self.lock_wait, self.lock_lease = float(lock_wait), float(lock_lease)
        self._lock = threading.Lock()
        self._writers: dict[str, Neo4jBulkWriter] = {}
        self._snapshots: dict[str, tuple[tuple[str, int], GraphSnapshot]] = {}
        self._schema_ready = False
        scheme = uri.partition("://")[0] if isinstance(uri, str) and "://" in uri else None
        if scheme not in URI_SCHEMES:
            raise ConfigError(f"invalid Neo4j URI {uri!r}: expected one of the schemes {', '.join(URI_SCHEMES)} "
                              f"(e.g. bolt://127.0.0.1:7687)")
        auth = (user or "neo4j", password) if password is not None else None
        try:
            # Transactions are retried by _transaction (not by the driver, which would also retry a
            # server that is down); connection_timeout bounds the wait for a host that does not answer.
            self._driver = neo4j.GraphDatabase.driver(uri, auth=auth, connection_timeout=CONNECT_TIMEOUT,
                                                      notifications_min_severity="OFF")
        except (ValueError, neo4j.exceptions.ConfigurationError) as exc:
            raise ConfigError(f"invalid Neo4j URI {uri!r}: {exc}") from exc
        try:
            self.server_version = self._check_server()
        except BaseException:
            self._driver.close()
            raise

    def __repr__(self) -> str:
        return f"Neo4jGraphStore(uri={self.uri!r}, database={self.database!r})"

    def __enter__(self) -> Neo4jGraphStore:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:  # type: ignore[no-untyped-def]
        self.close()

    # -- driver plumbing -----------------------------------------------------------------------
    def _check_server(self) -> str:
        # Auto-commit, not a managed transaction: a server that is down fails at once, without retries.
        with self._errors(), self._driver.session(database=self.database) as session:
            rows = session.run("CALL dbms.components() YIELD name, versions, edition "
                               "RETURN name, versions, edition").data()
        version = next((r["versions"][0] for r in rows if r["name"] == "Neo4j Kernel"), None)
        if version is None or not str(version).startswith("5."):
            raise StoreUnavailable(f"the server at {self.uri} is Neo4j {version or 'of unknown version'}; "
                                   f"kgllm needs Neo4j 5.x")
        return str(version)

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn driver exceptions into kgllm's: StoreUnavailable for connectivity, StoreError otherwise."""
        from neo4j import exceptions as ne

        try:
            yield
        except KGLLMError:  # ours already (StoreUnavailable is an OSError too): pass it on as it is
            raise
        except ne.AuthError as exc:
            raise StoreUnavailable(f"Neo4j at {self.uri} refused the credentials for user "
                                   f"{self.user or 'neo4j'!r}: {exc.message}") from exc
        except (ne.ServiceUnavailable, ne.SessionExpired, OSError) as exc:
            # The driver's message lists every address tried, one per line; the last says why.
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[-1].strip()
            raise StoreUnavailable(f"cannot reach Neo4j at {self.uri}: {reason}") from exc
        except ne.Neo4jError as exc:
            raise StoreError(f"Neo4j query failed: {exc.code}: {exc.message}") from exc
        except ne.DriverError as exc:
            raise StoreError(f"Neo4j driver error: {exc}") from exc

    def _transaction(self, work: Callable[[Any], T], access_mode: str) -> T:
        """Run ``work(tx)`` in a transaction, retried with backoff for up to ``RETRY_TIME`` seconds on
        transient errors while the server answers; a server that cannot be reached fails at once.

        The driver's managed transactions (``execute_read``/``execute_write``) retry a server that is
        down too, for ``max_transaction_retry_time`` (with 15 s: 16-32 s a call), logging a warning each time.
        """
        from neo4j import exceptions as ne

        deadline = time.monotonic() + RETRY_TIME
        delay = 0.1
        with self._errors():
            while True:
                try:
                    with self._driver.session(database=self.database, default_access_mode=access_mode) as session, \
                            session.begin_transaction() as tx:
                        result = work(tx)
                        tx.commit()
                        return result
                except (ne.Neo4jError, ne.DriverError) as exc:
                    if not exc.is_retryable() or time.monotonic() + delay > deadline or not self._reachable(exc):
                        raise
                time.sleep(delay)
                delay = min(2 * delay, 2.0)

    def _reachable(self, exc: Exception) -> bool:
        """Whether the server answers after ``exc``: a lost connection is retried only when a new one opens
        (the server restarted, or dropped idle connections); other retryable errors come from the server."""
        from neo4j import exceptions as ne

        if not isinstance(exc, (ne.ServiceUnavailable, ne.SessionExpired)):
            return True
        try:
            self._driver.verify_connectivity()
        except (ne.ServiceUnavailable, ne.SessionExpired, OSError):
            return False
        return True

    def _read(self, work: Callable[[Any], T]) -> T:
        import neo4j

        return self._transaction(work, neo4j.READ_ACCESS)

    def _write(self, work: Callable[[Any], T]) -> T:
        """Run ``work(tx)`` in a write transaction (retried on transient errors, see :meth:`_transaction`)."""
        import neo4j

        return self._transaction(work, neo4j.WRITE_ACCESS)

    def _query(self, query: str | _Reading, **params: Any) -> list[dict[str, Any]]:
        def work(tx: Any) -> list[dict[str, Any]]:
            text = query
            if isinstance(query, _Reading):  # skip what uncommitted loads wrote and deleted domains, if any
                state = tx.run(_PENDING).single()
                params["pending"], params["gone"] = state["ids"], state["gone"]
                text = query.filtered if state["ids"] or state["gone"] else query.plain
            return tx.run(text, params).data()

        return self._read(work)

    def _drain(self, query: str, **params: Any) -> None:
        """Repeat a batched ``... LIMIT $batch ... RETURN count(*) AS n`` write until it touches nothing."""
        while self._write(lambda tx: tx.run(query, params, batch=self.batch_size).single()["n"]):
            pass

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
        """Take the domain's lock and mark a load as pending; returns the lock (freed at commit or abort).

        Under the lock, any other pending load of the domain is one whose process died or lost the lock: it is
        rolled back first; so are the remains of a deleted domain of that name (a delete cut short).
        """
        self._ensure_schema()

        def start(tx: Any) -> bool:  # in the transaction taking the lock, when nothing is left to clean up
            if not tx.run(_STARTABLE, d=domain).single()["ok"]:
                return False
            tx.run(_START_LOAD, id=load_id, d=domain).consume()
            return True

        lock = DomainLock(self, domain, load_id, "load")
        started = lock.acquire(then=start)
        try:
            if not started:
                for row in self._query("MATCH (l:KgllmLoad {domain: $d}) RETURN l.id AS id", d=domain):
                    self._rollback(row["id"], domain)
                self._purge(domain)
                self._write(lambda tx: tx.run(_START_LOAD, id=load_id, d=domain).consume())
        except BaseException:
            with contextlib.suppress(KGLLMError):
                lock.release()
            raise
        return lock

    def _purge(self, domain: str) -> None:
        """With the domain's lock held: delete its data if it is being deleted or has no domain node (what a
        delete cut short left), in batches, then its domain node and the marks of loads into it."""
        rows = self._query("OPTIONAL MATCH (d:KgllmDomain {name: $d}) RETURN d IS NULL OR d.deleting IS NOT NULL "
                           "AS gone", d=domain)
        if not rows[0]["gone"]:
            return
        self._drain("MATCH (n:Entity {domain: $d})-[r:REL]->() WITH r LIMIT $batch DELETE r RETURN count(*) AS n",
                    d=domain)
        self._drain("MATCH (n:Entity {domain: $d}) WITH n LIMIT $batch DETACH DELETE n RETURN count(*) AS n",
                    d=domain)

        def end(tx: Any) -> None:
            tx.run("MATCH (d:KgllmDomain {name: $d}) WHERE d.deleting IS NOT NULL DELETE d", d=domain).consume()
            tx.run("MATCH (l:KgllmLoad {domain: $d}) DELETE l", d=domain).consume()

        self._write(end)

    def _rollback(self, load_id: str, domain: str) -> None:
        for query in DROP_QUERIES:
            self._drain(query, load=load_id)

        def end(tx: Any) -> None:
            tx.run("MATCH (l:KgllmLoad {id: $id}) DELETE l", id=load_id).consume()
            tx.run(BUMP_DOMAIN, domain=domain).consume()  # a snapshot taken mid-load is stale now

        self._write(end)

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
        state = self._query("MATCH (d:KgllmDomain {name: $d}) RETURN d.deleting AS deleting", d=domain)
        if not state:
            raise DomainNotFound(domain, self.domains())
        if domain in self._writers:
            raise StoreError(f"cannot delete domain {domain!r} while a writer for it is open")
        self._ensure_schema()
        lock = DomainLock(self, domain, f"delete-{uuid.uuid4().hex}", "delete")
        lock.acquire()
        try:
            marked = self._write(lambda tx: tx.run(
                "MATCH (d:KgllmDomain {name: $d}) SET d.deleting = true, d.generation = coalesce(d.generation, 0) + 1 "
                "RETURN count(d) AS n", d=domain).single()["n"])
            if not marked:  # another client deleted it while this one waited for the lock
                raise DomainNotFound(domain, self.domains())
            self._snapshots.pop(domain, None)
            self._purge(domain)
        finally:
            lock.release()

    # -- reading -------------------------------------------------------------------------------
    def domains(self) -> list[str]:
        return [row["name"] for row in self._query("MATCH (d:KgllmDomain) WHERE d.deleting IS NULL "
                                                   "RETURN d.name AS name ORDER BY name")]

    def _require(self, domain: str) -> None:
        if not self._query(_LIVE + "RETURN 1 AS ok", d=domain):
            raise DomainNotFound(domain, self.domains())

    def count(self, domain: str | None = None) -> dict[str, int]:
        """``{"entities": n, "triples": m}`` for one domain or summed over all committed domains."""
        if domain is not None:
            self._require(domain)
        names = [domain] if domain is not None else self.domains()
        rows = self._query(_COUNT, domains=names)
        return {"entities": int(rows[0]["entities"] or 0), "triples": int(rows[0]["triples"] or 0)}

    def relations(self, domain: str) -> list[str]:
        """The domain's relation names, sorted, with their original spelling."""
        rows = self._query(_LIVE + "RETURN d.relations AS relations", d=domain)
        if not rows:
            raise DomainNotFound(domain, self.domains())
        return sorted(rows[0]["relations"] or [])

    def entity(self, id: str, domain: str) -> Entity | None:
        rows = self._query(_NODES, keys=[self._key(domain, id)])
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
        rows = self._query(_EXACT, q=query, domains=names, limit=min(limit, _MAX_LIMIT))
        if len(rows) < limit:
            rows += self._query(_PREFIX, q=query, domains=names, limit=min(limit - len(rows), _MAX_LIMIT))
        return [Entity(id=r["id"], name=r["name"], domain=r["domain"]) for r in rows]

    def _fact(self, row: dict[str, Any], domain: str) -> Fact:
        return Fact(head=row["h"], relation=row["r"], tail=row["t"], domain=domain, head_name=row["hn"],
                    tail_name=row["tn"], source=row["source"], line=row["line"])

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
                         for row in self._query(_NEIGHBOR_READINGS[side], keys=keys, relations=rels)]
        if not rows:
            self._require(domain)
            return []
        rows.sort(key=lambda item: item[:2])
        seen: set[str] = set()
        facts = []
        for _, _, row in rows:
            if row["rid"] not in seen:
                seen.add(row["rid"])
                facts.append(self._fact(row, domain))
        return facts if limit is None else facts[:max(limit, 0)]

    def k_hop(self, seeds: Sequence[str], k: int, *, domain: str, limit: int = 10_000) -> Subgraph:
        """Nodes within ``k`` undirected hops of ``seeds`` and the facts on paths of length ≤ k from them.

        Breadth-first, one query per level, each level's facts in (head name, head id, relation, tail name,
        tail id) order; once ``limit`` facts are gathered it stops (``truncated``), keeping the first facts
        in that order and the nodes they reach (in the order they are reached). Unknown seeds are ignored.
        """
        if k < 0 or limit < 0:
            raise ValueError(f"k and limit must be >= 0, got k={k!r}, limit={limit!r}")
        found = self._query(_NODES, keys=[self._key(domain, s) for s in dict.fromkeys(seeds)])
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
            rows = self._query(_EXPAND, keys=[self._key(domain, i) for i in frontier],
                               cap=min(room + len(taken) + 1, _MAX_LIMIT))
            new = [(self._fact(row, domain), row) for row in rows if row["rid"] not in taken]
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
            rows = self._query(_PAGE, prefix=prefix, after=after, page=page)
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
                    _NODES, keys=[self._key(domain, t) for t in missing]))
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
            snap = self._read_snapshot(domain, relations)
            if snap is not None and self._version(domain)[0] == version:
                self._snapshots[domain] = (version, snap)
                return snap
        raise StoreError(f"domain {domain!r} changed during each of {SNAPSHOT_TRIES} attempts to read it; "
                         f"try again when the loads into it are done")

    def _version(self, domain: str) -> tuple[tuple[str, int], list[str]]:
        """The domain's version (uid, generation) and relation names, or DomainNotFound."""
        rows = self._query(_LIVE + "RETURN d.uid AS uid, d.generation AS generation, d.relations AS relations",
                           d=domain)
        if not rows:
            self._snapshots.pop(domain, None)
            raise DomainNotFound(domain, self.domains())
        return (str(rows[0]["uid"]), int(rows[0]["generation"] or 0)), list(rows[0]["relations"] or [])

    def _read_snapshot(self, domain: str, known: Sequence[str] = ()) -> GraphSnapshot | None:
        """Relations numbered in the order the domain first saw them (``known``), as in the local store:
        a trained scorer refers to relations by number and checks that list. None when an edge leads to a
        node no page held (committed after its page was read): the domain changed meanwhile."""
        ids: list[str] = []
        names: list[str] = []
        edges: list[tuple[str, str, str, str | None, int | None]] = []
        for rows in self._pages(domain, page=10_000):
            for row in rows:
                ids.append(row["id"])
                names.append(row["name"])
                edges.extend((row["id"], rel, tail, source, line) for rel, tail, source, line in row["out"]
                             if rel is not None)
        index = {eid: i for i, eid in enumerate(ids)}
        if any(e[2] not in index for e in edges):
            return None
        present = {e[1] for e in edges}
        relations = [r for r in known if r in present] + sorted(present.difference(known))
        rel_index = {r: i for i, r in enumerate(relations)}
        sources = sorted({e[3] for e in edges if e[3] is not None})
        source_index = {s: i for i, s in enumerate(sources)}
        n = len(edges)
        return GraphSnapshot(
            domain=domain, ids=ids, names=names, relations=relations,
            head=np.fromiter((index[e[0]] for e in edges), dtype=np.int32, count=n),
            rel=np.fromiter((rel_index[e[1]] for e in edges), dtype=np.int32, count=n),
            tail=np.fromiter((index[e[2]] for e in edges), dtype=np.int32, count=n),
            sources=sources,
            source=np.fromiter((source_index.get(e[3], -1) if e[3] is not None else -1 for e in edges),
                               dtype=np.int32, count=n),
            line=np.fromiter((e[4] or 0 for e in edges), dtype=np.int32, count=n))

    def to_networkx(self, subgraph: Subgraph) -> nx.MultiDiGraph:
        return subgraph_to_networkx(subgraph)

    def close(self) -> None:
        """Abort open writers and close the driver."""
        for writer in list(self._writers.values()):
            writer.abort()
        self._snapshots.clear()
        self._driver.close()
