"""Several clients writing one Neo4j database: a load or delete holds its domain's lock in Neo4j itself.

Without it, a load merging nodes that another client's pending load created lost its triples when that
load was rolled back. A second load into a domain waits for the first (or fails after ``lock_wait``
naming the domain), loads into other domains do not wait, and the lock of a dead client expires.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import pytest

from kgllm.exceptions import StoreError
from kgllm.stores.base import RawTriple
from kgllm.stores.neo4j import Neo4jGraphStore

pytestmark = pytest.mark.neo4j


@pytest.fixture
def store(neo4j_server):
    with Neo4jGraphStore(**neo4j_server.connection()) as cleaner:
        cleaner.rollback_pending_loads()  # also frees the locks a failed test left
        for domain in cleaner.domains():
            cleaner.delete_domain(domain)
    backend = Neo4jGraphStore(**neo4j_server.connection(), batch_size=7)
    yield backend
    backend.close()


@pytest.fixture
def other(neo4j_server):
    """Another client of the same database."""
    backend = Neo4jGraphStore(**neo4j_server.connection(), batch_size=7)
    yield backend
    backend.close()


def _chain(n: int, prefix: str = "e") -> list[RawTriple]:
    return [RawTriple(f"{prefix}{i}", "next", f"{prefix}{i + 1}", "chain.tsv", i + 1) for i in range(n)]


def _facts(store: Neo4jGraphStore, domain: str = "d") -> set[tuple[str, str, str]]:
    return {(f.head, f.relation, f.tail) for f in store.iter_triples(domain)}


def _clean(store: Neo4jGraphStore) -> bool:
    """No load pending, no load tag left, no lock held."""
    rows = store._query("""
        CALL () { MATCH (n:Entity) WHERE n.load IS NOT NULL RETURN count(n) AS nodes }
        CALL () { MATCH ()-[r:REL]->() WHERE r.load IS NOT NULL RETURN count(r) AS rels }
        CALL () { MATCH (l:KgllmLoad) RETURN count(l) AS loads }
        CALL () { MATCH (l:KgllmLock) WHERE l.owner IS NOT NULL RETURN count(l) AS locks }
        RETURN nodes + rels + loads + locks AS n""")
    return rows[0]["n"] == 0


def _in_thread(work) -> tuple[threading.Thread, dict]:
    result: dict = {}

    def run() -> None:
        try:
            result["value"] = work()
        except Exception as exc:  # noqa: BLE001 - handed to the test
            result["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def test_a_second_load_into_a_domain_waits_for_the_first(store, other):
    # The second load merges x1 and x2, created by the first load: it used to commit at once, and the
    # first load's rollback then deleted x1 and x2 with the second load's committed triples.
    store.add_triples("d", _chain(2))
    first = store.writer("d")
    first.add([RawTriple("e2", "next", "x1"), RawTriple("x1", "next", "x2")])
    thread, result = _in_thread(lambda: other.add_triples("d", [RawTriple("x1", "next", "x3"),
                                                                RawTriple("x2", "r", "x1")]))
    time.sleep(1.5)
    assert thread.is_alive()  # waiting for the first load's lock
    first.abort()
    thread.join(60)
    assert result == {"value": 2}
    assert _facts(store) == {("e0", "next", "e1"), ("e1", "next", "e2"), ("x1", "next", "x3"), ("x2", "r", "x1")}
    assert _clean(store)


def test_a_load_waiting_too_long_fails_naming_the_domain_and_loses_nothing(store, neo4j_server):
    store.add_triples("d", _chain(2))
    first = store.writer("d")
    first.add(_chain(20, prefix="x"))
    impatient = Neo4jGraphStore(**neo4j_server.connection(), lock_wait=0.5)
    try:
        started = time.monotonic()
        with pytest.raises(StoreError, match=r"domain 'd' is locked by load \w+ of pid \d+ on .*waited 0.5 s"
                                             r".*store.unlock_domain\('d'\)"):
            impatient.add_triples("d", [RawTriple("e1", "next", "y")])
        assert time.monotonic() - started < 10
        with pytest.raises(StoreError, match=r"domain 'd' is locked by load"):
            impatient.delete_domain("d")  # a delete waits for the load too
        first.commit()
        assert _facts(impatient) == {(h, r, t) for h, r, t, _, _ in _chain(2) + _chain(20, prefix="x")}
        assert impatient.add_triples("d", [RawTriple("e1", "next", "y")]) == 1  # free again
    finally:
        impatient.close()
    assert _clean(store)


def test_loads_into_other_domains_do_not_wait(store, neo4j_server):
    first = store.writer("a")
    first.add(_chain(5))
    impatient = Neo4jGraphStore(**neo4j_server.connection(), lock_wait=0)
    try:
        assert impatient.add_triples("b", _chain(5)) == 5
        impatient.delete_domain("b")
    finally:
        impatient.close()
    first.commit()
    assert store.domains() == ["a"] and _clean(store)


def test_two_clients_loading_one_domain_keep_every_committed_triple(store, other):
    # Each client's failing loads create nodes the other client's loads use, and are rolled back while
    # the other loads: every triple of every committed load must survive.
    errors: list[BaseException] = []

    def client(backend: Neo4jGraphStore, name: str) -> None:
        try:
            for round_ in range(3):
                try:
                    with backend.writer("d") as writer:
                        writer.add([RawTriple(f"s{i}", "both", f"s{i + 1}") for i in range(25)])
                        time.sleep(0.2)
                        raise LookupError("bad input")
                except LookupError:
                    pass
                backend.add_triples("d", [RawTriple(f"s{i}", name, f"s{i + 1}") for i in range(5 * round_, 25)])
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(backend, name)) for backend, name in ((store, "a"), (other, "b"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    assert errors == []
    assert _facts(store) == {(f"s{i}", name, f"s{i + 1}") for name in "ab" for i in range(25)}
    assert store.count("d") == {"entities": 26, "triples": 50}
    assert _clean(store)


_DEAD_LOAD = """
    import os
    from kgllm.stores.base import RawTriple
    from kgllm.stores.neo4j import Neo4jGraphStore
    store = Neo4jGraphStore(**{connection!r}, batch_size=10, lock_lease={lease})
    writer = store.writer("d")
    writer.add([RawTriple(f"e{{i}}", "next", f"e{{i + 1}}") for i in range(100)])
    os._exit(3)  # dies mid-load holding the lock: no commit, no abort
"""


def _die_loading(neo4j_server, lease: float) -> None:
    script = textwrap.dedent(_DEAD_LOAD.format(connection=neo4j_server.connection(), lease=lease))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 3, done.stderr


def test_the_lock_of_a_dead_client_expires_and_its_load_is_rolled_back(store, neo4j_server):
    store.add_triples("d", _chain(5))
    _die_loading(neo4j_server, lease=1)
    assert [row["domain"] for row in store.pending_loads()] == ["d"]
    started = time.monotonic()
    assert store.add_triples("d", [RawTriple("e5", "next", "z")]) == 1  # once the lease expired
    assert time.monotonic() - started < 30
    assert store.pending_loads() == []  # the dead load was rolled back by this one
    assert store.count("d") == {"entities": 7, "triples": 6}
    assert _clean(store)


def test_unlock_domain_frees_the_lock_of_a_dead_client_at_once(store, neo4j_server):
    store.add_triples("d", _chain(5))
    _die_loading(neo4j_server, lease=600)
    impatient = Neo4jGraphStore(**neo4j_server.connection(), lock_wait=0.2)
    try:
        with pytest.raises(StoreError, match=r"domain 'd' is locked by load .*lease expires in \d+ s"):
            impatient.add_triples("d", [RawTriple("e5", "next", "z")])
        assert len(impatient.pending_loads()) == 1  # left as it was
        assert impatient.unlock_domain("d") is True
        assert impatient.unlock_domain("d") is False
        assert impatient.add_triples("d", [RawTriple("e5", "next", "z")]) == 1
    finally:
        impatient.close()
    assert store.pending_loads() == []
    assert store.count("d") == {"entities": 7, "triples": 6}
    assert _clean(store)


def test_a_load_that_lost_its_lock_fails_and_is_undone(store, other):
    store.add_triples("d", _chain(3))
    writer = store.writer("d")
    writer.add(_chain(10, prefix="x"))
    assert other.unlock_domain("d") is True  # as if its lease had expired
    with pytest.raises(StoreError, match=r"load \w+ lost its lock on domain 'd'"):
        writer.add(_chain(10, prefix="y"))
    assert _facts(other) == {(h, r, t) for h, r, t, _, _ in _chain(3)}
    assert _clean(other)
    store.lock_wait = 0
    with other.writer("d") as second:  # the lock is the other client's now
        second.add(_chain(3, prefix="x"))
        with pytest.raises(StoreError, match="locked by load"):
            store.add_triples("d", _chain(1, prefix="w"))
    assert store.count("d") == {"entities": 8, "triples": 6}
    assert _clean(store)
