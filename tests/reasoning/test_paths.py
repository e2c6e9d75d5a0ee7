"""Relation graph, chain search and aggregation on a hand-made graph where the right chains are known."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from kgllm.reasoning.aggregate import aggregate, chain_weights
from kgllm.reasoning.paths import ChainResult, ChainSearch, RelationGraph, decode_step, step_code
from kgllm.reasoning.reasoner import PathReasoner
from kgllm.reasoning.scorer import QuestionState


class TableScorer:
    """A path scorer from a fixed table of chain names (test helper implementing the protocol)."""

    name = "table"

    def __init__(self, graph: RelationGraph, table: dict[tuple[str, ...], float]) -> None:
        self.graph = graph
        self.table = table

    def prepare(self, texts: Sequence[str]) -> list[QuestionState]:
        return [QuestionState(t, np.zeros(1, dtype=np.float32)) for t in texts]

    def score(self, state: QuestionState, chains, *, complete: bool) -> np.ndarray:
        out = []
        for chain in chains:
            names = tuple(self.graph.code_name(c) for c in chain)
            if complete:
                out.append(self.table.get(names, -10.0))
            else:  # a prefix scores as its best completion in the table
                out.append(max([s for k, s in self.table.items() if k[:len(names)] == names], default=-10.0))
        return np.array(out, dtype=np.float32)


def names(snapshot, nodes) -> set[str]:
    return {snapshot.ids[int(i)] for i in nodes}


def test_step_codes_round_trip():
    assert decode_step(step_code(3, True)) == (3, True)
    assert decode_step(step_code(0, False)) == (0, False)


def test_expand_forward_and_inverse(movies):
    graph = RelationGraph(movies)
    directed = movies.relation_index("directed_by")
    kismet = np.array([movies.node("Kismet")])
    assert names(movies, graph.expand(kismet, step_code(directed, False))) == {"William Dieterle"}
    dieterle = np.array([movies.node("William Dieterle")])
    assert names(movies, graph.expand(dieterle, step_code(directed, True))) == {"Kismet", "Satan Met a Lady"}
    # a person has only inverse steps available
    codes = graph.available(np.array([movies.node("Tom Hanks")]))
    assert [graph.code_name(c) for c in codes] == ["~starred_actors"]


def test_walk_excludes_topic_at_every_hop(movies):
    graph = RelationGraph(movies)
    starred = movies.relation_index("starred_actors")
    hanks = np.array([movies.node("Tom Hanks")])
    chain = (step_code(starred, True), step_code(starred, False))
    frontiers = graph.walk(hanks, chain, exclude=hanks)
    assert names(movies, frontiers[0]) == {"Forrest Gump", "Cast Away", "Big"}
    assert names(movies, frontiers[1]) == {"Helen Hunt"}  # co-actors, Tom Hanks himself excluded


def test_trace_returns_real_edges(movies):
    graph = RelationGraph(movies)
    starred, directed = movies.relation_index("starred_actors"), movies.relation_index("directed_by")
    hanks = np.array([movies.node("Tom Hanks")])
    chain = (step_code(starred, True), step_code(directed, False))
    frontiers = graph.walk(hanks, chain, exclude=hanks)
    edges = graph.trace(hanks, chain, frontiers, movies.node("Penny Marshall"))
    facts = [movies.fact(e) for e in edges]
    assert [(f.head, f.relation, f.tail) for f in facts] == [("Big", "starred_actors", "Tom Hanks"),
                                                             ("Big", "directed_by", "Penny Marshall")]
    assert facts[0].source == "hand.txt" and facts[0].line == 19
    assert graph.trace(hanks, chain, frontiers, movies.node("Drama")) == []


def test_search_finds_the_preferred_chain_and_never_returns_to_topic(movies):
    graph = RelationGraph(movies)
    scorer = TableScorer(graph, {("~starred_actors", "directed_by"): 2.0, ("~starred_actors",): 1.0})
    hanks = np.array([movies.node("Tom Hanks")])
    results = ChainSearch(graph, max_hops=3, beam=4).search(hanks, scorer, scorer.prepare(["q"])[0])
    best = results[0]
    assert [graph.code_name(c) for c in best.chain] == ["~starred_actors", "directed_by"]
    assert names(movies, best.answers) == {"Robert Zemeckis", "Penny Marshall"}
    for result in results:
        assert movies.node("Tom Hanks") not in result.answers.tolist()


def test_search_respects_max_hops_and_empty_topic(movies):
    graph = RelationGraph(movies)
    scorer = TableScorer(graph, {})
    kismet = np.array([movies.node("Kismet")])
    results = ChainSearch(graph, max_hops=1, beam=16).search(kismet, scorer, scorer.prepare(["q"])[0], keep=50)
    assert {len(r.chain) for r in results} == {1}
    assert len(results) == 4  # directed_by, starred_actors, has_genre, release_year
    with pytest.raises(ValueError, match="max_hops"):
        ChainSearch(graph, max_hops=0)


def test_aggregate_sums_chain_weights_by_hand():
    # weights: softmax([0, ln 3]) = [0.25, 0.75]
    a = ChainResult((0,), 0.0, [np.array([1, 2])])
    b = ChainResult((2,), float(np.log(3.0)), [np.array([2, 3])])
    results = [b, a]
    np.testing.assert_allclose(chain_weights(results, 1.0), [0.75, 0.25])
    agg = aggregate(results, temperature=1.0)
    assert agg.nodes.tolist() == [2, 3, 1]
    np.testing.assert_allclose(agg.scores, [1.0, 0.75, 0.25])
    assert agg.chains == [[0, 1], [0], [1]]


def test_reasoner_returns_paths_and_facts_with_provenance(movies):
    graph = RelationGraph(movies)
    scorer = TableScorer(graph, {("directed_by",): 3.0})
    reasoner = PathReasoner(graph, scorer, temperature=1.0)
    state = scorer.prepare(["who directed NE"])[0]
    result = reasoner.reason(state, [movies.node("Kismet")], top_k=3)
    assert result.answers[0].name == "William Dieterle"
    assert result.answer_set == ["William Dieterle"]
    path = result.paths[result.answers[0].paths[0]]
    assert path.text() == "Kismet -[directed by]-> William Dieterle"
    assert path.hops[0].domain == "movies"
    assert result.facts[0].line == 1 and result.facts[0].source == "hand.txt"


def test_reasoner_inverse_hop_direction(movies):
    graph = RelationGraph(movies)
    scorer = TableScorer(graph, {("~starred_actors",): 3.0})
    result = PathReasoner(graph, scorer).reason(scorer.prepare(["q"])[0], [movies.node("Tom Hanks")], top_k=None)
    assert {a.name for a in result.answers[:3]} == {"Forrest Gump", "Cast Away", "Big"}
    hop = result.paths[0].hops[0]
    assert hop.inverse and hop.head == "Tom Hanks" and hop.relation == "starred_actors"
    assert "inverse of starred actors" in result.paths[0].text()


def test_tied_answers_and_traced_paths_do_not_depend_on_node_order():
    # the same graph numbered in two orders, as two backends number it (load order, key order in Neo4j)
    from reasoning_graphs import MOVIE_TRIPLES, make_snapshot

    seen = []
    for triples in (MOVIE_TRIPLES, MOVIE_TRIPLES[::-1]):
        snap = make_snapshot(triples)
        graph = RelationGraph(snap)
        tom_hanks = [snap.node("Tom Hanks")]
        out = []
        for chain in [("~starred_actors",), ("~starred_actors", "directed_by")]:
            scorer = TableScorer(graph, {chain: 3.0})
            result = PathReasoner(graph, scorer).reason(scorer.prepare(["q"])[0], tom_hanks, top_k=None)
            out.append(([(a.name, a.score) for a in result.answers], [p.text() for p in result.paths]))
        seen.append(out)
    assert seen[0] == seen[1]
    (films, _), (directors, paths) = seen[0]
    assert [name for name, _ in films] == ["Big", "Cast Away", "Forrest Gump"]  # equal scores: by name
    assert [name for name, _ in directors] == ["Penny Marshall", "Robert Zemeckis"]
    # Zemeckis directed two of the films: the path shown goes through the first by name
    assert paths[1] == "Tom Hanks -[inverse of starred actors]-> Cast Away -[directed by]-> Robert Zemeckis"


def test_mask_replaces_bracketed_mention():
    q = "who directed [Kismet] in 1944"
    start = q.index("Kismet")
    assert PathReasoner.mask(q, start, start + len("Kismet")) == "who directed NE in 1944"
    assert PathReasoner.mask("who directed Kismet", 13, 19) == "who directed NE"
