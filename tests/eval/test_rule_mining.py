"""The rule-body algebra and the mining function behind ``RuleSet.mine``, on hand-checked graphs."""

from __future__ import annotations

import numpy as np
import pytest

from kgllm.eval.kgdata import snapshot_from_triples
from kgllm.reasoning.rule_matrices import RuleMatrices, body_counts
from kgllm.reasoning.rule_mining import mine_rules
from kgllm.reasoning.rules import Rule, RuleSet

# x -> a -> b -> y, plus b -> a: the path x, a, b, a revisits A and must not count as a grounding.
LOOPY = [("x", "r", "a"), ("a", "r", "b"), ("b", "r", "y"), ("b", "r", "a")]


def test_body_counts_bind_distinct_nodes_sparse_and_dense_agree():
    snap = snapshot_from_triples(LOOPY)
    m = RuleMatrices(snap)
    ix = snap.index
    body = (("r", False),) * 3
    counts = body_counts(m, body, binary=False).toarray()
    expected = np.zeros((4, 4))
    expected[ix["x"], ix["y"]] = 1.0  # x-a-b-y; x-a-b-a repeats a, a-b-a-b repeats a and b
    assert np.array_equal(counts, expected)
    assert np.array_equal(m.dense_body(body, False), expected)
    # length 2: x-a-b, a-b-y; a-b-a and b-a-b come back to X and are dropped
    two = body_counts(m, body[:2], binary=False).toarray()
    pairs = {(snap.ids[i], snap.ids[j]) for i, j in zip(*np.nonzero(two), strict=True)}
    assert pairs == {("x", "b"), ("a", "y")}


def test_mine_rules_counts_support_and_confidence_exactly():
    # child(Y,X) grounds on the 4 child edges, 3 of them mirrored by parent: 3 / (4 + smoothing 1)
    triples = [("p1", "parent", "c1"), ("p2", "parent", "c2"), ("p3", "parent", "c3"),
               ("c1", "child", "p1"), ("c2", "child", "p2"), ("c3", "child", "p3"), ("c4", "child", "p4")]
    rules, params = mine_rules(snapshot_from_triples(triples), max_length=1, min_support=2, smoothing=1.0,
                               constants=False)
    assert all(isinstance(r, Rule) for r in rules)
    by_text = {r.text(): r for r in rules}
    rule = by_text["parent(X,Y) <- child(Y,X)"]
    assert (rule.support, rule.groundings) == (3, 4)
    assert rule.confidence == pytest.approx(3 / 5)
    # the reverse direction: all 3 parent edges are mirrored -> 3 / (3 + 1)
    reverse = by_text["child(X,Y) <- parent(Y,X)"]
    assert (reverse.support, reverse.groundings, reverse.confidence) == (3, 3, pytest.approx(3 / 4))
    assert params["max_length"] == 1 and params["mined_on"]["edges"] == 7
    wrapped = RuleSet.mine(snapshot_from_triples(triples), max_length=1, min_support=2, smoothing=1.0,
                           constants=False)
    assert sorted(r.text() for r in wrapped.rules) == sorted(by_text)
    with pytest.raises(ValueError, match="max_length"):
        mine_rules(snapshot_from_triples(triples), max_length=4)


def test_a_graph_without_edges_mines_no_rules():
    # mine_rules stacked the matrices of no relation: "ValueError: need at least one array to concatenate"
    rules = RuleSet.mine(snapshot_from_triples([]))
    assert len(rules) == 0 and rules.params["mined_on"] == {"nodes": 0, "edges": 0, "relations": 0}
    assert len(RuleSet.mine(snapshot_from_triples([("a", "r", "a"), ("b", "r", "b")]))) == 0  # self-loops only
    assert len(RuleSet.mine(snapshot_from_triples([("a", "r", "b")]))) == 0  # one edge supports nothing
