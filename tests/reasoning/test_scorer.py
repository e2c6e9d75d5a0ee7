"""Path scorers: zero-shot similarity on hand-made chains, the learned scorer trained on real MetaQA
questions (a fixture subset), its manifest checks, and weak supervision of gold chains."""

from __future__ import annotations

import json

import numpy as np
import pytest
from reasoning_graphs import MOVIE_TRIPLES, make_snapshot

from kgllm.exceptions import ModelError
from kgllm.reasoning.learned import LearnedScorer
from kgllm.reasoning.paths import RelationGraph
from kgllm.reasoning.reasoner import PathReasoner
from kgllm.reasoning.scorer import ZeroShotScorer
from kgllm.reasoning.training import TrainingExample, gold_chains, train_path_scorer


def test_gold_chains_by_answer_sets(movies):
    graph = RelationGraph(movies)
    idx = movies.index
    chains = gold_chains(graph, [idx["Tom Hanks"]], [idx["Robert Zemeckis"], idx["Penny Marshall"]])
    assert [[graph.code_name(c) for c in chain] for chain in chains] == [["~starred_actors", "directed_by"]]
    # Kismet's co-directed films: the topic itself is never an answer
    chains = gold_chains(graph, [idx["Kismet"]], [idx["Satan Met a Lady"]], hops=2)
    assert [[graph.code_name(c) for c in chain] for chain in chains] == [["directed_by", "~directed_by"]]
    assert gold_chains(graph, [idx["Kismet"]], []) == []


def test_zero_shot_scorer_prefers_matching_relation(movies, embedder):
    graph = RelationGraph(movies)
    scorer = ZeroShotScorer(graph, embedder)
    state = scorer.prepare([f"who directed {scorer.mask}"])[0]
    codes = graph.available(np.array([movies.node("Kismet")])).tolist()
    scores = scorer.score(state, [(c,) for c in codes], complete=True)
    assert graph.code_name(codes[int(np.argmax(scores))]) == "directed_by"
    assert scorer.chain_text((codes[0], codes[0] | 1)).count("then") == 1
    # each chain text is embedded once
    before = len(scorer._vectors)
    scorer.score(state, [(c,) for c in codes], complete=True)
    assert len(scorer._vectors) == before


def test_zero_shot_mentions_give_relations_and_hop_count(movies, embedder):
    graph = RelationGraph(movies)
    scorer = ZeroShotScorer(graph, embedder, {"starred_actors": "starring", "release_year": "released in"})
    rel = {name: i for i, name in enumerate(movies.relations)}

    def named(question: str) -> list[set[str]]:
        return [{movies.relations[r] for r in m} for m in scorer.mentions(question)]

    assert named("what movies did it act in") == [{"starred_actors"}]
    assert named("who directed the films that it acted in") == [{"directed_by"}, {"starred_actors"}]
    # one relation named by two words is one mention; "directed by | the director of" are two
    assert named("the films starring it were released in which years") == [{"starred_actors"}, {"release_year"}]
    assert named("who directed the movies directed by the director of it") == [{"directed_by"}] * 3
    # "when" asks for a year unless a word names it; sharing words walk a relation there and back
    assert named("when were the films directed by it released") == [{"directed_by"}, {"release_year"}]
    assert named("when did it come out") == [{"release_year"}]
    assert named("which films share the same director of it") == [{"directed_by"}] * 2
    assert named("the actor it co-starred with who") == [{"starred_actors"}] * 2
    assert named("what does it look like") == []
    # the chain naming exactly the mentioned relations wins, at the right length
    state = scorer.prepare(["who directed the films that it acted in"])[0]
    chains = [(2 * rel["starred_actors"] + 1,), (2 * rel["starred_actors"] + 1, 2 * rel["directed_by"]),
              (2 * rel["starred_actors"] + 1, 2 * rel["directed_by"], 2 * rel["directed_by"] + 1)]
    assert int(np.argmax(scorer.score(state, chains, complete=True))) == 1
    state = scorer.prepare(["what does it appear in"])[0]  # nothing named: one hop is likeliest
    assert int(np.argmax(scorer.score(state, chains, complete=True))) == 0


def test_zero_shot_answer_type_nouns_relative_clauses_and_aliases(movies, embedder):
    graph = RelationGraph(movies)
    plain = ZeroShotScorer(graph, embedder, {"release_year": "released in"})
    aliased = ZeroShotScorer(graph, embedder, {"release_year": "released in"}, aliases={"has_genre": ["kind"]})

    def named(scorer: ZeroShotScorer, question: str) -> list[set[str]]:
        return [{movies.relations[r] for r in m} for m in scorer.mentions(question)]

    # "what year ... released": the noun is the answer's type, the verb the one hop that gives it
    assert named(plain, "what year was the film it released") == [{"release_year"}]
    # ... but a different relation after it is a hop of its own
    assert named(plain, "what year were the films directed by it") == [{"release_year"}, {"directed_by"}]
    # a relative clause about the same noun is one mention
    assert named(plain, "who is the director that directed it") == [{"directed_by"}]
    assert named(plain, "who directed the films that it acted in") == [{"directed_by"}, {"starred_actors"}]
    # aliases are cues: without them "kind of film" names nothing
    assert named(plain, "what kind of film is it") == []
    assert named(aliased, "what kind of film is it") == [{"has_genre"}]


@pytest.fixture(scope="module")
def trained(metaqa_kb, metaqa_dir, embedder, tmp_path_factory):
    from kgllm.eval.metaqa import read_questions

    ctx = metaqa_kb.pipeline.context("movies")
    idx = ctx.snapshot.index
    examples = []
    for hops in (1, 2, 3):
        for q in read_questions(metaqa_dir / f"{hops}-hop" / "qa_dev.txt"):
            start = q.question.index("[") + 1
            text = PathReasoner.mask(q.question, start, start + len(q.topic))
            examples.append(TrainingExample(text, [idx[q.topic]], [idx[a] for a in q.answers if a in idx], hops))
    scorer, stats = train_path_scorer(ctx.graph, embedder, examples, epochs=40, hidden=128, min_steps=400)
    out = scorer.save(tmp_path_factory.mktemp("model") / "scorer")
    return ctx, scorer, stats, out, examples


def test_learned_scorer_fits_its_training_questions(trained):
    ctx, scorer, stats, _, examples = trained
    assert stats["supervised"] == len(examples)  # every fixture question has an exact chain
    reasoner = PathReasoner(ctx.graph, scorer)
    states = reasoner.prepare([e.text for e in examples])
    hits = 0
    for example, state in zip(examples, states, strict=False):
        result = reasoner.reason(state, example.topic, top_k=1)
        hits += bool(result.answers) and ctx.snapshot.index[result.answers[0].id] in set(example.answers)
    assert hits / len(examples) >= 0.95


def test_learned_scorer_round_trips_and_checks_the_kb(trained, embedder, movies):
    ctx, scorer, _, out, examples = trained
    loaded = LearnedScorer.load(out, ctx.graph, embedder)
    state_a = scorer.prepare([examples[0].text])[0]
    state_b = loaded.prepare([examples[0].text])[0]
    chains = [(0,), (1,), (0, 1)]
    np.testing.assert_allclose(scorer.score(state_a, chains, complete=True),
                               loaded.score(state_b, chains, complete=True), rtol=1e-5)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["embedder"] == embedder.model_name and manifest["dim"] == embedder.dim
    assert manifest["num_entities"] == ctx.snapshot.num_nodes
    with pytest.raises(ModelError, match="another knowledge base"):
        LearnedScorer.load(out, RelationGraph(movies), embedder)
    other = make_snapshot(MOVIE_TRIPLES, domain="movies")
    with pytest.raises(ModelError, match="fingerprint"):
        LearnedScorer.load(out, RelationGraph(other), embedder)


def test_model_dir_errors(tmp_path, movies, embedder):
    graph = RelationGraph(movies)
    with pytest.raises(ModelError, match="not a trained path scorer"):
        LearnedScorer.load(tmp_path, graph, embedder)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ModelError, match="damaged manifest, not JSON"):
        LearnedScorer.load(tmp_path, graph, embedder)


def test_zero_shot_cue_words_in_any_script(embedder):
    # cue words were [a-z0-9]+ only: a Cyrillic relation and question shared no cue at all, and an accented
    # one was cut into fragments ("réalisé" -> "r", "alis")
    films = make_snapshot([("Амели", "режиссёр", "Жан-Пьер Жёне"), ("Амели", "актёр", "Одри Тоту"),
                           ("Amélie", "réalisé_par", "Jeunet"), ("Amélie", "joué_par", "Tautou")])
    scorer = ZeroShotScorer(RelationGraph(films), embedder)

    def named(question: str) -> list[set[str]]:
        return [{films.relations[r] for r in m} for m in scorer.mentions(question)]

    assert named("кто режиссёр фильма it") == [{"режиссёр"}]
    assert named("qui a réalisé it") == [{"réalisé_par"}]
    assert named("qui a joué dans it") == [{"joué_par"}]
