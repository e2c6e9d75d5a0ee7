"""Neo4j-specific behaviour of the graph store beyond the shared protocol suite (tests/stores/).

Loads are many transactions tagged with a load id: a failed or abandoned load is removed again,
a committed one leaves no tags; a load from a process that died is rolled back on request.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from functools import partial

import pytest

from kgllm.exceptions import ConfigError, DomainNotFound, LoadError, StoreError
from kgllm.stores.base import RawTriple
from kgllm.stores.local import LocalGraphStore
from kgllm.stores.neo4j import Neo4jGraphStore

pytestmark = pytest.mark.neo4j


@pytest.fixture
def store(neo4j_server):
    with Neo4jGraphStore(**neo4j_server.connection()) as cleaner:  # default batches: quick on big leftovers
        cleaner.rollback_pending_loads()
        for domain in cleaner.domains():
            cleaner.delete_domain(domain)
    backend = Neo4jGraphStore(**neo4j_server.connection(), batch_size=7)
    yield backend
    backend.close()


def _tags(store: Neo4jGraphStore) -> dict[str, int]:
    return store._query("""
        CALL () { MATCH (n:Entity) WHERE n.load IS NOT NULL RETURN count(n) AS nodes }
        CALL () { MATCH ()-[r:REL]->() WHERE r.load IS NOT NULL RETURN count(r) AS rels }
        CALL () { MATCH (l:KgllmLoad) RETURN count(l) AS loads }
        RETURN nodes, rels, loads""")[0]


def _chain(n: int, prefix: str = "e") -> list[RawTriple]:
    return [RawTriple(f"{prefix}{i}", "next", f"{prefix}{i + 1}", "chain.tsv", i + 1) for i in range(n)]


def test_commit_leaves_no_load_tags(store):
    assert store.add_triples("d", _chain(50)) == 50
    assert _tags(store) == {"nodes": 0, "rels": 0, "loads": 0}
    assert store.count("d") == {"entities": 51, "triples": 50}


def test_load_failing_after_many_batches_is_undone(store):
    store.add_triples("d", _chain(20))
    before = store.count(), {(f.head, f.tail) for f in store.iter_triples("d")}

    def rows():
        yield from _chain(40)  # half old, half new, over several batch transactions
        yield RawTriple("x", "next", "y", "chain.tsv", 41)
        yield RawTriple("", "next", "z", "chain.tsv", 42)

    with pytest.raises(LoadError, match=r"chain\.tsv line 42"):
        store.add_triples("d", rows())
    assert (store.count(), {(f.head, f.tail) for f in store.iter_triples("d")}) == before
    assert _tags(store) == {"nodes": 0, "rels": 0, "loads": 0}
    assert store.entity("e30", "d") is None and store.entity("x", "d") is None


def test_ids_and_names_too_long_for_the_index_are_bad_input(store):
    # Neo4j's range indexes refuse values over ~8 kB; the load used to fail with a bare StoreError
    # ("Property value is too large to index") naming no file, line or value
    store.add_triples("d", _chain(3))
    before = store.count(), {(f.head, f.tail) for f in store.iter_triples("d")}
    long_id = "日" * 3000  # 9,000 bytes of UTF-8
    rows = [*_chain(10, prefix="n"), RawTriple("n1", "next", long_id, "long.tsv", 12)]
    with pytest.raises(LoadError, match=r"long\.tsv line 12: entity id too long for the Neo4j store .*'日日日"):
        store.add_triples("d", rows)
    with store.writer("d") as writer:
        writer.add(_chain(2))
        writer.set_names({"e1": "x" * 9000})
        with pytest.raises(LoadError, match=r"display name of entity 'e1' too long .*'xxx"):
            writer.commit()
    assert (store.count(), {(f.head, f.tail) for f in store.iter_triples("d")}) == before
    assert _tags(store) == {"nodes": 0, "rels": 0, "loads": 0}
    assert store.entity("n5", "d") is None and store.entity("e1", "d").name == "e1"
    store.add_triples("d", [RawTriple("e1", "next", "日" * 2600, "ok.tsv", 1)])  # 7,800 bytes: fits

def test_nodes_deleted_by_another_client_mid_load_fail_the_load(store, neo4j_server):
    store.add_triples("d", _chain(3))
    before = store.count("d")
    other = Neo4jGraphStore(**neo4j_server.connection())

    def rows():
        yield from _chain(10, prefix="x")  # batch_size 7: x3 is written (and cached) by the first batch
        other._write(lambda tx: tx.run("MATCH (n:Entity {key: $k}) DETACH DELETE n",
                                       k=store._key("d", "x3")).consume())
        yield RawTriple("x3", "next", "y", "chain.tsv", 11)

    try:
        # Whether the first batch's relationships were written before the delete or not, some triple
        # of this load lost an end: the load fails as a whole instead of dropping triples silently.
        with pytest.raises(StoreError, match="deleted by someone else"):
            store.add_triples("d", rows())
    finally:
        other.close()
    assert store.count("d") == before
    assert _tags(store) == {"nodes": 0, "rels": 0, "loads": 0}
    assert store.entity("x0", "d") is None and store.entity("y", "d") is None


def test_load_of_a_dead_process_is_rolled_back(store, neo4j_server):
    store.add_triples("d", _chain(5))
    script = textwrap.dedent(f"""
        import os
        from kgllm.stores.base import RawTriple
        from kgllm.stores.neo4j import Neo4jGraphStore
        store = Neo4jGraphStore(**{neo4j_server.connection()!r}, batch_size=10)
        writer = store.writer("d")
        writer.add([RawTriple(f"e{{i}}", "next", f"e{{i + 1}}") for i in range(100)])
        os._exit(3)  # dies mid-load: no commit, no abort
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 3, done.stderr
    pending = store.pending_loads()
    assert [row["domain"] for row in pending] == ["d"]
    assert store.rollback_pending_loads() == 1
    assert store.pending_loads() == []
    assert store.count("d") == {"entities": 6, "triples": 5}
    assert _tags(store) == {"nodes": 0, "rels": 0, "loads": 0}


def test_duplicates_within_and_across_batches_and_loads(store):
    rows = [RawTriple(f"n{i % 5}", "r", f"n{(i + 1) % 5}") for i in range(60)]
    assert store.add_triples("d", rows) == 5
    assert store.add_triples("d", rows + [RawTriple("n0", "r", "n9")]) == 1
    assert store.count("d") == {"entities": 6, "triples": 6}


def test_domains_share_ids_without_sharing_nodes(store):
    store.add_triples("a", [RawTriple("x", "r", "y")])
    store.add_triples("b", [RawTriple("x", "s", "y")])
    assert [f.relation for f in store.neighbors(["x"], domain="a")] == ["r"]
    assert [f.relation for f in store.neighbors(["x"], domain="b")] == ["s"]
    store.delete_domain("a")
    assert store.count() == {"entities": 2, "triples": 1}


def test_deleting_a_large_domain_is_batched(store):
    store.add_triples("big", _chain(300))  # batch_size 7: many delete transactions
    store.add_triples("small", _chain(3))
    store.delete_domain("big")
    assert store.domains() == ["small"]
    assert store._query("MATCH (n:Entity {domain: 'big'}) RETURN count(n) AS n")[0]["n"] == 0


def test_a_delete_cut_short_leaves_nothing_readable(store, neo4j_server):
    # The domain node used to go first and its data after, in batches: a delete cut short left its nodes
    # and facts readable by id (entity, neighbors, k_hop) although the domain was gone.
    store.add_triples("big", _chain(300))
    store.add_triples("small", _chain(3))

    def one_batch_then_die(query, **params):
        store._write(lambda tx: tx.run(query, params, batch=store.batch_size).consume())
        raise KeyboardInterrupt("cut short")

    store._drain = one_batch_then_die
    with pytest.raises(KeyboardInterrupt):
        store.delete_domain("big")
    del store._drain
    leftovers = store._query("MATCH (n:Entity {domain: 'big'}) RETURN count(n) AS nodes, "
                             "sum(COUNT { (n)-[:REL]->() }) AS rels")[0]
    assert leftovers == {"nodes": 301, "rels": 300 - store.batch_size}  # cut after its first batch
    other = Neo4jGraphStore(**neo4j_server.connection())  # another client sees the same
    try:
        for reader in (store, other):
            assert reader.domains() == ["small"]
            assert reader.count() == {"entities": 4, "triples": 3}
            assert [e.domain for e in reader.find_entities("e2")] == ["small"]
            for read in (partial(reader.entity, "e250", "big"), partial(reader.neighbors, ["e250"], domain="big"),
                         partial(reader.k_hop, ["e250"], 1, domain="big"), partial(reader.snapshot, "big")):
                with pytest.raises(DomainNotFound):
                    read()
        assert other.add_triples("big", _chain(2)) == 2  # a new load of that name finishes the delete first
        assert other.count("big") == {"entities": 3, "triples": 2}
    finally:
        other.close()
    store.delete_domain("big")
    assert store._query("MATCH (n:Entity {domain: 'big'}) RETURN count(n) AS n")[0]["n"] == 0
    assert store.domains() == ["small"]


def test_a_cut_delete_is_finished_by_deleting_again(store):
    store.add_triples("big", _chain(30))
    real_drain = store._drain

    def die(query, **params):
        raise KeyboardInterrupt("cut short")

    store._drain = die
    with pytest.raises(KeyboardInterrupt):
        store.delete_domain("big")
    store._drain = real_drain
    assert store.domains() == []
    store.delete_domain("big")
    assert store._query("MATCH (n:Entity) RETURN count(n) AS n")[0]["n"] == 0
    with pytest.raises(DomainNotFound):
        store.delete_domain("big")


def test_a_failed_load_renames_nothing(store, neo4j_server):
    # Display names of existing nodes used to be set in transactions of their own before the commit
    # point: a commit failing after them left the entity renamed (and the load's triples removed).
    store.add_triples("d", _chain(3))
    writer = store.writer("d")
    writer.add([RawTriple("e1", "next", "x")])
    writer.set_names({"e1": "Renamed", "x": "Ex"})
    other = Neo4jGraphStore(**neo4j_server.connection())
    try:
        assert other.rollback_pending_loads() == 1  # the load fails at its commit
    finally:
        other.close()
    with pytest.raises(StoreError, match="lost its lock|rolled back by someone else"):
        writer.commit()
    assert store.entity("e1", "d").name == "e1"
    assert store.find_entities("Renamed") == [] and store.entity("x", "d") is None
    assert _tags(store) == {"nodes": 0, "rels": 0, "loads": 0}
    with store.writer("d") as renaming:  # a commit that only renames, in one transaction
        renaming.set_names({"e1": "Renamed", "e9": "nobody"})
    assert store.entity("e1", "d").name == "Renamed" and store.entity("e9", "d") is None


def test_bad_domain_names_are_rejected(store):
    for bad in ("", "a\u001fb"):
        with pytest.raises(ConfigError, match="domain name"):
            store.writer(bad)


def test_snapshot_carries_provenance(store):
    store.add_triples("d", _chain(4))
    snap = store.snapshot("d")
    assert snap.num_edges == 4 and snap.sources == ["chain.tsv"]
    facts = {(f.head, f.tail): (f.source, f.line) for f in map(snap.fact, range(4))}
    assert facts[("e2", "e3")] == ("chain.tsv", 3)


def test_snapshot_numbers_relations_as_the_local_store_does(store, tmp_path):
    # A trained path scorer refers to relations by number and refuses another numbering: first-seen
    # order, as in the local store, over several batches and loads (not sorted).
    loads = [[RawTriple(f"f{i}", rel, f"p{i}") for i, rel in enumerate(
                ["starred_actors"] * 9 + ["directed_by", "has_genre", "starred_actors", "`odd` \"rel\""])],
             [RawTriple("f0", "written_by", "p9"), RawTriple("f1", "directed_by", "p1"), RawTriple("f2", "aardvark", "x")]]
    local = LocalGraphStore(tmp_path / "local")
    for triples in loads:
        store.add_triples("d", triples)
        local.add_triples("d", triples)
    expected = ["starred_actors", "directed_by", "has_genre", "`odd` \"rel\"", "written_by", "aardvark"]
    assert local.snapshot("d").relations == expected
    assert store.snapshot("d").relations == expected
    assert store.relations("d") == sorted(expected)


def test_snapshot_is_cached_until_the_domain_changes_anywhere(store, neo4j_server):
    store.add_triples("d", _chain(3))
    first = store.snapshot("d")
    assert store.snapshot("d") is first
    other = Neo4jGraphStore(**neo4j_server.connection())  # another client of the same database
    try:
        other.add_triples("d", [RawTriple("e3", "next", "e9")])
        grown = store.snapshot("d")
        assert grown is not first and grown.num_edges == 4
        with other.writer("d") as writer:
            writer.set_names({"e9": "Nine"})
        renamed = store.snapshot("d")
        assert renamed is not grown and renamed.names[renamed.node("e9")] == "Nine"
        writer = other.writer("d")
        writer.add([RawTriple("e9", "next", "e10")])
        assert store.snapshot("d") is renamed  # a load in flight does not change the committed snapshot
        writer.abort()
        after = store.snapshot("d")  # the rollback bumps the generation: read again, same content
        assert after is not renamed and after.num_edges == 4
        other.delete_domain("d")
        other.add_triples("d", _chain(1))
        assert store.snapshot("d").num_edges == 1
    finally:
        other.close()


def test_a_snapshot_read_while_another_client_commits_is_consistent(neo4j_server):
    # A snapshot is read page by page; a commit between two pages used to leave edges whose end was
    # on a page already read (KeyError), or a snapshot cached as current that mixed two versions.
    store = Neo4jGraphStore(**neo4j_server.connection())
    other = Neo4jGraphStore(**neo4j_server.connection())
    try:
        for domain in store.domains():
            store.delete_domain(domain)
        store.add_triples("d", [("a", "r", "b"), ("c", "r", "d")])
        real_pages = store._pages
        commits = []

        def pages_with_a_commit_between(domain, page=2000):
            for rows in real_pages(domain, page=2):
                yield rows
                if not commits:  # another client commits after the first page ("a", "b") was read
                    commits.append(other.add_triples("d", [("zz", "r", "aa")]))

        store._pages = pages_with_a_commit_between
        snap = store.snapshot("d")
        assert commits == [1]
        edges = {(snap.ids[h], snap.relations[r], snap.ids[t]) for h, r, t in zip(snap.head, snap.rel, snap.tail,
                                                                                  strict=True)}
        assert edges == {("a", "r", "b"), ("c", "r", "d"), ("zz", "r", "aa")}
        assert sorted(snap.ids) == ["a", "aa", "b", "c", "d", "zz"]
        assert store.snapshot("d") is snap  # cached: nothing changed since
    finally:
        other.close()
        store.close()
