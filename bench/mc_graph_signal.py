"""How much the concept graph alone tells the right choice from the wrong ones (CommonsenseQA, OpenBookQA).

The graph adapter can only add what the graph knows. For each question the question's and each
choice's concepts are grounded in the concept graph (the adapter's own grounder), and per choice this
counts the question concepts joined to a choice concept by an edge (1 hop) and the nodes adjacent to
both (2-hop paths). Reported per dev set:

* ``grounded`` / ``direct`` / ``two_hop``: the share of right and of wrong choices that are grounded,
  have a direct edge to a question concept, and have a 2-hop path to one;
* ``graph_only_accuracy``: picking the choice with the most direct edges, then the most 2-hop paths
  (ties shared evenly), against ``chance`` (one over the number of choices).

Connections that wrong choices have as often as right ones carry no signal for the adapter.

    python bench/mc_graph_signal.py --data-root DATA [--wordnet]

Writes ``bench/results/mc_graph_signal.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchjson import machine_info, write_result  # noqa: E402
from concept_graphs import add_graph_options, graph_and_out  # noqa: E402

DEV_SETS = {"csqa": "commonsenseqa/dev.jsonl", "obqa": "openbookqa/dev.jsonl"}


def signal(questions: list[Any], graph: Any, grounder: Any) -> dict[str, Any]:
    """The shares and the graph-only accuracy of the module docstring for ``questions``."""
    shares: dict[str, dict[str, list[bool]]] = {side: {"grounded": [], "direct": [], "two_hop": []}
                                                  for side in ("right", "wrong")}
    credit: list[float] = []
    for q in questions:
        q_nodes = np.unique(np.asarray(grounder.ground(q.stem), dtype=np.int64))
        n_q = graph.neighbors(q_nodes) if len(q_nodes) else np.zeros(0, dtype=np.int64)
        keys = []
        for i, choice in enumerate(q.choices):
            a_nodes = np.unique(np.asarray(grounder.ground(choice, whole=True), dtype=np.int64))
            n_a = graph.neighbors(a_nodes) if len(a_nodes) else np.zeros(0, dtype=np.int64)
            direct = int(np.isin(a_nodes, n_q).sum())
            two_hop = len(np.intersect1d(n_q, n_a))
            side = shares["right" if i == q.answer else "wrong"]
            side["grounded"].append(len(a_nodes) > 0)
            side["direct"].append(direct > 0)
            side["two_hop"].append(two_hop > 0)
            keys.append((direct, two_hop))
        best = [i for i, key in enumerate(keys) if key == max(keys)]
        credit.append(float(q.answer in best) / len(best))
    n_choices = {len(q.choices) for q in questions}
    return {"questions": len(questions),
            **{side: {k: round(float(np.mean(v)), 4) for k, v in parts.items()} for side, parts in shares.items()},
            "graph_only_accuracy": round(float(np.mean(credit)), 4),
            "chance": round(1.0 / n_choices.pop(), 4) if len(n_choices) == 1 else None}


def main() -> None:
    from kgllm.fusion.features import read_mc_jsonl
    from kgllm.fusion.grounding import ConceptGraph, ConceptGrounder

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, required=True,
                        help="folder with commonsenseqa/, openbookqa/ and conceptnet_100k/")
    add_graph_options(parser)
    args = parser.parse_args()
    graph_path, out = graph_and_out(args, "mc_graph_signal")
    graph = ConceptGraph.from_triples(graph_path)
    grounder = ConceptGrounder(graph)
    results = {name: signal(read_mc_jsonl(args.data_root / rel), graph, grounder)
               for name, rel in DEV_SETS.items() if (args.data_root / rel).is_file()}
    write_result(out, {"benchmark": "mc_graph_signal", "graph": graph_path.name,
                       "wordnet": args.wordnet is not None, "dev": results, "machine": machine_info()})


if __name__ == "__main__":
    main()
