"""Run registered benchmarks and wrap their results in the report envelope of DESIGN.md.

``run_eval`` runs one benchmark (``kgllm eval NAME``); ``run_all`` runs every benchmark whose data
folder exists under a data root (``kgllm eval all --data-root DIR``). Both can write the JSON
(``--out``) and a Markdown report with plots (``--report``); ``print_summary`` draws the terminal table.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from kgllm.eval import metrics
from kgllm.eval.registry import EvalRequest, check_options, get_benchmark, unknown_option_message
from kgllm.exceptions import BenchmarkError, ConfigError

__all__ = ["DATA_FOLDERS", "run_eval", "run_all", "envelope", "slim", "write_json", "print_summary"]

# benchmark → its folder under a data root (the layout of the shared benchmark data).
DATA_FOLDERS: dict[str, str] = {
    "metaqa-1hop": "metaqa",
    "metaqa-2hop": "metaqa",
    "metaqa-3hop": "metaqa",
    "metaqa-1hop-ntm": "metaqa",
    "csqa": "commonsenseqa",
    "obqa": "openbookqa",
    "countries-s1": "countries/countries_S1",
    "countries-s2": "countries/countries_S2",
    "countries-s3": "countries/countries_S3",
    "umls": "umls",
    "kinships": "kinships",
    "nations": "nations",
    "routing": ".",
    "webqsp": "webqsp",
    "cwq": "cwq",
}


def _version() -> str:
    try:
        from kgllm import __version__

        return str(__version__)
    except ImportError:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("kgllm")
        except PackageNotFoundError:
            return "0+unknown"


def _check_files(name: str, request: EvalRequest) -> None:
    spec = get_benchmark(name)
    if request.split not in spec.splits:
        raise BenchmarkError(f"{name}: unknown split {request.split!r}; known splits: {', '.join(spec.splits)}")
    if not Path(request.data).exists():
        raise BenchmarkError(f"{name}: data folder not found: {request.data}")
    if spec.required_files is not None:
        expected = spec.required_files(Path(request.data), request.split)
        if expected and Path(request.data).is_file():
            raise BenchmarkError(f"{name}: --data must be the benchmark's folder, got the file {request.data}; "
                                 f"expected files in the folder: {', '.join(expected)}")
        missing = [f for f in expected if not (Path(request.data) / f).exists()]
        if missing:
            raise BenchmarkError(f"{name}: {request.data} lacks {', '.join(missing)}; expected files: "
                                 f"{', '.join(expected)}")
    if request.limit is not None and request.limit < 1:
        raise BenchmarkError(f"--limit must be a positive number of questions, got {request.limit!r}")


def _check_outputs(out: Path | None, report_dir: Path | None) -> None:
    """Refuse output paths that cannot be written before the run, not after it."""
    if out is not None and Path(out).is_dir():
        raise ConfigError(f"--out must name a JSON file, got the folder {out}")
    if report_dir is not None and Path(report_dir).exists() and not Path(report_dir).is_dir():
        raise ConfigError(f"--report must name a folder, got the file {report_dir}")
    if out is not None:
        _check_writable("--out", Path(out), Path(out).parent)
    if report_dir is not None:
        _check_writable("--report", Path(report_dir), Path(report_dir))


def _check_writable(option: str, target: Path, folder: Path) -> None:
    """The nearest existing folder on the way to ``folder`` must take new files (probed with a temporary one)."""
    existing = folder.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{option} {target} cannot be written: {existing} is a file, not a folder")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".kgllm-write-test-"):
            pass
    except OSError as exc:
        raise ConfigError(f"{option} {target} cannot be written: no new files can be made in {existing} "
                          f"({exc.strerror or exc})") from exc


def envelope(name: str, request: EvalRequest, result: dict[str, Any], seconds: float) -> dict[str, Any]:
    """The report JSON: benchmark, split, n, metrics, latency_ms, config, kgllm_version, seconds (+ extras)."""
    latency = result.get("latency_ms")
    if latency is None:
        latency = metrics.latency_summary(result.get("latencies_ms", []))
    config = {"data": str(request.data), "limit": request.limit,
              "model": str(request.model) if request.model else None, **result.get("config", {})}
    out: dict[str, Any] = {
        "benchmark": name,
        "split": request.split,
        "n": int(result["n"]),
        "metrics": {k: round(float(v), 6) for k, v in result["metrics"].items()},
        "latency_ms": latency,
        "config": config,
        "kgllm_version": _version(),
        "seconds": round(seconds, 3),
        "primary_metric": get_benchmark(name).primary_metric,
    }
    for key, value in result.items():  # what the benchmark adds: by_method, per_type, predictions, confusion, ...
        if key not in out:
            out[key] = value
    preds = result.get("predictions") or []
    scored = [p for p in preds if "score" in p and "correct" in p]
    if scored:
        out["calibration"] = metrics.calibration([p["score"] for p in scored], [bool(p["correct"]) for p in scored])
    if isinstance(config.get("filter_warning"), str):  # an incomplete filter (no test.txt): said where users look
        out["warnings"] = [*out.get("warnings", []), config["filter_warning"]]
    if request.limit is not None and int(result["n"]) < request.limit:
        out["warnings"] = [*out.get("warnings", []),
                           f"--limit {request.limit} exceeds the {result['n']} questions of the split; all were used"]
    return out


def write_json(report: dict[str, Any] | list[dict[str, Any]], path: Path) -> Path:
    """Write a report (or a list of them) as indented JSON, creating parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    return path


def slim(report: dict[str, Any]) -> dict[str, Any]:
    """The JSON written to ``--out`` and printed with ``--json``: without the bulky per-question lists (kept in
    the report folder)."""
    return {k: v for k, v in report.items() if k not in ("predictions", "latencies_ms")}


def run_eval(name: str, request: EvalRequest, *, out: Path | None = None,
             report_dir: Path | None = None) -> dict[str, Any]:
    """Run benchmark ``name`` and return its report envelope.

    Args:
        name: a registered benchmark (``kgllm.eval.registry.benchmarks()``).
        request: data folder, split, limit, model, options, progress.
        out: write the report JSON (without per-question lists) there.
        report_dir: write ``report.md``, ``results.json``, per-question ``predictions`` and PNG plots there.

    Raises:
        BenchmarkError: unknown benchmark (lists the known ones), unknown split, missing data files, a split
            without questions.
        ConfigError: an option key the benchmark does not accept (naming a close one and the accepted keys),
            ``out`` is a folder or ``report_dir`` a file, or either cannot be written (all checked before the run).
    """
    _check_outputs(out, report_dir)
    spec = get_benchmark(name)
    check_options(request.options, spec.options, f"kgllm eval {name}")
    _check_files(name, request)
    started = time.perf_counter()
    result = spec.run(request)
    if not int(result["n"]):
        raise BenchmarkError(f"{name}: no questions in the {request.split!r} split of {request.data}")
    report = envelope(name, request, result, time.perf_counter() - started)
    if out is not None:
        write_json(slim(report), out)
    if report_dir is not None:
        from kgllm.eval.report import write_report

        write_report([report], report_dir)
    return report


def run_all(data_root: Path, *, split: str = "dev", limit: int | None = None,
            names: Sequence[str] | None = None, out: Path | None = None, report_dir: Path | None = None,
            options: dict[str, Any] | None = None, progress: bool = False,
            echo: Callable[[str], Any] | None = None) -> list[dict[str, Any]]:
    """Run every registered benchmark whose data folder exists under ``data_root``.

    Benchmarks without data are skipped (listed in the summary); one failing benchmark is reported
    and the others still run. ``names`` restricts the set; ``out`` gets the list of reports. With
    ``echo`` (e.g. ``typer.echo``) each benchmark is announced and the summary table is printed at the end.
    Each benchmark gets the ``options`` it accepts (``-o dim=8`` reaches the ComplEx benchmarks only); a key
    that none of the chosen benchmarks accepts is refused before any runs.

    Returns:
        The reports, plus ``{"benchmark": name, "skipped": reason}`` / ``{"benchmark", "error"}`` entries.

    Raises:
        BenchmarkError: ``data_root`` is missing, an unknown name, or no benchmark could run (the message
            names the data folders expected under ``data_root``, and why those present were skipped).
        ConfigError: an option key that no chosen benchmark accepts, ``out`` is a folder or ``report_dir`` a
            file, or either cannot be written.
    """
    from kgllm.eval.registry import benchmarks

    _check_outputs(out, report_dir)
    data_root = Path(data_root)
    if not data_root.is_dir():
        raise BenchmarkError(f"data root not found: {data_root}")
    known = benchmarks()
    chosen = list(names) if names else list(known)
    for name in chosen:
        if name not in known:
            raise BenchmarkError(f"unknown benchmark {name!r}; known benchmarks: {', '.join(known)}")
    given = dict(options or {})
    _check_options_of_all(given, [known[name].options for name in chosen])
    reports: list[dict[str, Any]] = []
    for name in chosen:
        folder = data_root / DATA_FOLDERS.get(name, name)
        accepted = known[name].options
        request = EvalRequest(data=folder, split=split, limit=limit, progress=progress,
                              options={k: v for k, v in given.items() if accepted is None or k in accepted})
        try:
            _check_files(name, request)
        except BenchmarkError as exc:
            reports.append({"benchmark": name, "skipped": str(exc)})
            continue
        if echo is not None:
            echo(f"{name}: {folder} ({split})")
        try:
            reports.append(run_eval(name, replace(request)))
        except BenchmarkError as exc:  # data present but not what this benchmark needs
            reports.append({"benchmark": name, "skipped": str(exc)})
        except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the others' numbers
            reports.append({"benchmark": name, "error": f"{type(exc).__name__}: {exc}"})
    if all("skipped" in r for r in reports):  # an exit code of 0 and an empty report would hide a wrong root
        present = [r["skipped"] for r in reports if DATA_FOLDERS.get(r["benchmark"], ".") != "."
                   and (data_root / DATA_FOLDERS[r["benchmark"]]).exists()]
        folders = sorted({DATA_FOLDERS.get(name, name) for name in chosen} - {"."})
        raise BenchmarkError(f"no benchmark could run from {data_root}; expected data folders under it: "
                             f"{', '.join(folders)}" + "".join(f"; {reason}" for reason in present))
    if out is not None:
        write_json([slim(r) for r in reports], out)
    if report_dir is not None:
        from kgllm.eval.report import write_report

        write_report(reports, report_dir)
    if echo is not None:
        print_summary(reports)
    return reports


def _check_options_of_all(options: dict[str, Any], accepted: list[frozenset[str] | None]) -> None:
    """Refuse the option keys that none of the chosen benchmarks accepts (``None``: one accepting every key)."""
    if any(keys is None for keys in accepted):
        return
    union = frozenset().union(*(keys for keys in accepted if keys is not None))
    unknown = [key for key in options if key not in union]
    if unknown:
        raise ConfigError(unknown_option_message(unknown, union, "kgllm eval all",
                                                 reason=f" (no chosen benchmark accepts {'it' if len(unknown) == 1 else 'them'})"))


def print_summary(reports: Sequence[dict[str, Any]], console: Any = None) -> None:
    """A rich table: benchmark, split, n, primary metric, other metrics, p50 latency, seconds."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title="kgllm eval")
    for col in ("benchmark", "split", "n", "primary", "metrics", "p50 ms", "seconds"):
        table.add_column(col, justify="right" if col in ("n", "p50 ms", "seconds") else "left")
    for r in reports:
        if "metrics" not in r:
            status = r.get("error") or r.get("skipped", "")
            table.add_row(r["benchmark"], "-", "-", "error" if "error" in r else "skipped", status[:80], "-", "-")
            continue
        primary = r.get("primary_metric", "")
        value = r["metrics"].get(primary)
        others = ", ".join(f"{k}={v:.3f}" for k, v in r["metrics"].items() if k != primary)
        table.add_row(r["benchmark"], r["split"], str(r["n"]),
                      f"{primary}={value:.3f}" if value is not None else "-", others,
                      f"{r.get('latency_ms', {}).get('p50', float('nan')):.2f}", f"{r['seconds']:.1f}")
    console.print(table)
