"""The on-disk layout of a saved :class:`~kgllm.index.VectorIndex` and its manifest.

A saved index is a folder::

    index.faiss     the FAISS index (IndexIDMap2 around the factory index), CPU form
    pending.faiss   only for an untrained IVF/PQ index: the exact buffer of vectors awaiting training
    ids.json        int64 label <-> string id map, removed labels, next label
    manifest.json   IndexManifest: model, dim, count, factory, metric, search knobs (nprobe, ef_search),
                sha256 checksums, kgllm_version

The manifest is written last, so a folder with a manifest is complete; checksums catch later changes.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from kgllm.exceptions import LoadError

__all__ = [
    "IndexManifest",
    "read_manifest",
    "sha256_file",
    "atomic_write",
    "atomic_write_bytes",
    "kgllm_version",
    "INDEX_FILE",
    "PENDING_FILE",
    "IDS_FILE",
    "MANIFEST_FILE",
]

INDEX_FILE = "index.faiss"
PENDING_FILE = "pending.faiss"
IDS_FILE = "ids.json"
MANIFEST_FILE = "manifest.json"


class IndexManifest(BaseModel):
    """What a saved index was built with; checked when it is opened."""

    model_config = ConfigDict(extra="ignore", protected_namespaces=())

    model: str | None
    dim: int
    count: int
    factory: str
    metric: str
    checksum: str
    ids_checksum: str | None = None
    pending_checksum: str | None = None
    train_size: int | None = None
    nprobe: int | None = None  # search-time knobs, kept so a tuned index searches the same after loading
    ef_search: int | None = None
    kgllm_version: str = "unknown"


def kgllm_version() -> str:
    """The installed kgllm version, or ``"unknown"`` when running from an uninstalled tree."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kgllm")
    except PackageNotFoundError:  # pragma: no cover - source checkout without install
        return "unknown"


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it over ``path``.

    Readers never see half a file, and a failed write leaves the previous file in place.
    """
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def read_manifest(directory: Path) -> IndexManifest:
    """Read and validate ``directory/manifest.json``.

    Raises:
        LoadError: the folder or manifest is missing, or the manifest is not valid JSON of the expected shape.
    """
    path = directory / MANIFEST_FILE
    if not directory.is_dir():
        raise LoadError("vector index folder does not exist", path=directory)
    if not path.is_file():
        raise LoadError("no manifest.json: not a saved vector index (or saving did not finish)", path=path)
    try:
        return IndexManifest.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(document)"
        bad = first.get("input")
        raise LoadError(f"invalid manifest: {where}: {first['msg']}", path=path,
                        value=bad if len(repr(bad)) < 200 else None) from exc
