"""The flow of one question, stage by stage: the one place to read to follow a question.

::

    question ─► check ─► route ─► link ─► reason ─► retrieve ─► fuse + generate ─► Answer
                 │        │        │        │          │              │
                 │        │        │        │          │              └ extractive text (no LLM) or the LLM's
                 │        │        │        │          └ document chunks; graph facts for an LLM's context
                 │        │        │        │            (PPR, subgraph, vector facts: kgllm.retrieval.evidence)
                 │        │        │        └ relation-path beam search, answers aggregated over chains
                 │        │        └ mentions → node ids (bracket / exact / alias / fuzzy / vector)
                 │        └ the given domain, else the one with the best entity link (router breaks ties)
                 └ empty → "no question"; huge → truncated with a warning

Each stage's wall time (ms) lands in ``Answer.timings``. ``ask_many`` runs the same stages on batches:
question embeddings in one encoder call (each distinct masked question once per call), and the beam
search of all questions together, one scorer pass per hop; it returns the same answers as ``ask``.

This module holds the order of the stages and the per-domain state they share; the stages themselves live in
:mod:`kgllm.pipeline_routing` (route, link), :mod:`kgllm.pipeline_reasoning` (reason, rule inference,
cross-expert bridges) and :mod:`kgllm.pipeline_answering` (retrieve, generate), each reading and updating a
batch of :class:`~kgllm.pipeline_work.QuestionWork`.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kgllm.config import check_count
from kgllm.domain_context import DomainContext, build_context, build_reasoner
from kgllm.exceptions import ConfigError, DomainNotFound
from kgllm.pipeline_answering import RETRIEVED_CHUNKS as RETRIEVED_CHUNKS
from kgllm.pipeline_answering import RETRIEVED_FACTS as RETRIEVED_FACTS
from kgllm.pipeline_answering import is_generative, resolve_backend, retrieve_evidence, write_answers
from kgllm.pipeline_reasoning import BRIDGE_MARGIN as BRIDGE_MARGIN
from kgllm.pipeline_reasoning import bridge_experts, infer_with_rules, reason_over_paths
from kgllm.pipeline_routing import APPROXIMATE_LINKS as APPROXIMATE_LINKS
from kgllm.pipeline_routing import MAX_EXPERTS as MAX_EXPERTS
from kgllm.pipeline_routing import ROUTE_MARGIN as ROUTE_MARGIN
from kgllm.pipeline_routing import link_entities, route_experts
from kgllm.pipeline_work import NO_ENTITY, NO_QUESTION, QuestionWork, merge_experts
from kgllm.reasoning.reasoner import PathReasoner
from kgllm.reasoning.rule_inference import ExpertRules
from kgllm.reasoning.scorer import PathScorer
from kgllm.retrieval.evidence import DEFAULT_RETRIEVERS, ExpertEvidence
from kgllm.types import Answer

if TYPE_CHECKING:
    from kgllm.kb import KnowledgeBase

__all__ = ["Pipeline", "DomainContext", "MAX_QUESTION_CHARS", "NO_ENTITY", "NO_QUESTION"]
# The stages' settings (ROUTE_MARGIN, MAX_EXPERTS, APPROXIMATE_LINKS, BRIDGE_MARGIN, RETRIEVED_FACTS,
# RETRIEVED_CHUNKS) are imported above with ``as`` so that ``kgllm.pipeline.NAME`` still finds them.

log = logging.getLogger(__name__)

MAX_QUESTION_CHARS = 2000
MEMO_LIMIT = 20_000
"""Question states ``ask_many`` keeps for reuse within one call (~5 KB each); cleared beyond."""
EXPLORE_NEEDS_LLM = ("explore=True needs a generative LLM (llm=...) to choose the relations; "
                     "the beam search answers instead")


class Pipeline:
    """Answers questions from a knowledge base (anything with ``store``, ``embedder``, ``domains``,
    ``relation_text(domain)`` and ``domain_info(domain)``; ``index(domain, kind)`` is optional).

    Args:
        kb: the knowledge base.
        model: a trained path-scorer directory used for every domain it fits (else per-domain
            ``scorer`` from the pack's manifest, else zero-shot).
        max_question_chars: longer questions are truncated (with a warning in ``Answer.warnings``).
    """

    def __init__(self, kb: KnowledgeBase | Any, *, model: str | Path | None = None,
                 max_question_chars: int = MAX_QUESTION_CHARS) -> None:
        self.kb = kb
        self.model = str(model) if model is not None else None
        self.max_question_chars = max_question_chars
        self._domains: dict[str, DomainContext] = {}
        self._scorers: dict[tuple[str, str], PathScorer] = {}
        self._rules: dict[str, ExpertRules | None] = {}

    # -- public --------------------------------------------------------------------------------
    def ask(self, question: str, *, domain: str | None = None, llm: Any = None, top_k: int | None = 10,
            choices: Sequence[str] | None = None, model: str | Path | None = None,
            entities: Sequence[str] | None = None, max_hops: int | None = None, explore: bool = False,
            adapter: str | Path | None = None, llm_cache: bool = True) -> Answer:
        """Answer one question.

        Args:
            question: the question; ``[bracketed]`` mentions are honoured, not required.
            domain: the domain to ask; ``None`` routes the question.
            llm: an LLM backend or spec for the text; ``None`` writes the extractive text.
            top_k: answers returned (``None``: all answers of the kept chains).
            choices: answer options: the question is answered as multiple choice by the graph adapter
                (``adapter``, a model dir from ``kgllm train csqa|obqa``; without one, by similarity).
            model: a trained path-scorer directory (overrides the pipeline's).
            entities: topic entity ids to start from instead of linking.
            max_hops: longest chain (default: the domain's setting, 3).
            explore: with a generative ``llm``, let it choose the relations at each hop (Think-on-Graph
                style) instead of the beam search; without one, a ``UserWarning`` and the beam search.
            adapter: multiple-choice adapter model directory (with ``choices``).
            llm_cache: serve identical LLM requests from the KB's on-disk cache.

        Raises:
            DomainNotFound: ``domain`` is not in the KB (lists the known ones).
            ModelError: ``model`` was trained for another KB or embedding model.
        """
        return self.ask_many([question], domain=domain, llm=llm, top_k=top_k, choices=choices, model=model,
                             entities=entities, max_hops=max_hops, explore=explore, adapter=adapter,
                             llm_cache=llm_cache)[0]

    def ask_many(self, questions: Sequence[str], *, batch_size: int = 64, domain: str | None = None,
                 llm: Any = None, top_k: int | None = 10, choices: Sequence[str] | None = None,
                 model: str | Path | None = None, entities: Sequence[str] | None = None,
                 max_hops: int | None = None, explore: bool = False, adapter: str | Path | None = None,
                 llm_cache: bool = True) -> list[Answer]:
        """Answer many questions; the embeddings of each batch of ``batch_size`` are computed together.

        Raises:
            ConfigError: ``questions`` is one string, not a list of them, or ``batch_size``/``top_k``
                is below 1.
            DomainNotFound: ``domain`` is not in the KB (lists the known ones).
        """
        if isinstance(questions, str):
            raise ConfigError(f"ask_many takes a list of questions, got one string {questions[:60]!r}; "
                              "use ask() for one question")
        check_count("batch_size", batch_size)
        if top_k is not None:
            check_count("top_k (or None for all answers)", top_k)
        if max_hops is not None:  # the beam search checks it too, but the explorer read 0 as the default
            check_count("max_hops (or None for the domain's setting)", max_hops)
        if isinstance(entities, str):  # a string is a sequence too: its characters were taken as ids
            raise ConfigError(f"entities takes a list of entity ids, got one string {entities!r}; "
                              f"use entities=[{entities!r}]")
        if domain is not None and domain not in self.kb.domains:
            raise DomainNotFound(domain, self.kb.domains)
        if choices is not None:
            from kgllm.fusion.choices import answer_choices_many

            return answer_choices_many(self.kb, questions, choices, model_dir=adapter)
        self._drop_stale_contexts()
        backend = resolve_backend(llm, self.kb, cache=llm_cache)
        explorer_llm = backend if explore and is_generative(backend) else None
        ignored_explore = explore and explorer_llm is None  # the beam search answers: say so on each answer
        if ignored_explore:
            log.warning(EXPLORE_NEEDS_LLM)
        out: list[Answer] = []
        memo: dict[int, dict[str, Any]] = {}  # per reasoner: masked text -> question state, for this call
        for begin in range(0, len(questions), max(1, batch_size)):
            batch = [self._check(q) for q in questions[begin:begin + batch_size]]
            if ignored_explore:
                for work in batch:
                    work.answer.warnings.append(EXPLORE_NEEDS_LLM)
            route_experts(self, batch, domain)
            every = batch + [extra for work in batch for extra in work.consulted]
            link_entities(every, entities)
            if sum(map(len, memo.values())) > MEMO_LIMIT:
                memo.clear()
            reason_over_paths(self, every, model=model, top_k=top_k, max_hops=max_hops, llm=explorer_llm,
                              memo=memo)
            infer_with_rules(self, every, model=model, top_k=top_k)
            for work in batch:
                merge_experts(work, top_k)
            bridge_experts(self, batch, model=model, top_k=top_k)
            retrieve_evidence(self, batch, backend)
            write_answers(self, batch, backend, choices)
            out.extend(work.answer for work in batch)
        return out

    def context(self, domain: str) -> DomainContext:
        """The per-domain state (built on first use from the store's snapshot)."""
        if domain not in self._domains:
            if domain not in self.kb.domains:
                raise DomainNotFound(domain, self.kb.domains)
            self._domains[domain] = build_context(self.kb, domain)
        return self._domains[domain]

    def _drop_stale_contexts(self) -> None:
        """Forget domains whose graph changed since their context was built: another client of a Neo4j
        database (or another KB object) loaded into them. The store's snapshot is cached until the domain
        changes, so an unchanged domain costs one lookup (one query on Neo4j) per call."""
        for name, ctx in list(self._domains.items()):
            if not ctx.snapshot.num_nodes:  # documents only: no graph to go stale
                continue
            try:
                current = self.kb.store.snapshot(name)
            except DomainNotFound:
                current = None
            if current is not ctx.snapshot:
                del self._domains[name]
                self._rules.pop(name, None)

    def reasoner(self, ctx: DomainContext, model: str | Path | None = None) -> PathReasoner:
        """The domain's reasoner with the learned scorer of ``model`` (or the default), else zero-shot."""
        path = str(model) if model is not None else (self.model or ctx.scorer_path)
        key = path or "zero-shot"
        if key not in ctx.reasoners:
            own = bool(path) and path == ctx.scorer_path and model is None and self.model is None
            ctx.reasoners[key] = build_reasoner(ctx, self.kb.embedder, path, own_scorer=own)
        return ctx.reasoners[key]

    def evidence(self, ctx: DomainContext) -> ExpertEvidence:
        """The domain's retrievers, as its ``reasoning.retrievers`` setting names them (built once)."""
        if ctx.evidence is None:
            names = (self.kb.domain_info(ctx.name).get("reasoning") or {}).get("retrievers")  # [] runs none
            ctx.evidence = ExpertEvidence(self.kb, ctx.name, ctx.snapshot, DEFAULT_RETRIEVERS if names is None else names,
                                          hops=min(ctx.max_hops, 2))
        return ctx.evidence


    def rules(self, ctx: DomainContext) -> ExpertRules | None:
        """The domain's rule set (``kb.use_rules``), ``None`` without one (read once per context)."""
        if ctx.name not in self._rules:
            self._rules[ctx.name] = ExpertRules.from_info(self.kb.domain_info(ctx.name), ctx.snapshot)
        return self._rules[ctx.name]

    @property
    def contexts(self) -> Mapping[str, DomainContext]:
        """The per-domain states built so far (:meth:`context` builds the others)."""
        return self._domains

    def _check(self, question: str) -> QuestionWork:
        """Stage 0: empty and huge questions."""
        if question is not None and not isinstance(question, str):
            raise ConfigError(f"a question must be a string, got {type(question).__name__}: {question!r}")
        text = unicodedata.normalize("NFC", question or "").strip()  # composed accents, as names are keyed
        answer = Answer(question=question or "")
        work = QuestionWork(question=text, answer=answer)
        if not text:
            answer.text = NO_QUESTION
            answer.warnings.append("empty question")
            work.done = True
        elif len(text) > self.max_question_chars:
            message = f"question of {len(text)} characters truncated to {self.max_question_chars}"
            log.warning(message)
            answer.warnings.append(message)
            work.question = text[: self.max_question_chars]
        return work

