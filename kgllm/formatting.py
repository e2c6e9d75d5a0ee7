"""Human-readable renderings of results, shared by the ``kgllm`` command and the demo."""

from __future__ import annotations

import re
from typing import Any

__all__ = ["format_answer", "cited_numbers", "citation_refs", "CITATION_RE"]

_CITED = r"\s*D?\d+(?:\s*[-\u2013]\s*D?\d+)?\s*"  # [3], [D2], a range [2-4] / [D1-D3]
#: A citation in an answer text: ``[n]`` is ``Answer.facts[n - 1]``, ``[Dn]`` a document; lists and ranges too.
CITATION_RE = re.compile(rf"\s?\[({_CITED}(?:[,;]{_CITED})*)\]")


def citation_refs(group: str) -> list[str]:
    """The references of one citation's inside: ``"1, D2, 3-4"`` -> ``["1", "D2", "3-4"]``."""
    return [re.sub(r"\s+", "", raw).replace("\u2013", "-") for raw in re.split(r"[,;]", group)]


def cited_numbers(text: str, n_facts: int) -> list[int]:
    """The fact numbers ``text`` cites (``[2]``, ``[1, 3]``, ``[2-4]``; documents ``[Dn]`` aside), in order,
    each once, within ``1..n_facts``."""
    numbers: list[int] = []
    for group in CITATION_RE.findall(text):
        for ref in citation_refs(group):
            if "D" not in ref:
                ends = [int(n) for n in ref.split("-")]
                numbers += range(ends[0], ends[-1] + 1)
    return [n for n in dict.fromkeys(numbers) if 1 <= n <= n_facts]


def _fact_line(number: int, fact: Any) -> str:
    where = fact.source + (f":{fact.line}" if fact.line is not None else "") if fact.source else ""
    return f"   fact [{number}]: {fact.text()}  ({fact.domain}{', ' + where if where else ''})"


def format_answer(answer: Any, *, max_answers: int = 5, max_paths: int = 3) -> str:
    """A short human-readable rendering of an Answer."""
    lines = [f"Q: {answer.question}", f"A: {answer.text or '(no answer)'}"]
    if answer.answers:
        shown = ", ".join(f"{a.name} ({a.score:.2f})" for a in answer.answers[:max_answers])
        lines.append(f"   answers: {shown}")
    for path in answer.paths[:max_paths]:
        lines.append(f"   path: {path.text(annotate=True)}  [{path.score:.2f}]")
    # the facts the text cites, with their provenance: an LLM's "[2]" is otherwise a number the reader cannot look up
    lines += [_fact_line(n, answer.facts[n - 1]) for n in cited_numbers(answer.text or "", len(answer.facts))]
    for number, chunk in enumerate(answer.chunks[:max_paths], start=1):
        text = " ".join(chunk.text.split())
        lines.append(f"   document [D{number}]: {text[:160]}{'…' if len(text) > 160 else ''}  [{chunk.score or 0:.2f}]")
    if answer.experts:
        lines.append("   experts: " + ", ".join(f"{e.name} ({e.score:.2f})" for e in answer.experts))
    for warning in answer.warnings:
        lines.append(f"   warning: {warning}")
    return "\n".join(lines)
