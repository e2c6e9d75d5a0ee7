"""Human-readable renderings of results, shared by the ``kgllm`` command and the demo."""

from __future__ import annotations

from typing import Any

__all__ = ["format_answer"]


def format_answer(answer: Any, *, max_answers: int = 5, max_paths: int = 3) -> str:
    """A short human-readable rendering of an Answer."""
    lines = [f"Q: {answer.question}", f"A: {answer.text or '(no answer)'}"]
    if answer.answers:
        shown = ", ".join(f"{a.name} ({a.score:.2f})" for a in answer.answers[:max_answers])
        lines.append(f"   answers: {shown}")
    for path in answer.paths[:max_paths]:
        lines.append(f"   path: {path.text()}  [{path.score:.2f}]")
    for number, chunk in enumerate(answer.chunks[:max_paths], start=1):
        text = " ".join(chunk.text.split())
        lines.append(f"   document [D{number}]: {text[:160]}{'…' if len(text) > 160 else ''}  [{chunk.score or 0:.2f}]")
    if answer.experts:
        lines.append("   experts: " + ", ".join(f"{e.name} ({e.score:.2f})" for e in answer.experts))
    for warning in answer.warnings:
        lines.append(f"   warning: {warning}")
    return "\n".join(lines)
