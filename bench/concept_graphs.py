"""The concept-graph options the multiple-choice benchmarks share: ``--graph``, ``--wordnet`` and ``--out``."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_graph_options", "graph_and_out"]

RESULTS = Path(__file__).parent / "results"
#: kgllm's own feature cache: the joined CN-100K + WordNet graph is written there once, as in training.
CACHE = Path.home() / ".cache" / "kgllm" / "mcqa"


def add_graph_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--graph", type=Path, default=None, help="concept triples (default: CN-100K train.txt)")
    parser.add_argument("--wordnet", nargs="?", const="", default=None, metavar="FOLDER",
                        help="add WordNet's triples (the installed WordNet 3.0, or the one in FOLDER)")
    parser.add_argument("--out", type=Path, default=None,
                        help="result file [bench/results/NAME.json, NAME_wordnet.json with --wordnet]")


def graph_and_out(args: argparse.Namespace, name: str) -> tuple[Path, Path]:
    """The concept graph to use (joined with WordNet when asked) and the result file."""
    graph = args.graph or args.data_root / "conceptnet_100k" / "train.txt"
    if args.wordnet is not None:
        from kgllm.fusion.wordnet import with_wordnet

        graph = with_wordnet(graph, args.wordnet or None, cache_dir=CACHE)
    return graph, args.out or RESULTS / f"{name}{'' if args.wordnet is None else '_wordnet'}.json"
