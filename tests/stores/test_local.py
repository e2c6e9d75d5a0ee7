"""Behaviour of the embedded local store beyond the shared protocol: disk format, durability,
transactions, orphan cleanup, several handles on one directory, and loads of realistic size."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kgllm.exceptions import ConfigError, KBNotFound, LoadError, StoreError
from kgllm.stores import STORES, open_store
from kgllm.stores._local_state import triple_keys
from kgllm.stores.base import RawTriple
from kgllm.stores.local import LocalGraphStore

SAMPLE = "metaqa_kb_head300.txt"  # the first 300 lines of MetaQA's kb.txt


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes (the advisory lock file aside)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
            and p.name != ".lock"}


def facts(store: LocalGraphStore, domain: str) -> list[tuple]:
    return [(f.head, f.relation, f.tail, f.head_name, f.tail_name, f.source, f.line)
            for f in store.iter_triples(domain)]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "graph"


@pytest.fixture
def sample(fixtures_dir: Path) -> Path:
    return fixtures_dir / "stores" / SAMPLE


def test_reopen_gives_the_same_content(path, sample):
    from kgllm.loaders import read_triples

    with LocalGraphStore(path) as store:
        assert store.add_triples("movies", read_triples(sample, "pipe")) == 300
        with store.writer("movies") as writer:
            writer.add([RawTriple("Kismet", "remake_of", "Kismet 1920", "extra.tsv", 7)])
            writer.set_names({"Kismet 1920": "Kismet (1920 film)"})
        store.add_triples("other", [RawTriple("a", "it's `odd`", "b")])
        before = {d: facts(store, d) for d in store.domains()}
        counts, relations = store.count(), store.relations("movies")
        snap = store.snapshot("movies")
    with LocalGraphStore(path, create=False) as store:
        assert {d: facts(store, d) for d in store.domains()} == before
        assert store.count() == counts and store.relations("movies") == relations
        assert store.entity("Kismet 1920", "movies").name == "Kismet (1920 film)"
        again = store.snapshot("movies")
        assert again.ids == snap.ids and again.names == snap.names
        for key in ("head", "rel", "tail", "source", "line", "out_ptr", "in_order"):
            assert np.array_equal(getattr(again, key), getattr(snap, key)), key
        (fact,) = store.neighbors(["Kismet"], domain="movies", relations=["directed_by"])
        assert (fact.tail, fact.source, fact.line) == ("William Dieterle", SAMPLE, 1)


def test_appending_adds_a_segment_and_leaves_existing_files_alone(path):
    store = LocalGraphStore(path)
    store.add_triples("d", [RawTriple("a", "r", "b"), RawTriple("b", "r", "c")])
    first = tree(path)
    store.add_triples("d", [RawTriple("a", "r", "b"), RawTriple("c", "r", "d")])
    second = tree(path)
    assert {k: v for k, v in second.items() if k in first and k != "manifest.json"} == {
        k: v for k, v in first.items() if k != "manifest.json"}
    new_files = set(second) - set(first)
    assert len({Path(name).parent for name in new_files}) == 1  # exactly one new segment directory
    tail = np.load(path / next(n for n in new_files if n.endswith("tail.npy")))
    assert tail.tolist() == [3]  # only the new triple (c, r, d), as node index of the new entity d
    store.close()


@pytest.mark.parametrize("kind", ["file", "foreign_dir", "foreign_manifest", "missing"])
def test_a_path_that_is_not_a_store(tmp_path, kind):
    target = tmp_path / "target"
    if kind == "file":
        target.write_text("hello")
    elif kind == "foreign_dir":
        target.mkdir()
        (target / "notes.txt").write_text("not a store")
    elif kind == "foreign_manifest":
        target.mkdir()
        (target / "manifest.json").write_text('{"name": "a pack"}')
    with pytest.raises(KBNotFound, match="target"):
        LocalGraphStore(target, create=False)
    if kind != "missing":
        with pytest.raises(KBNotFound):
            LocalGraphStore(target)
        assert not (target.is_dir() and (target / "domains").exists())  # nothing written into it


def test_an_empty_directory_becomes_a_store(tmp_path):
    tmp_path.joinpath("empty").mkdir()
    with LocalGraphStore(tmp_path / "empty") as store:
        assert store.domains() == [] and store.count() == {"entities": 0, "triples": 0}
    assert LocalGraphStore(tmp_path / "empty", create=False).domains() == []


def test_failed_load_leaves_disk_and_memory_unchanged(path, sample):
    from kgllm.loaders import read_triples

    store = LocalGraphStore(path)
    store.add_triples("movies", read_triples(sample, "pipe"))
    disk, content, count = tree(path), facts(store, "movies"), store.count()
    bad = path.parent / "bad.txt"
    bad.write_text("New Film|directed_by|Someone\nKismet|has_genre|Drama\nbroken line\n")
    with pytest.raises(LoadError, match=r"bad\.txt line 3"):
        store.add_triples("movies", read_triples(bad, "pipe"))
    with pytest.raises(LoadError):
        store.add_triples("new", read_triples(bad, "pipe"), batch_size=1)
    assert tree(path) == disk and facts(store, "movies") == content and store.count() == count
    assert store.find_entities("New Film") == [] and store.domains() == ["movies"]
    store.close()
    assert facts(LocalGraphStore(path), "movies") == content


def test_failure_at_the_commit_point_rolls_back(path, monkeypatch):
    store = LocalGraphStore(path)
    store.add_triples("d", [RawTriple("a", "r", "b")])
    disk = tree(path)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("kgllm.stores.local.os.replace", disk_full)
    with pytest.raises(OSError, match="No space"):
        store.add_triples("d", [RawTriple("b", "r", "c")])
    with pytest.raises(OSError):
        store.add_triples("e", [RawTriple("x", "r", "y")])
    assert tree(path) == disk  # staged segment and temp manifest removed
    assert store.count() == {"entities": 2, "triples": 1} and store.domains() == ["d"]
    monkeypatch.undo()
    assert store.add_triples("d", [RawTriple("b", "r", "c")]) == 1
    assert LocalGraphStore(path).count("d") == {"entities": 3, "triples": 2}


def test_orphans_of_an_interrupted_commit_are_removed_on_open(path):
    store = LocalGraphStore(path)
    store.add_triples("d", [RawTriple("a", "r", "b")])
    store.close()
    disk = tree(path)
    (domain_dir,) = (path / "domains").iterdir()
    orphan_segment = domain_dir / "seg-0123456789abcdef"
    orphan_segment.mkdir()
    np.save(orphan_segment / "head.npy", np.zeros(3, dtype=np.int32))
    orphan_domain = path / "domains" / "d-deadbeef0000"
    orphan_domain.mkdir()
    (orphan_domain / "x.npy").write_bytes(b"partial")
    (path / "manifest.json.tmp-abcd").write_text("{")
    reopened = LocalGraphStore(path)
    assert not orphan_segment.exists() and not orphan_domain.exists()
    assert not (path / "manifest.json.tmp-abcd").exists()
    assert tree(path) == disk
    assert reopened.count() == {"entities": 2, "triples": 1}


def test_writer_life_cycle(path):
    store = LocalGraphStore(path)
    writer = store.writer("d")
    with pytest.raises(StoreError, match="already open"):
        store.writer("d")
    other = store.writer("e")  # another domain may load at the same time
    writer.add([RawTriple("a", "r", "b")])
    other.add([RawTriple("x", "r", "y")])
    assert writer.commit() == 1 and other.commit() == 1
    with pytest.raises(StoreError, match="committed"):
        writer.add([RawTriple("b", "r", "c")])
    with pytest.raises(LoadError, match="non-empty strings"):
        store.add_triples("d", [RawTriple("a", "r", 5)])  # type: ignore[arg-type]
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.count()


def test_two_handles_on_one_directory(path):
    first, second = LocalGraphStore(path), LocalGraphStore(path)
    first.add_triples("d1", [RawTriple("a", "r", "b")])
    second.add_triples("d2", [RawTriple("x", "r", "y")])  # adopts d1 from disk when committing
    assert second.domains() == ["d1", "d2"]
    first.refresh()
    assert first.domains() == ["d1", "d2"] and first.count("d2") == {"entities": 2, "triples": 1}
    stale = second.writer("d1")
    stale.add([RawTriple("b", "r", "c")])
    first.add_triples("d1", [RawTriple("a", "s", "b")])
    with pytest.raises(StoreError, match="another process"):
        stale.commit()
    assert {(f.head, f.relation, f.tail) for f in LocalGraphStore(path).iter_triples("d1")} == {
        ("a", "r", "b"), ("a", "s", "b")}


@pytest.mark.parametrize("keys", ["int64", "records"])
def test_repeated_overlapping_appends_deduplicate(path, monkeypatch, keys):
    if keys == "records":  # the 12-byte record keys used for graphs too large for packed int64 keys
        monkeypatch.setattr("kgllm.stores._local_state._INT64_MAX", 0)
    rng = np.random.default_rng(0)
    store = LocalGraphStore(path)
    seen: set[tuple[str, str, str]] = set()
    for round_ in range(6):
        if round_ == 3:  # the dedup order is rebuilt from disk after a reopen
            store.close()
            store = LocalGraphStore(path)
        rows = [RawTriple(f"n{h}", f"r{r}", f"n{t}") for h, r, t in rng.integers(0, 40, size=(300, 3)) // (1, 8, 1)]
        new = {(t.head, t.relation, t.tail) for t in rows} - seen
        assert store.add_triples("d", rows, batch_size=64) == len(new)
        seen |= new
    assert {(f.head, f.relation, f.tail) for f in store.iter_triples("d")} == seen
    assert store.count("d")["triples"] == len(seen)


def test_compact_merges_segments_without_changing_content(path):
    store = LocalGraphStore(path)
    for i in range(4):
        with store.writer("d") as writer:
            writer.add([RawTriple(f"n{i}", f"r{i % 2}", f"n{i + 1}", f"part{i}.tsv", i + 1)])
            writer.set_names({f"n{i}": f"Node {i}"})
    store.add_triples("other", [RawTriple("x", "r", "y")])
    content, counts = facts(store, "d"), store.count()
    (domain_dir,) = [p for p in (path / "domains").iterdir() if len(list(p.iterdir())) == 4]
    store.compact("d")
    assert len(list(domain_dir.iterdir())) == 1
    assert facts(store, "d") == content and store.count() == counts
    assert store.add_triples("d", [RawTriple("n0", "r0", "n1"), RawTriple("n9", "r0", "n0")]) == 1
    store.close()
    reopened = LocalGraphStore(path)
    assert facts(reopened, "d")[:-1] == content and reopened.entity("n3", "d").name == "Node 3"
    assert reopened.count("other") == {"entities": 2, "triples": 1}


def test_triple_keys_fall_back_to_records_for_huge_graphs():
    rng = np.random.default_rng(1)
    head, rel, tail = (rng.integers(0, 50, size=500).astype(np.int32) for _ in range(3))
    small = triple_keys(head, rel, tail, 50, 50)
    huge = triple_keys(head, rel, tail, 2**31 - 1, 2**31 - 1)
    assert small.dtype == np.int64 and huge.dtype.kind == "V"
    assert np.array_equal(np.argsort(small, kind="stable"), np.argsort(huge, kind="stable"))
    assert np.array_equal(np.unique(small, return_index=True)[1], np.unique(huge, return_index=True)[1])


def test_200k_triple_load(path):
    rng = np.random.default_rng(7)
    n = 200_000
    heads, rels, tails = rng.integers(0, 20_000, n), rng.integers(0, 12, n), rng.integers(0, 20_000, n)
    repeat = rng.integers(0, n, 10_000)  # re-inject 10k rows so duplicates are certain
    heads, rels, tails = (np.concatenate([a, a[repeat]]) for a in (heads, rels, tails))
    rows = (RawTriple(f"e{h}", f"rel {r}", f"e{t}", "synthetic", i + 1)
            for i, (h, r, t) in enumerate(zip(heads.tolist(), rels.tolist(), tails.tolist(), strict=True)))
    unique = np.unique(np.stack([heads, rels, tails], axis=1), axis=0)
    store = LocalGraphStore(path)
    assert store.add_triples("big", rows) == unique.shape[0]
    entities = np.union1d(unique[:, 0], unique[:, 2])
    assert store.count("big") == {"entities": entities.shape[0], "triples": unique.shape[0]}
    snap = store.snapshot("big")
    out_degree = np.diff(snap.out_ptr)
    expected = dict(zip(*np.unique(unique[:, 0], return_counts=True), strict=True))
    probe = [int(h) for h in unique[::9973, 0]]
    assert [int(out_degree[snap.node(f"e{h}")]) for h in probe] == [int(expected[h]) for h in probe]
    store.close()
    assert LocalGraphStore(path).snapshot("big").num_edges == unique.shape[0]


@pytest.mark.slow
def test_full_metaqa_kb(tmp_path, shared_data):
    from kgllm.loaders import read_triples

    kb = shared_data / "metaqa" / "kb.txt"
    lines = {tuple(line.split("|")) for line in kb.read_text(encoding="utf-8").splitlines() if line.strip()}
    store = LocalGraphStore(tmp_path / "metaqa")
    assert store.add_triples("movies", read_triples(kb, "pipe")) == len(lines)
    assert store.count("movies")["triples"] == len(lines)
    assert len(store.relations("movies")) == 9
    assert {f.tail for f in store.neighbors(["Kismet"], domain="movies", relations=["directed_by"])} == {
        "William Dieterle"}


def test_backend_registry(path):
    import kgllm.stores

    assert set(STORES) == {"local", "neo4j"}
    assert all(hasattr(kgllm.stores, name) for name in kgllm.stores.__all__)
    store = open_store("local", path=path)
    assert isinstance(store, LocalGraphStore) and store.backend == "local"
    with pytest.raises(ConfigError, match="local, neo4j"):
        open_store("sqlite", path=path)


def test_load_throughput_bench_runs_small(tmp_path):
    out = tmp_path / "load.json"
    bench = Path(__file__).resolve().parents[2] / "bench" / "load_throughput.py"
    proc = subprocess.run([sys.executable, str(bench), "--sizes", "20000", "--no-metaqa", "--no-breakdown",
                           "--workdir", str(tmp_path), "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode in (0, 1), proc.stderr  # 1 only says a target was missed on this machine
    (case,) = json.loads(out.read_text())["cases"]
    assert case["name"] == "synthetic-20000" and 19_990 <= case["triples_stored"] <= 20_000
    assert case["edges"] == case["triples_stored"] and case["entities"] <= 4000
    assert case["load_peak_rss_mb"] > 0 and case["open_seconds"] > 0


@pytest.mark.parametrize("query", ["neighbors", "k_hop"])
def test_a_commit_while_a_query_runs_does_not_mix_two_versions(tmp_path, query):
    import threading

    store = LocalGraphStore(tmp_path / "g")
    store.add_triples("d", [RawTriple("a", "r", "b")])
    real_state = store._state
    committed = []

    def state_then_commit(domain):
        state = real_state(domain)
        if not committed:  # another thread commits right after the query's first look at the domain
            committed.append(True)
            writer = threading.Thread(target=store.add_triples, args=("d", [RawTriple("new", "r", "a")]))
            writer.start()
            writer.join()
        return state

    store._state = state_then_commit
    if query == "neighbors":  # used to raise IndexError: node indexes of the new version, arrays of the old
        facts = store.neighbors(["new", "a"], domain="d", direction="both")
        assert [(f.head, f.tail) for f in facts] == [("a", "b")]  # the version it started on
    else:
        sub = store.k_hop(["new", "a"], 1, domain="d")
        assert [n.id for n in sub.nodes] == ["a", "b"] and sub.seeds == ["a"]
    assert committed and store.count("d") == {"entities": 3, "triples": 2}
    assert {(f.head, f.tail) for f in store.neighbors(["new", "a"], domain="d", direction="both")} == {
        ("a", "b"), ("new", "a")}


def test_counting_and_finding_while_a_domain_is_deleted(tmp_path):
    import threading

    store = LocalGraphStore(tmp_path / "g")
    store.add_triples("a", [RawTriple("x", "r", "y")])
    store.add_triples("b", [RawTriple("u", "r", "v")])
    deleted = []

    class Manifest(dict):
        def __getitem__(self, key):
            value = super().__getitem__(key)
            if key == "domains" and not deleted:  # another thread deletes "b" as the count starts
                deleted.append(True)
                deleter = threading.Thread(target=store.delete_domain, args=("b",))
                deleter.start()
                deleter.join()
            return value

    store._manifest = Manifest(store._manifest)
    assert store.count() == {"entities": 4, "triples": 2}  # the version it started on; used to raise
    assert deleted and store.count() == {"entities": 2, "triples": 1}  # DomainNotFound for "b"
    assert store.domains() == ["a"]

    store.add_triples("b", [RawTriple("u", "r", "v")])
    store = LocalGraphStore(tmp_path / "g")  # nothing read yet: "b" is looked up after it is listed
    deleted.clear()
    store._manifest = Manifest(store._manifest)
    assert [e.id for e in store.find_entities("x")] == ["x"]  # "b" was listed, then deleted: skipped
    assert deleted and store.domains() == ["a"]
