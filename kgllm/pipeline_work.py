"""One question's record on its way through the stages of :mod:`kgllm.pipeline`, and the merging of the
answers of the experts it consulted into it.

Every stage reads and updates a batch of :class:`QuestionWork`; a question routed to several experts has
one record per expert (``consulted``), folded into the first by :func:`merge_experts` after reasoning.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from kgllm.domain_context import DomainContext
from kgllm.reasoning.aggregate import merge_answers
from kgllm.reasoning.reasoner import Reasoning
from kgllm.types import Answer, ExpertChoice

__all__ = ["QuestionWork", "merge_experts", "charge_time", "NO_ENTITY", "NO_QUESTION"]

NO_QUESTION = "No question was asked."
NO_ENTITY = "No entity of the question could be found in the knowledge graph."


@dataclass
class QuestionWork:
    """One question on its way through the stages."""

    question: str
    answer: Answer
    domain: DomainContext | None = None
    topic: list[int] = field(default_factory=list)
    span: tuple[int, int] = (0, 0)
    reasoning: Reasoning | None = None
    done: bool = False
    unlinked: bool = False  # no entity linked: retrieved documents or facts may still answer
    consulted: list[QuestionWork] = field(default_factory=list)
    ranked: list[ExpertChoice] = field(default_factory=list)


def merge_experts(work: QuestionWork, top_k: int | None) -> None:
    """Fold the answers of the other experts consulted into ``work.answer``, provenance per expert.

    Answers keep their expert in ``ScoredAnswer.domain`` (see :func:`merge_answers`).
    """
    found = [w for w in [work, *work.consulted] if w.answer.answers]
    if not work.consulted:
        return
    answer = work.answer
    if not found:  # nobody could link the question: say so with the routing scores
        if not work.done or answer.text == NO_ENTITY:
            scores = ", ".join(f"{c.name} {c.score:.2f}" for c in answer.experts)
            answer.text = f"{NO_ENTITY} Experts consulted (routing score): {scores}."
        return
    merged = merge_answers([(part.answer, part.domain.name if part.domain else None) for part in found], top_k=top_k)
    answer.answers, answer.paths, answer.facts, answer.linked = (merged.answers, merged.paths, merged.facts,
                                                                 merged.linked)
    answer.warnings = [w for w in answer.warnings if w != "no linkable entity"]
    for part in work.consulted:
        for stage, ms in part.answer.timings.items():
            answer.timings[stage] = round(answer.timings.get(stage, 0.0) + ms, 3)
    work.reasoning = found[0].reasoning  # the reasoning behind work.domain's answers, kept with it
    if found[0] is not work:  # the expert that linked the question: its entities seed retrieval
        work.domain, work.topic, work.span = found[0].domain, found[0].topic, found[0].span
    work.done = work.unlinked = False


def charge_time(batch: list[QuestionWork], stage: str, started: float) -> None:
    """Record a stage's wall time (ms, since ``started``) in ``Answer.timings``."""
    # a batch shares the stage's cost: each question is charged its share
    elapsed = (time.perf_counter() - started) * 1000 / max(1, len(batch))
    for work in batch:
        work.answer.timings[stage] = round(elapsed, 3)
