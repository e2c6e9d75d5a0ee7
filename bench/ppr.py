"""Personalized PageRank speed on a synthetic 1M-node / 5M-edge graph (target: <= 1 s per query).

Also checks the push solver against power iteration on a 50k-node graph of the same kind (top-100
overlap) and times networkx.pagerank there for comparison. Writes ``bench/results/ppr.json``.

    python bench/ppr.py [--nodes 1000000] [--edges 5000000] [--queries 5]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from kgllm.retrieval.ppr import PersonalizedPageRank


def random_graph(n: int, m: int, seed: int) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    head, tail = rng.integers(0, n, m), rng.integers(0, n, m)
    rows, cols = np.concatenate([head, tail]), np.concatenate([tail, head])
    return sp.csr_matrix((np.ones(rows.size, dtype=np.float32), (rows, cols)), shape=(n, n))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1_000_000)
    parser.add_argument("--edges", type=int, default=5_000_000)
    parser.add_argument("--queries", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "ppr.json")
    args = parser.parse_args()

    started = time.perf_counter()
    solver = PersonalizedPageRank(random_graph(args.nodes, args.edges, 0))
    build = time.perf_counter() - started
    rng = np.random.default_rng(1)
    times = []
    for _ in range(args.queries):
        seeds = rng.integers(0, args.nodes, 3)
        t0 = time.perf_counter()
        scores = solver.run(seeds)
        times.append(time.perf_counter() - t0)
    touched = int((scores > 0).sum())

    # accuracy of push against exact power iteration, and networkx, on a smaller graph
    small_n, small_m = 50_000, 250_000
    small = PersonalizedPageRank(random_graph(small_n, small_m, 2))
    seeds = np.array([7, 99])
    t0 = time.perf_counter()
    exact = small.run(seeds, method="power", tol=1e-12)
    power_s = time.perf_counter() - t0
    approx = small.run(seeds)
    top_exact = set(np.argsort(-exact)[:100].tolist())
    top_push = set(np.argsort(-approx)[:100].tolist())
    import networkx as nx

    graph = nx.from_scipy_sparse_array(small.adjacency)
    t0 = time.perf_counter()
    nx_scores = nx.pagerank(graph, alpha=0.85, personalization={7: 0.5, 99: 0.5})
    nx_s = time.perf_counter() - t0
    nx_vec = np.array([nx_scores[i] for i in range(small_n)])
    top_nx = set(np.argsort(-nx_vec)[:100].tolist())

    result = {
        "graph": {"nodes": args.nodes, "edges": args.edges, "kind": "uniform random, undirected"},
        "build_s": round(build, 3),
        "query_s": {"p50": round(float(np.median(times)), 4), "max": round(max(times), 4), "runs": len(times)},
        "method": "push (eps=1e-6, alpha=0.15)",
        "nodes_touched_last_query": touched,
        "target_s": 1.0,
        "meets_target": bool(max(times) <= 1.0),
        "check_50k": {"top100_overlap_push_vs_power": len(top_exact & top_push) / 100,
                      "top100_overlap_networkx_default_tol_vs_power": len(top_exact & top_nx) / 100,
                      "max_abs_error_push": float(np.abs(exact - approx).max()),
                      "power_s": round(power_s, 3), "networkx_s": round(nx_s, 3)},
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
