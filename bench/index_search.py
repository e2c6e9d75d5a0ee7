"""VectorIndex search latency, recall@k, build time and memory for Flat / HNSW / IVF-PQ indexes.

Builds one :class:`kgllm.index.VectorIndex` per ``--factory`` over ``--n`` synthetic unit vectors of
``--dim`` dimensions (string ids, as the KB uses them) and measures:

* ``build_s``: create + train (indexes that need it are trained on ``train_size`` vectors, FAISS's
  39 points per centroid) + add;
* ``memory``: the saved FAISS file's size (what the index holds) and the process RSS growth while building;
* ``batch1_ms``: one query per ``search`` call (p50/p95 over ``--queries`` queries);
* ``batch{B}_ms``: ``--batch`` queries per call (p50/p95 per call, and queries per second);
* ``recall@k``: overlap of the returned ids with the exact top ``k`` (raw FAISS brute force).

``--distribution uniform`` draws vectors uniformly on the sphere, the hardest case for approximate
indexes (no cluster structure, near and far neighbours almost equally similar); ``clustered`` draws
them around ``n/100`` random centres, closer to real sentence embeddings. ``{nlist}`` in a factory
string becomes a power of two near ``4*sqrt(n)``. Writes ``bench/results/index_search.json``
(``index_search_clustered.json`` for the clustered distribution).

    python bench/index_search.py [--n 100000] [--dim 384] [--distribution uniform] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from benchjson import machine_info, write_result

RESULTS = Path(__file__).resolve().parent / "results"
# "np": no polysemous training. FAISS does it by default for IVF-PQ factories; it only serves
# polysemous (Hamming-filtered) search, which VectorIndex never enables, and takes minutes.
DEFAULT_FACTORIES = ["Flat", "HNSW32", "IVF{nlist},PQ48np"]


def unit_vectors(n: int, dim: int, rng: np.random.Generator, centres: np.ndarray | None = None,
                 spread: float = 0.35) -> np.ndarray:
    """``n`` float32 unit vectors: uniform on the sphere, or scattered around ``centres``."""
    vecs = rng.standard_normal((n, dim), dtype=np.float32)
    if centres is not None:
        vecs *= spread / np.sqrt(dim)
        vecs += centres[rng.integers(len(centres), size=n)]
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    return vecs


def default_nlist(n: int) -> int:
    """A power of two near ``4 * sqrt(n)`` (FAISS's rule of thumb for IVF list counts)."""
    return int(2 ** round(np.log2(max(4.0, 4 * np.sqrt(n)))))


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def stats_ms(values: Sequence[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=np.float64)
    return {"p50": round(float(np.percentile(arr, 50)), 3), "p95": round(float(np.percentile(arr, 95)), 3),
            "mean": round(float(arr.mean()), 3), "n": int(arr.size)}


def recall(results: list[list[tuple[str, float]]], truth: np.ndarray, k: int) -> float:
    """Mean share of the exact top ``k`` found in each result list."""
    found = [len({int(i) for i, _ in hits[:k]} & set(row.tolist())) / k
             for hits, row in zip(results, truth, strict=True)]
    return round(float(np.mean(found)), 4)


def measure(factory: str, base: np.ndarray, queries: np.ndarray, truth: np.ndarray, args: argparse.Namespace,
            workdir: Path) -> dict[str, object]:
    """Build one index over ``base`` and time its searches."""
    from kgllm.index import VectorIndex

    ids = [str(i) for i in range(len(base))]
    rss_before = rss_mb()
    started = time.perf_counter()
    index = VectorIndex.create(base.shape[1], factory=factory, model="synthetic", device="cpu")
    train_s = 0.0
    if not index.is_trained:
        sample = base[np.random.default_rng(7).permutation(len(base))[: min(len(base), index.train_size)]]
        index.train(sample)
        train_s = time.perf_counter() - started
    index.add(ids, base)
    build_s = time.perf_counter() - started
    rss_growth = rss_mb() - rss_before
    index.nprobe, index.ef_search = args.nprobe, args.ef_search

    batch1, batch1_hits = [], []
    for query in queries:
        start = time.perf_counter()
        batch1_hits.extend(index.search(query, args.k))
        batch1.append((time.perf_counter() - start) * 1000)
    batched, batched_hits = [], []
    for start_row in range(0, len(queries) - args.batch + 1, args.batch):
        start = time.perf_counter()
        batched_hits.extend(index.search(queries[start_row:start_row + args.batch], args.k))
        batched.append((time.perf_counter() - start) * 1000)

    target = workdir / factory.replace(",", "_")
    index.save(target)
    batch_stats = stats_ms(batched) if batched else None
    return {
        "factory": factory,
        "count": len(index),
        "trained_on": index.train_size if train_s else 0,
        "train_s": round(train_s, 3),
        "build_s": round(build_s, 3),
        "memory": {"index_file_mb": round((target / "index.faiss").stat().st_size / 2**20, 2),
                   "ids_file_mb": round((target / "ids.json").stat().st_size / 2**20, 2),
                   "rss_growth_mb": round(rss_growth, 1)},
        "batch1_ms": stats_ms(batch1),
        f"batch{args.batch}_ms": batch_stats,
        f"batch{args.batch}_queries_per_s": (round(args.batch * 1000 / batch_stats["mean"], 1)
                                             if batch_stats else None),
        f"recall@{args.k}": recall(batch1_hits, truth, args.k),
        f"recall@{args.k}_batched": recall(batched_hits, truth[: len(batched_hits)], args.k),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="indexed vectors (default 100000)")
    parser.add_argument("--dim", type=int, default=384, help="dimension (default 384, MiniLM's)")
    parser.add_argument("--factory", action="append", default=None,
                        help=f"FAISS factory string, repeatable (default: {' '.join(DEFAULT_FACTORIES)})")
    parser.add_argument("--distribution", choices=["uniform", "clustered"], default="uniform")
    parser.add_argument("--queries", type=int, default=256, help="timed queries (default 256)")
    parser.add_argument("--batch", type=int, default=64, help="queries per batched search (default 64)")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--nprobe", type=int, default=16, help="IVF lists probed (VectorIndex default 16)")
    parser.add_argument("--ef-search", type=int, default=64, help="HNSW efSearch (VectorIndex default 64)")
    parser.add_argument("--threads", type=int, default=None, help="FAISS OpenMP threads (default: all cores)")
    parser.add_argument("--blas-threshold", type=int, default=None,
                        help="set faiss.cvar.distance_compute_blas_threshold (default: FAISS's own); exact search "
                             "uses BLAS when queries x dim reach it, a per-query scan below")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON file (default: bench/results/index_search[_clustered].json)")
    args = parser.parse_args(argv)
    if args.out is None:
        suffix = "" if args.distribution == "uniform" else f"_{args.distribution}"
        args.out = RESULTS / f"index_search{suffix}.json"

    import faiss

    from kgllm.index.manifest import kgllm_version

    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    if args.blas_threshold is not None:
        faiss.cvar.distance_compute_blas_threshold = args.blas_threshold
    nlist = default_nlist(args.n)
    factories = [f.replace("{nlist}", str(nlist)) for f in (args.factory or DEFAULT_FACTORIES)]
    rng = np.random.default_rng(args.seed)
    centres = None
    if args.distribution == "clustered":
        centres = unit_vectors(max(1, args.n // 100), args.dim, rng)
    base = unit_vectors(args.n, args.dim, rng, centres)
    queries = unit_vectors(args.queries, args.dim, rng, centres)
    exact = faiss.IndexFlatIP(args.dim)  # ground truth straight from FAISS, not through VectorIndex
    exact.add(base)
    _, truth = exact.search(queries, args.k)
    del exact

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="kgllm-index-bench-") as tmp:
        cases = [measure(factory, base, queries, truth, args, Path(tmp)) for factory in factories]
    result = {
        "benchmark": "index_search",
        "command": "python bench/index_search.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "n": args.n, "dim": args.dim, "distribution": args.distribution, "queries": args.queries,
        "batch": args.batch, "k": args.k, "nprobe": args.nprobe, "ef_search": args.ef_search,
        "cases": cases,
        "seconds": round(time.perf_counter() - started, 1),
        "faiss_version": faiss.__version__,
        "faiss_threads": faiss.omp_get_max_threads(),
        "faiss_blas_threshold": int(faiss.cvar.distance_compute_blas_threshold),
        "kgllm_version": kgllm_version(),
        "machine": machine_info(),
    }
    return write_result(args.out, result)


if __name__ == "__main__":
    main()
