"""Merging the answers of several experts: ties come out in one order whatever order the parts arrive in."""

from __future__ import annotations

from kgllm.reasoning.aggregate import merge_answers
from kgllm.types import Answer, ScoredAnswer


def _answer(question: str, *answers: ScoredAnswer) -> Answer:
    return Answer(question=question, answers=list(answers))


def test_equal_scores_and_names_rank_by_domain_then_id_in_any_input_order():
    q = "Who is [Jo Smith]?"
    movies = _answer(q, ScoredAnswer(id="m:2", name="Jo Smith", score=1.0),
                     ScoredAnswer(id="m:1", name="Jo Smith", score=1.0))
    people = _answer(q, ScoredAnswer(id="p:9", name="Jo Smith", score=1.0),
                     ScoredAnswer(id="p:3", name="Ann Lee", score=1.0))
    orders = [[(a.domain, a.id) for a in merge_answers(parts, top_k=None).answers]
              for parts in ([(movies, "movies"), (people, "people")], [(people, "people"), (movies, "movies")])]
    assert orders[0] == orders[1] == [("people", "p:3"), ("movies", "m:1"), ("movies", "m:2"), ("people", "p:9")]
    assert [a.id for a in merge_answers([(movies, "movies")], top_k=1).answers] == ["m:1"]  # the cut keeps that order
