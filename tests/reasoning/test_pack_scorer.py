"""The movies pack's bundled path scorer: it fits the pack as loaded and answers the pack's examples."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kgllm.loaders import load_pack
from kgllm.reasoning.paths import RelationGraph, step_code

MOVIES = Path(__file__).resolve().parents[2] / "graphs" / "movies"

# The chain each example of graphs/movies/manifest.yaml asks for ("~" = walked backwards).
EXPECTED_CHAINS = {
    "Who directed [Kismet]?": ["directed_by"],
    "Which films did [Marlene Dietrich] act in?": ["~starred_actors"],
    "Who directed the films that [Marlene Dietrich] acted in?": ["~starred_actors", "directed_by"],
    "When were the films written by [Edward Knoblock] released?": ["~written_by", "release_year"],
    "Which genres are the films directed by [William Dieterle]?": ["~directed_by", "has_genre"],
}


@pytest.fixture(scope="module")
def movies_kb(tmp_path_factory, embedder):
    from kgllm.kb import open_kb

    kb = open_kb(tmp_path_factory.mktemp("kb") / "movies", embedder=embedder)
    kb.load(MOVIES)
    yield kb
    kb.close()


def _gold(graph: RelationGraph, topic: int, chain: list[str]) -> set[int]:
    relations = list(graph.snapshot.relations)
    codes = [step_code(relations.index(name.lstrip("~")), name.startswith("~")) for name in chain]
    start = np.array([topic])
    return set(graph.walk(start, codes, exclude=start)[-1].tolist())


def test_bundled_scorer_is_small_and_pinned_to_the_pack():
    pack = load_pack(MOVIES)
    assert pack.scorer_dir is not None and pack.scorer_dir == MOVIES / "scorer"
    assert sum(p.stat().st_size for p in pack.scorer_dir.iterdir()) < 2 * 1024 * 1024
    manifest = json.loads((pack.scorer_dir / "manifest.json").read_text())
    entities = {e for t in pack.read_triples() for e in (t.head, t.tail)}
    assert manifest["num_entities"] == len(entities) and manifest["max_hops"] == 3
    assert set(manifest["relations"]) == set(pack.relation_text)
    assert set(EXPECTED_CHAINS) == set(pack.examples)


def test_bundled_scorer_answers_the_pack_examples(movies_kb):
    pack = load_pack(MOVIES)
    ctx = movies_kb.pipeline.context("movies")
    for question, chain in EXPECTED_CHAINS.items():
        answer = movies_kb.pipeline.ask(question, domain="movies", model=pack.scorer_dir, top_k=None)
        topic = ctx.snapshot.index[answer.linked[0].id]
        gold = _gold(ctx.graph, topic, chain)
        assert gold, question
        assert answer.paths[0].relations == chain, question
        assert ctx.snapshot.index[answer.answers[0].id] in gold, question
        # the answers scored at least half the best are exactly the chain's answer set
        top = answer.answers[0].score
        predicted = {ctx.snapshot.index[a.id] for a in answer.answers if a.score >= 0.5 * top}
        assert predicted == gold, question
