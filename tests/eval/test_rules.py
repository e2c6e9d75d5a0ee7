"""Rule mining, application and explanation on small real graphs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kgllm.eval.kgdata import KGDataset, snapshot_from_triples
from kgllm.exceptions import ModelError
from kgllm.reasoning.rules import Rule, RuleSet

# A toy world where a country's region follows from its neighbours' (and subregions' region).
GEO = [
    ("france", "neighbor", "spain"), ("spain", "neighbor", "france"),
    ("france", "neighbor", "italy"), ("italy", "neighbor", "france"),
    ("spain", "neighbor", "portugal"), ("portugal", "neighbor", "spain"),
    ("italy", "neighbor", "austria"), ("austria", "neighbor", "italy"),
    ("germany", "neighbor", "austria"), ("austria", "neighbor", "germany"),
    ("germany", "neighbor", "france"), ("france", "neighbor", "germany"),
    ("france", "locatedin", "europe"), ("spain", "locatedin", "europe"), ("italy", "locatedin", "europe"),
    ("portugal", "locatedin", "europe"), ("austria", "locatedin", "europe"),
    ("china", "neighbor", "mongolia"), ("mongolia", "neighbor", "china"),
    ("china", "neighbor", "laos"), ("laos", "neighbor", "china"),
    ("china", "locatedin", "asia"), ("mongolia", "locatedin", "asia"),
    ("vietnam", "neighbor", "laos"), ("laos", "neighbor", "vietnam"),
    ("vietnam", "neighbor", "china"), ("china", "neighbor", "vietnam"),
    ("laos", "locatedin", "asia"),
]


def test_mines_the_neighbour_rule_and_explains_with_a_real_path(fixtures_dir):
    snap = snapshot_from_triples(GEO, domain="geo")
    rules = RuleSet.mine(snap, max_length=2, constants=False)
    texts = {r.text(): r for r in rules.for_head("locatedin")}
    rule = texts["locatedin(X,Y) <- neighbor(X,A), locatedin(A,Y)"]
    # groundings of neighbor(X,A), locatedin(A,Y) with Y != X: hand-counted over GEO
    assert rule.support >= 5 and rule.confidence == pytest.approx(rule.support / (rule.groundings + 5.0))
    assert "locatedin(X,Y) <- locatedin(X,Y)" not in texts  # the trivial rule is never mined

    germany, vietnam = snap.index["germany"], snap.index["vietnam"]
    top = rules.infer(snap, germany, "locatedin", top_k=2)
    assert snap.ids[top[0][0]] == "europe"
    tail, score, inference = top[0]
    hops = inference.path.hops
    assert hops[0].head == "germany" and hops[-1].tail == "europe"
    for hop in hops:  # every hop is a stored edge
        assert (hop.head, hop.relation, hop.tail) in set(GEO)
    inferred = inference.hop("germany", "locatedin", "europe", domain="geo")
    assert inferred.rule.startswith("locatedin(X,Y) <- neighbor(X,A), locatedin(A,Y)")
    assert "germany -[neighbor]->" in inferred.rule
    assert snap.ids[rules.infer(snap, vietnam, "locatedin", top_k=1)[0][0]] == "asia"



def test_tied_inferences_and_their_groundings_do_not_depend_on_node_order():
    # each store numbers nodes and orders edges its own way (load order locally, key order in Neo4j)
    entities = sorted({x for h, _, t in GEO for x in (h, t)})
    rules = RuleSet.mine(snapshot_from_triples(GEO, domain="geo"), max_length=2, constants=False)
    seen = []
    for triples, order in ((GEO, entities), (GEO[::-1], entities[::-1])):
        snap = snapshot_from_triples(triples, domain="geo", entities=order)
        seen.append([[(snap.ids[tail], round(score, 6), why.path.text())
                      for tail, score, why in rules.infer(snap, snap.index[head], "locatedin", inverse=inverse, top_k=2)]
                     for head, inverse in (("europe", True), ("germany", False), ("vietnam", False))])
    assert seen[0] == seen[1]
    assert [tail for tail, _, _ in seen[0][0]] == ["austria", "france"]  # equal scores: by name
    assert seen[0][1][0][2] == "germany -[neighbor]-> austria -[locatedin]-> europe"  # neighbours by name

def test_inverse_heads_and_distinct_variables():
    snap = snapshot_from_triples(GEO, domain="geo")
    rules = RuleSet.mine(snap, max_length=3, constants=False, min_support=1)
    # ~locatedin(europe, ?) ranks European countries (answering (?, locatedin, europe))
    scores = rules.score(snap, [snap.index["europe"]], "locatedin", inverse=True)[0]
    assert scores[snap.index["germany"]] > scores[snap.index["vietnam"]]
    # no rule ever predicts the query entity itself
    assert all(rules.score(snap, [i], "neighbor")[0, i] == 0.0 for i in range(snap.num_nodes))
    # length-3 bodies never count a path that revisits X: neighbor(X,A), neighbor(A,X), neighbor(X,Y)
    # would otherwise make every neighbour-of-a-neighbour rule look perfect
    for rule in rules.for_head("neighbor"):
        assert rule.support <= rule.groundings


def test_countries_s1_rules_rank_regions_perfectly(fixtures_dir):
    ds = KGDataset.load(fixtures_dir / "eval" / "countries_S1", name="countries-s1", need=("train", "dev"))
    snap = ds.snapshot("train")
    rules = RuleSet.mine(snap)
    regions = (fixtures_dir / "eval" / "countries_S1" / "regions.list").read_text().split()
    idx = [snap.index[r] for r in regions]
    heads = [snap.index[h] for h, _, _ in ds.splits["dev"]]
    scores = rules.score(snap, heads, "locatedin")[:, idx]
    predicted = [regions[int(np.argmax(row))] for row in scores]
    assert predicted == [t for _, _, t in ds.splits["dev"]]


def test_save_load_round_trip_and_bad_manifest(tmp_path):
    snap = snapshot_from_triples(GEO, domain="geo")
    rules = RuleSet.mine(snap, max_length=2)
    rules.save(tmp_path / "rules")
    loaded = RuleSet.load(tmp_path / "rules")
    assert [r.to_dict() for r in loaded.rules] == [r.to_dict() for r in rules.rules]
    assert np.array_equal(loaded.score(snap, [0, 1], "locatedin"), rules.score(snap, [0, 1], "locatedin"))
    manifest = json.loads((tmp_path / "rules" / "manifest.json").read_text())
    assert manifest["num_rules"] == len(rules) and manifest["params"]["max_length"] == 2

    with pytest.raises(ModelError, match="not a trained rule set directory"):
        RuleSet.load(tmp_path)
    manifest["num_rules"] += 1
    (tmp_path / "rules" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="manifest lists"):
        RuleSet.load(tmp_path / "rules")


def test_infer_min_score_is_not_passed_on_the_tie_breaking_term():
    # "max" scores are the best confidence plus 1e-3 x noisy-or: 0.4996 scored 0.5001 and passed min_score 0.5
    snap = snapshot_from_triples([("x", "n", "a"), ("a", "loc", "eu"), ("x", "m", "b"), ("b", "loc", "asia")])
    weak = Rule(head=("loc", False), body=(("n", False), ("loc", False)), confidence=0.4996, support=1, groundings=2)
    exact = Rule(head=("loc", False), body=(("m", False), ("loc", False)), confidence=0.5, support=1, groundings=2)
    rules = RuleSet([weak, exact])
    assert rules.score(snap, [snap.index["x"]], "loc")[0, snap.index["eu"]] > 0.5
    inferred = rules.infer(snap, snap.index["x"], "loc", min_score=0.5)
    assert [snap.ids[tail] for tail, _, _ in inferred] == ["asia"]  # at least min_score: 0.5 itself passes
    assert [snap.ids[t] for t, _, _ in rules.infer(snap, snap.index["x"], "loc")] == ["asia", "eu"]
    # a constant rule of confidence 1 keeps it (not the 0.999999 its logarithm needs) for min_score=1
    sure = Rule(head=("loc", False), body=(("n", False),), confidence=1.0, support=3, groundings=3, tail="eu")
    assert [snap.ids[t] for t, _, _ in RuleSet([sure]).infer(snap, snap.index["x"], "loc", min_score=1.0)] == ["eu"]


def test_damaged_rule_files_are_model_errors_naming_file_and_line(tmp_path):
    rules = RuleSet.mine(snapshot_from_triples(GEO, domain="geo"), max_length=2)
    directory = rules.save(tmp_path / "rules")
    text = (directory / "rules.jsonl").read_text()
    (directory / "rules.jsonl").write_text(text[:-30])  # cut mid-line (a copy that stopped)
    with pytest.raises(ModelError, match=rf"rules\.jsonl line {len(rules)}: damaged rule"):
        RuleSet.load(directory)
    (directory / "rules.jsonl").write_text(text.replace('"confidence"', '"conf"', 1))
    with pytest.raises(ModelError, match=r"rules\.jsonl line 1: damaged rule \(KeyError"):
        RuleSet.load(directory)
    (directory / "rules.jsonl").write_bytes(b"\xff\n")
    with pytest.raises(ModelError, match=r"rules\.jsonl line 1: not valid utf-8"):
        RuleSet.load(directory)
    (directory / "rules.jsonl").unlink()
    with pytest.raises(ModelError, match="rule set without rules.jsonl"):
        RuleSet.load(directory)
    (directory / "manifest.json").write_text("{bad")
    with pytest.raises(ModelError, match=r"manifest\.json: damaged manifest"):
        RuleSet.load(directory)


def test_scores_follow_a_new_snapshot_at_a_freed_address():
    # the body matrices were cached by id(snapshot): a snapshot made after the last one was freed often gets
    # its address, and was scored with the old graph's matrices (wrong scores, or an index error)
    rules = RuleSet([Rule(head=("loc", False), body=(("n", False), ("loc", False)), confidence=0.8, support=1,
                          groundings=1)])
    for i in range(30):
        pad = [(f"pad{j}", "n", f"pad{j + 1}") for j in range(i % 3)]  # graphs of 3, 5 and 6 nodes in turn
        snap = snapshot_from_triples([*pad, ("x", "n", "b"), ("b", "loc", "r")])
        scores = rules.score(snap, [snap.index["x"]], "loc")
        assert scores.shape == (1, snap.num_nodes) and scores[0, snap.index["r"]] >= 0.8
        del snap


def test_a_self_loop_does_not_explain_a_constant_rule_that_never_fired():
    # scoring drops self-loops, grounding did not: eu was explained by loc(X,eu) <- b(X,_) [0.9] via x -[b]-> x
    # although only the path rule [0.6] fired (score 0.6006)
    snap = snapshot_from_triples([("x", "b", "x"), ("x", "n", "a"), ("a", "loc", "eu")])
    const = Rule(head=("loc", False), body=(("b", False),), confidence=0.9, support=9, groundings=10, tail="eu")
    path = Rule(head=("loc", False), body=(("n", False), ("loc", False)), confidence=0.6, support=6, groundings=10)
    ((tail, score, why),) = RuleSet([const, path]).infer(snap, snap.index["x"], "loc")
    assert snap.ids[tail] == "eu" and score == pytest.approx(0.6006)
    assert why.rule == path and why.path.text() == "x -[n]-> a -[loc]-> eu"


def test_a_graph_of_a_thousand_nodes_is_not_scored_with_dense_matrices():
    # up to 2000 nodes each rule body was built as a cached dense n x n matrix: 32 MB and 0.7 s a body at 2000
    # nodes, minutes and gigabytes for an expert's 300 rules at its first question
    triples = [(f"e{i}", "n", f"e{(i * 7 + 1) % 1000}") for i in range(1000)] + [("e1", "loc", "eu")]
    snap = snapshot_from_triples(triples)
    rules = RuleSet([Rule(head=("loc", False), body=(("n", False), ("n", True), ("loc", False)), confidence=0.7,
                          support=1, groundings=1)])
    rules.score(snap, [snap.index["e0"]], "loc")
    assert rules._matrices(snap).bodies == {}  # the sparse path: nothing of n x n kept
