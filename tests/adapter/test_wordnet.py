"""WordNet as concept triples: the real WordNet 3.0 database (Debian's wordnet-base, installed by `make test`)."""

from __future__ import annotations

import pytest

from kgllm.exceptions import ConfigError
from kgllm.fusion.grounding import ConceptGraph, ConceptGrounder
from kgllm.fusion.wordnet import find_wordnet, open_wordnet, synset_triples, with_wordnet, write_concept_graph


@pytest.fixture(scope="module")
def wordnet(tmp_path_factory):
    try:
        find_wordnet()
    except ConfigError as exc:
        pytest.skip(f"WordNet database not installed: {exc}")
    return open_wordnet(cache_dir=tmp_path_factory.mktemp("wordnet"))


def test_missing_database_names_the_places_looked_at(tmp_path):
    (tmp_path / "data.noun").write_text("")
    with pytest.raises(ConfigError, match=str(tmp_path)) as err:
        find_wordnet(tmp_path)
    assert "wordnet-base" in str(err.value)


def test_a_wordnet_folder_named_by_the_environment_is_not_replaced_by_another(tmp_path, monkeypatch):
    monkeypatch.setenv("KGLLM_WORDNET", str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match=r"nowhere \(\$KGLLM_WORDNET\)"):
        find_wordnet()


def test_a_cache_dir_that_cannot_be_written_is_a_clear_error(wordnet, tmp_path):
    cn = tmp_path / "cn.txt"
    cn.write_text("AtLocation\tdog\tkennel\n", encoding="utf-8")
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="cannot build the WordNet graph in cache_dir .*file/cache"):
        with_wordnet(cn, cache_dir=tmp_path / "file" / "cache")


def test_reader_works_on_a_folder_without_lexnames(wordnet):
    dog = wordnet.synset("dog.n.01")
    assert "domestic_dog" in dog.lemma_names()
    assert dog.lexname() == "noun.animal"  # needs the lexnames file written beside the copy


def test_synset_triples_are_lemma_level_links(wordnet):
    triples = set(synset_triples(wordnet.synset("dog.n.01")))
    assert ("wn_synonym", "dog", "domestic dog") in triples
    assert ("wn_isa", "dog", "canine") in triples
    assert ("wn_member_of", "dog", "canis") in triples
    assert all(head != tail for _, head, tail in triples)
    hot = set(synset_triples(wordnet.synset("hot.a.01")))
    assert ("wn_antonym", "hot", "cold") in hot


def test_written_graph_joins_conceptnet_and_wordnet_nodes(wordnet, tmp_path):
    cn = tmp_path / "cn.txt"
    cn.write_text("AtLocation\tdog\tkennel\nUsedFor\tleash\twalk dog\n", encoding="utf-8")
    out = write_concept_graph(tmp_path / "graph.tsv", [cn], wordnet=wordnet)
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[:2] == ["AtLocation\tdog\tkennel", "UsedFor\tleash\twalk dog"]
    assert len(lines) == len(set(lines)) > 400_000
    graph = ConceptGraph.from_triples(out)
    dog = graph.index["dog"]
    neighbours = {graph.names[n] for n in graph.neighbors([dog])}
    assert {"kennel", "canine", "domestic dog"} <= neighbours  # one node for both graphs' "dog"
    assert ConceptGrounder(graph).ground("a corgi", whole=True) == [graph.index["corgi"]]  # not in CN-100K
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []


def test_joined_graph_is_written_once_per_graph_content(wordnet, tmp_path):
    cn = tmp_path / "cn.txt"
    cn.write_text("AtLocation\tdog\tkennel\n", encoding="utf-8")
    cache = tmp_path / "cache"
    first = with_wordnet(cn, cache_dir=cache)
    written = first.stat().st_mtime_ns
    assert with_wordnet(cn, cache_dir=cache) == first and first.stat().st_mtime_ns == written
    cn.write_text("AtLocation\tcat\tbasket\n", encoding="utf-8")
    second = with_wordnet(cn, cache_dir=cache)
    assert second != first
    assert second.read_text(encoding="utf-8").startswith("AtLocation\tcat\tbasket\n")


@pytest.mark.parametrize("value", [None, False, "false", "no", "0", 0])  # the CLI reads `-o wordnet=0` as 0
def test_training_option_off_keeps_the_graph(value, tmp_path):
    from kgllm.eval.multiple_choice import _with_wordnet

    graph = tmp_path / "cn.txt"
    assert _with_wordnet(graph, {"wordnet": value, "cache_dir": str(tmp_path)}) == graph
    assert list(tmp_path.iterdir()) == []


def test_training_option_with_a_folder_without_wordnet_is_a_clear_error(tmp_path):
    from kgllm.eval.multiple_choice import _with_wordnet

    with pytest.raises(ConfigError, match="no WordNet 3.0 database"):
        _with_wordnet(tmp_path / "cn.txt", {"wordnet": str(tmp_path), "cache_dir": str(tmp_path)})
