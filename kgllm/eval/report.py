"""Evaluation reports: ``report.md``, ``results.json`` and PNG plots (matplotlib, Agg backend).

Plots per benchmark: metric bars beside the published reference numbers, latency histogram,
per-question-type breakdown (when the benchmark reports types), a reliability diagram of the
answer scores (when it reports per-question scores) and a confusion matrix (when it reports one).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kgllm.eval.reference import references_for

__all__ = ["write_report", "plot_metrics", "plot_latency", "plot_per_type", "plot_calibration", "plot_confusion"]


def pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed, safe in threads and on servers
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> Path:  # type: ignore[no-untyped-def]
    """Lay out, write (creating the folder) and close a figure."""
    plt = pyplot()
    with warnings.catch_warnings():  # a label in a script the font lacks (名前) is drawn as boxes, not a warning each
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from font", category=UserWarning)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_metrics(report: dict[str, Any], path: Path) -> Path | None:
    """Bars of our primary metric beside the published numbers for the same metric."""
    primary = report.get("primary_metric") or next(iter(report["metrics"]), None)
    if primary is None or primary not in report["metrics"]:
        return None
    refs = references_for(report["benchmark"], primary)
    labels = ["kgllm"] + [r.method for r in refs]
    values = [report["metrics"][primary]] + [r.value for r in refs]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(labels) + 1), 3.2))
    bars = ax.bar(labels, values, color=["tab:blue"] + ["tab:gray"] * len(refs))
    ax.bar_label(bars, fmt="%.3f", fontsize=8)
    ax.set_ylim(0, 1.08)
    ax.set_ylabel(primary)
    ax.set_title(f"{report['benchmark']} ({report['split']}) vs published (test)", fontsize=9)
    return save_figure(fig, path)


def plot_latency(report: dict[str, Any], path: Path) -> Path | None:
    """Histogram of per-question latency (ms)."""
    lat = report.get("latencies_ms") or []
    if not lat:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.hist(lat, bins=min(40, max(5, len(lat) // 5)), color="tab:green")
    ax.set_xlabel("latency per question (ms)")
    ax.set_ylabel("questions")
    p50 = report.get("latency_ms", {}).get("p50")
    ax.set_title(f"{report['benchmark']}: latency (p50 {p50} ms)", fontsize=9)
    return save_figure(fig, path)


def _type_scores(report: dict[str, Any]) -> dict[str, float]:
    """Primary-style score per question type: ``per_type`` when given, else accuracy of the predictions."""
    per_type = report.get("per_type") or {}
    if per_type:
        out = {}
        for t, v in per_type.items():
            out[t] = float(v.get(report.get("primary_metric", ""), next(iter(v.values())))) \
                if isinstance(v, dict) else float(v)
        return out
    groups: dict[str, list[float]] = {}
    for p in report.get("predictions") or []:
        if "type" in p and "correct" in p:
            groups.setdefault(str(p["type"]), []).append(float(bool(p["correct"])))
    return {t: sum(v) / len(v) for t, v in groups.items()} if len(groups) > 1 else {}


def plot_per_type(report: dict[str, Any], path: Path) -> Path | None:
    """Horizontal bars of the score per question type (e.g. MetaQA ``director_to_movie``)."""
    scores = _type_scores(report)
    if not scores:
        return None
    items = sorted(scores.items(), key=lambda kv: kv[1])[-40:]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 0.25 * len(items) + 1.2))
    ax.barh([k for k, _ in items], [v for _, v in items], color="tab:purple")
    ax.set_xlim(0, 1.0)
    ax.tick_params(axis="y", labelsize=7)
    ax.set_title(f"{report['benchmark']}: by question type", fontsize=9)
    return save_figure(fig, path)


def plot_calibration(report: dict[str, Any], path: Path) -> Path | None:
    """Reliability diagram: accuracy per confidence bin against the diagonal."""
    cal = report.get("calibration")
    if not cal or not cal.get("bins"):
        return None
    bins = cal["bins"]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(3.6, 3.4))
    ax.plot([0, 1], [0, 1], linestyle="--", color="gray", linewidth=1)
    ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], marker="o", color="tab:red")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("answer score")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{report['benchmark']}: calibration (ECE {cal['ece']:.3f})", fontsize=9)
    return save_figure(fig, path)


def plot_confusion(report: dict[str, Any], path: Path) -> Path | None:
    """Heat map of gold against predicted labels, for benchmarks that report a confusion matrix (routing)."""
    confusion = report.get("confusion")
    if not confusion or not confusion.get("labels"):
        return None
    from kgllm.eval.routing import plot_confusion as heat_map

    return heat_map(confusion, path, title=f"{report['benchmark']}: confusion")


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _config_line(config: Any, limit: int = 600) -> str:
    """The run's config as JSON; a long one is cut at a top-level key (valid JSON still), naming what is left out.
    Non-ASCII text (a data folder named ``données``) is shown as it is, not as ``\\u00e9`` escapes."""
    def dumps(value: Any) -> str:
        return json.dumps(value, default=str, ensure_ascii=False)

    text = dumps(config)
    if len(text) <= limit or not isinstance(config, dict):
        return f"config: `{text}`"
    shown: dict[str, Any] = {}
    for key, value in config.items():
        if len(dumps({**shown, key: value})) > limit:
            break
        shown[key] = value
    left = [str(key) for key in config if key not in shown]
    return (f"config: `{dumps(shown)}` (cut before {', '.join(left)}; "
            "results.json has the whole config)")


def write_report(reports: Sequence[dict[str, Any]], directory: Path) -> Path:
    """Write ``report.md``, ``results.json``, ``predictions/<benchmark>.jsonl`` and ``plots/*.png``.

    Returns:
        The path of ``report.md``.
    """
    directory = Path(directory)
    plots = directory / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    lines = ["# kgllm evaluation report", "",
             "| benchmark | split | n | metrics | p50 ms | seconds |", "|---|---|---:|---|---:|---:|"]
    for r in reports:
        if "metrics" not in r:
            status = f"error: {r['error']}" if "error" in r else f"skipped: {r.get('skipped', '')}"
            status = " ".join(status.split())  # a multi-line error message would end the table row early
            lines.append(f"| {r['benchmark']} | - | - | {status.replace('|', '/')} | - | - |")
            continue
        ms = ", ".join(f"{k} {_fmt(v)}" for k, v in r["metrics"].items())
        lines.append(f"| {r['benchmark']} | {r['split']} | {r['n']} | {ms} | "
                     f"{r.get('latency_ms', {}).get('p50', '-')} | {r['seconds']:.1f} |")
    preds_dir = directory / "predictions"
    for r in reports:
        if "metrics" not in r:
            continue
        name = r["benchmark"]
        lines += ["", f"## {name}", ""]
        for warning in r.get("warnings", []):  # an incomplete filter, a --limit past the data, ...
            lines += [f"**Warning:** {warning}", ""]
        refs = references_for(name)
        if refs:
            lines += ["| method | metric | value | source |", "|---|---|---:|---|",
                      *[f"| kgllm ({r['split']}) | {m} | {_fmt(v)} | this run |" for m, v in r["metrics"].items()
                        if m in {ref.metric for ref in refs}],
                      *[f"| {ref.method} | {ref.metric} | {ref.value:.3f} | {ref.source} |" for ref in refs], ""]
        if r.get("by_method"):
            lines += ["| method | " + " | ".join(next(iter(r["by_method"].values()))) + " |",
                      "|---|" + "---:|" * len(next(iter(r["by_method"].values())))]
            lines += [f"| {m} | " + " | ".join(_fmt(v) for v in vals.values()) + " |"
                      for m, vals in r["by_method"].items()]
            lines.append("")
        for kind, fn in (("metrics", plot_metrics), ("latency", plot_latency), ("per_type", plot_per_type),
                         ("calibration", plot_calibration), ("confusion", plot_confusion)):
            made = fn(r, plots / f"{name}_{kind}.png")
            if made is not None:
                lines.append(f"![{name} {kind}](plots/{made.name})")
        if r.get("predictions"):
            preds_dir.mkdir(exist_ok=True)
            with open(preds_dir / f"{name}.jsonl", "w", encoding="utf-8") as fh:
                for p in r["predictions"]:
                    fh.write(json.dumps(p, default=str) + "\n")
        lines.append("")
        lines.append(_config_line(r.get("config", {})))
    slim = [{k: v for k, v in r.items() if k not in ("predictions", "latencies_ms")} for r in reports]
    (directory / "results.json").write_text(json.dumps(slim, indent=2, default=str), encoding="utf-8")
    path = directory / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
