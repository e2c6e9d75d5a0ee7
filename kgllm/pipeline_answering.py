"""Stages 4-6 of :mod:`kgllm.pipeline`: evidence beyond the reasoning paths, then the answer text (extractive
without an LLM, else written by the LLM from the fused evidence); and the LLM backend a call uses."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kgllm.domain_context import DomainContext
from kgllm.fusion.context import generate_answer
from kgllm.llm import resolve_llm
from kgllm.pipeline_work import QuestionWork, charge_time
from kgllm.types import Chunk

if TYPE_CHECKING:
    from kgllm.pipeline import Pipeline

__all__ = ["resolve_backend", "is_generative", "retrieve_evidence", "write_answers", "RETRIEVED_FACTS",
           "RETRIEVED_CHUNKS"]

RETRIEVED_FACTS = 20
"""Graph facts retrieved for an LLM's context beyond those the paths walk (the prompt budget may drop some)."""
RETRIEVED_CHUNKS = 4
"""Document chunks retrieved per question, for experts with documents."""


def resolve_backend(llm: Any, kb: Any, *, cache: bool = True) -> Any:
    """``None`` for the extractive answerer, else the backend the spec or object names. Its responses are
    cached beside the KB (``<kb>/llm_cache``) unless ``cache`` is false."""
    if llm is None or llm == "extractive":
        return None
    cache_dir: Path | bool | None = False
    if cache:
        path = getattr(kb, "path", None)  # a KB without a directory: resolve_llm's default cache
        cache_dir = Path(path) / "llm_cache" if path is not None else None
    return resolve_llm(llm, cache=cache_dir)


def is_generative(backend: Any) -> bool:
    """Whether ``backend`` writes free text (the extractive answerer, ``None`` here, does not)."""
    return backend is not None and getattr(backend, "generative", True)


def retrieve_evidence(pipeline: Pipeline, batch: list[QuestionWork], backend: Any) -> None:
    """Stage 4: evidence beyond the paths (:mod:`kgllm.retrieval.evidence`): the nearest document
    chunks for every answer, and graph facts (PPR, subgraph, vector facts) for a generative LLM's
    context. A question that linked no entity goes on when documents or facts were found."""
    started = time.perf_counter()
    generative = is_generative(backend)
    todo = [(work, work.domain) for work in batch
            if work.domain is not None and not (work.done and not work.unlinked)]
    has_documents = getattr(pipeline.kb, "has_documents", None)
    if len(todo) > 1 and (generative or (callable(has_documents) and any(
            has_documents(expert.name) for work, _ in todo for expert in work.answer.experts))):
        # one encoder call for the batch's questions: the vector retrievers then read the embedder's cache
        pipeline.kb.embedder.encode(list(dict.fromkeys(work.question for work, _ in todo)))
    for work, ctx in todo:
        work.answer.chunks = _chunks(pipeline, work, ctx)
        if generative:
            seeds = [ctx.snapshot.ids[node] for node in work.topic]
            known = {fact.key for fact in work.answer.facts}
            found = pipeline.evidence(ctx).graph_facts(work.question, seeds, RETRIEVED_FACTS).facts
            work.answer.facts = [*work.answer.facts, *(f for f in found if f.key not in known)]
        if work.unlinked and work.done and (work.answer.chunks or work.answer.facts):
            work.done = False  # the text is written from what was retrieved
    charge_time(batch, "retrieve", started)


def _chunks(pipeline: Pipeline, work: QuestionWork, ctx: DomainContext) -> list[Chunk]:
    """The chunks nearest to the question among the documents of every expert the answer consulted
    (routed to, merged or bridged into), best first; equal scores keep the experts' order."""
    names = dict.fromkeys([ctx.name, *(expert.name for expert in work.answer.experts)])
    found = [chunk for name in names
             for chunk in pipeline.evidence(pipeline.context(name)).chunks(work.question, RETRIEVED_CHUNKS)]
    return sorted(found, key=lambda chunk: -(chunk.score or 0.0))[:RETRIEVED_CHUNKS]


def write_answers(pipeline: Pipeline, batch: list[QuestionWork], backend: Any,
                  choices: Sequence[str] | None) -> None:
    """Stages 5-6: fuse the evidence into a prompt and write the text (extractive without an LLM)."""
    started = time.perf_counter()
    generative = is_generative(backend)
    for work in batch:
        if work.done or (work.reasoning is None and not work.unlinked):
            continue
        if not work.answer.answers and not (generative and (work.answer.facts or work.answer.chunks)):
            if not work.unlinked:
                work.answer.text = "No chain of relations from the linked entities answers the question."
            if work.answer.chunks:
                work.answer.text += f' The nearest passage of the documents: "{work.answer.chunks[0].text.strip()}" [D1]'
            continue
        relation_text: dict[str, str] = {}  # chains may cross experts: every consulted expert's texts
        for expert in work.answer.experts:
            if expert.name in pipeline.contexts:
                relation_text.update(pipeline.contexts[expert.name].relation_text)
        templates = {e.name: t for e in work.answer.experts
                     if (t := pipeline.kb.domain_info(e.name).get("prompt_template"))}  # per-expert prompts
        work.answer = generate_answer(work.answer, backend, relation_text=relation_text, choices=choices,
                                      templates=templates or None)
    charge_time(batch, "generate", started)
