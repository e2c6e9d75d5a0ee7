"""Speed of the multiple-choice graph adapter: training epoch time and end-to-end inference rate.

Measured on CommonsenseQA (``--data``: the folder with ``train_inhouse.jsonl`` and ``dev.jsonl``) with
the concept graph ``--graph`` (CN-100K ``train.txt``):

* ``features``: the one-time frozen-encoder + grounding + subgraph pass over the training split
  (cached on disk under ``--cache-dir``; a second run reads the cache);
* ``epoch``: one training epoch of the graph adapter and of the no-graph baseline over all training
  questions (target: < 30 minutes per epoch on 2 CPU cores);
* ``inference``: ``ChoiceAnswerer.answer_many`` on ``--n`` dev questions from raw text (encoder,
  grounding, subgraphs, GNN; nothing cached; target: >= 20 questions/s). All texts of the batch go
  through the encoder in one call, and the question side of the subgraph search is shared by a
  question's choices.

Wall-clock and process CPU seconds are both reported: on a shared machine wall time also counts other
processes' work. ``--threads`` sets torch's CPU threads (default 1: the adapter's graphs are small, and a
second intra-op thread made a training epoch many times slower on a loaded 2-core machine). Usage::

    python bench/adapter_speed.py --data DATA/commonsenseqa --graph DATA/conceptnet_100k/train.txt

Writes ``bench/results/adapter_speed.json`` (see ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "adapter_speed.json"
TARGET_EPOCH_MINUTES = 30.0
TARGET_QUESTIONS_PER_S = 20.0


def _timed(fn):  # noqa: ANN001, ANN202
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="CommonsenseQA folder")
    parser.add_argument("--graph", type=Path, required=True, help="concept triples (relation<TAB>head<TAB>tail)")
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "kgllm" / "mcqa")
    parser.add_argument("--n", type=int, default=200, help="dev questions for the inference rate")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from kgllm.embed import Embedder
    from kgllm.fusion.choices import ChoiceAnswerer
    from kgllm.fusion.features import FeatureBuilder, read_mc_jsonl
    from kgllm.fusion.grounding import ConceptGraph
    from kgllm.fusion.training import GraphData, TrainConfig, save_model, train_adapter

    graph = ConceptGraph.from_triples(args.graph)
    embedder = Embedder(cache_dir=args.cache_dir)
    builder = FeatureBuilder(graph, embedder, cache_dir=args.cache_dir)
    questions = read_mc_jsonl(args.data / "train_inhouse.jsonl")
    feats, f_wall, f_cpu = _timed(lambda: builder.build(questions))
    data = GraphData(feats, graph.n_relation_ids)
    epochs = {}
    model = None
    for name, use_graph in (("graph_adapter", True), ("no_graph", False)):
        cfg = TrainConfig(epochs=1, use_graph=use_graph, seed=0)
        (trained, history), wall, cpu = _timed(
            lambda cfg=cfg: train_adapter(data, cfg, n_graph_relations=graph.n_relation_ids))
        epochs[name] = {"wall_s": wall, "cpu_s": cpu, "questions": len(feats),
                        "questions_per_s_wall": len(feats) / wall, "loss": history[0]["loss"]}
        if use_graph:
            model, model_cfg = trained, cfg
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = save_model(Path(tmp) / "model", model, model_cfg, encoder=embedder.model_name,
                               encoder_dim=embedder.dim, graph_path=args.graph, vocab_hash=graph.vocab_hash,
                               n_graph_relations=graph.n_relation_ids, node_dim=embedder.dim,
                               info={"features": {"max_nodes": builder.max_nodes, "hops": builder.hops}})
        answerer = ChoiceAnswerer(model_dir, embedder=Embedder(), cache_dir=args.cache_dir)  # no text cache
        dev = read_mc_jsonl(args.data / "dev.jsonl")[: args.n]
        answerer.answer_many([(q.stem, q.choices) for q in dev[:8]])  # warm up
        items = [(q.stem, q.choices) for q in dev[8:]]
        _, wall, cpu = _timed(lambda: answerer.answer_many(items))
    inference = {"questions": len(items), "wall_s": wall, "cpu_s": cpu, "questions_per_s_wall": len(items) / wall,
                 "questions_per_s_cpu": len(items) / cpu}
    result = {
        "benchmark": "adapter_speed",
        "features": {"questions": len(feats), "wall_s": f_wall, "cpu_s": f_cpu},
        "epoch": epochs,
        "inference": inference,
        "targets": {"epoch_minutes": TARGET_EPOCH_MINUTES, "questions_per_s": TARGET_QUESTIONS_PER_S},
        "meets_targets": {"epoch": epochs["graph_adapter"]["wall_s"] / 60 < TARGET_EPOCH_MINUTES,
                          "inference": inference["questions_per_s_wall"] >= TARGET_QUESTIONS_PER_S},
        "machine": {"cpus": os.cpu_count(), "threads": args.threads, "platform": platform.platform(),
                    "load_average": os.getloadavg()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
