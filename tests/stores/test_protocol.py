"""The GraphStore protocol suite: the same inputs give the same outputs on every backend.

Each test runs once per backend through the ``store`` fixture (tests/stores/conftest.py): the
embedded local store, and a real Neo4j server (marker ``neo4j``). Graphs are tiny so each test is fast.
Ordering is only asserted where the protocol defines it (``find_entities``, ``k_hop``); elsewhere sets are
compared.
"""

from __future__ import annotations

import pytest

from kgllm.exceptions import DomainNotFound, LoadError
from kgllm.stores.base import BulkWriter, GraphStore, RawTriple

# A small movie graph: two films sharing a director, one actor in both, a remake of one.
MOVIES = [
    RawTriple("Kismet", "directed_by", "William Dieterle", "kb.txt", 1),
    RawTriple("Kismet", "starred_actors", "Marlene Dietrich", "kb.txt", 2),
    RawTriple("Kismet", "release_year", "1944", "kb.txt", 3),
    RawTriple("The Devil's Doorway", "directed_by", "William Dieterle", "kb.txt", 4),
    RawTriple("The Devil's Doorway", "starred_actors", "Marlene Dietrich", "kb.txt", 5),
    RawTriple("Kismet 1955", "remake_of", "Kismet", "kb.txt", 6),
]

# Relation names that break naive query building (Cypher splicing, shell, quoting).
AWKWARD_RELATIONS = [
    "directed by",
    "written-by",
    "it's",
    'say "hi"',
    "back`tick`",
    "$param",
    "') DETACH DELETE n //",
    "`}) MATCH (n) DETACH DELETE n //",
    "größer als",
    "関係",
]


def keys(facts) -> set[tuple[str, str, str]]:
    return {(f.head, f.relation, f.tail) for f in facts}


def triples_of(store: GraphStore, domain: str) -> set[tuple[str, str, str]]:
    return keys(store.iter_triples(domain))


@pytest.fixture
def movies(store: GraphStore) -> GraphStore:
    assert store.add_triples("movies", MOVIES) == len(MOVIES)
    return store


def test_implements_the_protocol(store):
    assert isinstance(store, GraphStore)
    writer = store.writer("d")
    assert isinstance(writer, BulkWriter)
    writer.abort()
    assert store.domains() == []


def test_add_and_count(movies):
    assert movies.domains() == ["movies"]
    assert movies.count("movies") == {"entities": 6, "triples": 6}
    assert movies.count() == {"entities": 6, "triples": 6}
    movies.add_triples("other", [RawTriple("x", "r", "y")])
    assert movies.domains() == ["movies", "other"]
    assert movies.count() == {"entities": 8, "triples": 7}
    assert movies.count("other") == {"entities": 2, "triples": 1}


def test_duplicate_triples_stored_once_within_and_across_loads(store):
    load = [RawTriple("a", "r", "b"), RawTriple("a", "r", "b"), RawTriple("a", "s", "b"), RawTriple("a", "r", "b")]
    assert store.add_triples("d", load) == 2
    assert store.add_triples("d", [RawTriple("a", "r", "b"), RawTriple("b", "r", "a")]) == 1
    assert store.add_triples("d", load) == 0
    assert store.count("d") == {"entities": 2, "triples": 3}
    assert triples_of(store, "d") == {("a", "r", "b"), ("a", "s", "b"), ("b", "r", "a")}


def test_duplicates_across_batches_of_one_load(store):
    load = [RawTriple(f"e{i % 7}", "r", f"e{(i * 3) % 5}") for i in range(100)]
    assert store.add_triples("d", load, batch_size=8) == len({(t.head, t.tail) for t in load})


def test_unicode_entity_ids_and_names(store):
    triples = [RawTriple("Amélie", "directed_by", "Jean-Pierre Jeunet"), RawTriple("東京物語", "directed_by", "小津安二郎"),
               RawTriple("Ōkami 🐺", "has_tags", "ÅNGEST")]
    store.add_triples("films", triples)
    assert triples_of(store, "films") == {(t.head, t.relation, t.tail) for t in triples}
    assert store.entity("東京物語", "films").name == "東京物語"
    assert [e.id for e in store.find_entities("amélie", domain="films")] == ["Amélie"]
    assert [e.id for e in store.find_entities("ångest")] == ["ÅNGEST"]
    assert keys(store.neighbors(["Ōkami 🐺"], domain="films")) == {("Ōkami 🐺", "has_tags", "ÅNGEST")}


@pytest.mark.parametrize("relation", AWKWARD_RELATIONS)
def test_relation_names_keep_their_spelling(store, relation):
    store.add_triples("d", [RawTriple("a", "plain", "b"), RawTriple("a", relation, "b"), RawTriple("b", relation, "c")])
    assert store.relations("d") == sorted(["plain", relation])
    assert store.count("d") == {"entities": 3, "triples": 3}  # nothing deleted by an injected query
    assert keys(store.neighbors(["a", "b"], domain="d", relations=[relation])) == {("a", relation, "b"),
                                                                                   ("b", relation, "c")}
    assert (("a", relation, "b")) in triples_of(store, "d")


def test_self_loops(store):
    store.add_triples("d", [RawTriple("a", "likes", "a"), RawTriple("a", "knows", "b")])
    assert store.count("d") == {"entities": 2, "triples": 2}
    loop = ("a", "likes", "a")
    for direction in ("out", "in", "both"):
        facts = store.neighbors(["a"], domain="d", direction=direction, relations=["likes"])
        assert [(f.head, f.relation, f.tail) for f in facts] == [loop], direction
    assert keys(store.k_hop(["a"], 1, domain="d").facts) == {loop, ("a", "knows", "b")}


def test_neighbors_by_direction(movies):
    out = keys(movies.neighbors(["Kismet"], domain="movies", direction="out"))
    assert out == {("Kismet", "directed_by", "William Dieterle"), ("Kismet", "starred_actors", "Marlene Dietrich"),
                   ("Kismet", "release_year", "1944")}
    into = keys(movies.neighbors(["Kismet"], domain="movies", direction="in"))
    assert into == {("Kismet 1955", "remake_of", "Kismet")}
    both = movies.neighbors(["Kismet"], domain="movies", direction="both")
    assert keys(both) == out | into and len(both) == 4
    assert keys(movies.neighbors(["William Dieterle"], domain="movies", direction="in")) == {
        ("Kismet", "directed_by", "William Dieterle"), ("The Devil's Doorway", "directed_by", "William Dieterle")}
    assert movies.neighbors(["William Dieterle"], domain="movies", direction="out") == []


def test_neighbors_of_several_ids_lists_each_fact_once(movies):
    facts = movies.neighbors(["Kismet", "Marlene Dietrich", "nobody"], domain="movies", direction="both")
    assert len(facts) == len(keys(facts)) == 5


def test_neighbors_relation_filter_and_limit(movies):
    facts = movies.neighbors(["Kismet", "The Devil's Doorway"], domain="movies", relations=["directed_by"])
    assert keys(facts) == {("Kismet", "directed_by", "William Dieterle"),
                           ("The Devil's Doorway", "directed_by", "William Dieterle")}
    assert movies.neighbors(["Kismet"], domain="movies", relations=["no_such_relation"]) == []
    assert len(movies.neighbors(["Kismet"], domain="movies", direction="both", limit=2)) == 2
    assert movies.neighbors(["nobody"], domain="movies") == []


def test_facts_carry_domain_names_and_provenance(movies):
    (fact,) = movies.neighbors(["Kismet 1955"], domain="movies")
    assert (fact.domain, fact.head_name, fact.tail_name) == ("movies", "Kismet 1955", "Kismet")
    assert (fact.source, fact.line) == ("kb.txt", 6)


def test_k_hop_is_undirected_and_bounded_by_k(movies):
    zero = movies.k_hop(["Kismet"], 0, domain="movies")
    assert [n.id for n in zero.nodes] == ["Kismet"] and zero.facts == [] and zero.seeds == ["Kismet"]
    one = movies.k_hop(["Kismet"], 1, domain="movies")
    assert {n.id for n in one.nodes} == {"Kismet", "William Dieterle", "Marlene Dietrich", "1944", "Kismet 1955"}
    assert len(one.facts) == 4 and not one.truncated
    two = movies.k_hop(["Kismet"], 2, domain="movies")
    assert {n.id for n in two.nodes} == {n.id for n in one.nodes} | {"The Devil's Doorway"}
    assert keys(two.facts) == {(t.head, t.relation, t.tail) for t in MOVIES}
    assert all(n.domain == "movies" for n in two.nodes)


def test_k_hop_facts_are_those_on_paths_of_length_k(store):
    store.add_triples("chain", [RawTriple("a", "r", "b"), RawTriple("b", "r", "c"), RawTriple("c", "r", "d"),
                                RawTriple("b", "r", "x"), RawTriple("x", "r", "c")])
    sub = store.k_hop(["a"], 2, domain="chain")
    assert {n.id for n in sub.nodes} == {"a", "b", "c", "x"}
    # x -> c joins two nodes both two hops away: no path of length <= 2 from a uses it
    assert keys(sub.facts) == {("a", "r", "b"), ("b", "r", "c"), ("b", "r", "x")}


def test_k_hop_limit_truncates(movies):
    full = movies.k_hop(["Kismet"], 2, domain="movies")
    exact = movies.k_hop(["Kismet"], 2, domain="movies", limit=len(full.facts))
    assert not exact.truncated and keys(exact.facts) == keys(full.facts)
    cut = movies.k_hop(["Kismet"], 2, domain="movies", limit=3)
    assert cut.truncated and len(cut.facts) == 3
    assert keys(cut.facts) <= keys(full.facts)
    ids = {n.id for n in cut.nodes}
    assert "Kismet" in ids and all(f.head in ids and f.tail in ids for f in cut.facts)


def test_k_hop_limit_keeps_the_same_facts_on_every_backend(movies):
    # Nearest first, then (head name, head id, relation, tail name, tail id): not load order, not key order.
    cut = movies.k_hop(["Kismet"], 1, domain="movies", limit=2)
    assert cut.truncated
    assert [(f.head, f.relation, f.tail) for f in cut.facts] == [("Kismet", "directed_by", "William Dieterle"),
                                                                  ("Kismet", "release_year", "1944")]
    assert [n.id for n in cut.nodes] == ["Kismet", "William Dieterle", "1944"]
    two = movies.k_hop(["Kismet"], 2, domain="movies", limit=5)
    assert two.truncated
    assert [(f.head, f.relation, f.tail) for f in two.facts] == [
        ("Kismet", "directed_by", "William Dieterle"), ("Kismet", "release_year", "1944"),
        ("Kismet", "starred_actors", "Marlene Dietrich"), ("Kismet 1955", "remake_of", "Kismet"),
        ("The Devil's Doorway", "directed_by", "William Dieterle")]
    assert [n.id for n in two.nodes] == ["Kismet", "William Dieterle", "1944", "Marlene Dietrich", "Kismet 1955",
                                         "The Devil's Doorway"]


def test_k_hop_several_and_unknown_seeds(movies):
    sub = movies.k_hop(["1944", "Kismet 1955", "nobody"], 1, domain="movies")
    assert set(sub.seeds) == {"1944", "Kismet 1955"}
    assert {n.id for n in sub.nodes} == {"1944", "Kismet 1955", "Kismet"}
    assert movies.k_hop(["nobody"], 2, domain="movies").nodes == []


def test_entity_lookup(movies):
    entity = movies.entity("Marlene Dietrich", "movies")
    assert (entity.id, entity.name, entity.domain) == ("Marlene Dietrich", "Marlene Dietrich", "movies")
    assert movies.entity("marlene dietrich", "movies") is None  # ids are exact


def test_find_entities_exact_then_prefix(movies):
    movies.add_triples("books", [RawTriple("kismet", "written_by", "Edward Knoblock")])
    found = movies.find_entities("KISMET")
    assert [(e.domain, e.id) for e in found] == [("books", "kismet"), ("movies", "Kismet"), ("movies", "Kismet 1955")]
    assert [e.id for e in movies.find_entities("kismet", domain="movies")] == ["Kismet", "Kismet 1955"]
    assert [e.id for e in movies.find_entities("  the devil")] == ["The Devil's Doorway"]
    assert [e.id for e in movies.find_entities("w", limit=1)] == ["William Dieterle"]
    assert movies.find_entities("zzz") == [] and movies.find_entities("") == []
    assert len(movies.find_entities("kismet", limit=2)) == 2


def test_display_names(store):
    with store.writer("d") as writer:
        writer.add([RawTriple("Q1", "P31", "Q5"), RawTriple("Q2", "P31", "Q5")])
        writer.set_names({"Q1": "Douglas Adams", "Q5": "human", "Q999": "never used"})
    assert store.entity("Q1", "d").name == "Douglas Adams"
    assert store.entity("Q2", "d").name == "Q2"
    assert store.entity("Q999", "d") is None
    assert store.count("d")["entities"] == 3
    assert [e.id for e in store.find_entities("douglas")] == ["Q1"]
    (fact,) = store.neighbors(["Q1"], domain="d")
    assert (fact.head_name, fact.tail_name) == ("Douglas Adams", "human")
    with store.writer("d") as writer:
        writer.set_names({"Q2": "Ada Lovelace"})
    assert store.entity("Q2", "d").name == "Ada Lovelace"
    assert store.entity("Q1", "d").name == "Douglas Adams"


def test_delete_domain_leaves_others_intact(movies):
    movies.add_triples("other", [RawTriple("Kismet", "is_a", "word"), RawTriple("x", "r", "y")])
    before = triples_of(movies, "movies")
    movies.delete_domain("other")
    assert movies.domains() == ["movies"]
    assert triples_of(movies, "movies") == before
    assert movies.count() == {"entities": 6, "triples": 6}
    assert [e.domain for e in movies.find_entities("Kismet")] == ["movies", "movies"]
    with pytest.raises(DomainNotFound):
        movies.count("other")
    movies.add_triples("other", [RawTriple("p", "q", "r")])  # a deleted domain can be created again
    assert triples_of(movies, "other") == {("p", "q", "r")}


def test_unknown_domain_is_named_with_the_known_ones(movies):
    with pytest.raises(DomainNotFound, match="movies"):
        movies.neighbors(["Kismet"], domain="films")
    for call in (lambda: movies.count("films"), lambda: movies.relations("films"),
                 lambda: movies.k_hop(["Kismet"], 1, domain="films"), lambda: movies.delete_domain("films"),
                 lambda: list(movies.iter_triples("films"))):
        with pytest.raises(DomainNotFound):
            call()


def test_iter_triples_round_trip_with_provenance(store):
    rows = [RawTriple("a", "r", "b", "one.tsv", 3), RawTriple("b", "r", "c", "two.tsv", 1), RawTriple("c", "s", "a")]
    store.add_triples("d", rows)
    got = {(f.head, f.relation, f.tail, f.source, f.line, f.domain) for f in store.iter_triples("d")}
    assert got == {(*row, "d") for row in rows}
    store.add_triples("copy", [RawTriple(f.head, f.relation, f.tail, f.source, f.line) for f in store.iter_triples("d")])
    assert {(f.head, f.relation, f.tail, f.source, f.line) for f in store.iter_triples("copy")} == set(rows)


def test_snapshot_matches_the_stored_triples(movies):
    snap = movies.snapshot("movies")
    assert (snap.num_nodes, snap.num_edges) == (6, 6)
    edges = {(snap.ids[h], snap.relations[r], snap.ids[t]) for h, r, t in zip(snap.head, snap.rel, snap.tail, strict=True)}
    assert edges == triples_of(movies, "movies")
    node = snap.node("William Dieterle")
    assert {snap.ids[snap.head[e]] for e in snap.in_edges(node)} == {"Kismet", "The Devil's Doorway"}
    assert keys(snap.fact(int(e)) for e in range(snap.num_edges)) == triples_of(movies, "movies")
    movies.add_triples("movies", [RawTriple("Kismet", "has_genre", "Drama")])
    fresh = movies.snapshot("movies")
    assert (fresh.num_nodes, fresh.num_edges) == (7, 7)


def test_failed_load_leaves_the_store_as_it_was(movies):
    before = (movies.count(), triples_of(movies, "movies"), keys(movies.neighbors(["Kismet"], domain="movies")))

    def broken():
        yield RawTriple("Kismet", "has_genre", "Drama")
        yield RawTriple("New Film", "directed_by", "Someone")
        raise LoadError("bad line", path="kb.txt", line=3, value="x")

    with pytest.raises(LoadError):
        with movies.writer("movies") as writer:
            writer.add(broken())
    with pytest.raises(RuntimeError):
        with movies.writer("fresh") as writer:
            writer.add([RawTriple("a", "r", "b")])
            raise RuntimeError("interrupted")
    after = (movies.count(), triples_of(movies, "movies"), keys(movies.neighbors(["Kismet"], domain="movies")))
    assert after == before
    assert movies.domains() == ["movies"]
    assert movies.find_entities("New Film") == []
    writer = movies.writer("movies")
    writer.add([RawTriple("x", "r", "y")])
    writer.abort()
    assert movies.count() == before[0]


def test_bad_triple_is_a_load_error_naming_source_and_line(store):
    with pytest.raises(LoadError, match=r"kb\.txt line 2"):
        store.add_triples("d", [RawTriple("a", "r", "b", "kb.txt", 1), RawTriple("", "r", "b", "kb.txt", 2)])
    assert store.domains() == []


def test_append_to_existing_domain(movies):
    added = movies.add_triples("movies", [
        RawTriple("Kismet", "directed_by", "William Dieterle"),  # already there
        RawTriple("Kismet", "has_genre", "Drama"),
        RawTriple("Casablanca", "has_genre", "Drama"),
    ])
    assert added == 2
    assert movies.count("movies") == {"entities": 8, "triples": 8}
    assert "has_genre" in movies.relations("movies")
    assert keys(movies.neighbors(["Drama"], domain="movies", direction="in")) == {
        ("Kismet", "has_genre", "Drama"), ("Casablanca", "has_genre", "Drama")}
    assert {n.id for n in movies.k_hop(["Casablanca"], 2, domain="movies").nodes} == {"Casablanca", "Drama", "Kismet"}


def test_to_networkx(movies):
    graph = movies.to_networkx(movies.k_hop(["Kismet"], 2, domain="movies"))
    assert graph.number_of_nodes() == 6 and graph.number_of_edges() == 6
    assert graph.has_edge("Kismet 1955", "Kismet", key="remake_of")


# Every backend orders strings by code point: an emoji (beyond U+FFFF) sorts after U+E000-U+FFFF
# (private use, fullwidth forms), as in Python, not before them as UTF-16 code units would.
HIGH_BMP, EMOJI = "\ue000", "\U0001f43a"


def test_k_hop_limit_cuts_in_code_point_order_with_emoji(store):
    store.add_triples("d", [RawTriple("s", "r", EMOJI + "a"), RawTriple("s", "r", EMOJI + "b"),
                            RawTriple("s", "r", HIGH_BMP), RawTriple("s", "r", "plain")])
    cut = store.k_hop(["s"], 1, domain="d", limit=2)
    assert cut.truncated
    assert [f.tail for f in cut.facts] == ["plain", HIGH_BMP]
    assert [f.tail for f in store.k_hop(["s"], 1, domain="d").facts] == ["plain", HIGH_BMP, EMOJI + "a", EMOJI + "b"]


def test_find_entities_ranks_in_code_point_order_with_emoji(store):
    store.add_triples("d", [RawTriple("x" + EMOJI, "r", "x" + HIGH_BMP), RawTriple("x" + EMOJI + "2", "r", "X")])
    assert [e.id for e in store.find_entities("x", limit=1)] == ["X"]
    assert [e.id for e in store.find_entities("x", limit=2)] == ["X", "x" + HIGH_BMP]
    assert [e.id for e in store.find_entities("x")] == ["X", "x" + HIGH_BMP, "x" + EMOJI, "x" + EMOJI + "2"]
    store.add_triples("e", [RawTriple(EMOJI, "r", HIGH_BMP)])
    store.add_triples("e", [RawTriple("y", "r", "z")])
    with store.writer("e") as writer:  # two exact matches, ordered by id
        writer.set_names({EMOJI: "same", HIGH_BMP: "same"})
    assert [e.id for e in store.find_entities("same", limit=1)] == [HIGH_BMP]
    assert [e.id for e in store.find_entities("same")] == [HIGH_BMP, EMOJI]


def test_huge_limits_mean_no_limit(movies):
    import sys

    for limit in (sys.maxsize, 10**30):
        full = movies.k_hop(["Kismet"], 2, domain="movies", limit=limit)
        assert len(full.facts) == len(MOVIES) and not full.truncated
        assert len(movies.neighbors(["Kismet"], domain="movies", direction="both", limit=limit)) == 4
        assert [e.id for e in movies.find_entities("kismet", limit=limit)] == ["Kismet", "Kismet 1955"]
    assert movies.neighbors(["Kismet"], domain="movies", limit=0) == []
    assert movies.find_entities("kismet", limit=0) == []


def test_a_load_in_progress_is_invisible_until_commit(movies):
    # Neo4j writes a load batch by batch; what it wrote before the commit point used to be read back
    before = (movies.count(), movies.count("movies"), triples_of(movies, "movies"),
              keys(movies.neighbors(["Kismet"], domain="movies", direction="both")),
              keys(movies.k_hop(["Kismet"], 2, domain="movies").facts), movies.snapshot("movies").num_edges)
    new = [RawTriple("Kismet", "has_genre", "Drama"), RawTriple("Casablanca", "has_genre", "Drama"),
           RawTriple("Casablanca", "directed_by", "William Dieterle")]
    writer = movies.writer("movies")
    writer.add(new)

    def seen():
        return (movies.count(), movies.count("movies"), triples_of(movies, "movies"),
                keys(movies.neighbors(["Kismet"], domain="movies", direction="both")),
                keys(movies.k_hop(["Kismet"], 2, domain="movies").facts), movies.snapshot("movies").num_edges)

    assert seen() == before
    assert movies.entity("Casablanca", "movies") is None and movies.find_entities("casablanca") == []
    assert movies.neighbors(["Drama", "Casablanca"], domain="movies", direction="both") == []
    assert movies.k_hop(["Casablanca"], 1, domain="movies").nodes == []
    writer.commit()
    assert movies.count("movies") == {"entities": 8, "triples": 9}
    assert triples_of(movies, "movies") == before[2] | keys(new)
    assert movies.entity("Casablanca", "movies").name == "Casablanca"
    assert {n.id for n in movies.k_hop(["Casablanca"], 1, domain="movies").nodes} == {
        "Casablanca", "Drama", "William Dieterle"}
    assert movies.snapshot("movies").num_edges == 9


@pytest.mark.parametrize("line", [-1, "3", 3.5, 2**31, 2**40])
def test_a_bad_line_number_is_a_load_error_on_every_backend(store, line):
    # the local store used to take "3" and 3.5 as 3, keep -1 (listed as -1 by iter_triples but None by
    # neighbors) and fail on 2**40 with a bare OverflowError; Neo4j kept -1 and 2**40
    store.add_triples("d", [RawTriple("a", "r", "b", "kb.tsv", 1)])
    with pytest.raises(LoadError, match=r"kb\.tsv: a triple's line must be an int from 0 to 2147483647"):
        store.add_triples("d", [RawTriple("x", "r", "y", "kb.tsv", 2), RawTriple("b", "r", "c", "kb.tsv", line)])
    assert triples_of(store, "d") == {("a", "r", "b")}


def test_line_numbers_at_the_ends_of_the_range(store):
    store.add_triples("d", [RawTriple("a", "r", "b", "kb.tsv", 0), RawTriple("b", "r", "c", "kb.tsv", 2**31 - 1),
                            RawTriple("c", "r", "d", "kb.tsv", None), RawTriple("d", "r", "e", "kb.tsv", True)])
    assert {(f.head, f.line) for f in store.iter_triples("d")} == {("a", None), ("b", 2**31 - 1), ("c", None),
                                                                   ("d", 1)}
    assert [f.line for f in store.neighbors(["b"], domain="d")] == [2**31 - 1]
