"""An on-disk cache of LLM completions: identical requests are answered without calling the model.

The key is a SHA-256 of (backend, model identity, messages, max_tokens, temperature, stop); the
store is one SQLite file, safe for several processes. Sampled requests (temperature > 0) are
cached too — an identical request gets the same text back; pass ``cache=False`` to
:func:`kgllm.llm.resolve_llm` to sample afresh.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from kgllm.exceptions import ConfigError
from kgllm.llm.base import BaseLLM, Generation, Message, Prompt

__all__ = ["LLMCache", "CachedLLM", "default_cache_dir"]

_SCHEMA = """CREATE TABLE IF NOT EXISTS completions (
    key TEXT PRIMARY KEY, backend TEXT NOT NULL, model TEXT NOT NULL, text TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, finish_reason TEXT,
    created REAL NOT NULL)"""


def default_cache_dir() -> Path:
    """``~/.cache/kgllm/llm``: where completions are cached when no directory is given."""
    return Path.home() / ".cache" / "kgllm" / "llm"


class LLMCache:
    """A SQLite file of completions keyed by request.

    Args:
        directory: folder holding ``completions.sqlite`` (created if missing).
    """

    FILENAME = "completions.sqlite"

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory).expanduser()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create the LLM cache directory {str(self.directory)!r}: {exc}") from exc
        self.path = self.directory / self.FILENAME
        self._lock = threading.Lock()
        with self._connect() as conn:
            conn.execute(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """One short-lived connection per operation (no handles left open, safe across threads), under the lock.

        Raises:
            ConfigError: the file cannot be used (not a database, unreadable, locked too long).
        """
        try:
            with self._lock, closing(sqlite3.connect(self.path, timeout=30.0, isolation_level=None)) as conn:
                yield conn
        except sqlite3.Error as exc:
            raise ConfigError(f"the LLM cache {str(self.path)!r} cannot be used ({exc}); delete the file, or turn "
                              "the cache off (--no-llm-cache, llm_cache=False)") from exc

    @staticmethod
    def key(backend: str, model: str, messages: Sequence[Message], *, max_tokens: int, temperature: float,
            stop: Sequence[str]) -> str:
        """The request's cache key."""
        request = {"backend": backend, "model": model, "messages": list(messages), "max_tokens": max_tokens,
                   "temperature": round(float(temperature), 6), "stop": list(stop)}
        return hashlib.sha256(json.dumps(request, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    def get(self, key: str) -> Generation | None:
        with self._connect() as conn:
            row = conn.execute("SELECT text, prompt_tokens, completion_tokens, finish_reason FROM completions "
                               "WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        return Generation(text=row[0], prompt_tokens=row[1], completion_tokens=row[2], finish_reason=row[3],
                          cached=True)

    def put(self, key: str, backend: str, model: str, generation: Generation) -> None:
        with self._connect() as conn:
            conn.execute("INSERT OR REPLACE INTO completions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (key, backend, model, generation.text, generation.prompt_tokens,
                          generation.completion_tokens, generation.finish_reason, time.time()))

    def __len__(self) -> int:
        with self._connect() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM completions").fetchone()[0])

    def clear(self) -> None:
        with self._connect() as conn:
            conn.execute("DELETE FROM completions")

    def __repr__(self) -> str:
        return f"LLMCache({str(self.directory)!r})"


class CachedLLM(BaseLLM):
    """Any backend behind an :class:`LLMCache`; ``hits`` and ``misses`` count lookups.

    A streamed completion is stored once the stream has been read to its end; a cached one is
    streamed back as a single piece.
    """

    def __init__(self, llm: BaseLLM, cache: LLMCache) -> None:
        super().__init__(llm.model)
        self.llm = llm
        self.cache = cache
        self.backend = llm.backend
        self.generative = llm.generative
        self.hits = 0
        self.misses = 0

    @property
    def name(self) -> str:
        return self.llm.name

    @property
    def identity(self) -> str:
        return self.llm.identity

    @property
    def context_length(self) -> int | None:
        return self.llm.context_length

    def __repr__(self) -> str:
        return f"CachedLLM({self.llm!r}, {self.cache!r})"

    def __getattr__(self, item: str) -> Any:  # tokenizer, device, chat_model ... of the wrapped backend
        if item == "llm":
            raise AttributeError(item)
        return getattr(self.llm, item)

    def count_tokens(self, text: str) -> int:
        return self.llm.count_tokens(text)

    def count_message_tokens(self, messages: Sequence[Message]) -> int:
        return self.llm.count_message_tokens(messages)

    def render(self, messages: Sequence[Message]) -> str:
        return self.llm.render(messages)

    def close(self) -> None:
        self.llm.close()

    def _key(self, messages: list[Message], max_tokens: int, temperature: float, stop: list[str]) -> str:
        return LLMCache.key(self.backend, self.identity, messages, max_tokens=max_tokens,
                            temperature=temperature, stop=stop)

    def generate(self, prompt: Prompt, *, max_tokens: int = 256, temperature: float = 0.0,
                 stop: Sequence[str] | None = None) -> Generation:
        messages, stop_list = self._check(prompt, max_tokens, temperature, stop)
        key = self._key(messages, max_tokens, temperature, stop_list)
        hit = self.cache.get(key)
        if hit is not None:
            self.hits += 1
            return hit
        self.misses += 1
        generation = self.llm.generate(messages, max_tokens=max_tokens, temperature=temperature, stop=stop_list)
        self.cache.put(key, self.backend, self.identity, generation)
        return generation

    def stream(self, prompt: Prompt, *, max_tokens: int = 256, temperature: float = 0.0,
               stop: Sequence[str] | None = None) -> Iterator[str]:
        messages, stop_list = self._check(prompt, max_tokens, temperature, stop)
        key = self._key(messages, max_tokens, temperature, stop_list)
        hit = self.cache.get(key)
        if hit is not None:
            self.hits += 1
            if hit.text:
                yield hit.text
            return
        self.misses += 1
        pieces: list[str] = []
        for piece in self.llm.stream(messages, max_tokens=max_tokens, temperature=temperature, stop=stop_list):
            pieces.append(piece)
            yield piece
        text = "".join(pieces)
        # Streams carry no usage: count locally so the cached entry still reports the cost.
        generation = Generation(text=text, prompt_tokens=self.llm.count_message_tokens(messages),
                                completion_tokens=self.llm.count_tokens(text), finish_reason=None)
        self.cache.put(key, self.backend, self.identity, generation)
