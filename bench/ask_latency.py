"""``ask`` latency and ``ask_many`` throughput on the full MetaQA KB (extractive), against a naive baseline.

Targets: 3-hop ``ask`` p50 <= 20 ms and p95 <= 100 ms; ``ask_many`` >= 200 questions/s. The baseline
answers the same questions with the same scorer but walks the graph with networkx (enumerating every
chain up to 3 hops from the topic through ``MultiDiGraph`` adjacency), as a straightforward
implementation would. Question embeddings are not cached between questions (a fresh in-memory-only
embedder), so every ``ask`` pays for its encoder pass. Writes ``bench/results/ask_latency.json``.

    python bench/ask_latency.py --data DIR/metaqa [--model MODEL_DIR] [--n 300] [--hops 3]
"""

from __future__ import annotations

import argparse
import json
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the MetaQA folder (kb.txt, N-hop/qa_dev.txt)")
    parser.add_argument("--model", type=Path, default=None, help="trained path scorer (default: zero-shot)")
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--hops", type=int, default=3)
    parser.add_argument("--baseline-n", type=int, default=30)
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

    latencies = []
    answers_single = []
    for q in questions:
        t0 = time.perf_counter()
        answer = kb.ask(q, domain="movies", model=model)
        latencies.append((time.perf_counter() - t0) * 1000)
        answers_single.append(answer.top.id if answer.top else None)
    t0 = time.perf_counter()
    many = kb.ask_many(questions, batch_size=64, domain="movies", model=model)
    many_s = time.perf_counter() - t0
    same = sum(a == (b.top.id if b.top else None) for a, b in zip(answers_single, many, strict=False)) / len(questions)

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
        "ask_many_qps": round(len(questions) / many_s, 1),
        "ask_many_same_top_answer_as_ask": round(same, 4),
        "baseline_networkx_ms": {"p50": round(float(b50), 2), "p95": round(float(b95), 2), "n": len(base_lat),
                                 "graph_build_s": round(nx_build, 2)},
        "speedup_p50": round(float(b50 / p50), 1),
        "targets": {"ask_p50_ms": 20, "ask_p95_ms": 100, "ask_many_qps": 200},
        "meets_targets": bool(p50 <= 20 and p95 <= 100 and len(questions) / many_s >= 200),
        "setup_s": round(setup, 2),
        "machine": {"python": platform.python_version(), "torch_threads": torch.get_num_threads()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
