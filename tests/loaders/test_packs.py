"""Pack manifests: strict validation with file/line errors; the bundled packs in graphs/ all load and parse."""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path

import pytest

from kgllm.exceptions import LoadError
from kgllm.loaders import MANIFEST, Pack, load_pack

REPO = Path(__file__).resolve().parents[2]
GRAPHS = REPO / "graphs"
BUNDLED = ["movies", "geography", "medicine", "commonsense", "science"]


@pytest.fixture
def pack_dir(fixtures_dir: Path, tmp_path: Path) -> Path:
    """A writable copy of the small fixture pack."""
    return Path(shutil.copytree(fixtures_dir / "loaders" / "pack", tmp_path / "pack"))


def _edit(pack_dir: Path, old: str, new: str) -> Path:
    manifest = pack_dir / MANIFEST
    text = manifest.read_text()
    assert old in text
    manifest.write_text(text.replace(old, new))
    return manifest


def test_fixture_pack_loads_and_reads(pack_dir: Path) -> None:
    pack = load_pack(pack_dir)
    assert isinstance(pack, Pack) and Pack.load(pack_dir / MANIFEST) == pack
    assert (pack.name, pack.license, pack.dir) == ("tiny-movies", "CC BY 3.0", pack_dir)
    assert pack.triples[0].format == "pipe" and pack.documents[0].chunking == "line"
    assert pack.same_as[0].same_as_entity == "english" and pack.reasoning == {"hops": 2}
    triples = list(pack.read_triples())
    assert len(triples) == 17 and triples[0].source == "kb.txt" and triples[0].head == "Kismet"
    chunks = list(pack.read_documents())
    assert len(chunks) == 12 and chunks[0].domain == "tiny-movies" and chunks[0].id == "openbook.txt#0"
    assert {t.relation for t in triples} <= pack.relation_text.keys()


def test_unknown_key_names_key_file_and_line(pack_dir: Path) -> None:
    manifest = _edit(pack_dir, "relation_text:", "relation_txt:")
    with pytest.raises(LoadError) as err:
        load_pack(pack_dir)
    message = str(err.value)
    assert message.startswith(f"{manifest} line 10: unknown key 'relation_txt'; allowed keys: name, description")
    assert err.value.line == 10 and err.value.path == str(manifest)


def test_unknown_nested_key(pack_dir: Path) -> None:
    _edit(pack_dir, "{path: kb.txt, format: pipe}", "{path: kb.txt, formt: pipe}")
    with pytest.raises(LoadError, match=r"line 7: unknown key 'formt' in triples\[0\]; allowed keys: path, format, order, header"):
        load_pack(pack_dir)


def test_missing_required_key(pack_dir: Path) -> None:
    _edit(pack_dir, "license: CC BY 3.0\n", "")
    with pytest.raises(LoadError, match=r"manifest\.yaml: missing required key 'license'"):
        load_pack(pack_dir)


def test_bad_values(pack_dir: Path) -> None:
    _edit(pack_dir, "format: pipe", "format: xml")
    with pytest.raises(LoadError, match=r"line 7: invalid value for 'triples\[0\]\.format': Input should be 'tsv', 'csv', "
                                        r"'jsonl', 'pipe', 'nt' or 'ttl': 'xml'"):
        load_pack(pack_dir)


def test_bad_chunking_and_name(pack_dir: Path) -> None:
    _edit(pack_dir, "chunking: line", "chunking: lines")
    with pytest.raises(LoadError, match=r"'documents\[0\]\.chunking'.*'paragraph' or 'line'"):
        load_pack(pack_dir)
    _edit(pack_dir, "chunking: lines", "chunking: line")
    _edit(pack_dir, "name: tiny-movies", "name: Tiny Movies")
    with pytest.raises(LoadError, match=r"line 2: invalid value for 'name'.*'Tiny Movies'"):
        load_pack(pack_dir)


def test_missing_listed_file(pack_dir: Path) -> None:
    (pack_dir / "openbook.txt").unlink()
    with pytest.raises(LoadError, match=r"manifest\.yaml line 9: file listed under 'documents' does not exist: "
                                        r"'openbook\.txt'"):
        load_pack(pack_dir)
    (pack_dir / "openbook.txt").mkdir()  # it used to say "does not exist" of a directory
    with pytest.raises(LoadError, match=r"manifest\.yaml line 9: file listed under 'documents' is a directory, "
                                        r"not a file: 'openbook\.txt'"):
        load_pack(pack_dir)


def test_key_given_twice(pack_dir: Path) -> None:
    # YAML keeps the last of two equal keys: the pack used to load as a domain named "other"
    _edit(pack_dir, "examples:", "name: other\nexamples:")
    with pytest.raises(LoadError, match=r"manifest\.yaml line 20: key 'name' is given twice"):
        load_pack(pack_dir)
    _edit(pack_dir, "name: other\n", "")
    _edit(pack_dir, "{path: kb.txt, format: pipe}", "{path: kb.txt, format: pipe, path: openbook.txt}")
    with pytest.raises(LoadError, match=r"manifest\.yaml line 7: key 'path' is given twice"):
        load_pack(pack_dir)


def test_listed_file_outside_the_pack(pack_dir: Path) -> None:
    (pack_dir.parent / "outside.txt").write_text("Kismet|directed_by|William Dieterle\n")
    _edit(pack_dir, "path: kb.txt", "path: ../outside.txt")
    with pytest.raises(LoadError, match=r"file listed under 'triples' is outside the pack directory: '\.\./outside\.txt'"):
        load_pack(pack_dir)


def test_yaml_syntax_error_and_not_a_mapping(pack_dir: Path) -> None:
    _edit(pack_dir, "reasoning: {hops: 2}", "reasoning: {hops: 2")
    with pytest.raises(LoadError, match=r"manifest\.yaml line 2\d: invalid YAML"):
        load_pack(pack_dir)
    (pack_dir / MANIFEST).write_text("- just\n- a list\n")
    with pytest.raises(LoadError, match=r"a manifest must be a mapping of keys, got list"):
        load_pack(pack_dir)


def test_manifest_that_is_not_utf8(pack_dir: Path) -> None:
    manifest = pack_dir / MANIFEST
    manifest.write_bytes(manifest.read_bytes().replace(b"A few films", b"Quelques films \xe9"))
    with pytest.raises(LoadError, match=r"manifest\.yaml line 3: not valid utf-8 text .*'description: Quelques films"):
        load_pack(pack_dir)


@pytest.mark.parametrize("reasoning, needle", [
    ("{hops: two}", r"'hops' must be an integer from 1 to 4, got 'two'"),
    ("{hops: 0}", r"'hops' must be an integer from 1 to 4, got 0"),
    ("{hops: 2, beam: -1}", r"'beam' must be an integer from 1 to 256, got -1"),
    ("{hop: 2}", r"unknown setting 'hop'; known: hops, max_hops, beam, retrievers"),
])
def test_bad_reasoning_settings_fail_at_load(pack_dir: Path, reasoning: str, needle: str) -> None:
    # they used to load, and then every question routed to the expert failed (or hops were ignored)
    _edit(pack_dir, "reasoning: {hops: 2}", f"reasoning: {reasoning}")
    with pytest.raises(LoadError, match=r"manifest\.yaml line 19: invalid value for 'reasoning': .*" + needle):
        load_pack(pack_dir)


def test_document_overlap_must_be_below_chunk_size(pack_dir: Path) -> None:
    _edit(pack_dir, "chunking: line}", "chunk_size: 60}")  # the default overlap is 100
    with pytest.raises(LoadError, match=r"manifest\.yaml line 9: .*'documents\[0\]'.*overlap \(100\) must be "
                                        r"smaller than chunk_size \(60\)"):
        load_pack(pack_dir)


def test_not_a_pack_and_empty_pack(tmp_path: Path, pack_dir: Path) -> None:
    with pytest.raises(LoadError, match=r"not a pack: no manifest\.yaml found"):
        load_pack(tmp_path)
    assert load_pack(pack_dir / MANIFEST).name == "tiny-movies"  # the manifest itself is a pack's path too
    with pytest.raises(LoadError, match=r"kb\.txt: not a pack: a pack is a directory with manifest\.yaml .*"
                                        r"--domain D --triples FILE"):  # it used to be "invalid YAML"
        load_pack(pack_dir / "kb.txt")
    manifest = pack_dir / MANIFEST
    text = manifest.read_text()
    text = re.sub(r"triples:\n  - .*\n", "", text)
    text = re.sub(r"documents:\n  - .*\n", "", text)
    manifest.write_text(text)
    with pytest.raises(LoadError, match=r"needs at least one entry under 'triples' or 'documents'"):
        load_pack(pack_dir)


def test_scorer_key_names_a_trained_scorer_dir(pack_dir: Path) -> None:
    assert load_pack(pack_dir).scorer_dir is None
    # the bundled movies scorer is a real trained scorer directory
    shutil.copytree(GRAPHS / "movies" / "scorer", pack_dir / "model")
    manifest = _edit(pack_dir, "examples:", "scorer: model\nexamples:")
    pack = load_pack(pack_dir)
    assert pack.scorer == "model" and pack.scorer_dir == pack_dir / "model"
    (pack_dir / "model" / "manifest.json").unlink()
    with pytest.raises(LoadError) as err:
        load_pack(pack_dir)
    assert str(err.value).startswith(f"{manifest} line 20: 'scorer' must be a directory of the pack holding a "
                                     "trained path scorer (with manifest.json")
    assert err.value.value == "model"
    _edit(pack_dir, "scorer: model", "scorer: ../elsewhere")
    with pytest.raises(LoadError, match=r"line 20: 'scorer' is outside the pack directory: '\.\./elsewhere'"):
        load_pack(pack_dir)


def test_bad_triple_file_in_pack_reports_pack_file(pack_dir: Path) -> None:
    with (pack_dir / "kb.txt").open("a") as handle:
        handle.write("Kismet|directed_by\n")
    pack = load_pack(pack_dir)
    with pytest.raises(LoadError, match=r"kb\.txt line 18: expected 3 fields separated by '\|', got 2"):
        list(pack.read_triples())


# -- the bundled packs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_pack_validates_and_parses(name: str) -> None:
    pack = load_pack(GRAPHS / name)
    assert pack.name == name and pack.description and pack.license and pack.attribution
    assert 3 <= len(pack.examples) <= 5
    entities: set[str] = set()
    relations: set[str] = set()
    count = 0
    for head, relation, tail, source, line in pack.read_triples():
        entities.update((head, tail))
        relations.add(relation)
        assert source and line
        count += 1
    assert count > 0 and len(entities) <= 8_000
    assert relations <= pack.relation_text.keys(), relations - pack.relation_text.keys()
    names = pack.read_names()
    assert set(names) <= entities
    known = {e.lower() for e in entities} | {n.lower() for n in names.values()}
    for example in pack.examples:
        mentions = re.findall(r"\[([^\]]+)\]", example)
        assert mentions, example
        for mention in mentions:
            assert re.sub(r"^(an?|the) ", "", mention.lower()) in known, (example, mention)
    chunks = list(pack.read_documents())
    assert all(c.domain == name for c in chunks)


def test_bundled_relation_texts_and_documents() -> None:
    assert len(load_pack(GRAPHS / "medicine").relation_text) == 46
    assert len(load_pack(GRAPHS / "commonsense").relation_text) == 34
    assert load_pack(GRAPHS / "commonsense").triples[0].order == "rht"
    science = list(load_pack(GRAPHS / "science").read_documents())
    assert len(science) == 1326 and science[0].text == "A bee is a pollinating animal"
    movies = load_pack(GRAPHS / "movies")
    assert set(movies.relation_text) == {"directed_by", "written_by", "starred_actors", "release_year", "in_language",
                                         "has_tags", "has_genre", "has_imdb_rating", "has_imdb_votes"}
    assert set(movies.relation_aliases) <= set(movies.relation_text) and "kind" in movies.relation_aliases["has_genre"]


def test_bundled_same_as_links_join_real_entities() -> None:
    entities = {name: {e for t in load_pack(GRAPHS / name).read_triples() for e in (t.head, t.tail)}
                for name in BUNDLED}
    links = [(name, link) for name in BUNDLED for link in load_pack(GRAPHS / name).same_as]
    assert len(links) > 50
    for name, link in links:
        assert link.entity in entities[name], (name, link)
        assert link.same_as_entity in entities[link.same_as_domain], (name, link)


def test_bundled_packs_are_small() -> None:
    size = sum(p.stat().st_size for name in BUNDLED for p in (GRAPHS / name).rglob("*") if p.is_file())
    assert size < 4 * 1024 * 1024


def _build_packs():  # noqa: ANN202 - the graphs/build_packs.py module
    spec = importlib.util.spec_from_file_location("build_packs", GRAPHS / "build_packs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_build_script_reports_the_triples_a_store_keeps(tmp_path: Path) -> None:
    from kgllm.stores.local import LocalGraphStore

    # geography's train.txt repeats one line: 1111 lines, 1110 triples stored (README's pack table)
    verify = _build_packs().verify
    store = LocalGraphStore(tmp_path / "graph")
    try:
        for name in BUNDLED:
            store.add_triples(name, load_pack(GRAPHS / name).read_triples())
            assert verify(GRAPHS / name)["triples"] == store.count(name)["triples"], name
        assert store.count("geography")["triples"] == 1110
    finally:
        store.close()


@pytest.mark.slow
def test_build_script_reproduces_bundled_packs(shared_data: Path, tmp_path: Path) -> None:
    module = _build_packs()
    # the trained movies scorer is kept (--no-scorer); test_pack_scorer checks what it answers
    shutil.copytree(GRAPHS / "movies" / "scorer", tmp_path / "movies" / "scorer")
    assert module.main(["--data", str(shared_data), "--out", str(tmp_path), "--no-scorer"]) == 0
    for name in BUNDLED:
        built = sorted(str(p.relative_to(tmp_path / name)) for p in (tmp_path / name).rglob("*") if p.is_file())
        assert built == sorted(str(p.relative_to(GRAPHS / name)) for p in (GRAPHS / name).rglob("*") if p.is_file())
        for file in built:
            assert (tmp_path / name / file).read_bytes() == (GRAPHS / name / file).read_bytes(), (name, file)
