"""Typed settings, validated at the boundary. Only the CLI reads environment variables."""

from __future__ import annotations

import numbers
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["StoreSettings", "AskSettings", "validate_domain_name", "check_count", "default_kb_path"]

_DOMAIN_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def validate_domain_name(name: str) -> str:
    """Domain names become directory names: letters, digits, ``_ . -``; at most 64 characters."""
    from kgllm.exceptions import ConfigError

    if not isinstance(name, str) or not _DOMAIN_RE.fullmatch(name):  # match's "$" let a trailing newline in
        raise ConfigError(f"invalid domain name {name!r}: use letters, digits, '_', '.', '-' (at most 64, "
                          "starting with a letter or digit)")
    return name


def check_count(name: str, value: object) -> int:
    """``value`` if it is an integer >= 1 (a numpy integer too; a bool is not a count).

    Raises:
        ConfigError: anything else (a ``ValueError`` too), naming ``name`` and the value.
    """
    from kgllm.exceptions import ConfigError

    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def default_kb_path(env_home: str | None) -> Path:
    """``$KGLLM_HOME`` when given (the CLI passes it), else ``~/.kgllm/default``."""
    return Path(env_home) if env_home else Path.home() / ".kgllm" / "default"


class StoreSettings(BaseModel):
    """How to reach the graph store. The password is never written to the KB manifest."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["local", "neo4j"] = "local"
    neo4j_uri: str | None = None
    user: str | None = None
    password: str | None = Field(default=None, exclude=True, repr=False)
    database: str | None = None

    @field_validator("neo4j_uri")
    @classmethod
    def _uri_scheme(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^(bolt|neo4j)(\+s|\+ssc)?://", value):
            raise ValueError(f"expected a bolt:// or neo4j:// URI, got {value!r}")
        return value


class AskSettings(BaseModel):
    """Per-question knobs of the pipeline."""

    model_config = ConfigDict(extra="forbid")

    top_k: int = Field(default=10, ge=1, le=1000)
    max_hops: int = Field(default=3, ge=1, le=4)
    beam: int = Field(default=8, ge=1, le=256)
    max_question_chars: int = Field(default=2000, ge=16)
