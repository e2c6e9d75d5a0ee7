"""A FAISS vector index with string ids, incremental updates, persistence and an optional GPU mirror.

One :class:`VectorIndex` per (domain, kind) holds the embeddings of entity names, verbalised facts or
document chunks. The FAISS index is built from a factory string (``"Flat"``, ``"HNSW32"``,
``"IVF{n},PQ{m}"``...); FAISS sees int64 labels (kept by an ``IndexIDMap2``, or natively by IVF
indexes), callers see their own string ids. Three details callers may notice:

* **Replace, never duplicate.** Adding an id that is already present replaces its vector.
* **Removal everywhere.** Indexes that FAISS can delete from (Flat, IVF) delete at once; graph indexes
  (HNSW) cannot, so removed labels become tombstones filtered out of results and the index is rebuilt
  when tombstones outnumber live vectors.
* **Training on first add.** Indexes that need training (IVF, PQ) buffer vectors in an exact flat index
  until ``train_size`` of them have arrived (by default 39 per centroid, FAISS's guideline), then train
  on the buffer and move it in. Searches before that are exact. :meth:`VectorIndex.train` trains on a
  sample given explicitly.

GPU: with ``device="cuda"`` (or by default when ``faiss.get_num_gpus() > 0``) searches run on a copy
made by ``faiss.index_cpu_to_all_gpus`` and refreshed after changes; the CPU index stays the source of
truth, so :meth:`VectorIndex.save` always writes the CPU form. Indexes the GPU kernels cannot hold
(some PQ layouts, ``k > 2048``) are searched on the CPU, with a logged warning.

On disk (see :mod:`kgllm.index.manifest`): ``index.faiss``, ``ids.json`` and ``manifest.json`` with the
embedding model, dimension, count and a SHA-256 of the index file, checked by :meth:`VectorIndex.load`.
"""

from __future__ import annotations

import json
import logging
import numbers
import operator
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from kgllm.exceptions import ConfigError, IndexMismatch, LoadError
from kgllm.index.manifest import (
    IDS_FILE,
    INDEX_FILE,
    MANIFEST_FILE,
    PENDING_FILE,
    IndexManifest,
    atomic_write,
    atomic_write_bytes,
    read_manifest,
    sha256_file,
)

__all__ = ["VectorIndex", "METRICS"]

logger = logging.getLogger(__name__)

#: Metric names accepted by :meth:`VectorIndex.create`.
METRICS = {"ip": faiss.METRIC_INNER_PRODUCT, "l2": faiss.METRIC_L2}
_GPU_INSTALL = 'pip install "kgllm[gpu]"'
_GPU_MAX_K = 2048  # FAISS GPU kernels return at most this many neighbours
_POINTS_PER_CENTROID = 39  # FAISS warns below this many training points per k-means centroid
_C_INT_MAX = 2**31 - 1  # the largest search knob FAISS takes (a C int)


def _min_train(factory: str) -> int:
    """Training points the factory needs: 39 per IVF list and per PQ codebook entry."""
    need = 1
    if m := re.search(r"IVF(\d+)", factory):
        need = max(need, int(m.group(1)))
    if m := re.search(r"PQ\d+(?:x(\d+))?", factory):
        need = max(need, 2 ** int(m.group(1) or 8))
    return need * _POINTS_PER_CENTROID


class VectorIndex:
    """String-keyed FAISS index; build it with :meth:`create` or :meth:`load`.

    Scores are "higher is better": the inner product for ``metric="ip"`` (cosine similarity for
    normalised vectors), the negated squared distance for ``metric="l2"``.
    """

    def __init__(self, index: faiss.Index, *, dim: int, factory: str, metric: str, model: str | None,
                 train_size: int | None = None) -> None:
        self.dim = dim
        self.factory = factory
        self.metric = metric
        self.model = model
        self.train_size = train_size if train_size is not None else _min_train(factory)
        self._index = index  # the CPU index with int64 labels: the source of truth
        self._pending: faiss.IndexIDMap2 = self._flat()  # exact buffer while the main index is untrained
        self._label: dict[str, int] = {}  # string id -> int64 label
        self._id: dict[int, str] = {}  # label -> string id (live labels only)
        self._dead: set[int] = set()  # tombstoned labels still inside a non-removable index
        self._next = 0
        self._gpu: faiss.Index | None = None  # search mirror on GPU(s), rebuilt after changes
        self._use_gpu = False
        self._gpu_failed = False
        self._lock = threading.RLock()
        #: IVF lists probed per query (more: better recall, slower).
        self.nprobe = 16
        #: HNSW candidate list size per query (FAISS's default 16 loses recall; raised to k when smaller).
        self.ef_search = 64

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(cls, dim: int, *, factory: str = "Flat", metric: str = "ip", model: str | None = None,
               device: str | None = None, train_size: int | None = None) -> VectorIndex:
        """A new empty index.

        Args:
            dim: vector dimension.
            factory: a FAISS index factory string without the id map ("Flat", "HNSW32", "IVF256,PQ16").
            metric: "ip" (inner product) or "l2".
            model: the embedding model the vectors come from, recorded in the manifest.
            device: "cpu", "cuda", or ``None`` for the GPU(s) when FAISS sees any.
            train_size: vectors to buffer before training an index that needs it.

        Raises:
            ConfigError: unknown metric, bad factory string or dimension, or "cuda" without faiss GPU support.
        """
        if metric not in METRICS:
            raise ConfigError(f"unknown metric {metric!r}; valid metrics: {', '.join(sorted(METRICS))}")
        try:
            dim = operator.index(dim)  # numpy integers too
        except TypeError:
            raise ConfigError(f"dim must be a positive int, got {dim!r}") from None
        if dim < 1:
            raise ConfigError(f"dim must be a positive int, got {dim!r}")
        if not isinstance(factory, str):
            raise ConfigError(f"factory must be a FAISS factory string such as 'Flat' or 'HNSW32', got {factory!r}")
        if factory.startswith("IDMap"):
            raise ConfigError(f"give the factory without the id map (it is added): {factory!r}")
        # FAISS parses these but crashes the process (segfault, abort) on the first add: refuse them here
        for links in re.finditer(r"HNSW(\d+)", factory):
            if int(links.group(1)) < 2:
                raise ConfigError(f"invalid FAISS factory string {factory!r}: HNSW needs at least 2 links per "
                                  f"node, got {links.group(0)}")
        if empty := re.search(r"PQ\d+x0+(?!\d)|RR0+(?!\d)", factory):
            raise ConfigError(f"invalid FAISS factory string {factory!r}: {empty.group(0)} is 0 bits or dimensions wide")
        try:
            index = _build(dim, factory, metric)
        except RuntimeError as exc:
            raise ConfigError(f"invalid FAISS factory string {factory!r} for dim {dim}: {exc}") from exc
        self = cls(index, dim=dim, factory=factory, metric=metric, model=model, train_size=train_size)
        self._select_device(device)
        return self

    @classmethod
    def load(cls, directory: str | Path, *, model: str | None = None, dim: int | None = None,
             device: str | None = None) -> VectorIndex:
        """Open an index saved by :meth:`save`, checking it fits the caller's embedder.

        Args:
            directory: the folder given to :meth:`save`.
            model: the embedding model the caller will query with; ``None`` skips the check.
            dim: the caller's vector dimension; ``None`` skips the check.
            device: as in :meth:`create`.

        Raises:
            IndexMismatch: the index was built with another model or dimension.
            LoadError: missing or corrupt files (bad JSON, checksum mismatch, unreadable FAISS file).
        """
        directory = Path(directory)
        manifest = read_manifest(directory)
        where = directory / MANIFEST_FILE
        if model is not None and manifest.model != model:
            raise IndexMismatch(f"{where}: index was built with embedding model {manifest.model!r}, "
                                f"expected {model!r}; rebuild the index for this model")
        if dim is not None and manifest.dim != dim:
            raise IndexMismatch(f"{where}: index dimension is {manifest.dim}, expected {dim}; "
                                "rebuild the index for this embedder")
        index = _read_faiss(directory / INDEX_FILE, manifest.checksum)
        if index.d != manifest.dim:
            raise LoadError(f"FAISS index has dimension {index.d}, manifest says {manifest.dim}",
                            path=directory / INDEX_FILE)
        self = cls(index, dim=manifest.dim, factory=manifest.factory, metric=manifest.metric,
                   model=manifest.model, train_size=manifest.train_size)
        self.nprobe = manifest.nprobe if manifest.nprobe is not None else self.nprobe
        self.ef_search = manifest.ef_search if manifest.ef_search is not None else self.ef_search
        if manifest.pending_checksum is not None:
            pending = _read_faiss(directory / PENDING_FILE, manifest.pending_checksum)
            if not isinstance(pending, faiss.IndexIDMap2) or pending.d != manifest.dim:
                raise LoadError("not the buffer of an untrained index", path=directory / PENDING_FILE)
            self._pending = pending
        self._restore_ids(directory / IDS_FILE, manifest)
        self._select_device(device)
        return self

    # ------------------------------------------------------------------ updates
    def add(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        """Add or replace vectors.

        Args:
            ids: string ids, one per row; an id already present is replaced; a repeated id keeps its last row.
            vectors: float array ``(len(ids), dim)``.

        Raises:
            ValueError: lengths or dimension differ, non-string ids, or non-finite values.
        """
        ids = list(ids)
        vecs = self._as_matrix(vectors)
        if len(ids) != len(vecs):
            raise ValueError(f"got {len(ids)} ids but {len(vecs)} vectors")
        if not ids:
            return
        bad = next((i for i in ids if not isinstance(i, str)), None)
        if bad is not None:
            raise ValueError(f"ids must be str, got {type(bad).__name__}: {bad!r}")
        if not np.isfinite(vecs).all():
            raise ValueError("vectors contain NaN or infinite values")
        last = {id_: row for row, id_ in enumerate(ids)}  # a repeated id keeps its last row
        rows = np.fromiter(last.values(), dtype=np.int64, count=len(last))
        with self._lock:
            self._remove_labels([self._label[i] for i in last if i in self._label])
            labels = np.arange(self._next, self._next + len(last), dtype=np.int64)
            self._next += len(last)
            for id_, label in zip(last, labels.tolist(), strict=True):
                self._label[id_] = label
                self._id[label] = id_
            target = self._index if self._index.is_trained else self._pending
            target.add_with_ids(vecs[rows], labels)
            if not self._index.is_trained and self._pending.ntotal >= self.train_size:
                self._train_from_pending()
            self._gpu = None

    def remove(self, ids: Sequence[str]) -> int:
        """Remove ids (unknown ids are ignored). Returns how many were removed."""
        with self._lock:
            labels = [self._label[i] for i in dict.fromkeys(ids) if i in self._label]
            self._remove_labels(labels)
            self._gpu = None
            return len(labels)

    def train(self, vectors: np.ndarray) -> None:
        """Train an index that needs it on a sample now, and move buffered vectors in."""
        vecs = self._as_matrix(vectors)
        with self._lock:
            if self._index.is_trained:
                return
            self._index.train(np.concatenate([vecs, self._reconstruct_pending()[1]]))
            self._flush_pending()

    # ------------------------------------------------------------------ queries
    def search(self, vectors: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """The ``k`` nearest ids of each query row, best first, as ``(id, score)``.

        Args:
            vectors: ``(n, dim)`` or ``(dim,)`` queries.
            k: results per query (fewer when the index holds fewer).
        """
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
            raise ValueError(f"k must be an integer >= 1, got {k!r}")
        k = int(k)  # FAISS refuses numpy integers
        queries = self._as_matrix(vectors)
        with self._lock:
            cpu = self._index if self._index.is_trained else self._pending
            if cpu.ntotal == 0 or len(queries) == 0:
                return [[] for _ in range(len(queries))]
            fetch = min(cpu.ntotal, k + len(self._dead))  # tombstones may take places in the raw results
            if len(queries) >= 8:  # batched exact search through BLAS: faiss' default threshold is far too high
                faiss.cvar.distance_compute_blas_threshold = min(faiss.cvar.distance_compute_blas_threshold,
                                                                 8 * self.dim)
            index = self._searchable(cpu, fetch)
            self._tune(index, fetch)
            scores, labels = index.search(queries, fetch)
            id_of, negate = self._id, self.metric == "l2"
        results: list[list[tuple[str, float]]] = []
        for row_scores, row_labels in zip(scores.tolist(), labels.tolist(), strict=True):
            hits: list[tuple[str, float]] = []
            for score, label in zip(row_scores, row_labels, strict=True):
                id_ = id_of.get(label) if label >= 0 else None
                if id_ is not None:
                    hits.append((id_, -score if negate else score))
                    if len(hits) == k:
                        break
            results.append(hits)
        return results

    def __len__(self) -> int:
        return len(self._label)

    def __contains__(self, id_: object) -> bool:
        return id_ in self._label

    def ids(self) -> list[str]:
        """The ids held, in insertion order of their current vectors."""
        with self._lock:
            return [self._id[label] for label in sorted(self._id)]

    @property
    def is_trained(self) -> bool:
        """Whether the main index is trained (always true for Flat and HNSW)."""
        return bool(self._index.is_trained)

    @property
    def device(self) -> str:
        return "cuda" if self._use_gpu else "cpu"

    def __repr__(self) -> str:
        return (f"VectorIndex(factory={self.factory!r}, dim={self.dim}, metric={self.metric!r}, "
                f"model={self.model!r}, count={len(self)}, device={self.device!r})")

    # ------------------------------------------------------------------ persistence & devices
    def save(self, directory: str | Path) -> None:
        """Write ``index.faiss``, ``ids.json`` and ``manifest.json`` (last) into ``directory``."""
        from kgllm.index.manifest import kgllm_version

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with self._lock:
            index, pending = self._index, self._pending  # always the CPU form
            atomic_write(directory / INDEX_FILE, lambda tmp: faiss.write_index(index, str(tmp)))
            pending_sum = None
            if pending.ntotal:
                atomic_write(directory / PENDING_FILE, lambda tmp: faiss.write_index(pending, str(tmp)))
                pending_sum = sha256_file(directory / PENDING_FILE)
            else:
                (directory / PENDING_FILE).unlink(missing_ok=True)
            labels = sorted(self._id)
            ids_doc = {"labels": labels, "ids": [self._id[x] for x in labels],
                       "dead": sorted(self._dead), "next": self._next}
            atomic_write_bytes(directory / IDS_FILE, json.dumps(ids_doc, ensure_ascii=False).encode())
            manifest = IndexManifest(
                model=self.model, dim=self.dim, count=len(self), factory=self.factory, metric=self.metric,
                checksum=sha256_file(directory / INDEX_FILE), ids_checksum=sha256_file(directory / IDS_FILE),
                pending_checksum=pending_sum, train_size=self.train_size, nprobe=self.nprobe,
                ef_search=self.ef_search, kgllm_version=kgllm_version())
            atomic_write_bytes(directory / MANIFEST_FILE, manifest.model_dump_json(indent=2).encode())

    def to_gpu(self) -> VectorIndex:
        """Search on all visible GPUs from now on (the CPU index stays the source of truth).

        Raises:
            ConfigError: FAISS was built without GPU support or sees no GPU.
        """
        if not hasattr(faiss, "index_cpu_to_all_gpus") or faiss.get_num_gpus() == 0:
            raise ConfigError("this FAISS build has no GPU support or sees no GPU; install the GPU build "
                              f"with: {_GPU_INSTALL}")
        with self._lock:
            self._use_gpu, self._gpu_failed, self._gpu = True, False, None
        return self

    def to_cpu(self) -> VectorIndex:
        """Search on the CPU from now on."""
        with self._lock:
            self._use_gpu = False
            self._gpu = None
        return self

    # ------------------------------------------------------------------ internals
    def _select_device(self, device: str | None) -> None:
        if device is None:
            if hasattr(faiss, "index_cpu_to_all_gpus") and faiss.get_num_gpus() > 0:
                self.to_gpu()
        elif device.startswith("cuda"):
            self.to_gpu()
        elif device != "cpu":
            raise ConfigError(f"unknown device {device!r}; valid devices: cpu, cuda")

    def _searchable(self, cpu: faiss.Index, k: int) -> faiss.Index:
        """The GPU mirror of ``cpu`` when on GPU and it can serve ``k`` results, else ``cpu`` itself."""
        if not self._use_gpu or self._gpu_failed or k > _GPU_MAX_K:
            return cpu
        if self._gpu is None:
            try:
                self._gpu = faiss.index_cpu_to_all_gpus(cpu)
            except RuntimeError as exc:  # e.g. a PQ layout the GPU kernels lack: still answer, on the CPU
                logger.warning("FAISS cannot put the %r index on the GPU (%s); searching on the CPU",
                               self.factory, exc)
                self._gpu_failed = True
                return cpu
        return self._gpu

    def _tune(self, index: faiss.Index, k: int) -> None:
        """Search-time knobs: HNSW explores ``ef_search`` (>= k) candidates; IVF probes ``nprobe`` lists."""
        if index is self._gpu:
            if self._index.is_trained and faiss.try_extract_index_ivf(self._index) is not None:
                faiss.GpuParameterSpace().set_index_parameter(index, "nprobe", self.nprobe)
            return
        if isinstance(index, faiss.IndexIDMap2):
            inner = faiss.downcast_index(index.index)
            if isinstance(inner, faiss.IndexHNSW):
                inner.hnsw.efSearch = min(max(self.ef_search, k), _C_INT_MAX)  # a C int in FAISS
        ivf = faiss.try_extract_index_ivf(index)
        if ivf is not None:
            ivf.nprobe = min(ivf.nlist, self.nprobe)

    def _flat(self) -> faiss.IndexIDMap2:
        return faiss.IndexIDMap2(faiss.IndexFlat(self.dim, METRICS[self.metric]))

    def _as_matrix(self, vectors: Any) -> np.ndarray:
        arr = np.asarray(vectors, dtype=np.float32)
        if arr.ndim == 1:
            arr = arr.reshape(1, -1)
        if arr.ndim != 2 or (arr.shape[0] and arr.shape[1] != self.dim):
            raise IndexMismatch(f"vectors have shape {arr.shape}, the index expects (n, {self.dim})")
        return np.ascontiguousarray(arr)

    def _remove_labels(self, labels: list[int]) -> None:
        if not labels:
            return
        for label in labels:
            del self._label[self._id.pop(label)]
        arr = np.asarray(labels, dtype=np.int64)
        self._pending.remove_ids(arr)  # type: ignore[arg-type]  # the Python wrapper takes label arrays
        if self._index.ntotal == 0:
            return
        try:
            self._index.remove_ids(arr)  # type: ignore[arg-type]
        except RuntimeError:  # HNSW and other graph indexes cannot delete: tombstone instead
            self._dead.update(labels)
            if len(self._dead) > max(1024, len(self._id)):
                self._compact()

    def _compact(self) -> None:
        """Rebuild a non-removable index without its tombstones."""
        live = np.asarray(sorted(self._id), dtype=np.int64)
        vecs = self._index.reconstruct_batch(live) if len(live) else np.empty((0, self.dim), np.float32)
        # emptied in place, not built anew: a fresh HNSW over trained storage ("HNSW32,SQ8", "HNSW32_PQ8")
        # is untrained, and adding to it raised; reset() keeps the trained codebooks and the parameters
        self._index.reset()
        if len(live):
            self._index.add_with_ids(vecs, live)
        self._dead = set()

    def _reconstruct_pending(self) -> tuple[np.ndarray, np.ndarray]:
        labels = faiss.vector_to_array(self._pending.id_map).astype(np.int64)
        vecs = self._pending.reconstruct_batch(labels) if len(labels) else np.empty((0, self.dim), np.float32)
        return labels, vecs

    def _train_from_pending(self) -> None:
        _, vecs = self._reconstruct_pending()
        self._index.train(vecs)
        self._flush_pending()

    def _flush_pending(self) -> None:
        labels, vecs = self._reconstruct_pending()
        if len(labels):
            self._index.add_with_ids(vecs, labels)
        self._pending = self._flat()

    def _restore_ids(self, path: Path, manifest: IndexManifest) -> None:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            labels, ids = [int(x) for x in doc["labels"]], [str(x) for x in doc["ids"]]
            dead, nxt = {int(x) for x in doc["dead"]}, int(doc["next"])
        except FileNotFoundError as exc:
            raise LoadError("id map is missing", path=path) from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise LoadError(f"id map is not valid ({type(exc).__name__}: {exc})", path=path) from exc
        if manifest.ids_checksum is not None and sha256_file(path) != manifest.ids_checksum:
            raise LoadError("checksum mismatch: the id map was changed after the index was saved", path=path)
        stored = self._index.ntotal + self._pending.ntotal
        if len(labels) != len(ids) or len(ids) != manifest.count or stored != len(ids) + len(dead):
            raise LoadError(f"id map holds {len(ids)} ids (+{len(dead)} removed), the FAISS files "
                            f"{stored} vectors, the manifest says {manifest.count}", path=path)
        self._id = dict(zip(labels, ids, strict=True))
        self._label = dict(zip(ids, labels, strict=True))
        self._dead, self._next = dead, nxt


def _build(dim: int, factory: str, metric: str) -> faiss.Index:
    """The factory index, able to store int64 labels.

    IVF-family indexes keep labels in their inverted lists (and ``IndexIDMap`` would break their
    ``remove_ids``); everything else, IVF under a refinement stage (``"IVF256,PQ16,RFlat"``) included,
    is wrapped in ``IndexIDMap2``.
    """
    index = faiss.index_factory(dim, factory, METRICS[metric])
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None and ivf.nlist < 1:
        raise RuntimeError("an IVF index needs at least one list")
    if ivf is not None and isinstance(faiss.downcast_index(index), (faiss.IndexIVF, faiss.IndexPreTransform)):
        inner = faiss.downcast_index(ivf)
        if isinstance(inner, faiss.IndexIVFPQ):
            # Polysemous training is only for polysemous search, which we never use; it costs minutes.
            inner.do_polysemous_training = False  # type: ignore[attr-defined]
        return index
    return faiss.IndexIDMap2(index)


def _read_faiss(path: Path, checksum: str) -> faiss.Index:
    if not path.is_file():
        raise LoadError("FAISS index file is missing", path=path)
    found = sha256_file(path)
    if found != checksum:
        raise LoadError(f"checksum mismatch: expected sha256 {checksum}, found {found} "
                        "(the file is corrupt or was changed after saving)", path=path)
    try:
        return faiss.read_index(str(path))
    except RuntimeError as exc:
        raise LoadError(f"unreadable FAISS index: {exc}", path=path) from exc
