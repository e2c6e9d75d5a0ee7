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
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kgllm.domain_context import DomainContext, build_context, build_reasoner
from kgllm.exceptions import ConfigError, DomainNotFound
from kgllm.fusion.context import generate_answer
from kgllm.linking import Mention
from kgllm.llm import resolve_llm
from kgllm.reasoning.aggregate import merge_answers
from kgllm.reasoning.bridge import MAX_BRIDGES, cross_expert_answers
from kgllm.reasoning.explorer import LLMExplorer
from kgllm.reasoning.reasoner import PathReasoner, Reasoning
from kgllm.reasoning.rule_inference import ExpertRules, infer_missing_edges
from kgllm.reasoning.scorer import PathScorer
from kgllm.retrieval.evidence import DEFAULT_RETRIEVERS, ExpertEvidence
from kgllm.types import Answer, Chunk, ExpertChoice

if TYPE_CHECKING:
    from kgllm.kb import KnowledgeBase

__all__ = ["Pipeline", "DomainContext", "MAX_QUESTION_CHARS", "NO_ENTITY", "NO_QUESTION"]

log = logging.getLogger(__name__)

MAX_QUESTION_CHARS = 2000
NO_QUESTION = "No question was asked."
NO_ENTITY = "No entity of the question could be found in the knowledge graph."
ROUTE_MARGIN = 0.05
"""Experts scoring within this margin of the best one are consulted too (answers merged)."""
MAX_EXPERTS = 3
BRIDGE_MARGIN = 0.2
"""A second expert within this margin of the first may continue the first's chains (cross-expert)."""
APPROXIMATE_LINKS = frozenset({"fuzzy", "vector"})
"""Link methods that guess at a name; answers resting on them carry a warning."""
MEMO_LIMIT = 20_000
"""Question states ``ask_many`` keeps for reuse within one call (~5 KB each); cleared beyond."""
RETRIEVED_FACTS = 20
"""Graph facts retrieved for an LLM's context beyond those the paths walk (the prompt budget may drop some)."""
RETRIEVED_CHUNKS = 4
"""Document chunks retrieved per question, for experts with documents."""


@dataclass
class _Work:
    """One question on its way through the stages."""

    question: str
    answer: Answer
    domain: DomainContext | None = None
    topic: list[int] = field(default_factory=list)
    span: tuple[int, int] = (0, 0)
    reasoning: Reasoning | None = None
    done: bool = False
    unlinked: bool = False  # no entity linked: retrieved documents or facts may still answer
    consulted: list[_Work] = field(default_factory=list)
    ranked: list[ExpertChoice] = field(default_factory=list)


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
                style) instead of the beam search.
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
        _check_count("batch_size", batch_size)
        if top_k is not None:
            _check_count("top_k (or None for all answers)", top_k)
        if domain is not None and domain not in self.kb.domains:
            raise DomainNotFound(domain, self.kb.domains)
        if choices is not None:
            from kgllm.fusion.choices import answer_choices

            return [answer_choices(self.kb, question, choices, model_dir=adapter) for question in questions]
        self._drop_stale_contexts()
        backend = _resolve_llm(llm, self._llm_cache(llm_cache))
        explorer_llm = backend if explore and getattr(backend, "generative", True) else None
        out: list[Answer] = []
        memo: dict[int, dict[str, Any]] = {}  # per reasoner: masked text -> question state, for this call
        for begin in range(0, len(questions), max(1, batch_size)):
            batch = [self._check(q) for q in questions[begin:begin + batch_size]]
            self._route(batch, domain)
            every = batch + [extra for work in batch for extra in work.consulted]
            self._link(every, entities)
            if sum(map(len, memo.values())) > MEMO_LIMIT:
                memo.clear()
            self._reason(every, model=model, top_k=top_k, max_hops=max_hops, llm=explorer_llm, memo=memo)
            self._infer(every, model=model, top_k=top_k)
            for work in batch:
                _merge_experts(work, top_k)
            self._bridge(batch, model=model, top_k=top_k)
            self._retrieve(batch, backend)
            self._generate(batch, backend, choices)
            out.extend(work.answer for work in batch)
        return out

    def _llm_cache(self, enabled: bool) -> Any:
        """LLM responses are cached beside the KB (``<kb>/llm_cache``) unless switched off."""
        if not enabled:
            return False
        path = getattr(self.kb, "path", None)
        return Path(path) / "llm_cache" if path is not None else None

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

    # -- stages --------------------------------------------------------------------------------
    def _check(self, question: str) -> _Work:
        """Stage 0: empty and huge questions."""
        if question is not None and not isinstance(question, str):
            raise ConfigError(f"a question must be a string, got {type(question).__name__}: {question!r}")
        text = (question or "").strip()
        answer = Answer(question=question or "")
        work = _Work(question=text, answer=answer)
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

    def _route(self, batch: list[_Work], domain: str | None) -> None:
        """Stage 1: the experts to ask. Given, the only one, or the router's choice plus the runners-up
        within ``ROUTE_MARGIN`` of it (at most ``MAX_EXPERTS``); their answers are merged later."""
        started = time.perf_counter()
        names = [domain] if domain is not None else list(self.kb.domains)
        for work in batch:
            if work.done:
                continue
            if not names:
                work.answer.text = "The knowledge base has no domains; load a pack first."
                work.done = True
                continue
            if len(names) == 1:
                work.domain = self.context(names[0])
                work.answer.experts = [ExpertChoice(name=names[0], score=1.0,
                                                    reasons=["given" if domain else "only domain"])]
                continue
            ranked = self._rank_experts(work.question, names)
            chosen = [c for c in ranked if c.score >= ranked[0].score - ROUTE_MARGIN][:MAX_EXPERTS]
            work.domain = self.context(chosen[0].name)
            work.consulted = [_Work(question=work.question, answer=Answer(question=work.answer.question),
                                    domain=self.context(c.name)) for c in chosen[1:]]
            work.answer.experts = chosen
            work.ranked = ranked
        self._time(batch, "route", started)

    def _rank_experts(self, question: str, names: list[str]) -> list[ExpertChoice]:
        """The KB's router (kgllm.experts) when it has one; else the best entity-link score per domain."""
        router = getattr(self.kb, "router", None)
        if router is not None:
            return list(router.route(question, experts=names))
        scored = []
        for name in names:
            mentions = self.context(name).linker.mentions(question)
            scored.append(ExpertChoice(name=name, score=round(mentions[0].score if mentions else 0.0, 4),
                                       reasons=["entity link score"]))
        return sorted(scored, key=lambda c: (-c.score, c.name))

    def _link(self, batch: list[_Work], entities: Sequence[str] | None) -> None:
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
        self._time(batch, "link", started)

    def _reason(self, batch: list[_Work], *, model: str | Path | None, top_k: int | None,
                max_hops: int | None, llm: Any = None, memo: dict[int, dict[str, Any]] | None = None) -> None:
        """Stage 3: relation-path reasoning; question embeddings computed per domain in one batch
        (each distinct masked question once per ``ask_many`` call, through ``memo``)."""
        started = time.perf_counter()
        groups: dict[str, list[_Work]] = {}
        for work in batch:
            if not work.done and work.domain is not None:
                groups.setdefault(work.domain.name, []).append(work)
        for name, works in groups.items():
            reasoner = self.reasoner(self._domains[name], model)
            states = reasoner.prepare([reasoner.mask_question(w.question, *w.span) for w in works],
                                      memo=None if memo is None else memo.setdefault(id(reasoner), {}))
            ctx = self._domains[name]
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
        self._time(batch, "reason", started)

    def _infer(self, batch: list[_Work], *, model: str | Path | None, top_k: int | None) -> None:
        """Stage 3a: an expert with rules (``kb.use_rules``) infers the asked relation's edges that its
        graph lacks for the topic; see :mod:`kgllm.reasoning.rule_inference`."""
        groups: dict[str, list[_Work]] = {}
        for work in batch:
            if not work.done and work.domain is not None and work.reasoning is not None:
                groups.setdefault(work.domain.name, []).append(work)
        for name, works in groups.items():
            ctx = self._domains[name]
            if name not in self._rules:
                self._rules[name] = ExpertRules.from_info(self.kb.domain_info(name), ctx.snapshot)
            rules = self._rules[name]
            if rules is None:
                continue
            started = time.perf_counter()
            reasoner = self.reasoner(ctx, model)
            states = reasoner.prepare([reasoner.mask_question(w.question, *w.span) for w in works])
            for work, state in zip(works, states, strict=True):
                infer_missing_edges(work.answer, rules, ctx.graph, reasoner.scorer, state, work.topic, top_k=top_k)
            share = round((time.perf_counter() - started) * 1000 / len(works), 3)
            for work in works:
                work.answer.timings["infer"] = share

    def _bridge(self, batch: list[_Work], *, model: str | Path | None, top_k: int | None) -> None:
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
            bridged = cross_expert_answers(self, self._with_paths(work, model, top_k), first,
                                           self.context(second.name), masked, model=model, top_k=top_k)
            if bridged is not None:
                work.answer = bridged
                if all(e.name != second.name for e in work.answer.experts):
                    work.answer.experts.append(second.model_copy(update={
                        "reasons": [*second.reasons, f"cross-expert chain from {first}"]}))
                # work.domain stays the expert whose graph work.topic indexes: it seeds the retrieval
        self._time(batch, "bridge", started)

    def _with_paths(self, work: _Work, model: str | Path | None, top_k: int | None) -> Answer:
        """``work.answer`` with a path for each answer that may bridge (the reasoner traces 5): only
        an answer with its path can continue in another expert's graph."""
        answer, reasoning = work.answer, work.reasoning
        if (work.consulted or reasoning is None or work.domain is None
                or all(item.paths for item in answer.answers[:MAX_BRIDGES])
                or [item.id for item in answer.answers] != [item.id for item in reasoning.answers]):
            return answer  # merged from several experts or changed by rules: left as it is
        reasoner = self.reasoner(work.domain, model)
        again = reasoner.explained(reasoning, work.topic, top_k=top_k, max_paths=MAX_BRIDGES)
        return answer.model_copy(update={"answers": again.answers, "paths": again.paths, "facts": again.facts})

    def _retrieve(self, batch: list[_Work], backend: Any) -> None:
        """Stage 4: evidence beyond the paths (:mod:`kgllm.retrieval.evidence`): the nearest document
        chunks for every answer, and graph facts (PPR, subgraph, vector facts) for a generative LLM's
        context. A question that linked no entity goes on when documents or facts were found."""
        started = time.perf_counter()
        generative = backend is not None and getattr(backend, "generative", True)
        todo = [(work, work.domain) for work in batch
                if work.domain is not None and not (work.done and not work.unlinked)]
        has_documents = getattr(self.kb, "has_documents", None)
        if len(todo) > 1 and (generative or (callable(has_documents) and any(
                has_documents(expert.name) for work, _ in todo for expert in work.answer.experts))):
            # one encoder call for the batch's questions: the vector retrievers then read the embedder's cache
            self.kb.embedder.encode(list(dict.fromkeys(work.question for work, _ in todo)))
        for work, ctx in todo:
            work.answer.chunks = self._chunks(work, ctx)
            if generative:
                seeds = [ctx.snapshot.ids[node] for node in work.topic]
                known = {fact.key for fact in work.answer.facts}
                found = self.evidence(ctx).graph_facts(work.question, seeds, RETRIEVED_FACTS).facts
                work.answer.facts = [*work.answer.facts, *(f for f in found if f.key not in known)]
            if work.unlinked and work.done and (work.answer.chunks or work.answer.facts):
                work.done = False  # the text is written from what was retrieved
        self._time(batch, "retrieve", started)

    def _chunks(self, work: _Work, ctx: DomainContext) -> list[Chunk]:
        """The chunks nearest to the question among the documents of every expert the answer consulted
        (routed to, merged or bridged into), best first; equal scores keep the experts' order."""
        names = dict.fromkeys([ctx.name, *(expert.name for expert in work.answer.experts)])
        found = [chunk for name in names for chunk in self.evidence(self.context(name)).chunks(work.question,
                                                                                               RETRIEVED_CHUNKS)]
        return sorted(found, key=lambda chunk: -(chunk.score or 0.0))[:RETRIEVED_CHUNKS]

    def _generate(self, batch: list[_Work], backend: Any, choices: Sequence[str] | None) -> None:
        """Stages 5-6: fuse the evidence into a prompt and write the text (extractive without an LLM)."""
        started = time.perf_counter()
        generative = backend is not None and getattr(backend, "generative", True)
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
                if expert.name in self._domains:
                    relation_text.update(self._domains[expert.name].relation_text)
            templates = {e.name: t for e in work.answer.experts
                         if (t := self.kb.domain_info(e.name).get("prompt_template"))}  # per-expert prompts
            work.answer = generate_answer(work.answer, backend, relation_text=relation_text, choices=choices,
                                          templates=templates or None)
        self._time(batch, "generate", started)

    @staticmethod
    def _time(batch: list[_Work], stage: str, started: float) -> None:
        # a batch shares the stage's cost: each question is charged its share
        elapsed = (time.perf_counter() - started) * 1000 / max(1, len(batch))
        for work in batch:
            work.answer.timings[stage] = round(elapsed, 3)


def _check_count(name: str, value: Any) -> None:
    """Refuse a count that is not an integer >= 1 (a bool is not a count)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")


def _merge_experts(work: _Work, top_k: int | None) -> None:
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
    work.reasoning = work.reasoning or found[0].reasoning
    if found[0] is not work:  # the expert that linked the question: its entities seed retrieval
        work.domain, work.topic, work.span = found[0].domain, found[0].topic, found[0].span
    work.done = work.unlinked = False


def _resolve_llm(llm: Any, cache: Any = None) -> Any:
    """``None`` for the extractive answerer, else the backend the spec or object names."""
    if llm is None or llm == "extractive":
        return None
    return resolve_llm(llm, cache=cache)
