"""Odd input a demanding user gives the linker, the path search, the aggregation and the retrievers."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from reasoning_graphs import make_snapshot

from kgllm.exceptions import ConfigError
from kgllm.reasoning.aggregate import aggregate
from kgllm.reasoning.paths import ChainResult, ChainSearch, RelationGraph
from kgllm.reasoning.reasoner import PathReasoner
from kgllm.reasoning.scorer import QuestionState


class FixedScorer:
    """A path scorer giving each chain (by its step names) a fixed score; others score -1 per hop."""

    name = "fixed"

    def __init__(self, graph: RelationGraph, table: dict[tuple[str, ...], float] | None = None) -> None:
        self.graph = graph
        self.table = table or {}

    def prepare(self, texts: Sequence[str]) -> list[QuestionState]:
        return [QuestionState(t, np.zeros(1, dtype=np.float32)) for t in texts]

    def score(self, state: QuestionState, chains, *, complete: bool) -> np.ndarray:
        names = [tuple(self.graph.code_name(c) for c in chain) for chain in chains]
        return np.array([self.table.get(n, -float(len(n))) for n in names], dtype=np.float64)


# -- path search: max_hops ----------------------------------------------------------------------------
def test_max_hops_zero_or_negative_is_refused_not_read_as_the_default(movies):
    graph = RelationGraph(movies)
    scorer = FixedScorer(graph)
    state = scorer.prepare(["q"])[0]
    kismet = np.array([movies.node("Kismet")])
    search = ChainSearch(graph, max_hops=3, beam=16)
    one = search.search(kismet, scorer, state, max_hops=1, keep=50)
    assert {len(r.chain) for r in one} == {1}
    for bad in (0, -1, 1.5, True):  # 0 used to mean "the default" (3 hops), -1 "no hop at all"
        with pytest.raises(ConfigError, match=f"max_hops must be an integer >= 1, got {bad!r}"):
            search.search(kismet, scorer, state, max_hops=bad)
    reasoner = PathReasoner(graph, scorer)
    with pytest.raises(ConfigError, match="got 0"):
        reasoner.reason(state, [int(kismet[0])], max_hops=0)


def test_beam_and_keep_below_one_are_refused(movies):
    graph = RelationGraph(movies)
    scorer = FixedScorer(graph)
    for bad in (0, -2):  # a beam of 0 used to act as 1, keep=0 to give no answer ever
        with pytest.raises(ConfigError, match=f"beam must be an integer >= 1, got {bad}"):
            ChainSearch(graph, beam=bad)
        with pytest.raises(ConfigError, match=f"keep must be an integer >= 1, got {bad}"):
            PathReasoner(graph, scorer, keep=bad)
    reasoner = PathReasoner(graph, scorer, beam=np.int64(2), keep=1, max_hops=1)
    assert len(reasoner.reason(scorer.prepare(["q"])[0], [movies.node("Kismet")]).chains) == 1


def test_ask_with_max_hops_zero_is_a_config_error(metaqa_kb):
    assert metaqa_kb.ask("who directed [Kismet]", domain="movies", max_hops=1).answers
    with pytest.raises(ConfigError, match="max_hops"):
        metaqa_kb.ask("who directed [Kismet]", domain="movies", max_hops=0)
    # the LLM explorer read max_hops=0 as "the domain's setting": refused before any work, with or without it
    with pytest.raises(ConfigError, match=r"max_hops \(or None for the domain's setting\) must be an integer >= 1"):
        metaqa_kb.ask("who directed [Kismet]", domain="movies", max_hops=0, explore=True)


def test_entities_given_as_one_string_is_a_config_error(metaqa_kb):
    # a string is a sequence: its characters were looked up as ids ("entity ids not in domain: ['K', ...]")
    assert [a.name for a in metaqa_kb.ask("who directed it", domain="movies", entities=["Kismet"]).answers]
    with pytest.raises(ConfigError, match=r"entities takes a list of entity ids, got one string 'Kismet'"):
        metaqa_kb.ask("who directed it", domain="movies", entities="Kismet")


# -- aggregation: NaN and inf chain scores --------------------------------------------------------------
def test_a_nan_or_inf_chain_score_does_not_wipe_every_answer():
    good = ChainResult((0,), 0.5, [np.array([1, 2])])
    for odd in (float("nan"), float("inf"), float("-inf")):
        other = ChainResult((2,), odd, [np.array([3])])
        agg = aggregate([good, other], temperature=1.0, min_weight=0.05)
        assert np.isfinite(agg.scores).all() and agg.scores.size, odd
        if odd == float("inf"):  # a chain scored +inf takes all the weight
            assert agg.nodes.tolist() == [3] and agg.scores.tolist() == [1.0]
        else:  # NaN and -inf weigh nothing
            assert agg.nodes.tolist() == [1, 2] and agg.scores.tolist() == [1.0, 1.0]
    assert aggregate([ChainResult((0,), float("nan"), [np.array([1])])]).nodes.size == 0


def test_reasoner_ranks_a_nan_chain_last(movies):
    graph = RelationGraph(movies)
    scorer = FixedScorer(graph, {("directed_by",): float("nan"), ("has_genre",): 0.0})
    state = scorer.prepare(["q"])[0]
    reasoning = PathReasoner(graph, scorer, max_hops=1, temperature=1.0).reason(state, [movies.node("Kismet")])
    assert reasoning.answers and reasoning.answers[0].name == "Drama"
    assert reasoning.answer_set == ["Drama"]  # the best chain's answers, not the NaN chain's
    assert all(np.isfinite(a.score) for a in reasoning.answers)
    assert np.isnan(reasoning.chains[-1].score)


# -- entity linking -------------------------------------------------------------------------------------
def test_a_bracket_that_names_no_entity_does_not_hide_the_name_outside_it(movies):
    from kgllm.linking import EntityLinker

    linker = EntityLinker.from_snapshot(movies)
    for question in ("who directed Kismet [1944 film]", "Who directed Kismet? [asked twice]",
                     "[edit] who directed Kismet"):
        mentions = linker.mentions(question)
        assert mentions and mentions[0].links[0].id == "Kismet", question
        assert question[mentions[0].start:mentions[0].end] == "Kismet"  # offsets in the question as given
    # a bracket that names an entity is still the only mention
    assert [m.text for m in linker.mentions("who directed [Big] not Kismet")] == ["Big"]
    # a bracketed text that names nothing does not link words inside it either
    assert linker.mentions("who directed [the drama with Bette Davis yesterday]") == []


def test_bracketed_remark_does_not_hide_the_entity_end_to_end(metaqa_kb):
    for question in ("who directed Kismet [asked twice]", "[edited] who directed Kismet"):
        answer = metaqa_kb.ask(question, domain="movies")  # the vector index finds nothing near the remark
        assert answer.linked and answer.linked[0].id == "Kismet", question
        assert answer.answers and answer.answers[0].name == "William Dieterle"
        assert not answer.warnings


def test_turkish_dotted_capital_i_links_as_written_and_without_the_dot():
    from kgllm.linking import EntityLinker, normalize

    snap = make_snapshot([("İstanbul", "located_in", "Türkiye"), ("İzmir", "located_in", "Türkiye")],
                         domain="places")
    linker = EntityLinker.from_snapshot(snap)
    assert normalize("İstanbul") == normalize("istanbul") == "istanbul"
    for question in ("where is İstanbul located", "where is istanbul located", "where is ISTANBUL",
                     "where is [İstanbul]", "where is [istanbul]"):
        links = linker.link(question)
        assert links and links[0].id == "İstanbul" and links[0].method in ("exact", "bracket"), question
    # a 5-letter name has no typo budget: only the exact key links it
    assert [(m.text, m.links[0].id) for m in linker.mentions("what is İzmir")] == [("İzmir", "İzmir")]


# -- cross-expert chains ----------------------------------------------------------------------------------
def test_cross_expert_chain_keeps_every_continued_answer(tmp_path, fixtures_dir, embedder):
    """Eight films tagged with one neighbour of Germany: all eight are answers, each with its chain
    (the continuation's paths were traced for its first five answers only, and the rest were dropped)."""
    from kgllm.kb import open_kb

    films = tmp_path / "films.txt"
    films.write_text("".join(f"Picture number {i}|has_tags|austria\n" for i in range(8)), encoding="utf-8")
    with open_kb(tmp_path / "kb", embedder=embedder) as kb:
        kb.load(fixtures_dir / "kb" / "tiny_geo")
        kb.load_triples("films", films, format="pipe", description="Films and the countries they are tagged with.",
                        relation_text={"has_tags": "tagged"})
        answer = kb.ask("Which films are tagged with the countries that border [germany]?")
        three = kb.ask("Which films are tagged with the countries that border [germany]?", top_k=3)
    # the chains of answers cut by top_k are not kept, nor the facts only they walk
    crossed = [p for p in three.paths if p.method == "cross-expert"]
    assert len(three.answers) == 3 and len(crossed) == 3
    assert [three.paths[a.paths[0]].end for a in three.answers] == [a.id for a in three.answers]
    assert {f.head for f in three.facts if f.relation == "has_tags"} == {a.id for a in three.answers}
    assert {e.name for e in answer.experts} == {"tiny_geo", "films"}
    assert sorted(a.name for a in answer.answers) == [f"Picture number {i}" for i in range(8)]
    for item in answer.answers:
        chain = answer.paths[item.paths[0]]
        assert chain.method == "cross-expert" and chain.end == item.id
        assert [h.relation for h in chain.hops] == ["neighbor", "same_as", "has_tags"]


# -- retrievers -------------------------------------------------------------------------------------------
def test_retrievers_refuse_one_string_of_seeds_and_a_k_that_is_not_a_count(movies):
    from kgllm.retrieval import HybridRetriever, PPRRetriever, SubgraphRetriever

    ppr, subgraph = PPRRetriever(movies), SubgraphRetriever(movies, hops=1)
    hybrid = HybridRetriever([ppr, subgraph])
    for retriever in (ppr, subgraph, hybrid):
        found = retriever.retrieve("q", seeds=["Kismet"], k=np.int64(3))  # a numpy count is a count
        assert found.facts and found.facts[0].head == "Kismet" and len(found.facts) <= 3
        # one id given as a string used to be read as the ids "K", "i", "s"...: silently nothing found
        with pytest.raises(ConfigError, match="seeds must be a list of entity ids, got one string 'Kismet'"):
            retriever.retrieve("q", seeds="Kismet", k=3)
        for bad in (0, -1, 2.5, True):  # 2.5 used to fail deep inside numpy with a TypeError
            with pytest.raises(ConfigError, match=f"k must be an integer >= 1, got {bad!r}"):
                retriever.retrieve("q", seeds=["Kismet"], k=bad)
    # a seed the graph does not hold, alone or beside one it holds
    assert ppr.retrieve("q", seeds=["Nobody"], k=3).facts == []
    assert ppr.retrieve("q", seeds=["Nobody", "Kismet"], k=3).facts == ppr.retrieve("q", seeds=["Kismet"], k=3).facts


# -- rules in ask -----------------------------------------------------------------------------------------
def _ask_france_with_rule(tmp_path, fixtures_dir, embedder, confidence: float):  # noqa: ANN202
    """Ask where France lies (its locatedin edges removed) with one rule
    ``locatedin(X,Y) <- neighbor(X,A), locatedin(A,Y)`` of ``confidence`` (min_confidence 0.5)."""
    from kgllm.kb import open_kb
    from kgllm.reasoning.rules import Rule, RuleSet

    tmp_path.mkdir(exist_ok=True)
    lines = (fixtures_dir / "kb" / "tiny_geo" / "countries.tsv").read_text(encoding="utf-8").splitlines()
    (tmp_path / "geo.tsv").write_text("".join(f"{line}\n" for line in lines if not line.startswith("france\tlocatedin")),
                                      encoding="utf-8")
    rule = Rule(("locatedin", False), (("neighbor", False), ("locatedin", False)), confidence, 9, 9)
    RuleSet([rule]).save(tmp_path / "rules")
    with open_kb(tmp_path / "kb", embedder=embedder) as kb:
        kb.load_triples("geo", tmp_path / "geo.tsv", format="tsv",
                        relation_text={"locatedin": "located in", "neighbor": "borders"})
        kb.use_rules("geo", tmp_path / "rules")
        answer = kb.ask("Which region is [france] located in?", domain="geo", max_hops=1)
    inferred = [a for a in answer.answers if any(answer.paths[i].method == "rule" for i in a.paths)]
    return answer, inferred


def test_a_rule_of_confidence_one_keeps_every_score_within_zero_and_one(tmp_path, fixtures_dir, embedder):
    """A rule scores its confidence plus a tie-breaking term: at confidence 1 the inferred answers scored
    1.001 and the reasoner's own answers (scaled by 1 - that) -0.001."""
    answer, inferred = _ask_france_with_rule(tmp_path, fixtures_dir, embedder, 1.0)
    assert {a.id for a in inferred} >= {"western_europe", "europe"}
    assert answer.answers[0] in inferred
    assert all(0.0 <= a.score <= 1.0 for a in answer.answers), [(a.id, a.score) for a in answer.answers]


def test_a_rule_under_min_confidence_infers_nothing(tmp_path, fixtures_dir, embedder):
    """0.4996 + the tie-breaking term (0.0005) passed the 0.5 threshold: README says confidence >= 0.5."""
    answer, inferred = _ask_france_with_rule(tmp_path, fixtures_dir, embedder, 0.4996)
    assert answer.answers and inferred == []
    assert all(h.rule is None for p in answer.paths for h in p.hops)
    _, inferred = _ask_france_with_rule(tmp_path / "at", fixtures_dir, embedder, 0.5)  # the bound itself counts
    assert {a.id for a in inferred} >= {"western_europe", "europe"}


def test_a_paraphrased_bracket_is_still_asked_of_the_vector_index_first(movies, embedder):
    """The words outside an unmatched bracket are a fallback after the vector index, not before it:
    "1994" outside the bracket is a name too, but the bracket says what the question is about."""
    from kgllm.index import VectorIndex
    from kgllm.linking import EntityLinker

    names = ["Kismet", "Forrest Gump", "Tom Hanks", "William Dieterle", "1994"]
    index = VectorIndex.create(embedder.dim, model=embedder.model_name)
    index.add(names, embedder.encode(names))
    linker = EntityLinker.from_snapshot(movies, vector_index=lambda: index, embedder=embedder)
    links = linker.link("who directed [the film about a man named Gump, Forrest] of 1994")
    assert links and links[0].method == "vector" and links[0].id == "Forrest Gump"
    # nothing near the bracket in the index: the words outside it are linked
    links = linker.link("who directed Kismet [zzqx wlorp]")
    assert links and links[0].id == "Kismet" and links[0].method == "exact"


def test_two_answers_bridging_to_one_entity_continue_from_the_better(tmp_path, embedder):
    """"France" (0.9) and "france" (0.3) are both the films graph's "france": the chain continued from
    the lower-ranked one, whose score it took, because the later answer overwrote the first."""
    from kgllm.kb import open_kb
    from kgllm.reasoning.bridge import cross_expert_answers
    from kgllm.types import Answer, Hop, ReasoningPath, ScoredAnswer

    (tmp_path / "places.txt").write_text("germany|neighbor|France\ngermany|neighbor|france\n", encoding="utf-8")
    (tmp_path / "films.txt").write_text("Amelie|has_tags|france\n", encoding="utf-8")
    question = "Which films are tagged with the countries that border [germany]?"
    with open_kb(tmp_path / "kb", embedder=embedder) as kb:
        kb.load_triples("places", tmp_path / "places.txt", format="pipe")
        kb.load_triples("films", tmp_path / "films.txt", format="pipe", relation_text={"has_tags": "tagged"})
        paths = [ReasoningPath(hops=[Hop(head="germany", relation="neighbor", tail=tail, domain="places")], score=s)
                 for tail, s in (("France", 0.9), ("france", 0.3))]
        first = Answer(question=question, paths=paths, answers=[
            ScoredAnswer(id="France", name="France", score=0.9, domain="places", paths=[0]),
            ScoredAnswer(id="france", name="france", score=0.3, domain="places", paths=[1])])
        masked = question.replace("[germany]", "NE")
        bridged = cross_expert_answers(kb.pipeline, first, "places", kb.pipeline.context("films"), masked)
    assert bridged is not None and [a.name for a in bridged.answers] == ["Amelie"]
    chain = bridged.paths[bridged.answers[0].paths[0]]
    assert chain.hops[0].tail == "France" and chain.hops[1].head == "France"
    assert bridged.answers[0].score == pytest.approx(chain.score, abs=1e-6)
    assert bridged.answers[0].score > 0.3  # 0.9 times the continuation's score, not 0.3 times it
