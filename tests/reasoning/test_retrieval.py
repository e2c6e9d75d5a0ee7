"""Retrievers on the hand-made movie graph: k-hop subgraph, personalized PageRank, FAISS, RRF hybrid."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from kgllm.exceptions import ConfigError
from kgllm.retrieval import (
    FactResolver,
    HybridRetriever,
    PersonalizedPageRank,
    PPRRetriever,
    Retriever,
    SubgraphRetriever,
    VectorRetriever,
    fact_id,
    k_hop_nodes,
    reciprocal_rank_fusion,
)


def test_subgraph_one_hop_facts(movies):
    retriever = SubgraphRetriever(movies, hops=1)
    assert isinstance(retriever, Retriever)
    found = retriever.retrieve("", seeds=["Kismet"], k=50)
    assert {(f.head, f.relation, f.tail) for f in found.facts} == {
        ("Kismet", "directed_by", "William Dieterle"), ("Kismet", "starred_actors", "Marlene Dietrich"),
        ("Kismet", "has_genre", "Drama"), ("Kismet", "release_year", "1944")}
    assert found.nodes[0] == ("Kismet", 1.0)
    assert {n for n, s in found.nodes if s == 0.5} == {"William Dieterle", "Marlene Dietrich", "Drama", "1944"}
    assert not found.truncated


def test_subgraph_limits_and_missing_seeds(movies):
    found = SubgraphRetriever(movies, hops=3, node_limit=5).retrieve("", seeds=["Tom Hanks"], k=100)
    assert len(found.nodes) == 5 and found.truncated
    assert SubgraphRetriever(movies).retrieve("q", seeds=["No Such Entity"]).facts == []
    assert SubgraphRetriever(movies).retrieve("q").facts == []
    with pytest.raises(ConfigError, match="k must be"):
        SubgraphRetriever(movies).retrieve("q", seeds=["Kismet"], k=0)


def test_ppr_power_matches_networkx_with_tight_tolerance(movies):
    solver = PersonalizedPageRank.from_snapshot(movies, alpha=0.15)
    seeds = np.array([movies.node("Tom Hanks")])
    exact = solver.run(seeds, method="power", tol=1e-13)
    assert exact.sum() == pytest.approx(1.0, abs=1e-9)
    graph = nx.from_scipy_sparse_array(solver.adjacency.astype(np.float64), create_using=nx.Graph,
                                       edge_attribute="weight")
    reference = nx.pagerank(graph, alpha=0.85, personalization={int(seeds[0]): 1.0}, tol=1e-14, max_iter=10_000)
    np.testing.assert_allclose(exact, [reference[i] for i in range(movies.num_nodes)], atol=1e-8)


def test_ppr_push_is_within_its_error_bound(movies):
    solver = PersonalizedPageRank.from_snapshot(movies)
    seeds = np.array([movies.node("Kismet"), movies.node("Big")])
    exact = solver.run(seeds, method="power", tol=1e-13)
    eps = 1e-5
    approx = solver.run(seeds, eps=eps)
    assert np.all(np.abs(exact - approx) <= eps * np.maximum(solver.degree, 1) + 1e-12)
    assert set(np.argsort(-exact)[:5].tolist()) == set(np.argsort(-approx)[:5].tolist())
    with pytest.raises(ConfigError, match="unknown PPR method"):
        solver.run(seeds, method="magic")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="out of range"):
        solver.run(np.array([10_000]))
    with pytest.raises(ConfigError, match="alpha"):
        PersonalizedPageRank(solver.adjacency, alpha=1.5)


def test_ppr_retriever_ranks_near_nodes_first(movies):
    found = PPRRetriever(movies).retrieve("", seeds=["Tom Hanks"], k=5)
    ranked = [n for n, _ in found.nodes]
    assert "Tom Hanks" not in ranked  # seeds are not results
    assert set(ranked[:3]) == {"Forrest Gump", "Cast Away", "Big"}
    scores = [s for _, s in found.nodes]
    assert scores == sorted(scores, reverse=True)
    assert all(f.score is not None and f.line for f in found.facts)


@pytest.fixture(scope="module")
def fact_index(embedder):
    from reasoning_graphs import MOVIE_TRIPLES

    from kgllm.index import VectorIndex

    ids = [fact_id(h, r, t) for h, r, t in MOVIE_TRIPLES]
    texts = [f"{h} {r.replace('_', ' ')} {t}" for h, r, t in MOVIE_TRIPLES]
    index = VectorIndex.create(embedder.dim, model=embedder.model_name)
    index.add(ids, embedder.encode(texts))
    index.add([fact_id("Gone", "directed_by", "Nobody")], embedder.encode(["Gone directed by Nobody"]))
    return index


def test_vector_retriever_finds_the_fact(movies, embedder, fact_index):
    retriever = VectorRetriever(lambda: fact_index, embedder, kind="facts", resolve=FactResolver(movies))
    found = retriever.retrieve("who was Kismet directed by", k=3)
    top = found.facts[0]
    assert (top.head, top.relation, top.tail) == ("Kismet", "directed_by", "William Dieterle")
    assert top.line == 1 and top.source == "hand.txt" and top.score > 0.5
    # a fact no longer in the graph is skipped, not returned half-resolved
    found = retriever.retrieve("Gone directed by Nobody", k=2)
    assert all(f.head != "Gone" for f in found.facts)
    assert retriever.retrieve("   ").facts == []


def _shown(found) -> tuple:
    return found.nodes, [(f.head, f.relation, f.tail, f.score) for f in found.facts], found.truncated


def test_retrieval_does_not_depend_on_load_order(embedder):
    """The same triples loaded in opposite orders (other node, relation and edge numbers, as in the local
    store and Neo4j) retrieve the same nodes and facts: ties go by name, then id, not by index."""
    from reasoning_graphs import MOVIE_TRIPLES, make_snapshot

    from kgllm.index import VectorIndex

    remake = [("Kismet 1955", "has_genre", "Drama"), ("Kismet 1955", "directed_by", "Vincente Minnelli")]
    triples = [*MOVIE_TRIPLES, *remake]
    graph, near, vector = [], [], []
    for order in (triples, triples[::-1]):
        snap = make_snapshot(order, names={"Kismet 1955": "Kismet"})  # a remake: same name, other id
        retrievers = {"1-hop": SubgraphRetriever(snap, hops=1), "2-hop": SubgraphRetriever(snap, hops=2, node_limit=6),
                      "ppr": PPRRetriever(snap)}
        graph.append({(name, seed, k): _shown(r.retrieve("", seeds=[seed], k=k)) for name, r in retrievers.items()
                      for seed in ("Kismet", "Tom Hanks", "Drama") for k in (1, 3, 50)})
        nodes, dist, truncated = k_hop_nodes(snap, np.array([snap.node("Drama")]), 2, limit=4)
        near.append(([snap.ids[i] for i in nodes], dist.tolist(), truncated))
        # the facts index filled in the snapshot's edge order, as the knowledge base fills it
        edges = range(snap.num_edges)
        index = VectorIndex.create(embedder.dim, model=embedder.model_name)
        index.add([fact_id(snap.ids[snap.head[e]], snap.relations[snap.rel[e]], snap.ids[snap.tail[e]]) for e in edges],
                  embedder.encode([snap.fact(e).text() for e in edges]))
        retriever = VectorRetriever(lambda index=index: index, embedder, resolve=FactResolver(snap))
        vector.append([_shown(retriever.retrieve("Kismet has genre Drama", k=k)) for k in (1, 2, 5)])
    assert graph[0] == graph[1]
    assert near[0] == near[1]
    assert vector[0] == vector[1]
    # Tom Hanks' three films are one hop away, equally near: they come by name, k cuts that order
    nodes, _, _ = graph[0]["1-hop", "Tom Hanks", 3]
    assert nodes == [("Tom Hanks", 1.0), ("Big", 0.5), ("Cast Away", 0.5)]
    # Drama's four films do not fit under limit=4 with Drama itself: the first three by (name, id) do
    assert near[0] == (["Drama", "Cast Away", "Forrest Gump", "Kismet"], [0, 1, 1, 1], True)
    # both films named Kismet have the genre Drama: equal scores, then the head ids decide, at any k
    _, facts, _ = vector[0][0]
    assert [f[:3] for f in facts] == [("Kismet", "has_genre", "Drama")]
    _, facts, _ = vector[0][1]
    assert [f[:3] for f in facts] == [("Kismet", "has_genre", "Drama"), ("Kismet 1955", "has_genre", "Drama")]
    assert facts[0][3] == facts[1][3]


def test_reciprocal_rank_fusion_by_hand():
    fused = dict(reciprocal_rank_fusion([["a", "b"], ["b", "c"]], k=60))
    assert fused["b"] == pytest.approx(1 / 62 + 1 / 61)
    assert fused["a"] == pytest.approx(1 / 61)
    assert fused["c"] == pytest.approx(1 / 62)
    assert list(dict(reciprocal_rank_fusion([["a", "b"], ["b", "c"]]))) [0] == "b"
    with pytest.raises(ConfigError):
        reciprocal_rank_fusion([["a"]], weights=[1.0, 2.0])


def test_hybrid_fuses_graph_and_vector_retrievers(movies, embedder, fact_index):
    hybrid = HybridRetriever([SubgraphRetriever(movies, hops=1), PPRRetriever(movies),
                              VectorRetriever(lambda: fact_index, embedder, resolve=FactResolver(movies))])
    found = hybrid.retrieve("who directed Kismet", seeds=["Kismet"], k=5)
    assert (found.facts[0].head, found.facts[0].relation) == ("Kismet", "directed_by")
    assert len(found.facts) == 5 and len({f.key for f in found.facts}) == 5
    # PPR's first node; the subgraph ties Kismet's four neighbours and lists them by name
    assert found.nodes and found.nodes[0][0] == "Drama"
    with pytest.raises(ConfigError):
        HybridRetriever([])
