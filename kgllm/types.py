"""Core value types of kgllm: plain pydantic models, JSON round-trippable.

``Model.to_json()`` / ``Model.from_json(text)`` round-trip every type here exactly.
Bulk paths (loaders, stores) move plain tuples; these types appear where a user sees them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "KGModel",
    "Entity",
    "Fact",
    "Triple",
    "Chunk",
    "Hop",
    "ReasoningPath",
    "Subgraph",
    "LinkedEntity",
    "ScoredAnswer",
    "ExpertChoice",
    "Answer",
]


class KGModel(BaseModel):
    """Base of the public types: frozen-by-convention pydantic models with JSON helpers."""

    model_config = ConfigDict(extra="forbid")

    def to_json(self, **kwargs: Any) -> str:
        return self.model_dump_json(**kwargs)

    @classmethod
    def from_json(cls, text: str | bytes):  # type: ignore[no-untyped-def]
        return cls.model_validate_json(text)


class Entity(KGModel):
    """A node of a domain's graph. ``id`` is stable and unique within ``domain``."""

    id: str
    name: str
    domain: str


class Fact(KGModel):
    """A triple with provenance: where it came from (domain, source file, line or chunk)."""

    head: str
    relation: str
    tail: str
    domain: str
    head_name: str | None = None
    tail_name: str | None = None
    source: str | None = None
    line: int | None = None
    chunk: int | None = None
    score: float | None = None

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.domain, self.head, self.relation, self.tail)

    def text(self, relation_text: str | None = None) -> str:
        """The fact as a sentence-like string, e.g. ``Kismet directed by William Dieterle``."""
        rel = relation_text or self.relation.replace("_", " ")
        return f"{self.head_name or self.head} {rel} {self.tail_name or self.tail}"


Triple = Fact


class Chunk(KGModel):
    """A piece of a document indexed for retrieval."""

    id: str
    domain: str
    text: str
    source: str | None = None
    chunk: int = 0
    line: int | None = None
    score: float | None = None


class Hop(KGModel):
    """One step of a reasoning chain: a real edge, walked forwards or backwards (``inverse``).

    ``rule`` is set when the edge was inferred by a learned rule rather than stored; ``domain``
    names the domain (expert) whose graph holds the edge (chains may cross experts).
    """

    head: str
    relation: str
    tail: str
    head_name: str | None = None
    tail_name: str | None = None
    domain: str | None = None
    inverse: bool = False
    rule: str | None = None


class ReasoningPath(KGModel):
    """A chain of hops from a linked entity to a candidate answer, with its score."""

    hops: list[Hop]
    score: float
    method: str = "beam"

    @property
    def relations(self) -> list[str]:
        return [("~" if h.inverse else "") + h.relation for h in self.hops]

    @property
    def start(self) -> str:
        return self.hops[0].head

    @property
    def end(self) -> str:
        return self.hops[-1].tail

    def text(self, *, annotate: bool = False) -> str:
        """``head -[relation]-> tail ...``; ``annotate`` also says which hops a rule inferred (no stored
        edge) and which experts the chain crosses."""
        if not self.hops:
            return ""
        parts = [self.hops[0].head_name or self.hops[0].head]
        for hop in self.hops:
            rel = hop.relation.replace("_", " ")
            parts.append(f"-[{'inverse of ' if hop.inverse else ''}{rel}]->")
            inferred = f" (inferred by rule {hop.rule})" if annotate and hop.rule else ""
            parts.append((hop.tail_name or hop.tail) + inferred)
        domains = list(dict.fromkeys(hop.domain for hop in self.hops if hop.domain)) if annotate else []
        return " ".join(parts) + (f" (across experts {' → '.join(domains)})" if len(domains) > 1 else "")


class Subgraph(KGModel):
    """A retrieved piece of a graph: nodes, the facts joining them, and the seeds it grew from."""

    nodes: list[Entity] = Field(default_factory=list)
    facts: list[Fact] = Field(default_factory=list)
    seeds: list[str] = Field(default_factory=list)
    truncated: bool = False


class LinkedEntity(KGModel):
    """A question mention linked to a graph node."""

    mention: str
    id: str
    name: str
    domain: str
    score: float
    method: str  # exact | alias | fuzzy | vector | bracket


class ScoredAnswer(KGModel):
    """One answer with its score; ``paths`` index into ``Answer.paths``."""

    id: str
    name: str
    score: float
    domain: str | None = None
    paths: list[int] = Field(default_factory=list)

    def rank_key(self) -> tuple[float, str, str, str]:
        """Sort key, best first: equal scores by name, then domain and id, the same on every backend."""
        return -self.score, self.name, self.domain or "", self.id


class ExpertChoice(KGModel):
    """An expert consulted for a question, with its routing score and the reasons for it."""

    name: str
    score: float
    reasons: list[str] = Field(default_factory=list)


class Answer(KGModel):
    """What ``ask`` returns: ranked answers, a text, the reasoning behind them and what it cost."""

    question: str
    answers: list[ScoredAnswer] = Field(default_factory=list)
    text: str = ""
    paths: list[ReasoningPath] = Field(default_factory=list)
    facts: list[Fact] = Field(default_factory=list)
    chunks: list[Chunk] = Field(default_factory=list)
    linked: list[LinkedEntity] = Field(default_factory=list)
    experts: list[ExpertChoice] = Field(default_factory=list)
    timings: dict[str, float] = Field(default_factory=dict)
    prompt: str | None = None
    tokens: dict[str, int] = Field(default_factory=dict)
    llm_calls: int = 0
    warnings: list[str] = Field(default_factory=list)

    @property
    def top(self) -> ScoredAnswer | None:
        return self.answers[0] if self.answers else None
