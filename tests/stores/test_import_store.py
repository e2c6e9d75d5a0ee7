"""``import_store`` into each backend (the ``store`` fixture): a failed import leaves the store as it was."""

from __future__ import annotations

import json

import pytest

from kgllm.exceptions import LoadError
from kgllm.stores.local import LocalGraphStore
from kgllm.transfer import export_store, import_store


def _content(store) -> dict[str, set[tuple]]:
    return {d: {(f.head, f.relation, f.tail, f.head_name, f.tail_name, f.source, f.line) for f in store.iter_triples(d)}
            for d in store.domains()}


@pytest.mark.parametrize("damage", ["checksum", "bad line"])
def test_a_failed_replacing_import_loses_nothing(tmp_path, store, damage):
    source = LocalGraphStore(tmp_path / "source")
    source.add_triples("a", [("x", "r", "y")])
    source.add_triples("b", [("u", "s", "v")])
    export_store(source, tmp_path / "out")
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    triples = tmp_path / "out" / manifest["domains"]["b"]["folder"] / "triples.jsonl"
    if damage == "checksum":
        triples.write_text(triples.read_text().replace('"u"', '"U"'))
    else:
        del manifest["domains"]["b"]["sha256"]
        (tmp_path / "out" / "manifest.json").write_text(json.dumps(manifest))
        triples.write_text(triples.read_text() + '{"relation": "s", "tail": "v"}\n')

    with store.writer("a") as writer:  # "a" is replaced, and imported before "b" fails
        writer.add([("x", "q", "z"), ("x", "r", "w")])
        writer.set_names({"x": "Mr X"})
        writer.commit()
    store.add_triples("b", [("u", "s", "w")])  # "b" is replaced by the domain that fails
    store.add_triples("c", [("p", "t", "o")])  # not in the export
    before, relations = _content(store), store.snapshot("a").relations

    with pytest.raises(LoadError, match="sha256" if damage == "checksum" else "without 'head'"):
        import_store(store, tmp_path / "out", replace=True)
    # the store used to hold the export's "a" and no "b": both deleted to be replaced, neither restored
    assert _content(store) == before
    assert store.snapshot("a").relations == relations
    with pytest.raises(LoadError):
        import_store(store, tmp_path / "out", domains=["a", "b"], replace=True)
    assert _content(store) == before


def test_a_failed_import_removes_the_domains_it_had_imported(tmp_path, store):
    source = LocalGraphStore(tmp_path / "source")
    source.add_triples("a", [("x", "r", "y")])
    source.add_triples("b", [("u", "s", "v")])
    manifest = export_store(source, tmp_path / "out")
    triples = tmp_path / "out" / manifest["domains"]["b"]["folder"] / "triples.jsonl"
    triples.write_text(triples.read_text().replace('"u"', '"U"'))
    with pytest.raises(LoadError, match="sha256"):
        import_store(store, tmp_path / "out")
    assert store.domains() == []  # "a" was imported before "b" failed, and stayed


def test_an_empty_display_name_survives_export_and_import(tmp_path, store):
    with store.writer("d") as writer:
        writer.add([("q1", "r", "q2")])
        writer.set_names({"q1": "", "q2": "Q two"})
    assert store.entity("q1", "d").name == ""
    export_store(store, tmp_path / "out")
    target = LocalGraphStore(tmp_path / "target")
    import_store(target, tmp_path / "out")
    assert (target.entity("q1", "d").name, target.entity("q2", "d").name) == ("", "Q two")
    assert _content(target) == _content(store)


def test_a_local_round_trip_keeps_the_load_order(tmp_path):
    # neighbors lists a node's facts in load order; an import must not move the first triple of
    # each relation to the front when the export already numbers relations as its source did
    source = LocalGraphStore(tmp_path / "source")
    rows = [("a", "r1", "b", "kb.tsv", 1), ("c", "r1", "d", "kb.tsv", 2), ("e", "r2", "f", "kb.tsv", 3),
            ("a", "r1", "g", "kb.tsv", 4), ("a", "r2", "h", "kb.tsv", 5)]
    source.add_triples("d", rows)
    export_store(source, tmp_path / "out")
    target = LocalGraphStore(tmp_path / "target")
    assert import_store(target, tmp_path / "out") == {"d": 5}

    def listed(store):
        return [(f.head, f.relation, f.tail, f.source, f.line) for f in store.iter_triples("d")]

    assert listed(target) == listed(source) == rows
    assert [f.tail for f in target.neighbors(["a"], domain="d")] == ["b", "g", "h"]
    assert target.snapshot("d").ids == source.snapshot("d").ids
    assert target.snapshot("d").relations == source.snapshot("d").relations


@pytest.mark.parametrize("domains", [None, [], {"d": "x"}, {"d": {"files": {"triples": "triples.jsonl"}}},
                                     {"d": {"folder": "domains/0000", "files": ["triples.jsonl"]}}])
def test_a_malformed_export_manifest_is_a_load_error(tmp_path, store, domains):
    # used to fail mid-import with a TypeError, KeyError or AttributeError
    source = LocalGraphStore(tmp_path / "source")
    source.add_triples("d", [("x", "r", "y")])
    export_store(source, tmp_path / "out")
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    manifest["domains"] = domains
    (tmp_path / "out" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(LoadError, match=r"manifest\.json: export manifest"):
        import_store(store, tmp_path / "out")
    assert store.domains() == []
