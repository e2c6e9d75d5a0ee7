"""What an incomplete filter costs the link-prediction numbers, measured without any test data.

The data folders hold ``train.txt`` and ``valid.txt`` only, so filtered ranking of ``valid.txt`` cannot
remove the true triples of the withheld test split. This script re-splits ``train.txt`` of each of
UMLS, Kinships and Nations into train'/valid'/test' (the published proportions, fixed seed; see
:meth:`kgllm.eval.kgdata.KGDataset.simulated`), trains rules and ComplEx on train', and ranks valid'
twice: filtered with train'+valid'+valid.txt (``without_test_filter``: test' plays the missing test
split) and with test' as well (``with_test_filter``: the protocol the folders would allow if test.txt
were present; the real test.txt is of course still unfiltered in both). Rules, ComplEx and their
combination are reported each way, with wall and CPU time and the load average.
The swap estimate of the complete-filter numbers (:func:`kgllm.eval.metrics.swap_estimated_ranks`: the
scored split's other answers stand in for the missing split's) is checked here: estimated from the
``without_test_filter`` ranking (valid' answers standing in for test') it should match ``with_test_filter``
(``swap_check``). It is then applied to the real ``valid.txt`` ranking of models trained on all of
``train.txt`` (``valid_txt``: the README numbers, and their ``estimated_complete_filter``).
``--curve`` also ranks valid' (combined model) with growing shares of the held-out true triples (test'
and valid.txt) filtered, and fits ``MRR(p) = q (1 - e^(-a p)) / (a p)`` (p: share of all true triples
left out of the filter, the withheld test.txt always among them) to *estimate* the complete-filter MRR
``q``. Writes ``bench/results/link_prediction_filter.json``.

    python bench/link_prediction_filter.py --data-root ../shared/data [--seed 0] [--curve | --learn-valid] [-o epochs=200 ...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchjson import datasets_present, machine_info, write_result  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
NAMES = ("umls", "kinships", "nations")


def _option(item: str) -> tuple[str, Any]:
    key, _, value = item.partition("=")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _rounded(by_method: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    return {m: {k: round(v, 4) for k, v in values.items()} for m, values in by_method.items()}


def filter_curve(folder: Path, name: str, seed: int, options: dict[str, Any],
                 shares: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)) -> dict[str, Any]:
    """Combined-model MRR on valid' as more of the held-out true triples join the filter, and the fit."""
    import numpy as np
    from scipy.optimize import curve_fit

    from kgllm.eval import metrics
    from kgllm.eval.kgdata import KGDataset
    from kgllm.eval.link_prediction import _MINE_OPTIONS, DEFAULT_RULE_WEIGHT
    from kgllm.reasoning.kge import KGEConfig, combine, train_complex
    from kgllm.reasoning.rules import RuleSet

    ds = KGDataset.load(folder, name=name, need=("train", "dev")).simulated(seed=seed)
    train, valid = ds.indexed("train"), ds.indexed("dev")
    snap = ds.snapshot("train")
    rules = RuleSet.mine(snap, **{k: v for k, v in options.items() if k in _MINE_OPTIONS})
    kge, _ = train_complex(train, len(ds.entities), len(ds.relations),
                           KGEConfig(**{k: v for k, v in options.items() if k in KGEConfig.__dataclass_fields__}))
    weight = float(options.get("rule_weight", DEFAULT_RULE_WEIGHT))
    scored = []
    for inverse in (False, True):
        for rel in np.unique(valid[:, 1]):
            sel = valid[valid[:, 1] == rel]
            q, a = (sel[:, 2], sel[:, 0]) if inverse else (sel[:, 0], sel[:, 2])
            s = combine(kge.score(q, np.full(q.size, rel), inverse=inverse),
                        rules.score(snap, q, ds.relations[rel], inverse=inverse), rule_weight=weight)
            scored.append((inverse, int(rel), q, a, s))
    held = np.concatenate([ds.indexed("test"), ds.indexed("known")])
    order = np.random.default_rng(seed + 1).permutation(len(held))
    withheld = len(ds.splits["known"])  # the real test.txt, assumed as large as valid.txt
    total = len(train) + len(valid) + len(held) + withheld
    points = []
    for share in shares:
        used = held[order[:int(share * len(held))]]
        known: dict[tuple[int, int, bool], list[int]] = {}
        for h, r, t in np.concatenate([train, valid, used]):
            known.setdefault((h, r, False), []).append(t)
            known.setdefault((t, r, True), []).append(h)
        ranks: list[float] = []
        for inverse, rel, q, a, s in scored:
            mask = np.zeros(s.shape, dtype=bool)
            for i, node in enumerate(q):
                mask[i, known[(int(node), rel, inverse)]] = True
            ranks.extend(metrics.filtered_ranks(s, a, mask))
        result = metrics.ranking_metrics(ranks)
        points.append({"missing_share": round((len(held) - len(used) + withheld) / total, 4),
                       "mrr": round(result["mrr"], 4), "hits@1": round(result["hits@1"], 4)})
    p = np.array([x["missing_share"] for x in points])
    y = np.array([x["mrr"] for x in points])
    try:
        (q_fit, a_fit), _ = curve_fit(lambda x, q, a: q * -np.expm1(-a * x) / (a * x), p, y, p0=(0.9, 5.0),
                                      maxfev=10_000)
    except RuntimeError:  # no convergence (e.g. a flat curve on a tiny graph): no estimate
        return {"points": points, "fit": None, "estimated_complete_filter_mrr": None}
    return {"points": points, "fit": {"q": round(float(q_fit), 4), "a": round(float(a_fit), 3)},
            "estimated_complete_filter_mrr": round(float(q_fit), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--names", nargs="+", default=list(NAMES), choices=NAMES)
    parser.add_argument("--seed", type=int, default=0, help="seed of the re-split of train.txt")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--curve", action="store_true", help="also estimate the complete-filter MRR")
    parser.add_argument("--learn-valid", action="store_true",
                        help="models also learn from valid.txt, as --split test learns from train + valid "
                             "(simulated split only; default --out link_prediction_filter_learn_valid.json)")
    parser.add_argument("-o", "--option", action="append", default=[], help="benchmark option KEY=VALUE")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.curve and args.learn_valid:  # the curve's held-out triples include valid.txt
        parser.error("--curve and --learn-valid do not combine")
    args.out = args.out or RESULTS / f"link_prediction_filter{'_learn_valid' if args.learn_valid else ''}.json"
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(args.threads))

    from kgllm.eval.registry import EvalRequest
    from kgllm.eval.runner import run_eval

    options = dict(_option(o) for o in args.option)
    options.update({"simulate_split": True, "split_seed": args.seed, "threads": args.threads,
                    "learn_valid": args.learn_valid})
    results: dict[str, Any] = {}
    for name, folder in datasets_present(args.data_root, args.names):
        wall, cpu = time.perf_counter(), time.process_time()
        report = run_eval(name, EvalRequest(data=folder, split="dev", options=dict(options)))
        config = report["config"]
        results[name] = {
            "n": report["n"], "split_sizes": config["simulated_split"],
            "with_test_filter": _rounded(report["by_method"]),
            "without_test_filter": _rounded(config["by_method_without_test_filter"]),
            "swap_check": {"estimated_from_without_test_filter": _rounded(config["estimated_from_without_test_filter"]),
                           "actual_with_test_filter": _rounded(report["by_method"])},
            "estimated_complete_filter_simulated": _rounded(config["estimated_complete_filter"]),
            "rules": config["rules"], "rule_weight": config["rule_weight"], "kge": config["kge"],
            "wall_s": round(time.perf_counter() - wall, 2), "cpu_s": round(time.process_time() - cpu, 2),
            "load_avg_1m": round(os.getloadavg()[0], 2)}
        if not args.learn_valid:  # valid.txt itself, ranked by models that learn from train.txt
            real_options = {k: v for k, v in options.items() if k not in ("simulate_split", "split_seed", "learn_valid")}
            real = run_eval(name, EvalRequest(data=folder, split="dev", options=real_options))
            results[name]["valid_txt"] = {
                "n": real["n"], "by_method": _rounded(real["by_method"]),
                "estimated_complete_filter": _rounded(real["config"]["estimated_complete_filter"])}
        if args.curve:
            results[name]["filter_curve"] = filter_curve(folder, name, args.seed, options)
        print(name, json.dumps({k: results[name].get(k) for k in ("with_test_filter", "without_test_filter",
                                                                   "swap_check", "valid_txt", "filter_curve")}),
              flush=True)
    write_result(args.out, {"benchmark": "link_prediction_filter", "machine": machine_info(), "seed": args.seed,
                            "options": options, "results": results})


if __name__ == "__main__":
    main()
