"""Stages 1-2 of :mod:`kgllm.pipeline`: the experts a question is asked of, and the entities it names in
each of their graphs."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from kgllm.linking import Mention
from kgllm.pipeline_work import NO_ENTITY, QuestionWork, charge_time
from kgllm.types import Answer, ExpertChoice

if TYPE_CHECKING:
    from kgllm.pipeline import Pipeline

__all__ = ["route_experts", "rank_experts", "link_entities", "ROUTE_MARGIN", "MAX_EXPERTS",
           "APPROXIMATE_LINKS"]

ROUTE_MARGIN = 0.05
"""Experts scoring within this margin of the best one are consulted too (answers merged)."""
MAX_EXPERTS = 3
APPROXIMATE_LINKS = frozenset({"fuzzy", "vector"})
"""Link methods that guess at a name; answers resting on them carry a warning."""


def route_experts(pipeline: Pipeline, batch: list[QuestionWork], domain: str | None) -> None:
    """Stage 1: the experts to ask. Given, the only one, or the router's choice plus the runners-up
    within ``ROUTE_MARGIN`` of it (at most ``MAX_EXPERTS``); their answers are merged later."""
    started = time.perf_counter()
    names = [domain] if domain is not None else list(pipeline.kb.domains)
    # a router model trained for other experts (one added since) is not used: each routed answer says so
    model_warning = getattr(getattr(pipeline.kb, "router", None), "model_warning", None) if len(names) > 1 else None
    stale = model_warning(names) if model_warning is not None else None
    for work in batch:
        if work.done:
            continue
        if not names:
            work.answer.text = "The knowledge base has no domains; load a pack first."
            work.done = True
            continue
        if len(names) == 1:
            work.domain = pipeline.context(names[0])
            work.answer.experts = [ExpertChoice(name=names[0], score=1.0,
                                                reasons=["given" if domain else "only domain"])]
            continue
        ranked = rank_experts(pipeline, work.question, names)
        if stale is not None:
            work.answer.warnings.append(stale)
        chosen = [c for c in ranked if c.score >= ranked[0].score - ROUTE_MARGIN][:MAX_EXPERTS]
        work.domain = pipeline.context(chosen[0].name)
        work.consulted = [QuestionWork(question=work.question, answer=Answer(question=work.answer.question),
                                       domain=pipeline.context(c.name)) for c in chosen[1:]]
        work.answer.experts = chosen
        work.ranked = ranked
    charge_time(batch, "route", started)


def rank_experts(pipeline: Pipeline, question: str, names: list[str]) -> list[ExpertChoice]:
    """The KB's router (kgllm.experts) when it has one; else the best entity-link score per domain."""
    router = getattr(pipeline.kb, "router", None)
    if router is not None:
        return list(router.route(question, experts=names))
    scored = []
    for name in names:
        mentions = pipeline.context(name).linker.mentions(question)
        scored.append(ExpertChoice(name=name, score=round(mentions[0].score if mentions else 0.0, 4),
                                   reasons=["entity link score"]))
    return sorted(scored, key=lambda c: (-c.score, c.name))


def link_entities(batch: list[QuestionWork], entities: Sequence[str] | None) -> None:
    """Stage 2: topic entities (given ids, else the best linked mention) and the masked question."""
    started = time.perf_counter()
    for work in batch:
        if work.done or work.domain is None:
            continue
        ctx = work.domain
        if entities is not None:
            index = ctx.snapshot.index
            work.topic = [index[e] for e in entities if e in index]
            missing = [e for e in entities if e not in index]
            if missing:
                work.answer.warnings.append(f"entity ids not in domain {ctx.name!r}: {missing[:5]}")
            for node in work.topic:
                work.answer.linked.extend(ctx.linker.entity_links(ctx.snapshot.names[node], [node], 1.0, "given"))
        else:
            mentions: list[Mention] = ctx.linker.mentions(work.question)
            if mentions:
                top = mentions[0]
                work.answer.linked = [link for m in mentions[:3] for link in m.links[:3]]
                index = ctx.snapshot.index
                work.topic = [index[link.id] for link in top.links if link.id in index]
                work.span = (top.start, top.end)
                if top.links and all(link.method in APPROXIMATE_LINKS for link in top.links):
                    best = top.links[0]  # the answers rest on a guess at what the question names: say so
                    work.answer.warnings.append(f"approximate entity link: {best.mention!r} taken as "
                                                f"{best.name!r} ({best.method}, score {best.score:.2f})")
        if not work.topic:
            work.answer.text = NO_ENTITY
            work.answer.warnings.append("no linkable entity")
            work.done = work.unlinked = True
    charge_time(batch, "link", started)
