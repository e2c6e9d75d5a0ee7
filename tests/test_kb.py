"""KnowledgeBase: loading packs and files, atomic failures, experts, indexes, persistence."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

import kgllm
from kgllm.exceptions import ConfigError, DomainNotFound, IndexMismatch, KBNotFound, LoadError


@pytest.fixture()
def kb(tiny_movies_kb):
    return tiny_movies_kb


def _state(kb):
    """Everything a failed load must leave unchanged: stats and a query."""
    stats = kb.stats()
    facts = {domain: sorted((f.head, f.relation, f.tail) for f in kb.store.iter_triples(domain))
             for domain in kb.domains}
    neighbours = sorted(f.tail for f in kb.store.neighbors(["Kismet"], domain="tiny_movies"))
    return stats, facts, neighbours


def test_load_pack_counts_and_metadata(kb):
    stats = kb.stats()["domains"]["tiny_movies"]
    assert stats["triples"] == 50
    assert stats["relations"] == 7
    assert "directors" in stats["description"]
    assert kb.relation_text("tiny_movies")["starred_actors"] == "starring"
    assert kb.relation_text("tiny_movies")["has_tags"] == "tagged"


def test_relations_without_text_read_as_words(kb, tmp_path):
    ttl = tmp_path / "capitals.ttl"
    ttl.write_text("""@prefix ex: <http://ex.org/> .
@prefix rdf: <http://www.w3.org/1999/02/22-rdf-syntax-ns#> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
ex:Paris ex:capitalOf ex:France ; ex:population_size "2100000" ; ex:hasURL "https://paris.fr" ;
    <http://ex.org/vocab#locatedInCountry> ex:France .
ex:France ex:borders ex:Germany .
ex:borders rdfs:label "shares a border with"@en ; rdf:type rdf:Property .
ex:capitalOf rdf:type rdf:Property .
""", encoding="utf-8")
    kb.load_triples("cities", ttl, relation_text={"http://ex.org/population_size": "has a population of"})
    texts = kb.relation_text("cities")
    assert texts["http://ex.org/capitalOf"] == "capital of"  # local name, camelCase split
    assert texts["http://ex.org/vocab#locatedInCountry"] == "located in country"
    assert texts["http://ex.org/hasURL"] == "has URL"
    assert texts["http://www.w3.org/1999/02/22-rdf-syntax-ns#type"] == "type"
    assert texts["http://ex.org/borders"] == "shares a border with"  # the predicate's rdfs:label
    assert texts["http://ex.org/population_size"] == "has a population of"  # given text wins
    answer = kb.ask("Which country is [Paris] the capital of?", domain="cities")
    assert "Paris capital of France" in answer.text and "http" not in answer.text
    tsv = tmp_path / "cn.tsv"
    tsv.write_text("dog\tAtLocation\tkennel\ndog\tis_a\tanimal\n", encoding="utf-8")
    kb.load_triples("concepts", tsv, format="tsv", order="hrt")
    assert kb.relation_text("concepts") == {"AtLocation": "at location", "is_a": "is a"}


def test_pack_relation_aliases_reach_the_zero_shot_scorer(kb):
    ctx = kb.pipeline.context("tiny_movies")
    assert ctx.relation_aliases == {"has_genre": ["kind", "type"]}
    scorer = kb.pipeline.reasoner(ctx).scorer
    assert [{ctx.snapshot.relations[r] for r in m} for m in scorer.mentions("what kind of film is it")] == [{"has_genre"}]
    answer = kb.ask("What kind of film is [Catch Me If You Can]?")
    assert {a.name for a in answer.answers} == {"Drama", "Crime"}
    assert [h.relation for h in answer.paths[0].hops] == ["has_genre"]


def test_load_again_is_idempotent_and_appends(kb, tmp_path):
    again = kb.load_triples("tiny_movies", kb.domain_info("tiny_movies")["pack"] + "/kb.txt", format="pipe")
    assert again["triples_added"] == 0 and again["triples"] == 50
    extra = tmp_path / "more.txt"
    extra.write_text("Kismet|has_genre|Drama\nNew Film|directed_by|William Dieterle\n", encoding="utf-8")
    report = kb.load_triples("tiny_movies", extra, format="pipe")
    assert report["triples_added"] == 2 and report["triples"] == 52
    directed = {f.head for f in kb.store.neighbors(["William Dieterle"], domain="tiny_movies", direction="in")}
    assert directed == {"Kismet", "New Film"}


def test_persistence_across_reopen(kb, tmp_path):
    before = _state(kb)
    kb.close()
    with kgllm.open(tmp_path / "kb", create=False) as reopened:
        assert _state(reopened) == before


@pytest.mark.parametrize("content, fmt, needle", [
    ("Kismet|directed_by|William Dieterle\nKismet|directed_by\n", "pipe", "line 2"),
    ("a\tb\tc\nd\te\n", "tsv", "line 2"),
    ("", "pipe", "empty"),
    (b"ok|rel|fine\nbad|rel|\xff\xfe\n", "pipe", "line 2"),
    ("<http://a> <http://b> .\n", "nt", "line 1"),
])
def test_bad_file_leaves_kb_unchanged(kb, tmp_path, content, fmt, needle):
    path = tmp_path / f"bad.{fmt}"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    before = _state(kb)
    with pytest.raises(LoadError) as info:
        kb.load_triples("tiny_movies", path, format=fmt)
    assert str(path.name) in str(info.value) and needle in str(info.value)
    assert _state(kb) == before
    with pytest.raises(LoadError):  # a new domain is not created by a failed load either
        kb.load_triples("brand_new", path, format=fmt)
    assert "brand_new" not in kb.domains and _state(kb) == before


def test_missing_file_and_bad_manifest(kb, tmp_path, fixtures_dir):
    before = _state(kb)
    with pytest.raises(LoadError, match="nope.txt"):
        kb.load_triples("tiny_movies", tmp_path / "nope.txt", format="pipe")
    pack = tmp_path / "pack"
    shutil.copytree(fixtures_dir / "kb" / "tiny_geo", pack)
    manifest = pack / "manifest.yaml"
    manifest.write_text(manifest.read_text(encoding="utf-8") + "colour: blue\n", encoding="utf-8")
    with pytest.raises(LoadError, match="colour"):
        kb.load(pack)
    manifest.write_text(manifest.read_text(encoding="utf-8").replace("colour: blue\n", "")
                        .replace("countries.tsv", "missing.tsv"), encoding="utf-8")
    with pytest.raises(LoadError, match="missing.tsv"):
        kb.load(pack)
    assert _state(kb) == before


def test_a_pack_whose_documents_cannot_be_written_leaves_kb_unchanged(kb, fixtures_dir):
    before = _state(kb)
    (kb.path / "docs").write_text("a file where the documents folder goes", encoding="utf-8")
    with pytest.raises(OSError):  # the graph is not committed once the chunks fail
        kb.load(fixtures_dir.parents[1] / "graphs" / "science")
    assert "science" not in kb.domains and "science" not in kb.store.domains() and _state(kb) == before


def test_not_a_kb_directory(tmp_path):
    other = tmp_path / "photos"
    other.mkdir()
    (other / "cat.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(KBNotFound, match="not a kgllm knowledge base"):
        kgllm.open(other)
    with pytest.raises(KBNotFound):
        kgllm.open(tmp_path / "absent", create=False)
    assert list(other.iterdir()) == [other / "cat.jpg"]
    with pytest.raises(KBNotFound, match=r"cat.jpg is a file, not a kgllm knowledge base"):  # was: "a directory"
        kgllm.open(other / "cat.jpg", create=False)


def test_unknown_domain_lists_known(kb):
    with pytest.raises(DomainNotFound, match="tiny_movies"):
        kb.domain_info("cooking")


def test_invalid_domain_name(kb, fixtures_dir):
    with pytest.raises(ConfigError, match="invalid domain name"):
        kb.load_triples("../escape", fixtures_dir / "kb" / "tiny_movies" / "kb.txt", format="pipe")
    with pytest.raises(ConfigError, match="invalid domain name"):  # "$" matched before a final newline
        kb.add_expert("films\n", description="Films.")
    assert kb.domains == ["tiny_movies"]


def test_entity_index_is_incremental_and_deleted_with_domain(kb, tmp_path):
    index = kb.index("tiny_movies", "entities")
    first = len(index)
    assert first == kb.store.count("tiny_movies")["entities"]
    extra = tmp_path / "more.txt"
    extra.write_text("Kismet|has_genre|Film Noir\n", encoding="utf-8")
    kb.load_triples("tiny_movies", extra, format="pipe")
    calls_before = kb.embedder.stats.encoded
    index = kb.index("tiny_movies", "entities")
    assert len(index) == first + 1
    assert kb.embedder.stats.encoded - calls_before == 1  # only the new entity was embedded
    hits = index.search(kb.embedder.encode(["Film Noir"]), 1)[0]
    assert hits[0][0] == "Film Noir"
    assert (kb.path / "index" / "tiny_movies" / "entities" / "manifest.json").exists()
    kb.delete_domain("tiny_movies")
    assert not (kb.path / "index" / "tiny_movies").exists()
    assert kb.domains == []


def test_index_options_choose_the_faiss_type_persist_and_rebuild(kb, tmp_path):
    flat = kb.index("tiny_movies", "entities")
    assert flat.factory == "Flat" and kb.index_options("entities") == {"factory": "Flat"}
    query = kb.embedder.encode(["Kismet", "Film Noir"])
    exact = flat.search(query, 3)
    before = json.loads((kb.path / "kgllm.json").read_text(encoding="utf-8"))
    with pytest.raises(ConfigError, match="invalid FAISS factory string 'HNSW-fast'"):
        kb.set_index_options("entities", factory="HNSW-fast")
    with pytest.raises(ConfigError, match="ef_search must be a positive int, got 0"):
        kb.set_index_options(ef_search=0)
    with pytest.raises(ConfigError, match="unknown index kind 'entity'"):
        kb.set_index_options("entity", factory="HNSW32")
    assert json.loads((kb.path / "kgllm.json").read_text(encoding="utf-8")) == before  # refused: unchanged
    kb.set_index_options("entities", factory="HNSW32", ef_search=128)
    hnsw = kb.index("tiny_movies", "entities")
    assert (hnsw.factory, hnsw.ef_search, len(hnsw)) == ("HNSW32", 128, len(flat))
    found = hnsw.search(query, 3)  # same neighbours (equal-score ones, e.g. names differing in case, may swap)
    assert [row[0][0] for row in found] == [row[0][0] for row in exact] and exact[0][0][0] == "Kismet"
    assert [[round(x, 4) for _, x in row] for row in found] == [[round(x, 4) for _, x in row] for row in exact]
    assert kb.index_options("facts") == {"factory": "Flat"}  # other kinds keep theirs
    assert kb.stats()["index_options"]["entities"] == {"factory": "HNSW32", "ef_search": 128}
    kb.close()
    with kgllm.open(kb.path, create=False) as reopened:  # recorded in the manifest and in the index folder
        again = reopened.index("tiny_movies", "entities")
        assert (again.factory, again.ef_search) == ("HNSW32", 128)
        reopened.set_index_options(factory="Flat")
        assert reopened.index("tiny_movies", "entities").factory == "Flat"


def test_entities_renamed_after_indexing_are_embedded_again(kb, tmp_path):
    # names loaded after the edges (RDF labels, DBpedia-style) used to leave the entity and fact vectors of
    # the old names (the URIs' local names) in the indexes: the vector linker could not find the new names
    edges = tmp_path / "edges.nt"
    edges.write_text("<http://ex.org/k> <http://ex.org/directed_by> <http://ex.org/d> .\n", encoding="utf-8")
    kb.load_triples("films", edges, description="Films and their directors.")
    assert len(kb.index("films", "entities")) == 2 and len(kb.index("films", "facts")) == 1
    labels = tmp_path / "labels.nt"
    labels.write_text('<http://ex.org/d> <http://www.w3.org/2000/01/rdf-schema#label> "William Dieterle" .\n',
                      encoding="utf-8")
    kb.load_triples("films", labels)
    before = kb.embedder.stats.encoded
    hits = kb.index("films", "entities").search(kb.embedder.encode(["William Dieterle"]), 1)[0]
    assert hits[0][0] == "http://ex.org/d" and hits[0][1] == pytest.approx(1.0, abs=1e-5)
    fact = kb.index("films", "facts").search(kb.embedder.encode(["k directed by William Dieterle"]), 1)[0]
    assert fact[0][1] == pytest.approx(1.0, abs=1e-5)
    assert kb.embedder.stats.encoded - before == 2  # the renamed entity and its fact, nothing else
    kb.close()
    with kgllm.open(tmp_path / "kb", create=False) as reopened:  # up to date on disk: nothing embedded
        reopened.index("films", "entities")
        reopened.index("films", "facts")
        assert reopened.embedder.stats.encoded == 0


def test_chunk_index_follows_documents_added_by_another_opener(kb, tmp_path):
    first, second = tmp_path / "kismet.md", tmp_path / "zanzibar.md"
    first.write_text("Kismet is a 1944 film directed by William Dieterle.\n", encoding="utf-8")
    second.write_text("Zanzibar City is the capital of Zanzibar, an island off Tanzania.\n", encoding="utf-8")
    kb.load_documents("tiny_movies", [first])
    with kgllm.open(tmp_path / "kb", create=False) as other:
        assert other.index("tiny_movies", "chunks").ids() == ["kismet.md#0"]
        kb.load_documents("tiny_movies", [second])
        # ``other`` used to keep its first chunk index (and answer from it) until it was opened again
        assert sorted(other.index("tiny_movies", "chunks").ids()) == ["kismet.md#0", "zanzibar.md#0"]
        answer = other.ask("What is the capital of Zanzibar?", domain="tiny_movies")
        assert answer.chunks[0].id == "zanzibar.md#0"
        index = other.index("tiny_movies", "chunks")
        assert other.index("tiny_movies", "chunks") is index  # unchanged documents: the same object


def test_damaged_index_manifest_is_a_load_error_and_stats_still_work(kb, tmp_path):
    kb.index("tiny_movies", "entities")
    kb.index("tiny_movies", "facts")
    manifest = kb.path / "index" / "tiny_movies" / "entities" / "manifest.json"
    manifest.write_bytes(manifest.read_bytes()[:40])  # truncated
    kb.close()
    with kgllm.open(tmp_path / "kb", create=False) as reopened:
        # stats used to fail with a bare JSONDecodeError
        assert reopened.stats()["domains"]["tiny_movies"]["indexes"] == {"facts": 50}
        with pytest.raises(LoadError, match=r"entities.manifest\.json: invalid manifest.*rebuilt from the domain's "
                                            r"graph and documents when its folder is deleted: .*tiny_movies.entities$"):
            reopened.index("tiny_movies", "entities")
        shutil.rmtree(manifest.parent)
        assert len(reopened.index("tiny_movies", "entities")) == 44


def test_other_embedding_model_is_refused_at_open(kb, tmp_path):
    kb.index("tiny_movies", "entities")
    kb.close()
    with pytest.raises(IndexMismatch, match="index built with embedding model"):
        kgllm.open(tmp_path / "kb", embedder="some-other/model")


def test_default_model_aliases_and_relative_model_paths_at_open(kb, tmp_path, monkeypatch):
    # "all-MiniLM-L6-v2" and "default" name the bundled model; they used to be refused as "another model"
    kb.index("tiny_movies", "entities")
    kb.close()
    for alias in ("all-MiniLM-L6-v2", "default"):
        with kgllm.open(tmp_path / "kb", embedder=alias) as reopened:
            assert len(reopened.index("tiny_movies", "entities")) == 44
    # a model directory given relative to the working directory used to be recorded as given, so the KB
    # could not be opened from anywhere else
    from test_embed import tiny_model

    tiny_model(tmp_path)
    monkeypatch.chdir(tmp_path)
    with kgllm.open(tmp_path / "own", embedder="./tiny-st") as own:
        own.load_triples("films", _one_triple(tmp_path), format="pipe")
        assert own.index("films", "entities").dim == 24
    monkeypatch.chdir(tmp_path / "kb")
    with kgllm.open(tmp_path / "own", create=False) as reopened:
        assert reopened.embedder.model_name == str((tmp_path / "tiny-st").resolve())
        assert len(reopened.index("films", "entities")) == 2


def _one_triple(tmp_path):
    path = tmp_path / "one.txt"
    path.write_text("kismet|directed_by|tom hanks\n", encoding="utf-8")
    return path


def test_index_of_a_model_retrained_in_place_is_embedded_again(tmp_path):
    # same directory, same dimension, new weights: the index used to keep the old weights' vectors
    import torch
    from sentence_transformers import SentenceTransformer
    from test_embed import tiny_model

    model = tiny_model(tmp_path)
    with kgllm.open(tmp_path / "kb", embedder=str(model)) as kb:
        kb.load_triples("films", _one_triple(tmp_path), format="pipe")
        kb.index("films", "entities")
    retrained = SentenceTransformer(str(model), device="cpu")
    with torch.no_grad():
        for param in retrained.parameters():
            param.add_(0.5)
    retrained.save(str(model))
    with kgllm.open(tmp_path / "kb", create=False) as kb:
        hits = kb.index("films", "entities").search(kb.embedder.encode(["tom hanks"]), 1)[0]
        assert kb.embedder.stats.encoded == 2  # both entities again (the query is one of them)
        assert hits[0][0] == "tom hanks" and hits[0][1] == pytest.approx(1.0, abs=1e-5)


def test_delete_domain_keeps_others(kb, fixtures_dir):
    kb.load(fixtures_dir / "kb" / "tiny_geo")
    geo_before = sorted((f.head, f.relation, f.tail) for f in kb.store.iter_triples("tiny_geo"))
    kb.delete_domain("tiny_movies")
    assert kb.domains == ["tiny_geo"]
    assert sorted((f.head, f.relation, f.tail) for f in kb.store.iter_triples("tiny_geo")) == geo_before


def test_delete_domain_whose_graph_the_store_no_longer_holds(kb, fixtures_dir, tmp_path, caplog):
    # The graph went away behind the KB's back (another client of the store removed it): the manifest
    # entry and its indexes used to be stuck, every delete_domain raising DomainNotFound
    kb.load(fixtures_dir / "kb" / "tiny_geo")
    kb.index("tiny_movies", "entities")
    kb.store.delete_domain("tiny_movies")
    with caplog.at_level(logging.WARNING, logger="kgllm.kb"):
        kb.delete_domain("tiny_movies")
    assert "'tiny_movies' has no graph in the local store" in caplog.text
    assert kb.domains == ["tiny_geo"] and not (kb.path / "index" / "tiny_movies").exists()
    with kgllm.open(tmp_path / "kb", create=False) as reopened:
        assert reopened.domains == ["tiny_geo"]
    # documents only, or an expert without data: nothing was lost, so no warning
    notes = tmp_path / "notes.md"
    notes.write_text("# Kismet\n\nKismet is a 1944 film directed by William Dieterle.\n", encoding="utf-8")
    kb.load_documents("notes", [notes], description="Notes about old films.")
    kb.index("notes", "entities")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="kgllm.kb"):
        kb.delete_domain("notes")
    assert caplog.text == "" and kb.domains == ["tiny_geo"] and not (kb.path / "docs" / "notes.jsonl").exists()


def test_domain_with_documents_only(kb, tmp_path):
    # README: kb.load_documents("science", [...]) into a new domain; it used to store the chunks and then
    # raise DomainNotFound (the domain has no graph), and every routed question failed afterwards
    notes = tmp_path / "notes.md"
    notes.write_text("# Kismet\n\nKismet is a 1944 film directed by William Dieterle.\n", encoding="utf-8")
    report = kb.load_documents("notes", [notes], description="Notes about old films.")
    assert report == {"domain": "notes", "triples_added": 0, "chunks_added": 1, "entities": 0, "triples": 0}
    assert kb.stats()["domains"]["notes"]["chunks"] == 1 and kb.relation_text("notes") == {}
    assert len(kb.index("notes", "entities")) == 0 and len(kb.index("notes", "facts")) == 0
    assert kb.ask("Who directed [Kismet]?").answers[0].name == "William Dieterle"
    answer = kb.ask("Who directed [Kismet]?", domain="notes")
    assert answer.answers == [] and answer.text.startswith("No entity")
    # no documents at all (a glob that matched nothing) made an empty expert, consulted by routing
    with pytest.raises(LoadError, match="no documents given for the new domain 'science': nothing loaded"):
        kb.load_documents("science", [])
    assert "science" not in kb.domains
    assert kb.load_documents("notes", [])["chunks_added"] == 0  # an existing domain: nothing to add


def test_labels_only_rdf_names_existing_entities_but_makes_no_empty_domain(kb, tmp_path):
    labels = tmp_path / "labels.nt"
    labels.write_text('<http://ex.org/k> <http://www.w3.org/2000/01/rdf-schema#label> "Kismet (1944)" .\n'
                      '<http://ex.org/d> <http://www.w3.org/2000/01/rdf-schema#label> "William Dieterle" .\n',
                      encoding="utf-8")
    before = _state(kb)
    # it used to "load" into a new domain: 0 triples, the names dropped, an empty expert consulted by routing
    with pytest.raises(LoadError, match=r"labels\.nt: no triples found, only entity names \(labels\); a new "
                                        r"domain \('names'\) needs edges"):
        kb.load_triples("names", labels)
    assert "names" not in kb.domains and _state(kb) == before
    edges = tmp_path / "edges.nt"
    edges.write_text("<http://ex.org/k> <http://ex.org/directed_by> <http://ex.org/d> .\n", encoding="utf-8")
    kb.load_triples("films", edges, description="Films and their directors.")
    kb.load_triples("films", labels)  # names for a domain's entities, loaded after its edges (DBpedia-style)
    assert kb.store.entity("http://ex.org/k", "films").name == "Kismet (1944)"


def test_another_document_of_the_same_name_is_refused_not_dropped(kb, tmp_path):
    # chunk ids are "<file name>#<n>": a second notes.md (another folder, or the first one edited) used
    # to be dropped without a word as "the same chunk", leaving the old text in the KB
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, other = tmp_path / "a" / "notes.md", tmp_path / "b" / "notes.md"
    first.write_text("Kismet is a 1944 film directed by William Dieterle.\n", encoding="utf-8")
    other.write_text("\nRonald Colman starred in Kismet.\n", encoding="utf-8")
    kb.load_documents("tiny_movies", [first])
    assert kb.load_documents("tiny_movies", [first])["chunks_added"] == 0  # the same document again
    before = _state(kb), [c.text for c in kb.chunks("tiny_movies")]
    with pytest.raises(LoadError, match=r"notes.md line 2: domain 'tiny_movies' already holds a different "
                                        r"document named 'notes.md'.*'Ronald Colman starred in Kismet.'"):
        kb.load_documents("tiny_movies", [other])
    extra = tmp_path / "extra.txt"
    extra.write_text("New Film|directed_by|William Dieterle\n", encoding="utf-8")
    with pytest.raises(LoadError, match="different document"):  # nor with triples: neither is loaded
        kb.load_triples("tiny_movies", extra, format="pipe", documents=[other])
    assert (_state(kb), [c.text for c in kb.chunks("tiny_movies")]) == before


def test_domains_loaded_by_another_opener_are_kept(kb, tmp_path, fixtures_dir):
    # Another process (here: a second open of the same directory) loads a domain while ``kb`` is open;
    # ``kb``'s later edits must not write its older copy of the manifest over that domain.
    with kgllm.open(tmp_path / "kb", create=False) as other:
        other.load(fixtures_dir / "kb" / "tiny_geo")
    extra = tmp_path / "extra.txt"
    extra.write_text("Kismet|has_genre|Drama\n", encoding="utf-8")
    kb.load_triples("extra", extra, format="pipe")
    assert kb.domains == ["extra", "tiny_geo", "tiny_movies"]
    assert kb.stats()["domains"]["tiny_geo"]["triples"] == 46
    kb.delete_domain("extra")
    kb.close()
    with kgllm.open(tmp_path / "kb", create=False) as reopened:
        assert reopened.domains == ["tiny_geo", "tiny_movies"]
        assert len(list(reopened.store.iter_triples("tiny_geo"))) == 46


def test_experts_declared_and_persisted(kb, tmp_path):
    expert = kb.add_expert("cooking", description="Recipes and ingredients.", reasoning={"max_hops": 2})
    assert expert.reasoning.max_hops == 2
    with pytest.raises(ConfigError, match="exists already"):
        kb.add_expert("cooking", description="again")
    kb.close()
    with kgllm.open(tmp_path / "kb", create=False) as reopened:
        names = [e.name for e in reopened.experts()]
        assert names == ["cooking", "tiny_movies"]
        assert reopened.expert("cooking").description == "Recipes and ingredients."


def test_manifest_never_stores_password(kb):
    from kgllm.config import StoreSettings

    settings = StoreSettings(backend="neo4j", neo4j_uri="bolt://127.0.0.1:7687", user="neo4j", password="secret")
    assert "password" not in settings.model_dump()
    assert "secret" not in repr(settings)
    manifest = json.loads((kb.path / "kgllm.json").read_text(encoding="utf-8"))
    assert manifest["format"] == "kgllm-kb" and manifest["store"] == {"backend": "local"}


def test_experts_of_a_pack_with_same_as_and_hops(tmp_path, fixtures_dir):
    # the pack's same_as pair names no `domain` (recorded as null) and its reasoning says `hops: 2`:
    # kb.expert() and kb.experts() failed with pydantic's ValidationError, and add_expert refused `hops`
    with kgllm.open(tmp_path / "kb") as kb:
        kb.load(fixtures_dir / "loaders" / "pack")
        expert = kb.expert("tiny-movies")
        assert expert.same_as == [{"entity": "English", "same_as_domain": "languages", "same_as_entity": "english"}]
        assert expert.reasoning.max_hops == 2
        assert [e.name for e in kb.experts()] == ["tiny-movies"]
        assert kb.add_expert("cooking", description="Recipes.", reasoning={"hops": 1}).reasoning.max_hops == 1
        with pytest.raises(ConfigError, match="expert 'baking': bad reasoning setting 'depth'"):
            kb.add_expert("baking", description="Bread.", reasoning={"depth": 2})
        with pytest.raises(ConfigError, match="bad reasoning setting 'max_hops'"):
            kb.add_expert("baking", description="Bread.", reasoning={"hops": 9})
        for odd in (True, "2", 2.0):  # were read as 1, 2 and 2 hops
            with pytest.raises(ConfigError, match="bad reasoning setting 'max_hops'"):
                kb.add_expert("baking", description="Bread.", reasoning={"hops": odd})
        with pytest.raises(ConfigError, match="hops=2 and max_hops=3; give one of them"):
            kb.add_expert("baking", description="Bread.", reasoning={"hops": 2, "max_hops": 3})
        assert kb.domains == ["cooking", "tiny-movies"]
    with kgllm.open(tmp_path / "kb", create=False) as reopened:
        assert reopened.expert("cooking").reasoning.max_hops == 1



def test_add_expert_checks_scorer_template_and_types_and_stats_lists_the_settings(tmp_path, monkeypatch):
    # a missing scorer and a template without {question} were recorded (and failed, or were dropped with a
    # log line, only when asked); a relative scorer path broke from another directory; a malformed setting
    # raised pydantic's ValidationError or AttributeError; `kgllm stats --json` listed no expert settings
    repo = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(repo)
    with kgllm.open(tmp_path / "kb") as kb:
        with pytest.raises(ConfigError, match="expert 'films': scorer 'no/such/dir' is not a trained path-scorer"):
            kb.add_expert("films", description="Films.", scorer="no/such/dir")
        with pytest.raises(ConfigError, match=r"expert 'films': prompt template .* must contain \{question\}"):
            kb.add_expert("films", description="Films.", prompt_template="Answer {q}")
        with pytest.raises(ConfigError, match="expert 'films': reasoning must be a dict"):
            kb.add_expert("films", description="Films.", reasoning="hops=2")  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="expert 'films': bad setting 'relation_text.has_tags'"):
            kb.add_expert("films", description="Films.", relation_text={"has_tags": 1})  # type: ignore[dict-item]
        assert kb.domains == []
        kb.add_expert("films", description="Films.", scorer="graphs/movies/scorer", reasoning={"hops": 2, "beam": 4},
                      prompt_template="FILMS {question}")
    monkeypatch.chdir(tmp_path)
    with kgllm.open(tmp_path / "kb", create=False) as reopened:
        expert = reopened.stats()["domains"]["films"]["expert"]
    assert expert["scorer"] == str(repo / "graphs" / "movies" / "scorer")
    assert expert["reasoning"] == {"max_hops": 2, "beam": 4, "retrievers": ["paths", "ppr", "facts", "chunks"]}
    assert expert["prompt_template"] == "FILMS {question}"


def test_decomposed_accents_in_the_file_or_the_question_still_link(tmp_path):
    import unicodedata

    data = tmp_path / "people.tsv"
    data.write_text(unicodedata.normalize("NFD", "Zoë Müller\tknows\tJosé Álvarez\n") + "Zoe\tknows\tJo\n")
    with kgllm.open(tmp_path / "kb") as people:
        people.load_triples("people", data, format="tsv")
        for question in ("Who does [Zoë Müller] know?", unicodedata.normalize("NFD", "Who does [Zoë Müller] know?")):
            answer = people.ask(question)
            assert unicodedata.normalize("NFC", answer.answers[0].name) == "José Álvarez", question
            assert answer.question == question  # the question is kept as asked


def test_a_later_hops_setting_replaces_an_earlier_max_hops(tmp_path, fixtures_dir):
    # add_expert records max_hops (3 by default); the pack loaded into that expert says `hops: 2`. The
    # manifest kept both keys and everything read max_hops first, so the pack's setting was ignored.
    with kgllm.open(tmp_path / "kb") as kb:
        kb.add_expert("tiny-movies", description="Films.")
        kb.load(fixtures_dir / "loaders" / "pack")
        assert kb.domain_info("tiny-movies")["reasoning"]["max_hops"] == 2
        assert "hops" not in kb.domain_info("tiny-movies")["reasoning"]
        assert kb.expert("tiny-movies").reasoning.max_hops == 2
        kb.set_domain_info("tiny-movies", reasoning={"hops": 1})
        assert kb.expert("tiny-movies").reasoning.max_hops == 1
        assert kb.pipeline.context("tiny-movies").max_hops == 1


def test_index_options_reach_the_next_ask_and_odd_knobs(kb):
    # the pipeline's fact retriever kept the index it was first given: asks searched the old factory with
    # the old knobs until the KB was opened again; a knob above a C int was recorded, then every search
    # failed with OverflowError; a numpy integer was refused as no positive int
    def fact_indexes():  # what the retrieve stage of ask searches (graph facts go to an LLM's context)
        evidence = kb.pipeline.evidence(kb.pipeline.context("tiny_movies"))
        assert evidence.graph_facts("Who directed Kismet?", ["Kismet"], 3).facts
        return [(r.index.factory, r.index.ef_search) for r in evidence._graph.retrievers if r.name == "vector-facts"]

    assert fact_indexes() == [("Flat", 64)]
    kb.set_index_options("facts", factory="HNSW32", ef_search=np.int64(40))
    assert fact_indexes() == [("HNSW32", 40)]
    with pytest.raises(ConfigError, match=r"ef_search must be below 2\*\*31 .*got 1000000000000"):
        kb.set_index_options("facts", ef_search=10**12)
    with pytest.raises(ConfigError, match="invalid FAISS factory string 'HNSW0'"):
        kb.set_index_options("facts", factory="HNSW0")  # FAISS took it, then killed the process on add
    assert kb.index_options("facts") == {"factory": "HNSW32", "ef_search": 40}


def test_graph_indexes_follow_triples_loaded_by_another_opener(kb, tmp_path):
    # the entity and fact indexes held in memory were checked against nothing: after another opener loaded
    # into the domain (and this KB's store picked the change up), they were served without its new items
    assert "New Film" not in kb.index("tiny_movies", "entities")
    facts = len(kb.index("tiny_movies", "facts"))
    extra = tmp_path / "extra.txt"
    extra.write_text("New Film|directed_by|William Dieterle\n", encoding="utf-8")
    with kgllm.open(tmp_path / "kb", create=False) as other:
        other.load_triples("tiny_movies", extra, format="pipe", description="Films, their casts and directors.")
    kb.add_expert("cooking", description="Recipes.")  # its manifest edit refreshes the store
    assert "New Film" in kb.store.snapshot("tiny_movies").ids
    assert "New Film" in kb.index("tiny_movies", "entities")
    assert len(kb.index("tiny_movies", "facts")) == facts + 1


def test_an_index_folder_left_behind_serves_no_item_the_domain_lost(kb, tmp_path):
    # a delete whose index folder stayed (rmtree ignores errors), then a load of the same name: the old
    # folder was brought up to date by adding the new items only, so the old entities and facts were served
    kb.index("tiny_movies", "entities")
    kb.index("tiny_movies", "facts")
    shutil.copytree(kb.path / "index" / "tiny_movies", tmp_path / "left")
    kb.delete_domain("tiny_movies")
    shutil.copytree(tmp_path / "left", kb.path / "index" / "tiny_movies")
    data = tmp_path / "films.txt"
    data.write_text("Kismet|directed_by|Someone Else\n", encoding="utf-8")
    kb.load_triples("tiny_movies", data, format="pipe")
    assert sorted(kb.index("tiny_movies", "entities").ids()) == ["Kismet", "Someone Else"]
    assert kb.index("tiny_movies", "facts").ids() == ["Kismet\x1fdirected_by\x1fSomeone Else"]
    kb.close()
    with kgllm.open(kb.path, create=False) as reopened:  # saved without them
        assert len(reopened.index("tiny_movies", "entities")) == 2


def test_set_domain_info_refuses_bad_expert_settings_and_stats_survive_damaged_documents(kb, tmp_path):
    # set_domain_info recorded anything: then kb.experts() and kb.stats() failed with pydantic's
    # ValidationError, ValueError or KeyError (a same_as pair without same_as_domain); a damaged
    # documents file failed stats and every ask with pydantic's error naming neither file nor line
    before = json.loads((kb.path / "kgllm.json").read_text(encoding="utf-8"))
    with pytest.raises(ConfigError, match="expert 'tiny_movies': bad setting 'reasoning.beam'"):
        kb.set_domain_info("tiny_movies", reasoning={"beam": 0})
    with pytest.raises(ConfigError, match="expert 'tiny_movies': reasoning must be a dict"):
        kb.set_domain_info("tiny_movies", reasoning="deep")
    with pytest.raises(ConfigError, match="a same_as pair needs entity, same_as_domain and same_as_entity"):
        kb.set_domain_info("tiny_movies", same_as=[{"entity": "Kismet"}])
    with pytest.raises(ConfigError, match="expert 'films': bad setting 'description'"):
        kb.set_domain_info("films", description=["Films."])
    assert json.loads((kb.path / "kgllm.json").read_text(encoding="utf-8")) == before  # nothing recorded
    assert kb.stats()["domains"]["tiny_movies"]["expert"]["reasoning"]["beam"] == 8
    notes = tmp_path / "notes.md"
    notes.write_text("Kismet is a 1944 film.\n\nIt was directed by William Dieterle.\n", encoding="utf-8")
    kb.load_documents("tiny_movies", [notes])
    docs, count = kb.path / "docs" / "tiny_movies.jsonl", len(kb.chunks("tiny_movies"))
    docs.write_text(docs.read_text(encoding="utf-8") + '{"id": "notes.md#9"\n', encoding="utf-8")
    assert kb.stats()["domains"]["tiny_movies"]["chunks"] == count + 1
    with pytest.raises(LoadError, match=rf"tiny_movies.jsonl line {count + 1}: damaged document chunk"):
        kb.chunks("tiny_movies")


def test_embedder_given_as_a_path(tmp_path):
    # a model directory given as a pathlib.Path (Embedder takes one) was taken for an Embedder: AttributeError
    from test_embed import tiny_model

    tiny_model(tmp_path)
    with kgllm.open(tmp_path / "kb", embedder=tmp_path / "tiny-st") as kb:
        kb.load_triples("films", _one_triple(tmp_path), format="pipe")
        assert kb.index("films", "entities").dim == 24
    with kgllm.open(tmp_path / "kb", embedder=tmp_path / "tiny-st", create=False) as reopened:
        assert reopened.embedder.model_name == str((tmp_path / "tiny-st").resolve())
        assert len(reopened.index("films", "entities")) == 2


def test_threads_asking_for_an_index_at_once_build_it_once(kb, monkeypatch):
    # each thread built its own copy (embedding every item) and saved it into the same folder
    import threading
    import time

    calls = []
    encode = type(kb.embedder).encode

    def slow_encode(self, texts, **options):  # keeps the first build going while the other thread asks
        calls.append(len(texts))
        time.sleep(0.5)
        return encode(self, texts, **options)

    monkeypatch.setattr(type(kb.embedder), "encode", slow_encode)
    found = []
    threads = [threading.Thread(target=lambda: found.append(kb.index("tiny_movies", "entities"))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert found[0] is found[1] and calls == [44]


def test_documents_added_at_once_by_two_openers_are_all_kept(kb, monkeypatch):
    # each opener read the documents file, added its chunks and wrote the file back: one's chunks were lost
    import threading
    import time

    import kgllm.kb_indexes
    from kgllm.types import Chunk

    write = kgllm.kb_indexes.atomic_write_text

    def slow_write(path, text):  # between the read and the write, where the other opener came in
        time.sleep(0.3)
        write(path, text)

    monkeypatch.setattr(kgllm.kb_indexes, "atomic_write_text", slow_write)
    other = kgllm.open(kb.path, create=False)
    chunks = [Chunk(id=f"{name}#0", domain="tiny_movies", text=f"{name} text", source=name) for name in ("a", "b")]
    threads = [threading.Thread(target=opener.add_chunks, args=("tiny_movies", [chunk]))
               for opener, chunk in zip((kb, other), chunks)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    other.close()
    assert sorted(chunk.id for chunk in kb.chunks("tiny_movies")) == ["a#0", "b#0"]


def test_a_hand_edited_bad_setting_is_named_by_experts_and_stats(kb):
    # kb.experts(), kb.expert() and kb.stats() raised pydantic's ValidationError (or KeyError)
    manifest = json.loads((kb.path / "kgllm.json").read_text(encoding="utf-8"))
    manifest["domains"]["tiny_movies"]["reasoning"]["beam"] = 0
    (kb.path / "kgllm.json").write_text(json.dumps(manifest), encoding="utf-8")
    kb.close()
    with kgllm.open(kb.path, create=False) as reopened:
        for call in (reopened.experts, lambda: reopened.expert("tiny_movies"), reopened.stats):
            with pytest.raises(ConfigError, match="expert 'tiny_movies': bad setting 'reasoning.beam'"):
                call()
        reopened.set_domain_info("tiny_movies", reasoning={"beam": 4})  # mended by setting it again
        assert reopened.expert("tiny_movies").reasoning.beam == 4
