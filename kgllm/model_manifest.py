"""Reading the JSON manifest of a trained-model directory (path scorer, adapter, ...), with one kind of error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kgllm.exceptions import ModelError

__all__ = ["read_model_manifest"]


def read_model_manifest(directory: str | Path, filename: str, *, key: str, expected: Any, what: str) -> dict[str, Any]:
    """The manifest ``directory/filename``, checked to be a ``what`` (``manifest[key] == expected``).

    Raises:
        ModelError: the file is missing, not JSON, or describes another kind or format of model.
    """
    path = Path(directory) / filename
    if not path.is_file():
        raise ModelError(f"{directory}: not a trained {what} directory ({filename} is missing)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: damaged manifest, not JSON ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get(key) != expected:
        found = manifest.get(key) if isinstance(manifest, dict) else None
        raise ModelError(f"{path}: not a {what} of this version ({key}={found!r}, expected {expected!r})")
    return manifest
