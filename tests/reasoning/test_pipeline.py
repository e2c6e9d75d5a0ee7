"""The question pipeline end to end on a real KB (local store) built from the MetaQA fixture subset."""

from __future__ import annotations

import logging

import pytest

from kgllm.exceptions import ConfigError, DomainNotFound, ModelError
from kgllm.pipeline import NO_ENTITY, NO_QUESTION, Pipeline


def test_ask_answers_with_a_chain_and_provenance(metaqa_kb):
    answer = metaqa_kb.ask("who directed [Kismet]", domain="movies")
    assert answer.answers[0].name == "William Dieterle"
    assert answer.paths and answer.paths[0].hops[0].relation == "directed_by"
    assert all(fact.source == "kb.txt" and fact.line for fact in answer.facts)
    assert "William Dieterle" in answer.text
    assert {"route", "link", "reason", "generate"} <= set(answer.timings)
    assert answer.linked[0].id == "Kismet" and answer.experts[0].name == "movies"


def test_learned_model_answers_multi_hop(metaqa_kb, model_dir, metaqa_dir):
    answer = metaqa_kb.ask("who acted in the movies directed by the director of [Kismet]", model=model_dir)
    relations = [hop.relation for hop in answer.paths[0].hops]
    assert relations == ["directed_by", "directed_by", "starred_actors"]
    assert answer.paths[0].hops[1].inverse
    # the actors of the other films William Dieterle directed, read from the fixture's kb.txt
    triples = [line.split("|") for line in (metaqa_dir / "kb.txt").read_text(encoding="utf-8").splitlines()]
    films = {h for h, r, t in triples if r == "directed_by" and t == "William Dieterle"} - {"Kismet"}
    actors = {t for h, r, t in triples if r == "starred_actors" and h in films}
    assert "Bette Davis" in actors and len(actors) > 20
    assert {a.name for a in answer.answers} <= actors
    assert "Kismet" not in [a.name for a in answer.answers]  # no return through the topic


def test_brackets_are_not_required(metaqa_kb, model_dir):
    with_brackets = metaqa_kb.ask("who directed [Kismet]", model=model_dir)
    without = metaqa_kb.ask("who directed Kismet", model=model_dir)
    assert [a.id for a in without.answers] == [a.id for a in with_brackets.answers]


def test_answers_resting_on_a_misspelled_name_carry_a_warning(metaqa_kb):
    exact = metaqa_kb.ask("who directed Catch Me If You Can", domain="movies")
    typo = metaqa_kb.ask("who directed Catch Me If You Cann", domain="movies")
    assert [a.id for a in typo.answers] == [a.id for a in exact.answers] == ["Steven Spielberg"]
    assert not [w for w in exact.warnings if "approximate" in w]
    warned = [w for w in typo.warnings if w.startswith("approximate entity link:")]
    assert len(warned) == 1 and "'Catch Me If You Can'" in warned[0] and "fuzzy" in warned[0]


def test_ask_many_matches_ask(metaqa_kb, model_dir):
    questions = ["who directed [Kismet]", "what movies did [Tom Hanks] act in", "",
                 "which films share the same director of [Forrest Gump]"]
    many = metaqa_kb.ask_many(questions, batch_size=3, model=model_dir)
    for question, batched in zip(questions, many, strict=False):
        single = metaqa_kb.ask(question, model=model_dir)
        assert [(a.id, round(a.score, 4)) for a in batched.answers] == [(a.id, round(a.score, 4)) for a in single.answers]
        assert batched.text == single.text


def test_empty_question(metaqa_kb):
    answer = metaqa_kb.ask("   ")
    assert answer.text == NO_QUESTION and answer.answers == [] and "empty question" in answer.warnings


def test_no_linkable_entity(metaqa_kb):
    answer = metaqa_kb.ask("what is the airspeed velocity of an unladen swallow qzx", domain="movies")
    assert answer.answers == [] and answer.text == NO_ENTITY


def test_unknown_domain_lists_known(metaqa_kb):
    with pytest.raises(DomainNotFound, match="known domains: movies"):
        metaqa_kb.ask("who directed [Kismet]", domain="nope")


@pytest.mark.parametrize("call, needle", [
    (lambda kb: kb.ask_many(["who directed [Kismet]", "who wrote [Kismet]"], batch_size=0), "batch_size"),
    (lambda kb: kb.ask_many(["who directed [Kismet]", "who wrote [Kismet]"], batch_size=-1), "batch_size"),
    (lambda kb: kb.ask_many("who directed [Kismet]"), "list of questions"),
    (lambda kb: kb.ask("who directed [Kismet]", top_k=0), "top_k"),
    (lambda kb: kb.ask_many(["who directed [Kismet]"], top_k=-2), "top_k"),
    (lambda kb: kb.ask(42), "must be a string"),
], ids=["batch-size-0", "batch-size-negative", "one-string", "top-k-0", "top-k-negative", "not-a-string"])
def test_bad_arguments_are_refused(metaqa_kb, call, needle):
    # before: batch_size 0 answered nothing, -1 dropped the last question, a string was asked
    # character by character and top_k 0 claimed that no chain answers the question
    with pytest.raises(ConfigError, match=needle):
        call(metaqa_kb)


def test_huge_question_is_truncated_with_warning(metaqa_kb, caplog):
    pipeline = Pipeline(metaqa_kb, max_question_chars=200)
    with caplog.at_level(logging.WARNING, logger="kgllm.pipeline"):
        answer = pipeline.ask("who directed [Kismet] " + "and so on " * 5000)
    assert any("truncated" in w for w in answer.warnings)
    assert "truncated" in caplog.text
    assert answer.answers[0].name == "William Dieterle"


def test_entity_ids_that_no_longer_exist(metaqa_kb):
    answer = metaqa_kb.ask("who directed it", domain="movies", entities=["No Such Film"])
    assert answer.answers == [] and answer.text == NO_ENTITY
    assert any("No Such Film" in w for w in answer.warnings)
    answer = metaqa_kb.ask("who directed it", domain="movies", entities=["No Such Film", "Kismet"])
    assert answer.answers[0].name == "William Dieterle"


def test_model_for_another_kb_is_refused(metaqa_kb, model_dir, tmp_path, embedder):
    from kgllm.kb import open_kb

    other = open_kb(tmp_path / "other", embedder=embedder)
    (tmp_path / "t.tsv").write_text("a\tdirected_by\tb\nb\tstarred_actors\tc\n")
    other.load_triples("movies", tmp_path / "t.tsv", format="tsv")
    with pytest.raises(ModelError, match="another knowledge base"):
        other.ask("who directed [a]", model=model_dir)
    other.close()
