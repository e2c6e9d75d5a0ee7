"""``ask`` latency and ``ask_many`` throughput on the full MetaQA KB (extractive), against a naive baseline.

Targets: 3-hop ``ask`` p50 <= 20 ms and p95 <= 100 ms; ``ask_many`` >= 200 questions/s. ``ask`` runs with
one torch thread; ``ask_many`` is measured with one thread and with ``--batch-threads`` (default 2, the
cores of the target machine), wall-clock and CPU time. The baseline
answers the same questions with the same scorer but walks the graph with networkx (enumerating every
chain up to 3 hops from the topic through ``MultiDiGraph`` adjacency), as a straightforward
implementation would. Question embeddings are not cached between questions (a fresh in-memory-only
embedder), so every ``ask`` pays for its encoder pass. Writes ``bench/results/ask_latency.json``.

    python bench/ask_latency.py --data DIR/metaqa [--model MODEL_DIR] [--n 300] [--hops 3] [--batch-threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import time
from pathlib import Path

import numpy as np


def naive_networkx_answer(graph, topic: str, scorer, state, relation_codes: dict[tuple[str, bool], int],
                          max_hops: int = 3) -> str | None:
    """Enumerate every relation chain from ``topic`` with networkx, score chains, return a top answer."""
    ends: dict[tuple[int, ...], set[str]] = {}
    frontier: dict[tuple[int, ...], set[str]] = {(): {topic}}
    for _ in range(max_hops):
        grown: dict[tuple[int, ...], set[str]] = {}
        for chain, nodes in frontier.items():
            for node in nodes:
                for _, other, rel in graph.out_edges(node, keys=True):
                    grown.setdefault(chain + (relation_codes[(rel, False)],), set()).add(other)
                for other, _, rel in graph.in_edges(node, keys=True):
                    grown.setdefault(chain + (relation_codes[(rel, True)],), set()).add(other)
        grown = {c: n - {topic} for c, n in grown.items() if n - {topic}}
        ends.update(grown)
        frontier = grown
    if not ends:
        return None
    chains = list(ends)
    scores = scorer.score(state, chains, complete=True)
    best = chains[int(np.argmax(scores))]
    return sorted(ends[best])[0]


def _ranked(answer) -> list[tuple[str, float]]:
    """The ranked answers of an ``Answer`` (id, score to 4 decimals): what must agree between ask and ask_many."""
    return [(a.id, round(a.score, 4)) for a in answer.answers]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the MetaQA folder (kb.txt, N-hop/qa_dev.txt)")
    parser.add_argument("--model", type=Path, default=None, help="trained path scorer (default: zero-shot)")
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--hops", type=int, default=3)
    parser.add_argument("--baseline-n", type=int, default=30)
    parser.add_argument("--batch-threads", type=int, default=2, help="torch threads for the second ask_many run")
    parser.add_argument("--kb", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "ask_latency.json")
    args = parser.parse_args()

    import torch

    from kgllm.embed import Embedder
    from kgllm.eval.metaqa import metaqa_kb
    from kgllm.kb import open_kb

    torch.set_num_threads(1)  # on a shared 2-core machine one thread beats two (no spin-waiting)
    kb_path = metaqa_kb(args.data, args.kb).path
    kb = open_kb(kb_path, embedder=Embedder(memory_cache_size=0))
    lines = (args.data / f"{args.hops}-hop" / "qa_dev.txt").read_text(encoding="utf-8").splitlines()
    step = max(1, len(lines) // args.n)
    questions = [line.split("\t")[0] for line in lines[::step][: args.n]]
    model = str(args.model) if args.model else None
    t0 = time.perf_counter()
    kb.ask(questions[0], domain="movies", model=model)  # builds the relation graph and linker
    setup = time.perf_counter() - t0
    for q in questions[:20]:  # warm-up (also fills the zero-shot chain-text cache)
        kb.ask(q, domain="movies", model=model)

    load_before = os.getloadavg()[0]
    latencies = []
    answers_single = []
    for q in questions:
        t0 = time.perf_counter()
        answer = kb.ask(q, domain="movies", model=model)
        latencies.append((time.perf_counter() - t0) * 1000)
        answers_single.append(_ranked(answer))
    many_runs = {}
    for threads in sorted({1, max(1, args.batch_threads)}):
        torch.set_num_threads(threads)
        kb.ask_many(questions[:64], batch_size=64, domain="movies", model=model)  # warm the thread pool
        t0, c0 = time.perf_counter(), time.process_time()
        many = kb.ask_many(questions, batch_size=64, domain="movies", model=model)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        many_runs[threads] = {"qps": round(len(questions) / wall, 1), "cpu_s_per_question_ms": round(cpu * 1000 / len(questions), 2),
                              "same_answers_as_ask": round(sum(a == _ranked(b) for a, b in zip(answers_single, many, strict=True))
                                                           / len(questions), 4)}
    torch.set_num_threads(1)
    best_qps = max(run["qps"] for run in many_runs.values())

    # naive baseline: networkx traversal with the same scorer
    ctx = kb.pipeline.context("movies")
    reasoner = kb.pipeline.reasoner(ctx, model)
    import networkx as nx

    snap = ctx.snapshot
    t0 = time.perf_counter()
    graph = nx.MultiDiGraph()
    for h, r, t in zip(snap.head.tolist(), snap.rel.tolist(), snap.tail.tolist(), strict=False):
        graph.add_edge(snap.ids[h], snap.ids[t], key=snap.relations[r])
    nx_build = time.perf_counter() - t0
    codes = {(rel, inverse): 2 * i + int(inverse) for i, rel in enumerate(snap.relations) for inverse in (False, True)}
    base_lat = []
    for q in questions[: args.baseline_n]:
        t0 = time.perf_counter()
        match = re.search(r"\[([^\]]+)\]", q)
        start, end = (match.start(1), match.end(1)) if match else (0, 0)
        topic = match.group(1) if match else ""
        state = reasoner.prepare([reasoner.mask_question(q, start, end)])[0]
        naive_networkx_answer(graph, topic, reasoner.scorer, state, codes)
        base_lat.append((time.perf_counter() - t0) * 1000)

    p50, p95 = np.percentile(latencies, [50, 95])
    b50, b95 = np.percentile(base_lat, [50, 95])
    result = {
        "questions": len(questions), "hops": args.hops, "scorer": "learned" if model else "zero-shot",
        "ask_ms": {"p50": round(float(p50), 2), "p95": round(float(p95), 2), "mean": round(float(np.mean(latencies)), 2)},
        "ask_many_qps": many_runs[1]["qps"],
        "ask_many_by_threads": many_runs,
        "ask_many_same_answers_as_ask": many_runs[1]["same_answers_as_ask"],
        "baseline_networkx_ms": {"p50": round(float(b50), 2), "p95": round(float(b95), 2), "n": len(base_lat),
                                 "graph_build_s": round(nx_build, 2)},
        "speedup_p50": round(float(b50 / p50), 1),
        "targets": {"ask_p50_ms": 20, "ask_p95_ms": 100, "ask_many_qps": 200},
        "meets_targets": bool(p50 <= 20 and p95 <= 100 and best_qps >= 200),
        "setup_s": round(setup, 2),
        "machine": {"python": platform.python_version(), "torch_threads_ask": 1, "cpus": os.cpu_count(),
                    "load_average_1min": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)}},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
