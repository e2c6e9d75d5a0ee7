"""Rule mining time on the KG benchmarks and Countries evaluation time.

For each benchmark folder under ``--data-root`` (``kinships``, ``umls``, ``nations``,
``countries/countries_S1..S3``) mines rules from ``train.txt`` with the default settings of
:meth:`kgllm.reasoning.rules.RuleSet.mine` (path rules of length 1-3 plus constant rules) and
records wall time, process CPU time (the machine may be shared: CPU time is the fairer number),
the number of rules and the load average. For Countries it also times the whole benchmark run
(mining + ranking the validation countries) and records its AUC-PR. Writes
``bench/results/rules_speed.json``.

    python bench/rules_speed.py --data-root ../shared/data [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
MINE = ["kinships", "umls", "nations"]
COUNTRIES = ["countries/countries_S1", "countries/countries_S2", "countries/countries_S3"]


def _timed(fn):  # type: ignore[no-untyped-def]
    wall, cpu = time.perf_counter(), time.process_time()
    value = fn()
    return value, round(time.perf_counter() - wall, 3), round(time.process_time() - cpu, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "rules_speed.json")
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(args.threads))

    from kgllm.eval.kgdata import KGDataset
    from kgllm.eval.registry import EvalRequest
    from kgllm.eval.runner import run_eval
    from kgllm.reasoning.rules import RuleSet

    results: dict[str, dict] = {}
    for name in MINE:
        folder = args.data_root / name
        if not (folder / "train.txt").is_file():
            continue
        ds = KGDataset.load(folder, name=name)
        snap = ds.snapshot("train")
        rules, wall, cpu = _timed(lambda s=snap: RuleSet.mine(s))
        results[name] = {"task": "mine", "train_triples": len(ds.splits["train"]), "entities": len(ds.entities),
                         "relations": len(ds.relations), "rules": len(rules), "wall_s": wall, "cpu_s": cpu,
                         "loadavg_1m": round(os.getloadavg()[0], 2)}
        print(name, results[name], flush=True)
    for folder_name in COUNTRIES:
        folder = args.data_root / folder_name
        if not (folder / "train.txt").is_file():
            continue
        name = "countries-" + folder_name[-2:].lower()
        report, wall, cpu = _timed(lambda f=folder, n=name: run_eval(n, EvalRequest(data=f, split="dev")))
        results[name] = {"task": "eval (mine + rank)", "n": report["n"], "auc_pr": report["metrics"]["auc_pr"],
                         "rules": report["config"]["rules"], "wall_s": wall, "cpu_s": cpu,
                         "loadavg_1m": round(os.getloadavg()[0], 2)}
        print(name, results[name], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"benchmark": "rules_speed", "machine": {
        "cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "threads": args.threads, "results": results}, indent=2), encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
