"""``kgllm eval`` and ``kgllm train``: the benchmark harness and the trainers of learned components, as
commands of :data:`kgllm.cli.app` (registered when :mod:`kgllm.cli` is imported)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from kgllm.cli import Options, _Command, _emit, app
from kgllm.exceptions import BenchmarkError, ConfigError


def _parse_options(items: list[str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"expected KEY=VALUE for --option, got {item!r}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


@app.command("eval", cls=_Command)
def eval_cmd(
    ctx: typer.Context,
    benchmark: str = typer.Argument(..., metavar="BENCHMARK", help="Benchmark name, or 'all' (with --data-root)."),
    data: Path | None = typer.Option(None, "--data", help="The benchmark's data folder."),
    data_root: Path | None = typer.Option(None, "--data-root", help="For 'all': folder holding every benchmark's data."),
    split: str = typer.Option("dev", "--split", help="dev | test"),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Evaluate the first N questions only."),
    model: Path | None = typer.Option(None, "--model", help="A trained model directory."),
    out: Path | None = typer.Option(None, "--out", help="Write the report JSON here."),
    report: Path | None = typer.Option(None, "--report", help="Write report.md, JSON and plots here."),
    option: list[str] = typer.Option([], "--option", "-o", help="Benchmark-specific KEY=VALUE (repeatable)."),
) -> None:
    """Evaluate on a benchmark; prints a JSON summary (metrics, latency, warnings), with --json the whole
    report JSON, as --out writes it (see DESIGN.md; the per-question predictions go to --report). 'all'
    prints a table of the benchmarks (with --json their reports).

    Benchmarks build their own knowledge bases and ignore --kb: MetaQA's is cached under the system
    temp dir (one per kb.txt checksum), so your KB is never changed.
    """
    from kgllm.eval.registry import EvalRequest
    from kgllm.eval.runner import run_all, run_eval, slim

    opts: Options = ctx.obj
    options = _parse_options(option)
    if benchmark == "all":
        if data is not None and data_root is not None:  # which one holds the data? (one was ignored)
            raise ConfigError(f"'kgllm eval all' takes one data folder: --data-root {str(data_root)!r} or "
                              f"--data {str(data)!r}, not both")
        root = data_root or data
        if root is None:
            raise ConfigError("'kgllm eval all' needs --data-root DIR")
        if model is not None:  # one model fits one benchmark; run that one with 'kgllm eval NAME --model'
            raise ConfigError(f"'kgllm eval all' takes no --model (got {str(model)!r}); "
                              "evaluate a trained model with 'kgllm eval BENCHMARK --model DIR'")
        results = run_all(root, split=split, limit=limit, out=out, report_dir=report, options=options,
                          progress=opts.progress, echo=None if opts.json else typer.echo)
        if opts.json:
            typer.echo(json.dumps([slim(r) for r in results], indent=2, default=str))
        failed = [r for r in results if "error" in r]
        if failed:  # the reports are written; the exit code must still tell a script that some failed
            raise BenchmarkError(f"{len(failed)} of {len(results)} benchmarks failed: " +
                                 "; ".join(f"{r['benchmark']} ({r['error']})" for r in failed))
        return
    if data is None:
        raise ConfigError(f"'kgllm eval {benchmark}' needs --data DIR" +
                          (f" (--data-root {str(data_root)!r} is for 'kgllm eval all')" if data_root else ""))
    request = EvalRequest(data=data, split=split, limit=limit, model=model, kb=None, options=options,
                          progress=opts.progress)
    result = run_eval(benchmark, request, out=out, report_dir=report)
    summary = {k: result[k] for k in ("benchmark", "split", "n", "metrics", "latency_ms", "seconds", "warnings")
               if k in result}
    typer.echo(json.dumps(summary if not opts.json else slim(result), indent=2, default=str))


@app.command(cls=_Command)
def train(
    ctx: typer.Context,
    target: str = typer.Argument(..., metavar="TARGET", help="What to train: metaqa, csqa, obqa, rules, router, softprompt."),
    data: Path = typer.Option(..., "--data", help="Training data folder (or file)."),
    out: Path = typer.Option(..., "--out", help="Model directory to write."),
    split: str = typer.Option("train", "--split"),
    epochs: int | None = typer.Option(None, "--epochs", min=1),
    lr: float | None = typer.Option(None, "--lr", help="Learning rate (greater than 0)."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed, 0 to 4294967295."),
    no_graph: bool = typer.Option(False, "--no-graph", help="Train the encoder alone (baseline)."),
    option: list[str] = typer.Option([], "--option", "-o", help="Trainer-specific KEY=VALUE (repeatable)."),
) -> None:
    """Train a learned component (path scorer, adapter, rules, router)."""
    from kgllm.eval.registry import TrainRequest, check_options, get_trainer

    opts: Options = ctx.obj
    spec = get_trainer(target)
    options = _parse_options(option)
    check_options(options, spec.options, f"kgllm train {target}")  # -o typos, before any work
    flags = {"epochs": epochs, "lr": lr, "seed": seed, "no_graph": True if no_graph else None}
    for key, value in flags.items():
        if value is None:
            continue
        if spec.options is not None and key not in spec.options:  # was silently ignored, as -o typos were
            raise ConfigError(f"'kgllm train {target}' takes no --{key.replace('_', '-')}; accepted options: "
                              f"{', '.join(sorted(spec.options)) or 'none'}")
        options[key] = value
    request = TrainRequest(data=data, out=out, split=split, options=options, progress=opts.progress)
    result = spec.run(request)
    _emit(opts, result, json.dumps(result, indent=2, default=str))
