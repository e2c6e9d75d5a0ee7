"""Starting and undoing loads and deleting domains of ``Neo4jGraphStore``, under the domain's lock.

A load starts once the domain's lock is taken (kgllm/stores/_neo4j_lock.py), by marking it pending
(``:KgllmLoad``); what dead clients left in the domain (their pending loads, the remains of a delete cut
short) is cleaned up first. A delete marks the domain as being deleted, then removes its data in batches.

Queries are constant strings: every value travels as a parameter.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import TYPE_CHECKING, Any

from kgllm.exceptions import DomainNotFound, KGLLMError, StoreError
from kgllm.stores._neo4j_lock import DomainLock
from kgllm.stores._neo4j_writer import BUMP_DOMAIN, DROP_QUERIES

if TYPE_CHECKING:
    from kgllm.stores.neo4j import Neo4jGraphStore

__all__ = ["begin_load", "rollback", "delete_domain"]

# A load starts at once into a live domain without pending loads (those of dead clients, under the lock).
_STARTABLE = ("OPTIONAL MATCH (d:KgllmDomain {name: $d}) "
              "RETURN d IS NOT NULL AND d.deleting IS NULL AND NOT EXISTS { MATCH (l:KgllmLoad {domain: $d}) } AS ok")
_START_LOAD = "CREATE (:KgllmLoad {id: $id, domain: $d, started: datetime()})"


def begin_load(store: Neo4jGraphStore, domain: str, load_id: str) -> DomainLock:
    """Take the domain's lock and mark a load as pending; returns the lock (freed at commit or abort).

    Under the lock, any other pending load of the domain is one whose process died or lost the lock: it is
    rolled back first; so are the remains of a deleted domain of that name (a delete cut short).
    """
    store._ensure_schema()

    def start(tx: Any) -> bool:  # in the transaction taking the lock, when nothing is left to clean up
        if not tx.run(_STARTABLE, d=domain).single()["ok"]:
            return False
        tx.run(_START_LOAD, id=load_id, d=domain).consume()
        return True

    lock = DomainLock(store, domain, load_id, "load")
    started = lock.acquire(then=start)
    try:
        if not started:
            for row in store._query("MATCH (l:KgllmLoad {domain: $d}) RETURN l.id AS id", d=domain):
                store._rollback(row["id"], domain)
            _purge(store, domain)
            store._write(lambda tx: tx.run(_START_LOAD, id=load_id, d=domain).consume())
    except BaseException:
        with contextlib.suppress(KGLLMError):
            lock.release()
        raise
    return lock


def _purge(store: Neo4jGraphStore, domain: str) -> None:
    """With the domain's lock held: delete its data if it is being deleted or has no domain node (what a
    delete cut short left), in batches, then its domain node and the marks of loads into it."""
    rows = store._query("OPTIONAL MATCH (d:KgllmDomain {name: $d}) RETURN d IS NULL OR d.deleting IS NOT NULL "
                        "AS gone", d=domain)
    if not rows[0]["gone"]:
        return
    store._drain("MATCH (n:Entity {domain: $d})-[r:REL]->() WITH r LIMIT $batch DELETE r RETURN count(*) AS n",
                 d=domain)
    store._drain("MATCH (n:Entity {domain: $d}) WITH n LIMIT $batch DETACH DELETE n RETURN count(*) AS n",
                 d=domain)

    def end(tx: Any) -> None:
        tx.run("MATCH (d:KgllmDomain {name: $d}) WHERE d.deleting IS NOT NULL DELETE d", d=domain).consume()
        tx.run("MATCH (l:KgllmLoad {domain: $d}) DELETE l", d=domain).consume()

    store._write(end)


def rollback(store: Neo4jGraphStore, load_id: str, domain: str) -> None:
    """Delete what the load ``load_id`` into ``domain`` created, then its pending mark."""
    for query in DROP_QUERIES:
        store._drain(query, load=load_id)

    def end(tx: Any) -> None:
        tx.run("MATCH (l:KgllmLoad {id: $id}) DELETE l", id=load_id).consume()
        tx.run(BUMP_DOMAIN, domain=domain).consume()  # a snapshot taken mid-load is stale now

    store._write(end)


def delete_domain(store: Neo4jGraphStore, domain: str) -> None:
    """Mark ``domain`` as being deleted, then delete its data, under its lock (``Neo4jGraphStore.delete_domain``)."""
    state = store._query("MATCH (d:KgllmDomain {name: $d}) RETURN d.deleting AS deleting", d=domain)
    if not state:
        raise DomainNotFound(domain, store.domains())
    if domain in store._writers:
        raise StoreError(f"cannot delete domain {domain!r} while a writer for it is open")
    store._ensure_schema()
    lock = DomainLock(store, domain, f"delete-{uuid.uuid4().hex}", "delete")
    lock.acquire()
    try:
        marked = store._write(lambda tx: tx.run(
            "MATCH (d:KgllmDomain {name: $d}) SET d.deleting = true, d.generation = coalesce(d.generation, 0) + 1 "
            "RETURN count(d) AS n", d=domain).single()["n"])
        if not marked:  # another client deleted it while this one waited for the lock
            raise DomainNotFound(domain, store.domains())
        store._snapshots.pop(domain, None)
        _purge(store, domain)
    finally:
        lock.release()
