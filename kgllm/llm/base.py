"""The small protocol every language-model backend implements, and the base class backends share.

A backend is anything with ``name``, ``generate``, ``stream`` and ``count_tokens``::

    gen = llm.generate("Who directed Kismet?", max_tokens=64, temperature=0.0, stop=["\\n\\n"])
    gen.text, gen.prompt_tokens, gen.completion_tokens
    for piece in llm.stream(messages, max_tokens=64): ...
    llm.count_tokens("some text")

Prompts are either one string (sent as a single user message) or a list of chat messages
``{"role": "system"|"user"|"assistant", "content": str}``. :class:`BaseLLM` validates and
normalises the arguments once, then calls the backend's ``_generate`` / ``_stream`` hook
(the template-method pattern of ``retrievers/base.py`` in neo4j-graphrag).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from kgllm.exceptions import ConfigError, LLMError

__all__ = [
    "Message",
    "Prompt",
    "Generation",
    "LLM",
    "BaseLLM",
    "normalize_messages",
    "messages_to_text",
    "approx_token_count",
    "StopTrimmer",
    "GraphEvidence",
    "current_evidence",
    "answering_from",
]

Message = dict[str, str]
Prompt = str | Sequence[Message]

_ROLES = ("system", "user", "assistant")
_TOKEN_RE = re.compile(r"\w+|[^\w\s]", re.UNICODE)


@dataclass(frozen=True)
class Generation:
    """One completion with what it cost; ``cached`` is true when served from the on-disk cache."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None = None
    cached: bool = False


@dataclass(frozen=True)
class GraphEvidence:
    """The graph an answer being written rests on, for backends that read it beside the prompt (a graph
    soft prompt, :mod:`kgllm.fusion.soft_prompt`): the facts shown in the prompt, the linked entities and
    the reasoner's candidate answers (ids)."""

    question: str
    facts: tuple[Any, ...] = ()  # kgllm.types.Fact
    topic: tuple[str, ...] = ()
    candidates: tuple[str, ...] = ()


_EVIDENCE: ContextVar[GraphEvidence | None] = ContextVar("kgllm_graph_evidence", default=None)


def current_evidence() -> GraphEvidence | None:
    """The evidence of the answer being written in this context (thread or task), if any."""
    return _EVIDENCE.get()


@contextmanager
def answering_from(evidence: GraphEvidence) -> Iterator[None]:
    """Make ``evidence`` the :func:`current_evidence` while a backend writes the answer."""
    token = _EVIDENCE.set(evidence)
    try:
        yield
    finally:
        _EVIDENCE.reset(token)


@runtime_checkable
class LLM(Protocol):
    """What the pipeline, the fusion step and LLM-guided reasoning need from a language model."""

    @property
    def name(self) -> str: ...

    def generate(self, prompt: Prompt, *, max_tokens: int = 256, temperature: float = 0.0,
                 stop: Sequence[str] | None = None) -> Generation: ...

    def stream(self, prompt: Prompt, *, max_tokens: int = 256, temperature: float = 0.0,
               stop: Sequence[str] | None = None) -> Iterator[str]: ...

    def count_tokens(self, text: str) -> int: ...


def normalize_messages(prompt: Prompt) -> list[Message]:
    """A prompt as a validated list of chat messages (a plain string becomes one user message).

    Raises:
        ConfigError: empty prompt, unknown role, or non-string content.
    """
    if isinstance(prompt, str):
        if not prompt:
            raise ConfigError("empty prompt")
        return [{"role": "user", "content": prompt}]
    messages: list[Message] = []
    for i, msg in enumerate(prompt):
        if not isinstance(msg, dict) or "role" not in msg or "content" not in msg:
            raise ConfigError(f"message {i} must be a dict with 'role' and 'content', got {msg!r}")
        role, content = msg["role"], msg["content"]
        if role not in _ROLES:
            raise ConfigError(f"message {i} has unknown role {role!r}; expected one of {', '.join(_ROLES)}")
        if not isinstance(content, str):
            raise ConfigError(f"message {i} content must be a string, got {type(content).__name__}")
        messages.append({"role": role, "content": content})
    if not messages:
        raise ConfigError("empty prompt: no messages")
    return messages


def messages_to_text(messages: Sequence[Message]) -> str:
    """Plain-text rendering of chat messages, for models without a chat template and for logging.

    A single user message renders as its content alone, so string prompts pass through unchanged.
    """
    if len(messages) == 1 and messages[0]["role"] == "user":
        return messages[0]["content"]
    parts = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
    if messages[-1]["role"] != "assistant":
        parts.append("Assistant:")
    return "\n\n".join(parts)


def approx_token_count(text: str) -> int:
    """A conservative token estimate for backends whose tokenizer is not available locally.

    Sub-word tokenizers produce roughly one token per word or punctuation mark and about one per
    four characters of English; taking the larger of the two over-counts rather than under-counts,
    so a budget computed with it is not exceeded by the real tokenizer in ordinary text.
    """
    if not text:
        return 0
    return max(len(_TOKEN_RE.findall(text)), math.ceil(len(text) / 4))


class StopTrimmer:
    """Cuts a stream of text pieces at the first stop sequence, holding back possible prefixes.

    Servers usually honour ``stop`` themselves; local generation and LangChain models may overshoot
    by a few tokens, so every backend passes its output through this to give one behaviour.
    """

    def __init__(self, stop: Sequence[str] | None) -> None:
        self.stop = [s for s in (stop or ()) if s]
        self._hold = max((len(s) for s in self.stop), default=1) - 1
        self._buffer = ""
        self.stopped = False

    def feed(self, piece: str) -> str:
        """Add a piece; return the text that is now safe to emit."""
        if self.stopped or not piece:
            return ""
        if not self.stop:
            return piece
        self._buffer += piece
        cut = min((i for i in (self._buffer.find(s) for s in self.stop) if i >= 0), default=-1)
        if cut >= 0:
            out, self._buffer, self.stopped = self._buffer[:cut], "", True
            return out
        keep = len(self._buffer) - self._hold
        if keep <= 0:
            return ""
        out, self._buffer = self._buffer[:keep], self._buffer[keep:]
        return out

    def flush(self) -> str:
        """The held-back tail once the stream ends."""
        out, self._buffer = ("" if self.stopped else self._buffer), ""
        return out

    def trim(self, text: str) -> str:
        """Cut a complete text at the first stop sequence."""
        return self.feed(text) + self.flush()


class BaseLLM:
    """Shared argument checking for backends: subclasses implement ``_generate`` and ``_stream``.

    Attributes:
        name: the spec-like name, e.g. ``hf:/models/qwen`` or ``openai:gpt-4o-mini@http://host/v1``.
        backend: the backend kind (``hf``, ``openai``, ``langchain``, ``extractive``).
        model: the model name or path.
        generative: false only for the extractive answerer, which cannot write free text.
    """

    backend: str = "base"
    generative: bool = True

    def __init__(self, model: str) -> None:
        self.model = model

    @property
    def name(self) -> str:
        return f"{self.backend}:{self.model}"

    @property
    def identity(self) -> str:
        """What distinguishes this model in cache keys (overridden where a path can change contents)."""
        return self.model

    @property
    def context_length(self) -> int | None:
        """Maximum prompt + completion tokens, when known."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model!r})"

    # -- public API: validate, normalise, delegate -------------------------------------------------
    def generate(self, prompt: Prompt, *, max_tokens: int = 256, temperature: float = 0.0,
                 stop: Sequence[str] | None = None) -> Generation:
        """Complete a prompt.

        Args:
            prompt: a string (one user message) or a list of chat messages.
            max_tokens: the most tokens to generate (>= 1).
            temperature: 0 for greedy decoding, higher to sample.
            stop: strings at which generation ends (not included in the text).

        Returns:
            The text with prompt and completion token counts.

        Raises:
            ConfigError: invalid arguments.
            LLMError: the backend failed.
        """
        messages, stop_list = self._check(prompt, max_tokens, temperature, stop)
        generation = self._generate(messages, max_tokens=max_tokens, temperature=temperature, stop=stop_list)
        if not isinstance(generation, Generation):  # a user's own backend returning the bare text, say
            raise LLMError(f"{self.name}: {type(self).__name__}._generate returned {type(generation).__name__}, "
                           "not a Generation(text=..., prompt_tokens=..., completion_tokens=...)")
        return generation

    def stream(self, prompt: Prompt, *, max_tokens: int = 256, temperature: float = 0.0,
               stop: Sequence[str] | None = None) -> Iterator[str]:
        """Like :meth:`generate`, yielding the text in pieces as it is produced."""
        messages, stop_list = self._check(prompt, max_tokens, temperature, stop)
        trimmer = StopTrimmer(stop_list)
        for piece in self._stream(messages, max_tokens=max_tokens, temperature=temperature, stop=stop_list):
            out = trimmer.feed(piece)
            if out:
                yield out
            if trimmer.stopped:
                break
        tail = trimmer.flush()
        if tail:
            yield tail

    def count_tokens(self, text: str) -> int:
        """Tokens in ``text`` as the model counts them (an estimate where no tokenizer is local)."""
        return approx_token_count(text)

    def count_message_tokens(self, messages: Sequence[Message]) -> int:
        """Prompt tokens of a chat, including the per-message framing a chat format adds."""
        # ~4 tokens of role/separator framing per message, as in OpenAI's chat format.
        return sum(self.count_tokens(m["content"]) + 4 for m in messages) + 2

    def render(self, messages: Sequence[Message]) -> str:
        """The prompt as the model sees it (exact where the backend knows its template)."""
        return messages_to_text(messages)

    def close(self) -> None:
        """Release connections or memory held by the backend."""

    def __enter__(self) -> BaseLLM:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- hooks ---------------------------------------------------------------------------------------
    def _generate(self, messages: list[Message], *, max_tokens: int, temperature: float,
                  stop: list[str]) -> Generation:
        raise NotImplementedError

    def _stream(self, messages: list[Message], *, max_tokens: int, temperature: float,
                stop: list[str]) -> Iterator[str]:
        # Backends without native streaming yield the whole completion at once.
        yield self._generate(messages, max_tokens=max_tokens, temperature=temperature, stop=stop).text

    @staticmethod
    def _check(prompt: Prompt, max_tokens: int, temperature: float,
               stop: Sequence[str] | None) -> tuple[list[Message], list[str]]:
        messages = normalize_messages(prompt)
        if not isinstance(max_tokens, int) or max_tokens < 1:
            raise ConfigError(f"max_tokens must be a positive integer, got {max_tokens!r}")
        if not isinstance(temperature, (int, float)) or not 0.0 <= float(temperature) <= 2.0:
            raise ConfigError(f"temperature must be between 0 and 2, got {temperature!r}")
        if isinstance(stop, str):  # a bare string would otherwise be split into characters
            stop = [stop]
        stop_list = [s for s in (stop or ()) if s]
        if any(not isinstance(s, str) for s in stop_list):
            raise ConfigError(f"stop must be a list of strings, got {stop!r}")
        return messages, stop_list
