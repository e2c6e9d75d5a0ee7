"""The extractive answerer: answer text written from the reasoning paths, with no language model.

It is the default backend (``--llm extractive``). It costs no LLM call: the text names the top
answers and shows the chains of facts that lead to them, each fact cited as ``[n]`` where ``n`` is
its 1-based position in ``Answer.facts``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from kgllm.exceptions import LLMError
from kgllm.llm.base import BaseLLM, Generation, Message
from kgllm.types import Answer, Fact, Hop, ReasoningPath

__all__ = ["ExtractiveLLM", "extractive_text", "hop_fact_key"]

NO_ANSWER = "No answer was found in the knowledge graph."


def hop_fact_key(hop: Hop) -> tuple[str, str, str]:
    """The stored edge a hop walks: ``(head, relation, tail)`` as written in the graph.

    An inverse hop walks a stored edge backwards, so its stored head is the hop's tail.
    """
    if hop.inverse:
        return (hop.tail, hop.relation, hop.head)
    return (hop.head, hop.relation, hop.tail)


class ExtractiveLLM(BaseLLM):
    """The no-model backend. :meth:`generate` is refused: there is no model to complete a prompt."""

    backend = "extractive"
    generative = False

    def __init__(self) -> None:
        super().__init__("paths")

    @property
    def name(self) -> str:
        return "extractive"

    def _generate(self, messages: list[Message], *, max_tokens: int, temperature: float,
                  stop: list[str]) -> Generation:
        raise LLMError("the extractive backend writes answers from reasoning paths and cannot complete a "
                       "prompt; choose a generative backend: hf:NAME_OR_PATH, openai:MODEL@BASE_URL or a "
                       "LangChain chat model")

    def _stream(self, messages: list[Message], *, max_tokens: int, temperature: float,
                stop: list[str]) -> Iterator[str]:
        yield self._generate(messages, max_tokens=max_tokens, temperature=temperature, stop=stop).text


def _fact_sentence(fact: Fact, relation_text: Mapping[str, str] | None) -> str:
    return fact.text((relation_text or {}).get(fact.relation))


def _path_sentence(path: ReasoningPath, cite: Mapping[tuple[str, str, str], int],
                   facts: list[Fact], relation_text: Mapping[str, str] | None) -> str:
    steps = []
    for hop in path.hops:
        n = cite.get(hop_fact_key(hop))
        if n is not None and hop.rule is None:
            steps.append(f"{_fact_sentence(facts[n - 1], relation_text)} [{n}]")
            continue
        # a hop whose fact is not in Answer.facts: describe the edge itself, uncited
        head, rel, tail = hop_fact_key(hop)
        names = {hop.head: hop.head_name or hop.head, hop.tail: hop.tail_name or hop.tail}
        rel_text = (relation_text or {}).get(rel) or rel.replace("_", " ")
        edge = f"{names.get(head, head)} {rel_text} {names.get(tail, tail)}"
        # an edge inferred by a rule is not stored: say so, with the rule and the path behind it
        steps.append(f"{edge} (inferred, not stored: {hop.rule})" if hop.rule is not None else edge)
    return "; ".join(steps)


def extractive_text(answer: Answer, *, max_answers: int = 5, max_paths: int = 3,
                    relation_text: Mapping[str, str] | None = None) -> str:
    """The answer text built from ``answer.answers`` and ``answer.paths`` alone.

    Args:
        answer: a reasoned answer; its ``facts`` order defines the citation numbers.
        max_answers: answers named in the first line.
        max_paths: reasoning chains shown as evidence (highest score first).
        relation_text: natural-language names of relations, per relation id.

    Returns:
        e.g. ``"Robert Zemeckis.\\nBecause: Forrest Gump starred actors Tom Hanks [1]; Forrest Gump
        directed by Robert Zemeckis [2]."``
    """
    cite = {(f.head, f.relation, f.tail): i + 1 for i, f in reversed(list(enumerate(answer.facts)))}
    lines: list[str] = []
    # Name the confident answers (at least half the top score); weaker ones stay in ``answers``.
    top = answer.answers[0].score if answer.answers else 0.0
    confident = [a for a in answer.answers if top <= 0 or a.score >= 0.5 * top]
    if confident:
        names = [a.name for a in confident[:max_answers]]
        more = len(confident) - len(names)
        lines.append(", ".join(names) + (f" (and {more} more)" if more > 0 else "") + ".")
    # Evidence: the best chain of each named answer first, then the best remaining chains that reach
    # an answer (a cross-expert answer keeps chains that stop midway, which explain nothing asked).
    leading = {i for a in answer.answers for i in a.paths}
    ranked = sorted((i for i in range(len(answer.paths)) if i in leading or not leading),
                    key=lambda i: -answer.paths[i].score)
    first = [a.paths[0] for a in confident[:max_answers] if a.paths and a.paths[0] < len(answer.paths)]
    order = list(dict.fromkeys(first + ranked))
    paths = [answer.paths[i] for i in order[:max_paths]]
    for path in paths:
        if path.hops:
            lines.append(f"Because: {_path_sentence(path, cite, answer.facts, relation_text)}.")
    if not paths and answer.facts:  # no chains (e.g. vector retrieval only): show the best facts
        for i, fact in enumerate(answer.facts[:max_paths]):
            lines.append(f"Fact: {_fact_sentence(fact, relation_text)} [{i + 1}].")
    return "\n".join(lines) if lines else NO_ANSWER
