"""ContextFusion: retrieved facts, reasoning paths and document chunks → a cited prompt → the answer text.

The prompt numbers facts ``[1]..[k]`` (highest score first) and document chunks ``[D1]..[Dm]``;
reasoning paths are shown as chains whose steps cite those numbers. The prompt is fitted into a
token budget measured with the model's own tokenizer: over budget, facts are dropped lowest score
first, then chunks, then paths, and the drop is reported in ``Answer.warnings``.

After generation, ``Answer.facts`` is in citation order, so ``[n]`` in ``Answer.text`` is
``Answer.facts[n - 1]``; citations the model invents are removed from the text and flagged (``[2-4]`` ranges too);
a reply that cites nothing, an empty reply and one cut off at ``max_tokens`` are flagged as well.
``Answer.prompt``, ``Answer.tokens`` and ``Answer.llm_calls`` record what the answer cost.

The extractive backend (``llm=None``) writes the text from the paths instead, at no LLM call.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kgllm.exceptions import ConfigError
from kgllm.formatting import CITATION_RE, citation_refs
from kgllm.llm.base import LLM, GraphEvidence, Message, answering_from, approx_token_count, messages_to_text
from kgllm.llm.extractive import extractive_text, hop_fact_key
from kgllm.types import Answer, Chunk, Fact, ReasoningPath

__all__ = [
    "choice_label",
    "ContextFusion",
    "FusedPrompt",
    "generate_answer",
    "DEFAULT_SYSTEM",
    "DEFAULT_TEMPLATE",
    "TEMPLATE_FIELDS",
    "DEFAULT_BUDGET",
]

DEFAULT_SYSTEM = (
    "You answer questions with the help of facts from a knowledge graph. Use the numbered facts, the "
    "reasoning paths and the documents below; cite every fact you rely on as [n] (documents as [Dn]). "
    "If the facts do not answer the question, say so."
)
DEFAULT_TEMPLATE = "{context}\n\nQuestion: {question}\nAnswer concisely, citing the facts you use as [n]."
#: Fields a template may use; ``{question}`` is required.
TEMPLATE_FIELDS = ("question", "context", "facts", "paths", "chunks", "answers", "choices")
#: Prompt budget in tokens when neither the caller nor the model's context length sets one.
DEFAULT_BUDGET = 3072



@dataclass
class FusedPrompt:
    """A prompt and what went into it.

    Attributes:
        messages: the chat messages sent to the model.
        facts: the facts shown, in citation order (``[n]`` is ``facts[n - 1]``).
        chunks: the chunks shown (``[Dn]`` is ``chunks[n - 1]``).
        paths: the reasoning paths shown.
        answers: the reasoner's candidate answers named in the prompt.
        dropped_facts, dropped_chunks, dropped_paths, dropped_answers: what did not fit the budget.
        prompt_tokens: the prompt's size as the model's tokenizer counts it.
        budget: the budget it was fitted into.
        facts_shown, chunks_shown: whether the template shows the facts (or their numbers) and the chunks
            at all: the model can cite only what it was shown.
    """

    messages: list[Message]
    facts: list[Fact]
    chunks: list[Chunk]
    paths: list[ReasoningPath]
    answers: list[str] = field(default_factory=list)
    dropped_facts: list[Fact] = field(default_factory=list)
    dropped_chunks: list[Chunk] = field(default_factory=list)
    dropped_paths: list[ReasoningPath] = field(default_factory=list)
    dropped_answers: list[str] = field(default_factory=list)
    prompt_tokens: int = 0
    budget: int = 0
    facts_shown: bool = True
    chunks_shown: bool = True

    def warnings(self) -> list[str]:
        """One line describing what was dropped to fit the budget, if anything."""
        parts = [f"{len(dropped)} of {len(dropped) + len(kept)} {what}"
                 for what, kept, dropped in (("facts", self.facts, self.dropped_facts),
                                             ("chunks", self.chunks, self.dropped_chunks),
                                             ("paths", self.paths, self.dropped_paths),
                                             ("candidate answers", self.answers, self.dropped_answers))
                 if dropped]
        if not parts:
            return []
        return [f"context over the budget of {self.budget} tokens: dropped {', '.join(parts)} "
                "(retrieved facts first, then the lowest scores)"]


def _by_score(items: Sequence[Any]) -> list[Any]:
    """Highest score first; items without a score keep their order after the scored ones."""
    return sorted(items, key=lambda x: (x.score is None, -(x.score or 0.0)))


def _template_fields(template: str) -> set[str]:
    try:
        return {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as exc:
        raise ConfigError(f"malformed prompt template {template!r}: {exc}") from exc


def _check_template(template: str) -> str:
    names = _template_fields(template)
    unknown = sorted(n for n in names if n not in TEMPLATE_FIELDS)
    allowed = ", ".join("{" + f + "}" for f in TEMPLATE_FIELDS)
    if unknown:
        raise ConfigError(f"prompt template fields {unknown!r} invalid in {template!r}: it must contain "
                          f"{{question}} and may use {allowed}")
    if "question" not in names:
        raise ConfigError(f"prompt template {template!r} has no {{question}} field; it must contain {{question}} "
                          f"and may use {allowed}")
    return template


def _shown(fields: set[str]) -> dict[str, bool]:
    """Which evidence a template puts in front of the model (``{context}`` holds it all; the paths cite facts)."""
    whole = "context" in fields
    return {"facts": whole or bool(fields & {"facts", "paths"}), "chunks": whole or "chunks" in fields,
            "paths": whole or "paths" in fields, "answers": whole or "answers" in fields}


def choice_label(index: int) -> str:
    """The label of the ``index``-th choice: A, B, ..., Z, then AA, AB, ... (spreadsheet columns). Here,
    not in :mod:`kgllm.fusion.choices`, which loads torch."""
    label = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        label = chr(65 + rest) + label
    return label


def _most_that_fit(count: int, fits: Callable[[int], bool]) -> int:
    """The largest ``k <= count`` with ``fits(k)`` (0 when none), ``fits`` being monotone: a binary search,
    so thousands of paths or facts cost a dozen exact token counts, not one each."""
    low, high = 0, count
    while low < high:
        mid = (low + high + 1) // 2
        if fits(mid):
            low = mid
        else:
            high = mid - 1
    return low


def _count(llm: LLM | None, messages: list[Message]) -> int:
    counter = getattr(llm, "count_message_tokens", None)
    if counter is not None:
        return int(counter(messages))
    if llm is not None:
        return int(llm.count_tokens(messages_to_text(messages)))
    return approx_token_count(messages_to_text(messages))


class ContextFusion:
    """Builds cited, budgeted prompts and turns the model's output into the answer text.

    Args:
        templates: prompt templates per expert (domain) name; ``"default"`` for the rest.
        system: the system message (``None`` for models that take none).
        budget: prompt budget in tokens (default: the model's context length minus ``max_tokens``,
            else :data:`DEFAULT_BUDGET`).
        max_tokens: the most tokens the model may write.
        temperature: sampling temperature (0 = greedy).
        stop: stop sequences.
        relation_text: natural-language names of relations (``{"directed_by": "was directed by"}``).
        max_answers: candidate answers from the reasoner named in the prompt.
    """

    def __init__(self, *, templates: Mapping[str, str] | None = None, system: str | None = DEFAULT_SYSTEM,
                 budget: int | None = None, max_tokens: int = 256, temperature: float = 0.0,
                 stop: Sequence[str] | None = None, relation_text: Mapping[str, str] | None = None,
                 max_answers: int = 10) -> None:
        self.templates = {"default": DEFAULT_TEMPLATE}
        self.templates.update({k: _check_template(v) for k, v in (templates or {}).items()})
        if budget is not None and budget < 1:
            raise ConfigError(f"budget must be a positive number of tokens, got {budget!r}")
        self.system = system
        self.budget = budget
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.stop = list(stop or ())
        self.relation_text = dict(relation_text or {})
        self.max_answers = max_answers

    # -- evidence --------------------------------------------------------------------------------
    def evidence(self, answer: Answer) -> list[Fact]:
        """The answer's facts plus any fact a reasoning path walks that is missing: the facts the paths
        walk first, by score, then the others (retrieved for the context), by score. A fact given twice
        (the same edge of the same domain) is shown and numbered once, with its best score."""
        best: dict[tuple[str, str, str, str], Fact] = {}
        for fact in answer.facts:
            known = best.get(fact.key)
            if known is None or (fact.score is not None and (known.score is None or fact.score > known.score)):
                best[fact.key] = fact
        facts = list(best.values())
        seen = {(f.head, f.relation, f.tail) for f in facts}
        walked: set[tuple[str, str, str]] = set()
        default_domain = answer.experts[0].name if answer.experts else ""
        for path in _by_score(answer.paths):
            for hop in path.hops:
                key = hop_fact_key(hop)
                if hop.rule is not None:  # an edge inferred by a rule is no stored fact
                    continue
                walked.add(key)
                if key in seen:
                    continue
                seen.add(key)
                head_name, tail_name = ((hop.tail_name, hop.head_name) if hop.inverse
                                        else (hop.head_name, hop.tail_name))
                facts.append(Fact(head=key[0], relation=key[1], tail=key[2],
                                  domain=hop.domain or default_domain, head_name=head_name,
                                  tail_name=tail_name, score=path.score))
        scored = _by_score(facts)
        return [f for f in scored if (f.head, f.relation, f.tail) in walked] + \
            [f for f in scored if (f.head, f.relation, f.tail) not in walked]

    # -- prompt ----------------------------------------------------------------------------------
    def template_for(self, answer: Answer, template: str | None = None) -> str:
        if template is not None:
            return _check_template(template)
        for expert in answer.experts:
            if expert.name in self.templates:
                return self.templates[expert.name]
        return self.templates["default"]

    def _sections(self, answer: Answer, facts: list[Fact], paths: list[ReasoningPath], chunks: list[Chunk],
                  candidates: list[str], choices: Sequence[str] | None) -> dict[str, str]:
        cite = {(f.head, f.relation, f.tail): i + 1 for i, f in reversed(list(enumerate(facts)))}
        fact_lines = [f"[{i + 1}] {f.text(self.relation_text.get(f.relation))}" for i, f in enumerate(facts)]
        path_lines = []
        for path in paths:
            steps = []
            for hop in path.hops:
                n = cite.get(hop_fact_key(hop))
                rel = self.relation_text.get(hop.relation) or hop.relation.replace("_", " ")
                arrow = f"<-[{rel}]-" if hop.inverse else f"-[{rel}]->"
                steps.append(f"{arrow} {hop.tail_name or hop.tail}" + (f" [{n}]" if n else "")
                             + (f" (inferred by rule {hop.rule})" if hop.rule else ""))
            if path.hops:
                start = path.hops[0].head_name or path.hops[0].head
                path_lines.append(f"- {start} " + " ".join(steps))
        chunk_lines = [f"[D{i + 1}] {c.text.strip()}" for i, c in enumerate(chunks)]
        answers = ", ".join(candidates)
        choice_text = "\n".join(f"{choice_label(i)}. {c}" for i, c in enumerate(choices or ()))
        context = []
        if fact_lines:
            context.append("Facts:\n" + "\n".join(fact_lines))
        if path_lines:
            context.append("Reasoning paths:\n" + "\n".join(path_lines))
        if chunk_lines:
            context.append("Documents:\n" + "\n".join(chunk_lines))
        if answers:
            context.append(f"Candidate answers from the graph: {answers}")
        if choice_text:
            context.append("Choices:\n" + choice_text)
        if not context:
            context.append("(no facts were found in the knowledge graph)")
        return {"question": answer.question, "context": "\n\n".join(context), "facts": "\n".join(fact_lines),
                "paths": "\n".join(path_lines), "chunks": "\n".join(chunk_lines), "answers": answers,
                "choices": choice_text}

    def _messages(self, template: str, sections: dict[str, str]) -> list[Message]:
        user = template.format(**sections)
        if self.system:
            return [{"role": "system", "content": self.system}, {"role": "user", "content": user}]
        return [{"role": "user", "content": user}]

    def build(self, answer: Answer, llm: LLM | None = None, *, template: str | None = None,
              budget: int | None = None, choices: Sequence[str] | None = None) -> FusedPrompt:
        """The prompt for ``answer``, fitted into the budget.

        Raises:
            ConfigError: the question and template alone do not fit the budget, or a bad template.
        """
        tmpl = self.template_for(answer, template)
        budget = budget or self.budget
        if budget is None:
            limit = getattr(llm, "context_length", None)
            budget = max(limit - self.max_tokens, 1) if isinstance(limit, int) else DEFAULT_BUDGET
        facts = self.evidence(answer)
        paths = _by_score(answer.paths)
        chunks = _by_score(answer.chunks)
        candidates = [a.name for a in answer.answers[: self.max_answers]]
        shown = _shown(_template_fields(tmpl))
        kept: dict[str, list[Any]] = {"facts": facts, "chunks": chunks, "paths": paths, "answers": candidates}
        dropped: dict[str, list[Any]] = {"facts": [], "chunks": [], "paths": [], "answers": []}

        def render() -> tuple[list[Message], int]:
            msgs = self._messages(tmpl, self._sections(answer, facts, paths, chunks, candidates, choices))
            return msgs, _count(llm, msgs)

        def fits_with(items: list[Any], head: list[Any], tail: list[Any]) -> Callable[[int], bool]:
            def fits(k: int) -> bool:
                items[:] = head + tail[:k]
                return render()[1] <= budget
            return fits

        messages, tokens = render()
        if tokens > budget:
            # Facts go first (the retrieved ones, then the lowest scores), then chunks, paths and candidate
            # answers, each down to the most that fit; evidence the template does not show takes no room.
            for name in ("facts", "chunks", "paths", "answers"):
                items = kept[name]
                if tokens <= budget or not shown[name] or not items:
                    continue
                full = list(items)
                keep = _most_that_fit(len(full) - 1, fits_with(items, [], full))
                items[:] = full[:keep]
                dropped[name] = full[keep:]
                messages, tokens = render()
            # Dropping chunks, paths or answers may leave room: give back the best of the dropped facts that fit
            # after all (in order: a retrieved fact never comes back in place of a path's fact).
            if dropped["facts"] and tokens < budget:
                base, pending = list(facts), dropped["facts"]
                take = _most_that_fit(len(pending), fits_with(facts, base, pending))
                facts[:] = base + pending[:take]
                dropped["facts"] = pending[take:]
                messages, tokens = render()
            if tokens > budget:
                raise ConfigError(f"the prompt budget of {budget} tokens is too small: the question and "
                                  f"template alone take {tokens} tokens")
        return FusedPrompt(messages=messages, facts=facts, chunks=chunks, paths=paths, answers=candidates,
                           dropped_facts=dropped["facts"], dropped_chunks=dropped["chunks"],
                           dropped_paths=dropped["paths"], dropped_answers=dropped["answers"],
                           prompt_tokens=tokens, budget=budget, facts_shown=shown["facts"],
                           chunks_shown=shown["chunks"])

    # -- output ----------------------------------------------------------------------------------
    @staticmethod
    def check_citations(text: str, n_facts: int, n_chunks: int) -> tuple[str, list[str]]:
        """Remove citations to facts/chunks that were not in the prompt.

        Returns:
            The cleaned text and one warning per distinct invented citation.
        """
        invented: list[str] = []

        def given(ref: str) -> bool:  # every number of ``3``, ``D2`` or a range ``2-4`` was in the prompt
            doc = ref.startswith("D")
            ends = ref.split("-")
            numbers = [int(end.lstrip("D")) for end in ends]
            limit = n_chunks if doc else n_facts
            return (all(1 <= n <= limit for n in numbers) and numbers == sorted(numbers)
                    and not any(end.startswith("D") and not doc for end in ends))

        def fix(match: re.Match[str]) -> str:
            kept = []
            for ref in citation_refs(match.group(1)):
                if given(ref):
                    kept.append(ref)
                elif ref not in invented:
                    invented.append(ref)
            if not kept:
                return ""
            lead = match.group(0)[0] if match.group(0)[0].isspace() else ""
            return f"{lead}[{', '.join(kept)}]"

        cleaned = CITATION_RE.sub(fix, text)
        warnings = [f"the LLM cited [{ref}], which {'goes beyond' if '-' in ref else 'is not among'} the "
                    f"{n_chunks if ref.startswith('D') else n_facts} {'documents' if ref.startswith('D') else 'facts'} "
                    "it was given; removed from the text" for ref in invented]
        return cleaned.strip(), warnings

    def reply_warnings(self, text: str, finish_reason: str | None, n_facts: int = 0, n_chunks: int = 0) -> list[str]:
        """What a user should know about the model's (citation-checked) reply: no text at all, a text that cites
        none of the facts and documents it was given, or a text cut at ``max_tokens``."""
        warnings = []
        if not text.strip():
            reason = f" (finish reason: {finish_reason})" if finish_reason else ""
            warnings.append(f"the LLM wrote no answer text{reason}; the answers and paths come from the graph")
        elif (n_facts or n_chunks) and not CITATION_RE.search(text):
            given = " and ".join(f"{n} {what}{'s' if n > 1 else ''}"
                                 for n, what in ((n_facts, "fact"), (n_chunks, "document")) if n)
            warnings.append(f"the LLM's text cites none of the {given} it was given")
        if finish_reason == "length":
            warnings.append(f"the LLM's text was cut off at max_tokens={self.max_tokens}")
        return warnings

    def generate(self, answer: Answer, llm: LLM | None, *, template: str | None = None,
                 budget: int | None = None, choices: Sequence[str] | None = None) -> Answer:
        """The answer with ``text`` written (by ``llm``, or extractively when it is ``None``)."""
        tokens = {"prompt": 0, "completion": 0, **answer.tokens}
        if llm is None or not getattr(llm, "generative", True):
            facts = self.evidence(answer)
            ordered = answer.model_copy(update={"facts": facts})
            text = extractive_text(ordered, relation_text=self.relation_text)
            return answer.model_copy(update={"facts": facts, "text": text, "tokens": tokens})
        fused = self.build(answer, llm, template=template, budget=budget, choices=choices)
        evidence = GraphEvidence(question=answer.question, facts=tuple(fused.facts),
                                 topic=tuple(item.id for item in answer.linked),
                                 candidates=tuple(item.id for item in answer.answers[:self.max_answers]))
        with answering_from(evidence):  # a backend reading the graph itself (a soft prompt) finds it here
            generation = llm.generate(fused.messages, max_tokens=self.max_tokens, temperature=self.temperature,
                                      stop=self.stop or None)
        # the model can cite only the numbers it was shown: none when the template leaves facts or chunks out
        n_facts = len(fused.facts) if fused.facts_shown else 0
        n_chunks = len(fused.chunks) if fused.chunks_shown else 0
        text, citation_warnings = self.check_citations(generation.text, n_facts, n_chunks)
        reply_warnings = self.reply_warnings(text, getattr(generation, "finish_reason", None), n_facts, n_chunks)
        render = getattr(llm, "render", None)
        prompt = render(fused.messages) if render is not None else messages_to_text(fused.messages)
        tokens["prompt"] += generation.prompt_tokens
        tokens["completion"] += generation.completion_tokens
        calls = answer.llm_calls + (0 if getattr(generation, "cached", False) else 1)
        return answer.model_copy(update={
            "text": text,
            "prompt": prompt,
            "tokens": tokens,
            "llm_calls": calls,
            # Shown facts first, in citation order, so [n] is facts[n - 1]; then what did not fit. The same for
            # chunks: [Dn] is chunks[n - 1] (the prompt lists them by score, whatever order they came in).
            "facts": fused.facts + fused.dropped_facts,
            "chunks": fused.chunks + fused.dropped_chunks,
            "warnings": [*answer.warnings, *fused.warnings(), *citation_warnings, *reply_warnings],
        })


def generate_answer(answer: Answer, llm: LLM | None, *, template: str | None = None, budget: int | None = None,
                    max_tokens: int = 256, temperature: float = 0.0, relation_text: Mapping[str, str] | None = None,
                    templates: Mapping[str, str] | None = None, choices: Sequence[str] | None = None) -> Answer:
    """Write ``answer.text`` from the reasoning results, with an LLM or extractively.

    Args:
        answer: the pipeline's answer with ``answers``, ``paths``, ``facts`` and ``chunks`` filled.
        llm: a backend from :func:`kgllm.llm.resolve_llm`, or ``None`` for the extractive text.
        template: a prompt template overriding the per-expert ones (fields: :data:`TEMPLATE_FIELDS`).
        budget: prompt budget in tokens (default: model context minus ``max_tokens``).
        max_tokens: the most tokens the model may write.
        temperature: sampling temperature.
        relation_text: natural-language relation names for the prompt and the extractive text.
        templates: per-expert templates (``{"movies": "..."}``).
        choices: answer options for multiple-choice questions, listed as A., B., ...

    Returns:
        A new :class:`~kgllm.types.Answer` with ``text``, ``prompt``, ``tokens``, ``llm_calls``,
        ``warnings`` set and ``facts`` in citation order.

    Raises:
        ConfigError: a bad template or a budget too small for the question.
        LLMError: the backend failed.
    """
    fusion = ContextFusion(templates=templates, budget=budget, max_tokens=max_tokens, temperature=temperature,
                           relation_text=relation_text)
    return fusion.generate(answer, llm, template=template, choices=choices)
