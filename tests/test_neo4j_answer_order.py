"""The same pack in the embedded store and in Neo4j answers alike: same answers, same order, same paths,
and the retrievers return the same nodes and facts.

The stores number nodes differently (load order locally, key order in Neo4j), so equally scored answers
are ordered by name, then id, and the path shown for an answer is chosen by name too; retrievers order
equally scored nodes by name, then id, and facts by (head, relation, tail).
"""

from __future__ import annotations

import pytest

import kgllm
from kgllm.retrieval import PPRRetriever, SubgraphRetriever
from kgllm.stores.neo4j import Neo4jGraphStore

pytestmark = pytest.mark.neo4j

DOMAIN = "tiny_movies"
QUESTIONS = [
    "Who acted in [Kismet]?",  # four actors, all scored 1.0
    "Which films are tagged [drama]?",
    "Who starred in the films directed by [Steven Spielberg]?",
    "Who directed the films that [Tom Hanks] acted in?",  # one answer, reached through two films
]


@pytest.fixture
def neo4j_kb(neo4j_server, fixtures_dir, tmp_path):
    conn = neo4j_server.connection()
    with Neo4jGraphStore(**conn) as store:
        store.rollback_pending_loads()
        for domain in store.domains():
            store.delete_domain(domain)
    with kgllm.open(tmp_path / "neo4j", store="neo4j", neo4j_uri=conn["uri"], user=conn["user"],
                    password=conn["password"], database=conn["database"]) as kb:
        kb.load(fixtures_dir / "kb" / "tiny_movies")
        yield kb


def _shown(answer) -> tuple[list[tuple[str, str, float]], list[str]]:
    return [(a.name, a.id, a.score) for a in answer.answers], [p.text() for p in answer.paths]


def test_tied_answers_come_in_the_same_order_on_both_backends(tiny_movies_kb, neo4j_kb):
    local = [_shown(tiny_movies_kb.ask(q, domain=DOMAIN, top_k=20)) for q in QUESTIONS]
    neo4j = [_shown(neo4j_kb.ask(q, domain=DOMAIN, top_k=20)) for q in QUESTIONS]
    assert local == neo4j
    kismet, _ = local[0]
    assert {score for _, _, score in kismet} == {1.0}
    assert [name for name, _, _ in kismet] == ["Edward Arnold", "James Craig", "Marlene Dietrich", "Ronald Colman"]
    # top_k cuts the same ranking; the batched path ranks alike
    assert [a.name for a in neo4j_kb.ask(QUESTIONS[0], domain=DOMAIN, top_k=2).answers] == ["Edward Arnold",
                                                                                             "James Craig"]
    for kb in (tiny_movies_kb, neo4j_kb):
        assert [_shown(a) for a in kb.ask_many(QUESTIONS, domain=DOMAIN, top_k=20, batch_size=3)] == local


def _retrieved(kb) -> dict[tuple[str, str, int], tuple]:
    """What each retriever returns for each seed and k: nodes, facts with scores, truncated."""
    snap = kb.store.snapshot(DOMAIN)
    retrievers = {"1-hop": SubgraphRetriever(snap, hops=1), "2-hop": SubgraphRetriever(snap, hops=2, node_limit=12),
                  "ppr": PPRRetriever(snap)}
    found = {(name, seed, k): retriever.retrieve("", seeds=[seed], k=k) for name, retriever in retrievers.items()
             for seed in ("Kismet", "Tom Hanks", "drama") for k in (3, 20)}
    return {key: (r.nodes, [(f.head, f.relation, f.tail, f.score) for f in r.facts], r.truncated)
            for key, r in found.items()}


def test_tied_retrieval_results_are_the_same_on_both_backends(tiny_movies_kb, neo4j_kb):
    local = _retrieved(tiny_movies_kb)
    assert _retrieved(neo4j_kb) == local
    # Kismet's nine neighbours are all one hop away: k=3 keeps the first ones by name
    nodes, facts, truncated = local["1-hop", "Kismet", 3]
    assert nodes == [("Kismet", 1.0), ("1944", 0.5), ("Edward Arnold", 0.5)] and truncated
    assert [fact[:3] for fact in facts] == [("Kismet", "directed_by", "William Dieterle"),
                                           ("Kismet", "has_tags", "bd-r"), ("Kismet", "in_language", "English")]
    # PageRank scores the nine (leaf) neighbours alike: the same three come first, by name
    nodes, _, _ = local["ppr", "Kismet", 3]
    assert [name for name, _ in nodes] == ["1944", "Edward Arnold", "Edward Knoblock"]
    assert len({score for _, score in nodes}) == 1
