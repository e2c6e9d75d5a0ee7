"""Stage 3 of :mod:`kgllm.pipeline`: relation-path reasoning in each expert's graph (the beam search, or a
language model choosing the relations), then the edges rules infer (3a) and chains continued in a second
expert's graph (3b)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kgllm.pipeline_work import QuestionWork, charge_time
from kgllm.reasoning.bridge import MAX_BRIDGES, cross_expert_answers
from kgllm.reasoning.explorer import LLMExplorer
from kgllm.reasoning.reasoner import PathReasoner, Reasoning
from kgllm.reasoning.rule_inference import infer_missing_edges
from kgllm.types import Answer

if TYPE_CHECKING:
    from kgllm.pipeline import Pipeline

__all__ = ["reason_over_paths", "infer_with_rules", "bridge_experts", "BRIDGE_MARGIN"]

BRIDGE_MARGIN = 0.2
"""A second expert within this margin of the first may continue the first's chains (cross-expert)."""


def reason_over_paths(pipeline: Pipeline, batch: list[QuestionWork], *, model: str | Path | None,
                      top_k: int | None, max_hops: int | None, llm: Any = None,
                      memo: dict[int, dict[str, Any]] | None = None) -> None:
    """Stage 3: relation-path reasoning; question embeddings computed per domain in one batch
    (each distinct masked question once per ``ask_many`` call, through ``memo``). With ``llm`` (a
    generative backend) the model chooses the relations at each hop instead of the beam search."""
    started = time.perf_counter()
    groups: dict[str, list[QuestionWork]] = {}
    for work in batch:
        if not work.done and work.domain is not None:
            groups.setdefault(work.domain.name, []).append(work)
    for name, works in groups.items():
        ctx = pipeline.context(name)
        reasoner = pipeline.reasoner(ctx, model)
        states = reasoner.prepare([reasoner.mask_question(w.question, *w.span) for w in works],
                                  memo=None if memo is None else memo.setdefault(id(reasoner), {}))
        results: list[Reasoning] = []
        shares: list[float] = []
        if llm is None:  # the beam search of all questions together (one scorer pass per hop)
            t0 = time.perf_counter()
            results = reasoner.reason_many(states, [w.topic for w in works], top_k=top_k, max_hops=max_hops)
            shares = [(time.perf_counter() - t0) * 1000 / len(works)] * len(works)
        else:
            for work, state in zip(works, states, strict=True):
                t0 = time.perf_counter()
                explorer = LLMExplorer(reasoner.graph, llm, max_hops=max_hops or ctx.max_hops,
                                       relation_text=ctx.relation_text)
                results.append(reasoner.reason(state, work.topic, top_k=top_k, max_hops=max_hops,
                                               explorer=explorer, question=work.question))
                work.answer.llm_calls += explorer.calls
                work.answer.tokens = {kind: work.answer.tokens.get(kind, 0) + explorer.tokens[kind]
                                      for kind in ("prompt", "completion")}
                if not results[-1].answers:  # the graph may hold the chain the model did not choose
                    work.answer.warnings.append("explore: the language model chose no relation that leads to "
                                                "an answer; without explore=True the beam search is used")
                shares.append((time.perf_counter() - t0) * 1000)
        for work, result, ms in zip(works, results, shares, strict=True):
            work.reasoning = result
            work.answer.answers = result.answers
            work.answer.paths = result.paths
            work.answer.facts = result.facts
            work.answer.timings["search"] = round(ms, 3)
    charge_time(batch, "reason", started)


def infer_with_rules(pipeline: Pipeline, batch: list[QuestionWork], *, model: str | Path | None,
                     top_k: int | None) -> None:
    """Stage 3a: an expert with rules (``kb.use_rules``) infers the asked relation's edges that its
    graph lacks for the topic; see :mod:`kgllm.reasoning.rule_inference`."""
    groups: dict[str, list[QuestionWork]] = {}
    for work in batch:
        if not work.done and work.domain is not None and work.reasoning is not None:
            groups.setdefault(work.domain.name, []).append(work)
    for name, works in groups.items():
        ctx = pipeline.context(name)
        rules = pipeline.rules(ctx)
        if rules is None:
            continue
        started = time.perf_counter()
        reasoner = pipeline.reasoner(ctx, model)
        states = reasoner.prepare([reasoner.mask_question(w.question, *w.span) for w in works])
        for work, state in zip(works, states, strict=True):
            infer_missing_edges(work.answer, rules, ctx.graph, reasoner.scorer, state, work.topic, top_k=top_k)
        share = round((time.perf_counter() - started) * 1000 / len(works), 3)
        for work in works:
            work.answer.timings["infer"] = share


def bridge_experts(pipeline: Pipeline, batch: list[QuestionWork], *, model: str | Path | None,
                   top_k: int | None) -> None:
    """Stage 3b: cross-expert chains. When a second expert scores within ``BRIDGE_MARGIN`` of the
    first, the first expert's answers that are also entities of the second (same normalized name)
    continue there: the chain gets a ``same_as`` hop into the second expert's graph and its hops
    there, each hop recording its expert."""
    started = time.perf_counter()
    for work in batch:
        if work.done or work.domain is None or not work.answer.answers or len(work.ranked) < 2:
            continue
        first = work.domain.name
        second = next((c for c in work.ranked if c.name != first), None)
        if second is None or second.score < work.ranked[0].score - BRIDGE_MARGIN:
            continue
        masked = PathReasoner.mask(work.question, *work.span) if work.span != (0, 0) else work.question
        bridged = cross_expert_answers(pipeline, _with_paths(pipeline, work, model, top_k), first,
                                       pipeline.context(second.name), masked, model=model, top_k=top_k)
        if bridged is not None:
            work.answer = bridged
            if all(e.name != second.name for e in work.answer.experts):
                work.answer.experts.append(second.model_copy(update={
                    "reasons": [*second.reasons, f"cross-expert chain from {first}"]}))
            # work.domain stays the expert whose graph work.topic indexes: it seeds the retrieval
    charge_time(batch, "bridge", started)


def _with_paths(pipeline: Pipeline, work: QuestionWork, model: str | Path | None,
                top_k: int | None) -> Answer:
    """``work.answer`` with a path for each of its first expert's answers that may bridge (the
    reasoner traces 5): only an answer with its path can continue in another expert's graph. Answers
    merged from other experts, and answers rules inferred (they have their paths), are left as they are."""
    answer, reasoning = work.answer, work.reasoning
    if reasoning is None or work.domain is None:
        return answer
    first = work.domain.name
    missing = {item.id for item in answer.answers[:MAX_BRIDGES] if not item.paths and item.domain in (None, first)}
    if not missing:
        return answer
    reasoner = pipeline.reasoner(work.domain, model)
    again = reasoner.explained(reasoning, work.topic, top_k=top_k, max_paths=MAX_BRIDGES)
    traced = {item.id: item.paths for item in again.answers if item.id in missing and item.paths}
    paths = list(answer.paths)
    answers = []
    for item in answer.answers:
        found = traced.get(item.id) if item.domain in (None, first) else None
        if found:
            answers.append(item.model_copy(update={"paths": list(range(len(paths), len(paths) + len(found)))}))
            paths.extend(again.paths[i] for i in found)
        else:
            answers.append(item)
    seen = {fact.key for fact in answer.facts}
    facts = list(answer.facts) + [fact for fact in again.facts if fact.key not in seen]
    return answer.model_copy(update={"answers": answers, "paths": paths, "facts": facts})
