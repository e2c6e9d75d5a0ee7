"""Embedding throughput: kgllm's Embedder against sentence-transformers called directly, and its cache.

Measures, on the same N texts in one process:

* ``direct``: ``SentenceTransformer.encode`` on the bundled MiniLM (the baseline);
* ``kgllm cold``: :class:`kgllm.embed.Embedder` with an empty cache (target: >= 0.9x the baseline's speed);
* ``kgllm warm``: the same texts again, from the in-memory LRU and, in a new instance, from the SQLite
  cache (target: >= 50x faster than cold).

Texts are MetaQA fact sentences ("Kismet directed by William Dieterle") from ``--kb`` (MetaQA ``kb.txt``),
or synthetic sentences without it. Each timing is the best of ``--repeats`` alternating runs, which
damps the noise of a shared machine. Writes JSON to ``bench/results/embed_throughput.json``.

    python bench/embed_throughput.py --kb DATA/metaqa/kb.txt --n 2000
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "embed_throughput.json"


def fact_sentences(kb: Path, n: int) -> list[str]:
    """The first ``n`` distinct verbalised triples of a MetaQA-style ``head|relation|tail`` file."""
    out: dict[str, None] = {}
    with open(kb, encoding="utf-8") as fh:
        for line in fh:
            parts = line.rstrip("\n").split("|")
            if len(parts) == 3:
                out[f"{parts[0]} {parts[1].replace('_', ' ')} {parts[2]}"] = None
                if len(out) == n:
                    break
    return list(out)


def synthetic_sentences(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    subjects = ["The film", "A director", "The actor", "This novel", "The river", "A scientist", "The city"]
    verbs = ["was directed by", "starred in", "was written by", "flows through", "discovered", "is near"]
    objects = ["a quiet village", "William Dieterle", "the northern coast", "a comedy", "Paris", "an old castle"]
    return [f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)} number {i}" for i in range(n)]


def best_of(repeats: int, run: Callable[[], object]) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kb", type=Path, help="MetaQA kb.txt (head|relation|tail); synthetic texts without it")
    parser.add_argument("--n", type=int, default=2000, help="number of texts (default 2000)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default=None, help="cpu / cuda (default: cuda when torch sees a GPU)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs; the best time counts")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    from sentence_transformers import SentenceTransformer

    from kgllm.embed import DEFAULT_MODEL_NAME, Embedder, default_model_path
    from kgllm.index.manifest import kgllm_version

    if args.threads:
        torch.set_num_threads(args.threads)
    texts = fact_sentences(args.kb, args.n) if args.kb else synthetic_sentences(args.n)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    direct_model = SentenceTransformer(default_model_path(), device=device, local_files_only=True)
    probe = Embedder(device=device, batch_size=args.batch_size)  # loads the shared model once
    direct_model.encode(texts[:64], batch_size=args.batch_size)  # warm-up: first calls pay one-off setup
    probe.model.encode(texts[:64], batch_size=args.batch_size)

    def direct() -> np.ndarray:
        return direct_model.encode(texts, batch_size=args.batch_size, normalize_embeddings=True)

    cache_root = Path(tempfile.mkdtemp(prefix="kgllm-embed-bench-"))
    runs = itertools.count()

    def kgllm_cold() -> tuple[np.ndarray, Path]:
        cache = cache_root / f"run{next(runs)}"
        with Embedder(device=device, batch_size=args.batch_size, cache_dir=cache) as emb:
            vecs = emb.encode(texts)
            assert emb.stats.encoded == len(set(texts))
        return vecs, cache

    direct_s = cold_s = float("inf")
    for _ in range(args.repeats):  # alternate, so both see the same machine load
        t, base = best_of(1, direct)
        direct_s = min(direct_s, t)
        t, (cold, cache) = best_of(1, kgllm_cold)
        cold_s = min(cold_s, t)

    warm = Embedder(device=device, batch_size=args.batch_size, cache_dir=cache)
    warm.encode(texts)  # fills the LRU from disk
    memory_s, memory_vecs = best_of(args.repeats, lambda: warm.encode(texts))
    assert warm.stats.model_calls == 0
    warm.close()

    def from_disk() -> np.ndarray:
        with Embedder(device=device, batch_size=args.batch_size, cache_dir=cache) as emb:
            vecs = emb.encode(texts)
            assert emb.stats.model_calls == 0
        return vecs

    disk_s, disk_vecs = best_of(args.repeats, from_disk)
    shutil.rmtree(cache_root, ignore_errors=True)
    n = len(texts)
    result = {
        "benchmark": "embed_throughput",
        "n": n,
        "texts": f"MetaQA facts from {args.kb.name}" if args.kb else "synthetic",
        "model": DEFAULT_MODEL_NAME,
        "device": device,
        "batch_size": args.batch_size,
        "torch_threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "seconds": {"direct": direct_s, "kgllm_cold": cold_s, "kgllm_warm_memory": memory_s,
                    "kgllm_warm_disk": disk_s},
        "texts_per_s": {"direct": n / direct_s, "kgllm_cold": n / cold_s, "kgllm_warm_memory": n / memory_s,
                        "kgllm_warm_disk": n / disk_s},
        "ratio_cold_vs_direct": direct_s / cold_s,
        "speedup_warm_memory": cold_s / memory_s,
        "speedup_warm_disk": cold_s / disk_s,
        "max_abs_diff_vs_direct": float(np.abs(cold - base).max()),
        "warm_identical": bool(np.array_equal(memory_vecs, cold) and np.array_equal(disk_vecs, cold)),
        "targets": {"ratio_cold_vs_direct": 0.9, "speedup_warm": 50},
        "kgllm_version": kgllm_version(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
    }
    result["passed"] = {"ratio_cold_vs_direct": result["ratio_cold_vs_direct"] >= 0.9,
                        "speedup_warm": min(result["speedup_warm_memory"], result["speedup_warm_disk"]) >= 50}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
