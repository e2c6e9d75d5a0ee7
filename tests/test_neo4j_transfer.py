"""Export / import between backends: local → Neo4j → local gives back exactly the same knowledge base."""

from __future__ import annotations

import json
import logging

import pytest

import kgllm
from kgllm.exceptions import ConfigError, LoadError
from kgllm.loaders import read_triples
from kgllm.stores.local import LocalGraphStore
from kgllm.stores.neo4j import Neo4jGraphStore
from kgllm.transfer import export_kb, export_store, import_kb, import_store, read_export_manifest
from kgllm.types import Chunk

pytestmark = pytest.mark.neo4j

NAMES = {"Kismet": "Kismet (1944 film)", "William Dieterle": "Wilhelm Dieterle", "1944": "1944"}


@pytest.fixture
def sample(fixtures_dir):
    return fixtures_dir / "neo4j" / "metaqa_kb_sample.txt"


@pytest.fixture
def neo4j_store(neo4j_server):
    store = Neo4jGraphStore(**neo4j_server.connection())
    for domain in store.domains():
        store.delete_domain(domain)
    yield store
    store.close()


def _content(store) -> dict[str, set[tuple]]:
    return {d: {(f.head, f.relation, f.tail, f.head_name, f.tail_name, f.source, f.line) for f in store.iter_triples(d)}
            for d in store.domains()}


def test_store_round_trip_local_neo4j_local(tmp_path, sample, neo4j_store):
    local = LocalGraphStore(tmp_path / "a")
    with local.writer("movies") as writer:
        writer.add(read_triples(sample, "pipe"))
        writer.set_names(NAMES)
    local.add_triples("tiny", [("x", "back`tick $r", "y")])
    original = _content(local)
    assert len(original["movies"]) == 400

    exported = export_store(local, tmp_path / "export1")
    assert exported["domains"]["movies"]["triples"] == 400
    assert import_store(neo4j_store, tmp_path / "export1") == {"movies": 400, "tiny": 1}
    assert _content(neo4j_store) == original
    assert neo4j_store.count() == local.count()

    export_store(neo4j_store, tmp_path / "export2")
    back = LocalGraphStore(tmp_path / "b")
    import_store(back, tmp_path / "export2")
    assert _content(back) == original
    for domain in ("movies", "tiny"):
        assert back.relations(domain) == local.relations(domain)
        snap_a, snap_b = local.snapshot(domain), back.snapshot(domain)
        assert sorted(zip(snap_a.ids, snap_a.names, strict=True)) == sorted(zip(snap_b.ids, snap_b.names, strict=True))


def test_relation_numbering_survives_a_round_trip_through_neo4j(tmp_path, sample, neo4j_store):
    # A trained path scorer checks the relation numbering (first-seen order); Neo4j exports its
    # triples by node key, so without care the numbering changed on the way back.
    local = LocalGraphStore(tmp_path / "a")
    local.add_triples("movies", read_triples(sample, "pipe"))
    order = local.snapshot("movies").relations
    assert order != sorted(order)
    export_store(local, tmp_path / "export1")
    import_store(neo4j_store, tmp_path / "export1")
    assert neo4j_store.snapshot("movies").relations == order
    manifest = export_store(neo4j_store, tmp_path / "export2")
    assert manifest["domains"]["movies"]["relation_order"] == order
    back = LocalGraphStore(tmp_path / "b")
    assert import_store(back, tmp_path / "export2") == {"movies": 400}
    assert back.snapshot("movies").relations == order
    assert _content(back) == _content(local)


def test_kb_round_trip_keeps_metadata_and_chunks(tmp_path, sample, neo4j_server, neo4j_store):
    chunks = [Chunk(id="doc-1", domain="movies", text="Kismet is a 1944 film by William Dieterle.", source="notes.md"),
              Chunk(id="doc-2", domain="movies", text="Marlene Dietrich starred in it.", source="notes.md", chunk=1)]
    with kgllm.open(tmp_path / "kb1") as kb1:
        kb1.load_triples("movies", sample, format="pipe", description="Films and people.",
                         relation_text={"directed_by": "was directed by"})
        kb1.add_chunks("movies", chunks)
        manifest = export_kb(kb1, tmp_path / "out1")
        original = _content(kb1.store)
    assert manifest["domains"]["movies"]["info"]["description"] == "Films and people."
    assert manifest["domains"]["movies"]["chunks"] == 2

    conn = neo4j_server.connection()
    with kgllm.open(tmp_path / "kb2", store="neo4j", neo4j_uri=conn["uri"], user=conn["user"],
                    password=conn["password"], database=conn["database"]) as kb2:
        report = import_kb(kb2, tmp_path / "out1")
        assert report == {"movies": {"triples_added": 400, "chunks_added": 2}}
        assert _content(kb2.store) == original
        assert [c.text for c in kb2.chunks("movies")] == [c.text for c in chunks]
        assert kb2.domain_info("movies")["relation_text"] == {"directed_by": "was directed by"}
        assert kb2.relation_text("movies")["directed_by"] == "was directed by"
        export_kb(kb2, tmp_path / "out2")

    with kgllm.open(tmp_path / "kb3") as kb3:
        import_kb(kb3, tmp_path / "out2")
        assert _content(kb3.store) == original
        assert [c.model_dump() for c in kb3.chunks("movies")] == [c.model_dump() for c in chunks]
        assert kb3.domain_info("movies")["description"] == "Films and people."


def test_import_refuses_clashes_unless_replacing(tmp_path, neo4j_store):
    local = LocalGraphStore(tmp_path / "a")
    local.add_triples("d", [("a", "r", "b")])
    export_store(local, tmp_path / "out")
    import_store(neo4j_store, tmp_path / "out")
    with pytest.raises(ConfigError, match="exist in the target already"):
        import_store(neo4j_store, tmp_path / "out")
    neo4j_store.add_triples("d", [("extra", "r", "b")])
    assert import_store(neo4j_store, tmp_path / "out", replace=True) == {"d": 1}
    assert {(f.head, f.tail) for f in neo4j_store.iter_triples("d")} == {("a", "b")}
    with pytest.raises(ConfigError, match="unknown domain"):
        import_store(neo4j_store, tmp_path / "out", domains=["nope"])


def test_corrupt_exports_are_load_errors(tmp_path, neo4j_store):
    local = LocalGraphStore(tmp_path / "a")
    local.add_triples("d", [("a", "r", "b"), ("b", "r", "c")])
    export_store(local, tmp_path / "out")
    triples = tmp_path / "out" / "domains" / "0000" / "triples.jsonl"
    triples.write_text(triples.read_text().replace('"b"', '"B"', 1))
    with pytest.raises(LoadError, match="sha256"):
        import_store(neo4j_store, tmp_path / "out")

    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    del manifest["domains"]["d"]["sha256"]
    (tmp_path / "out" / "manifest.json").write_text(json.dumps(manifest))
    triples.write_text('{"head": "a", "relation": "r", "tail": "b"}\n{"head": "b", "relation": "r"\n')
    with pytest.raises(LoadError, match=r"triples\.jsonl line 2"):
        import_store(neo4j_store, tmp_path / "out")
    assert neo4j_store.domains() == []  # the failed import left nothing behind

    (tmp_path / "out" / "manifest.json").write_text('{"format": "something-else"}')
    with pytest.raises(LoadError, match="not a kgllm export"):
        read_export_manifest(tmp_path / "out")
    with pytest.raises(ConfigError, match="not empty"):
        export_store(local, tmp_path / "out")


def test_a_kb_sees_what_another_client_loaded_into_neo4j(tmp_path, neo4j_server, neo4j_store):
    conn = neo4j_server.connection()
    options = {"store": "neo4j", "neo4j_uri": conn["uri"], "user": conn["user"], "password": conn["password"],
               "database": conn["database"]}
    first, second = tmp_path / "first.tsv", tmp_path / "second.tsv"
    first.write_text("paris\tcapital_of\tfrance\nberlin\tcapital_of\tgermany\n", encoding="utf-8")
    second.write_text("rome\tcapital_of\titaly\n", encoding="utf-8")
    question = "Which country is [rome] the capital of?"
    with kgllm.open(tmp_path / "kb", **options) as one:
        one.load_triples("caps", first, format="tsv", description="capital cities of countries")
        assert [a.name for a in one.ask("Which country is [paris] the capital of?", domain="caps").answers] == ["france"]
        assert "italy" not in {a.name for a in one.ask(question, domain="caps").answers}  # rome is not there yet
        with kgllm.open(tmp_path / "kb", **options) as other:  # another client of the same database
            other.load_triples("caps", second, format="tsv")
        assert [a.name for a in one.ask(question, domain="caps").answers] == ["italy"]


def test_a_kb_deletes_a_domain_another_client_wiped_from_neo4j(tmp_path, neo4j_server, neo4j_store, caplog):
    conn = neo4j_server.connection()
    options = {"store": "neo4j", "neo4j_uri": conn["uri"], "user": conn["user"], "password": conn["password"],
               "database": conn["database"]}
    triples = tmp_path / "caps.tsv"
    triples.write_text("paris\tcapital_of\tfrance\n", encoding="utf-8")
    with kgllm.open(tmp_path / "kb", **options) as kb:
        kb.load_triples("caps", triples, format="tsv", description="capital cities of countries")
        kb.index("caps", "facts")
        neo4j_store.delete_domain("caps")  # another client of the database
        with caplog.at_level(logging.WARNING, logger="kgllm.kb"):
            kb.delete_domain("caps")  # used to raise DomainNotFound, the entry stuck in the manifest
        assert "'caps' has no graph in the neo4j store" in caplog.text
        assert kb.domains == [] and not (tmp_path / "kb" / "index" / "caps").exists()


def test_a_failed_replacing_import_leaves_the_neo4j_kb_as_it_was(tmp_path, neo4j_server, neo4j_store):
    conn = neo4j_server.connection()
    with kgllm.open(tmp_path / "kb", store="neo4j", neo4j_uri=conn["uri"], user=conn["user"],
                    password=conn["password"], database=conn["database"]) as kb:
        for name, text in (("a", "x\tr\ty\n"), ("b", "u\ts\tv\n"), ("a2", "x\tr\tz\n")):
            (tmp_path / f"{name}.tsv").write_text(text)
        kb.load_triples("a", tmp_path / "a.tsv", description="first a")
        kb.load_triples("b", tmp_path / "b.tsv", description="first b")
        kb.add_chunks("b", [Chunk(id="doc-1", domain="b", text="u is s of v.", source="notes.md")])
        export_kb(kb, tmp_path / "out")
        kb.load_triples("a", tmp_path / "a2.tsv")  # changed since the export
        before = (_content(kb.store), [c.text for c in kb.chunks("b")])
        manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
        del manifest["domains"]["b"]["sha256"]
        (tmp_path / "out" / "manifest.json").write_text(json.dumps(manifest))
        triples = tmp_path / "out" / manifest["domains"]["b"]["folder"] / "triples.jsonl"
        triples.write_text(triples.read_text() + '{"relation": "s", "tail": "v"}\n')
        with pytest.raises(LoadError, match="without 'head'"):
            import_kb(kb, tmp_path / "out", replace=True)
        assert (_content(kb.store), [c.text for c in kb.chunks("b")]) == before
        assert kb.domain_info("a")["description"] == "first a" and kb.domain_info("b")["description"] == "first b"
