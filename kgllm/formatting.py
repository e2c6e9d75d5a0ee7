"""Human-readable renderings of results, shared by the ``kgllm`` command and the demo."""

from __future__ import annotations

import re
from typing import Any

__all__ = ["format_answer", "cited_numbers"]

_CITED_RE = re.compile(r"\[(\d+(?:\s*[-\u2013,;]\s*\d+)*)\]")


def cited_numbers(text: str, n_facts: int) -> list[int]:
    """The fact numbers ``text`` cites (``[2]``, ``[1, 3]``, ``[2-4]``), in order, each once, within ``1..n_facts``."""
    numbers: list[int] = []
    for group in _CITED_RE.findall(text):
        for part in re.split(r"\s*[,;]\s*", group):
            ends = [int(n) for n in re.split(r"\s*[-\u2013]\s*", part)]
            numbers += range(ends[0], ends[-1] + 1)
    return [n for n in dict.fromkeys(numbers) if 1 <= n <= n_facts]


def _path_text(path: Any) -> str:
    """A chain as ``ReasoningPath.text`` writes it, saying which hops a rule inferred (no stored edge) and
    which experts a chain crosses."""
    if not path.hops:
        return ""
    parts = [path.hops[0].head_name or path.hops[0].head]
    for hop in path.hops:
        parts.append(f"-[{'inverse of ' if hop.inverse else ''}{hop.relation.replace('_', ' ')}]->")
        parts.append((hop.tail_name or hop.tail) + (f" (inferred by rule {hop.rule})" if hop.rule else ""))
    domains = list(dict.fromkeys(hop.domain for hop in path.hops if hop.domain))
    return " ".join(parts) + (f" (across experts {' → '.join(domains)})" if len(domains) > 1 else "")


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
        lines.append(f"   path: {_path_text(path)}  [{path.score:.2f}]")
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
