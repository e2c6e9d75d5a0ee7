"""The KB directory's manifest file (``kgllm.json``): reading, atomic writes, and edits shared between processes.

Several processes may open one KB (a notebook asking while ``kgllm load`` adds a domain). Each edit
re-reads the file under an advisory lock, applies its change and writes the result atomically, so
one process's domains are never overwritten by another's older copy.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kgllm.exceptions import IndexMismatch, KBNotFound, LoadError

if TYPE_CHECKING:
    from kgllm.embed import Embedder

try:  # advisory locking between processes; POSIX only, a no-op elsewhere
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["MANIFEST", "FORMAT", "FORMAT_VERSION", "atomic_write_text", "read_kb_manifest", "new_kb_manifest",
           "update_kb_manifest", "check_index_models", "locked_kb"]

MANIFEST = "kgllm.json"
LOCK = ".kgllm.lock"
FORMAT = "kgllm-kb"
FORMAT_VERSION = 1


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename: readers see the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # os.open with 0o666 rather than tempfile.mkstemp (always 0600): the file gets the umask's usual mode
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def new_kb_manifest() -> dict[str, Any]:
    return {"format": FORMAT, "version": FORMAT_VERSION, "domains": {}}


def read_kb_manifest(directory: Path) -> dict[str, Any] | None:
    """The manifest of the KB in ``directory``; ``None`` when it has none.

    Raises:
        LoadError: the file is not JSON.
        KBNotFound: the file is not a kgllm KB manifest.
    """
    path = directory / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LoadError(f"corrupt KB manifest ({exc})", path=path) from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise KBNotFound(f"{directory} is not a kgllm knowledge base ({MANIFEST} has format {found!r}, "
                         f"expected {FORMAT!r})")
    return manifest


@contextmanager
def locked_kb(directory: Path) -> Iterator[None]:
    """Hold the KB's advisory lock (other processes, and other threads with their own handle, wait)."""
    if fcntl is None:  # pragma: no cover - Windows
        yield
        return
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def update_kb_manifest(directory: Path, mine: dict[str, Any],
                       change: Callable[[dict[str, Any]], None] | None = None) -> tuple[dict[str, Any], bool]:
    """Apply ``change`` to the manifest as it is on disk now, save it, and return it.

    ``mine`` is this process's copy: its store settings and embedding model win (they describe how this
    process opened the KB); everything else comes from the file. Also returns whether the file's
    domains differed from ``mine``'s (another process loaded or deleted one: the store needs a refresh).
    """
    with locked_kb(directory):
        fresh = read_kb_manifest(directory)
        others_changed = False
        if fresh is None:
            fresh = mine
        else:
            fresh["store"] = mine.get("store", fresh.get("store"))
            if mine.get("embedder") is not None:
                fresh["embedder"] = mine["embedder"]
            others_changed = fresh["domains"] != mine["domains"]
        if change is not None:
            change(fresh)
        atomic_write_text(directory / MANIFEST, json.dumps(fresh, indent=2, sort_keys=True))
        return fresh, others_changed


def check_index_models(directory: Path, manifest: dict[str, Any], embedder: Embedder | str | None) -> None:
    """Refuse, at open, a model other than the one the KB's existing indexes were built with."""
    if embedder is None:
        return
    from kgllm.embed import model_name

    # the stable name: "all-MiniLM-L6-v2" and "default" are the bundled model, a directory its absolute path
    wanted = model_name(embedder) if isinstance(embedder, str) else embedder.model_name
    for index_manifest in sorted((directory / "index").glob("*/*/manifest.json")):
        try:
            built_with = json.loads(index_manifest.read_text(encoding="utf-8")).get("model")
        except (OSError, ValueError, AttributeError):  # damaged: kb.index names the file when it is used
            continue
        recorded = manifest.get("embedder")
        if built_with and wanted not in (built_with, recorded):
            raise IndexMismatch(f"{index_manifest}: index built with embedding model {built_with!r}, "
                                f"but the KB was opened with {wanted!r}; open it without an embedder, "
                                "or delete the domain's index to rebuild it")
