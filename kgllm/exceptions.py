"""The exception tree of kgllm.

Every error the library raises on purpose derives from :class:`KGLLMError`; each
subclass also derives from the builtin it refines, so ``except ValueError`` keeps
working for callers who do not know kgllm::

    KGLLMError
     ├── ConfigError(ValueError)          bad settings, unknown backend / spec
     ├── LoadError(ValueError)            bad input file: names file, line and value
     ├── KBError                          knowledge-base level problems
     │    ├── KBNotFound(FileNotFoundError)
     │    ├── DomainNotFound(KeyError)     unknown domain / expert (lists the known ones)
     │    └── IndexMismatch(ValueError)    index built with another embedding model / dim
     ├── StoreError                       graph store failures
     │    └── StoreUnavailable(ConnectionError)   server down, bad credentials, wrong version
     ├── ModelError(ValueError)           a trained model dir that does not fit (other KB, encoder ...)
     ├── LLMError                         LLM backend failures (unreachable endpoint, bad output)
     └── BenchmarkError(ValueError)       unknown benchmark, data folder missing files
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "KGLLMError",
    "ConfigError",
    "LoadError",
    "KBError",
    "KBNotFound",
    "DomainNotFound",
    "IndexMismatch",
    "StoreError",
    "StoreUnavailable",
    "ModelError",
    "LLMError",
    "BenchmarkError",
]


class KGLLMError(Exception):
    """Root of every error kgllm raises on purpose."""


class ConfigError(KGLLMError, ValueError):
    """Invalid settings or an unknown backend name/spec."""


class LoadError(KGLLMError, ValueError):
    """A file could not be loaded. Carries the file, the 1-based line and the offending value."""

    def __init__(self, message: str, *, path: str | Path | None = None, line: int | None = None,
                 value: object = None) -> None:
        self.path = str(path) if path is not None else None
        self.line = line
        self.value = value
        where = ""
        if self.path is not None:
            where = self.path if line is None else f"{self.path} line {line}"
            where += ": "
        detail = f": {value!r}" if value is not None else ""
        super().__init__(f"{where}{message}{detail}")


class KBError(KGLLMError):
    """A knowledge-base level problem."""


class KBNotFound(KBError, FileNotFoundError):
    """The directory is not a kgllm knowledge base."""


class DomainNotFound(KBError, KeyError):
    """An unknown domain or expert was named."""

    def __init__(self, name: str, known: list[str] | tuple[str, ...] = ()) -> None:
        self.name = name
        self.known = list(known)
        super().__init__(f"unknown domain {name!r}; known domains: {', '.join(sorted(self.known)) or '(none)'}")

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


class IndexMismatch(KBError, ValueError):
    """A vector index does not fit the embedder it is opened with."""


class StoreError(KGLLMError):
    """A graph store operation failed."""


class StoreUnavailable(StoreError, ConnectionError):
    """The store's server cannot be reached or refuses us (down, bad credentials, wrong version)."""


class ModelError(KGLLMError, ValueError):
    """A trained model directory does not fit what it is used with."""


class LLMError(KGLLMError):
    """A language-model backend failed."""


class BenchmarkError(KGLLMError, ValueError):
    """Unknown benchmark, or its data folder lacks expected files."""
