"""Dev accuracy of the multiple-choice adapter, with and without the concept graph, over seeds.

For CommonsenseQA and OpenBookQA, trains the encoder alone (``--no-graph``), the graph adapter over
CN-100K and the graph adapter over CN-100K + WordNet (``-o wordnet=true``) for each seed, with the
same budget, and scores each model on the dev split (never used for selection: the best epoch is
picked on a held-out part of the training questions). The same as the README's loop of
``kgllm train csqa|obqa`` and ``kgllm eval csqa|obqa`` commands, in one run:

    python bench/mc_accuracy.py --data-root DATA [--seeds 0 1 2] [--epochs 10] [--variants alone graph wordnet]

Writes ``bench/results/mc_accuracy.json``: every run's accuracy and training time, and the mean and
standard deviation (population, over seeds) per dataset and variant.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchjson import machine_info, write_result  # noqa: E402

DATASETS = {"csqa": "commonsenseqa", "obqa": "openbookqa"}
VARIANTS: dict[str, dict[str, Any]] = {"alone": {"no_graph": True}, "graph": {}, "wordnet": {"wordnet": True}}
"""Trainer options per variant, added to the shared ones."""


def run_one(benchmark: str, folder: Path, variant: str, seed: int, *, epochs: int, lr: float,
            threads: int, work: Path, extra: dict[str, str]) -> dict[str, Any]:
    """Train one model into ``work`` and score it on dev: accuracy (%) and the seconds each step took."""
    from kgllm.eval.registry import EvalRequest, TrainRequest, get_trainer
    from kgllm.eval.runner import run_eval

    model = work / f"{benchmark}-{variant}-s{seed}"
    options = {**extra, "epochs": epochs, "lr": lr, "seed": seed, "threads": threads, **VARIANTS[variant]}
    started = time.perf_counter()
    get_trainer(benchmark).run(TrainRequest(data=folder, out=model, options=options))
    trained = time.perf_counter()
    report = run_eval(benchmark, EvalRequest(data=folder, split="dev", model=model, options=dict(extra)))
    accuracy = float(report["metrics"]["accuracy"])
    return {"benchmark": benchmark, "variant": variant, "seed": seed, "n": int(report["n"]),
            "accuracy": round(100 * accuracy, 2),
            "train_s": round(trained - started, 1), "eval_s": round(time.perf_counter() - trained, 1)}


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Mean ± population std of accuracy over seeds, per ``benchmark/variant``."""
    groups: dict[str, list[float]] = {}
    for run in runs:
        groups.setdefault(f"{run['benchmark']}/{run['variant']}", []).append(run["accuracy"])
    return {key: {"mean": round(statistics.fmean(values), 2), "std": round(statistics.pstdev(values), 2),
                  "seeds": len(values)} for key, values in groups.items()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, required=True, help="Folder holding commonsenseqa/ and openbookqa/.")
    parser.add_argument("--benchmarks", nargs="+", choices=sorted(DATASETS), default=sorted(DATASETS))
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=1, help="Torch threads per run (1 is fastest here).")
    parser.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE",
                        help="A trainer and benchmark option passed on (e.g. cache_dir=DIR, graph=FILE).")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "mc_accuracy.json")
    args = parser.parse_args(argv)
    extra = dict(item.split("=", 1) for item in args.option)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="kgllm-mc-") as tmp:
        for benchmark in args.benchmarks:
            folder = args.data_root / DATASETS[benchmark]
            if not (folder / "dev.jsonl").is_file():
                print(f"skipping {benchmark}: no {folder / 'dev.jsonl'}", flush=True)
                continue
            for variant in args.variants:
                for seed in args.seeds:
                    runs.append(run_one(benchmark, folder, variant, seed, epochs=args.epochs, lr=args.lr,
                                        threads=args.threads, work=Path(tmp), extra=extra))
                    print(runs[-1], flush=True)
    return write_result(args.out, {
        "benchmark": "mc_accuracy", "machine": machine_info(),
        "config": {"options": extra, "epochs": args.epochs, "lr": args.lr, "threads": args.threads, "seeds": args.seeds,
                   "batch_size": "trainer default", "hidden": "trainer default"},
        "summary": summarize(runs), "runs": runs})


if __name__ == "__main__":
    main()
