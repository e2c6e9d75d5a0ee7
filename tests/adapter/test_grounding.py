"""Concept grounding and QA subgraph extraction on the small CN-100K subset (and the full graph)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kgllm.exceptions import LoadError
from kgllm.fusion.features import read_mc_jsonl
from kgllm.fusion.grounding import (
    NODE_CHOICE,
    NODE_OTHER,
    NODE_QUESTION,
    ConceptGraph,
    ConceptGrounder,
    extract_subgraph,
    extract_subgraphs,
)


@pytest.fixture()
def tiny(tmp_path: Path) -> ConceptGraph:
    path = tmp_path / "tiny.tsv"
    path.write_text("AtLocation\trevolving door\tbank\nIsA\tbank\tbuilding\nUsedFor\tdoor\tenter building\n"
                    "AtLocation\tmoney\tbank\nCapableOf\tguard\tprotect money\nAtLocation\tbook\tlibrary\n"
                    "IsA\tlibrary\tbuilding\n")
    return ConceptGraph.from_triples(path)


def test_graph_vocabulary_and_adjacency(tiny: ConceptGraph) -> None:
    assert len(tiny) == 10 and tiny.n_edges == 7 and tiny.n_relation_ids == 2 * 4
    assert repr(tiny) == "ConceptGraph(nodes=10, edges=7, relations=4)"
    bank = tiny.index["bank"]
    assert {tiny.names[n] for n in tiny.neighbors([bank])} == {"revolving door", "building", "money"}
    nodes = np.array([tiny.index[n] for n in ("revolving door", "bank", "building")])
    src, dst, rel = tiny.edges_among(nodes)
    edges = {(tiny.names[nodes[s]], tiny.relations[r % 4] + ("^-1" if r >= 4 else ""), tiny.names[nodes[d]])
             for s, d, r in zip(src, dst, rel, strict=True)}
    assert edges == {("revolving door", "AtLocation", "bank"), ("bank", "AtLocation^-1", "revolving door"),
                     ("bank", "IsA", "building"), ("building", "IsA^-1", "bank")}


def test_vocab_hash_tracks_the_vocabulary(tiny: ConceptGraph, tmp_path: Path) -> None:
    other = tmp_path / "other.tsv"
    other.write_text("IsA\tbank\tbuilding\n")
    assert ConceptGraph.from_triples(other).vocab_hash != tiny.vocab_hash
    assert len(tiny.vocab_hash) == 16


def test_bad_triple_line_names_file_line_and_value(tmp_path: Path) -> None:
    path = tmp_path / "bad.tsv"
    path.write_text("IsA\tbank\tbuilding\nIsA bank building\n")
    with pytest.raises(LoadError) as err:
        ConceptGraph.from_triples(path)
    assert err.value.line == 2 and err.value.value == "IsA bank building" and "bad.tsv line 2" in str(err.value)
    empty = tmp_path / "empty.tsv"
    empty.write_text("\n")
    with pytest.raises(LoadError, match="no triples"):
        ConceptGraph.from_triples(empty)
    latin1 = tmp_path / "latin1.tsv"
    latin1.write_bytes("IsA\tcaf\u00e9\tbuilding\n".encode("latin-1"))  # not UTF-8: a LoadError naming it, no traceback
    with pytest.raises(LoadError, match=r"latin1\.tsv: not UTF-8 text \(byte 0xe9: invalid continuation byte\)"):
        ConceptGraph.from_triples(latin1)


def test_grounder_longest_match_lemmas_and_stop_words(tiny: ConceptGraph) -> None:
    grounder = ConceptGrounder(tiny)
    names = [tiny.names[c] for c in grounder.ground("A revolving door protects the banks' money at a what?")]
    assert names == ["revolving door", "bank", "money"]  # "door" is inside the longer match; plural lemmatised
    assert grounder.ground("what is it of the") == []
    assert [tiny.names[c] for c in grounder.ground("Libraries", whole=True)] == ["library"]


def test_subgraph_joins_question_and_choice(tiny: ConceptGraph) -> None:
    grounder = ConceptGrounder(tiny)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(len(tiny), 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    sub = extract_subgraph(tiny, grounder.ground("where is a revolving door"), grounder.ground("library", whole=True),
                           vectors, vectors[0])
    names = {tiny.names[n]: t for n, t in zip(sub.nodes, sub.types, strict=True)}
    # revolving door - bank - building - library is a 3-hop path: both inner nodes are kept
    assert names == {"revolving door": NODE_QUESTION, "library": NODE_CHOICE, "bank": NODE_OTHER,
                     "building": NODE_OTHER, "book": NODE_OTHER}
    assert sub.edge_index.shape[1] == 2 * 4 and sub.edge_index.max() < len(sub.nodes)
    small = extract_subgraph(tiny, [tiny.index["revolving door"]], [tiny.index["library"]], vectors, vectors[0],
                             max_nodes=3, hops=2)
    assert len(small.nodes) == 3 and "bank" not in {tiny.names[n] for n in small.nodes}
    empty = extract_subgraph(tiny, [], [], vectors, vectors[0])
    assert not empty.grounded and empty.edge_index.shape == (2, 0)


def _reference_nodes(graph: ConceptGraph, question: list[int], choice: list[int], vectors: np.ndarray,
                     context: np.ndarray, max_question: int, hops: int, max_nodes: int = 32) -> np.ndarray:
    """The subgraph's nodes computed directly from the definition, one choice at a time."""
    a = np.unique(np.asarray(choice[:3], dtype=np.int64))
    q = np.setdiff1d(np.asarray(question, dtype=np.int64), a)
    if len(q) > max_question:
        q = np.sort(q[np.argsort(-(vectors[q] @ context))[:max_question]])
    others: list[int] = []
    if len(a):
        n_a = set(graph.neighbors(a).tolist())
        n_q = set(graph.neighbors(q).tolist()) if len(q) else set()
        on_path = n_q & n_a if len(q) else set()
        if hops >= 3 and len(q):
            for x in n_q - n_a:
                ys = set(graph.neighbors([x]).tolist()) & n_a
                if ys:
                    on_path |= {x} | ys
        cands = sorted((on_path | n_a) - set(q.tolist()) - set(a.tolist()))
        if cands:
            score = vectors[cands] @ context + np.isin(cands, sorted(on_path))
            budget = max(max_nodes - len(q) - len(a), 0)
            others = sorted(np.asarray(cands)[np.argsort(-score, kind="stable")[:budget]].tolist())
    return np.concatenate([q, a, np.asarray(others, dtype=np.int64)])


def test_batched_extraction_equals_one_choice_at_a_time(concept_graph: ConceptGraph, mcqa_dir: Path) -> None:
    """The question side is shared across choices; every choice's subgraph must be what it is alone."""
    grounder = ConceptGrounder(concept_graph)
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(len(concept_graph), 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    checked = 0
    for q in read_mc_jsonl(mcqa_dir / "commonsenseqa" / "train_inhouse.jsonl")[:24]:
        question = grounder.ground(q.stem)
        choices = [grounder.ground(c, whole=True) for c in q.choices]
        # a choice that shares a concept with the question exercises the recomputed question side
        choices.append(question[:1] + choices[0])
        contexts = vectors[rng.integers(0, len(concept_graph), size=len(choices))]
        for max_question, hops in ((10, 3), (2, 3), (10, 2)):
            batched = extract_subgraphs(concept_graph, question, choices, vectors, contexts,
                                        max_question=max_question, hops=hops)
            for choice, context, sub in zip(choices, contexts, batched, strict=True):
                alone = extract_subgraph(concept_graph, question, choice, vectors, context,
                                         max_question=max_question, hops=hops)
                assert np.array_equal(sub.nodes, alone.nodes) and np.array_equal(sub.types, alone.types)
                assert np.array_equal(sub.edge_index, alone.edge_index)
                assert np.array_equal(sub.edge_type, alone.edge_type)
                reference = _reference_nodes(concept_graph, question, choice, vectors, context, max_question, hops)
                assert np.array_equal(sub.nodes, reference)
                checked += sub.grounded
    assert checked > 100


def test_read_mc_jsonl_rejects_bad_rows(tmp_path: Path, mcqa_dir: Path) -> None:
    questions = read_mc_jsonl(mcqa_dir / "commonsenseqa" / "dev.jsonl")
    assert len(questions) == 16 and all(len(q.choices) == 5 and q.answer is not None for q in questions)
    row = json.loads((mcqa_dir / "commonsenseqa" / "dev.jsonl").read_text().splitlines()[0])
    bad = tmp_path / "bad.jsonl"
    single = dict(row, question=dict(row["question"], choices=row["question"]["choices"][:1]))
    bad.write_text(json.dumps(row) + "\n" + json.dumps(single) + "\n")
    with pytest.raises(LoadError, match="line 2: a question needs at least 2 choices"):
        read_mc_jsonl(bad)
    bad.write_text(json.dumps(dict(row, answerKey="Z")) + "\n")
    with pytest.raises(LoadError, match="answerKey not among"):
        read_mc_jsonl(bad)
    bad.write_text("{not json\n")
    with pytest.raises(LoadError, match="line 1"):
        read_mc_jsonl(bad)


@pytest.mark.slow
def test_grounding_coverage_on_full_csqa_dev(shared_data: Path) -> None:
    graph = ConceptGraph.from_triples(shared_data / "conceptnet_100k" / "train.txt")
    grounder = ConceptGrounder(graph)
    questions = read_mc_jsonl(shared_data / "commonsenseqa" / "dev.jsonl")
    q_cov = np.mean([bool(grounder.ground(q.stem)) for q in questions])
    c_cov = np.mean([bool(grounder.ground(c, whole=True)) for q in questions for c in q.choices])
    assert q_cov > 0.95 and c_cov > 0.8, (q_cov, c_cov)
