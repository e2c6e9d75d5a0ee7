"""The ``Retriever`` protocol: a question (and optionally seed entities) → facts, chunks and nodes, scored.

Every retriever is one small class; the public :meth:`BaseRetriever.retrieve` validates the arguments
and the subclass fills :meth:`BaseRetriever._retrieve` (the template-method pattern).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from numbers import Integral
from typing import Protocol, runtime_checkable

from kgllm.exceptions import ConfigError
from kgllm.types import Chunk, Fact

__all__ = ["Retrieved", "Retriever", "BaseRetriever"]


@dataclass
class Retrieved:
    """What a retriever found, best first in each list: ``nodes`` are ``(entity id, score)``."""

    facts: list[Fact] = field(default_factory=list)
    chunks: list[Chunk] = field(default_factory=list)
    nodes: list[tuple[str, float]] = field(default_factory=list)
    truncated: bool = False


@runtime_checkable
class Retriever(Protocol):
    """Anything that retrieves evidence for a question."""

    name: str

    def retrieve(self, query: str, *, seeds: Sequence[str] = (), k: int = 20) -> Retrieved: ...


class BaseRetriever:
    """Shared argument checks; subclasses implement :meth:`_retrieve`."""

    name = "base"
    needs_seeds = False

    def retrieve(self, query: str, *, seeds: Sequence[str] = (), k: int = 20) -> Retrieved:
        """Evidence for ``query`` grown from ``seeds`` (entity ids), at most ``k`` items per list.

        Raises:
            ConfigError: ``k`` not an integer >= 1, or ``seeds`` one string instead of a list of ids.
        """
        if isinstance(k, bool) or not isinstance(k, Integral) or k < 1:
            raise ConfigError(f"k must be an integer >= 1, got {k!r}")
        if isinstance(seeds, str):  # a string is a sequence of one-letter "ids": nothing would be found
            raise ConfigError(f"seeds must be a list of entity ids, got one string {seeds!r}; pass [{seeds!r}]")
        if self.needs_seeds and not seeds:
            return Retrieved()
        return self._retrieve(query or "", list(seeds), int(k))

    def _retrieve(self, query: str, seeds: list[str], k: int) -> Retrieved:
        raise NotImplementedError
