"""One registry of benchmarks (for ``kgllm eval``) and trainers (for ``kgllm train``).

Benchmark modules register themselves with :func:`benchmark` / :func:`trainer`; they are imported
lazily from :data:`BENCHMARK_MODULES` so that ``kgllm --help`` does not pay for torch.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import json
import math
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kgllm.exceptions import BenchmarkError, ConfigError, ModelError

__all__ = ["EvalRequest", "TrainRequest", "Benchmark", "Trainer", "benchmark", "trainer", "get_benchmark",
           "get_trainer", "benchmarks", "trainers", "flag", "numeric_options", "NumericSpec", "SEED_MAX",
           "BENCHMARK_MODULES", "MODEL_KINDS", "model_kind", "require_model", "check_options",
           "unknown_option_message"]

# Modules that register benchmarks/trainers when imported (add yours here).
BENCHMARK_MODULES: list[str] = [
    "kgllm.eval.metaqa",
    "kgllm.eval.multiple_choice",
    "kgllm.eval.link_prediction",
    "kgllm.eval.routing",
    "kgllm.eval.rog",
    "kgllm.eval.soft_prompt",
]


#: The trained-model directories ``kgllm train`` writes, by the ``kind`` or ``format`` of their manifest.
MODEL_KINDS = {
    "kgllm-path-scorer": "a path scorer (from 'kgllm train metaqa')",
    "kgllm-mcqa-adapter": "a multiple-choice adapter (from 'kgllm train csqa' or 'kgllm train obqa')",
    "kgllm-rules": "a rule set (from 'kgllm train rules')",
    "kgllm-router": "a router model (from 'kgllm train router')",
    "kgllm-kge-complex": "a ComplEx embedding model",
    "kgllm-soft-prompt": "a graph soft prompt for a causal LM (from 'kgllm train softprompt'; use --llm softprompt:DIR)",
}


def model_kind(directory: Path) -> str | None:
    """Which of :data:`MODEL_KINDS` ``directory`` holds; ``None`` when none (no or another manifest)."""
    for name in ("manifest.json", "kge.json"):
        try:
            manifest = json.loads((Path(directory) / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(manifest, dict):
            for key in ("kind", "format"):
                if isinstance(manifest.get(key), str) and manifest[key] in MODEL_KINDS:
                    return str(manifest[key])
    return None


def require_model(directory: Path, needed: str, command: str) -> None:
    """Refuse a model directory of another kind than ``needed``, naming both kinds.

    Raises:
        ModelError: ``directory`` holds another kind of trained model (a directory holding none is left
            to the model's own loader, which names what is missing).
    """
    found = model_kind(directory)
    if found is not None and found != needed:
        raise ModelError(f"{directory} holds {MODEL_KINDS[found]}, but '{command}' needs {MODEL_KINDS[needed]}")


_YES, _NO = frozenset({"true", "1", "yes", "on"}), frozenset({"false", "0", "no", "off", ""})


def flag(value: Any, name: str | None = None) -> bool:
    """A yes/no option: JSON ``true`` from ``-o KEY=true``, or a string (``"False"``, ``"no"``, ``"0"`` are no).

    Raises:
        ConfigError: with ``name``, a string that is neither (``-o held_out=ture`` was silently off).
    """
    if isinstance(value, str):
        word = value.strip().lower()
        if name is not None and word not in _YES | _NO:
            raise ConfigError(f"-o {name}={value!r}: expected true or false (yes/no, on/off, 1/0)")
        return word in _YES
    return bool(value)


#: A bound of a numeric option: a number (included), a one-element list (excluded), or None (no bound).
Bound = float | list[float] | None
#: Numeric options by name: their type, smallest value and largest value.
NumericSpec = dict[str, tuple[type, Bound, Bound]]
SEED_MAX = 2**32 - 1  # what every trainer's random generator takes (numpy's and scikit-learn's the least)


def numeric_options(options: dict[str, Any], spec: NumericSpec) -> dict[str, Any]:
    """The numeric options of ``spec`` given (``-o KEY=VALUE``), converted and checked before any work.

    Raises:
        ConfigError: a value that is not a number of the option's kind or is out of its range, naming both.
    """
    out: dict[str, Any] = {}
    for key, (kind, low, high) in spec.items():
        raw = options.get(key)
        if raw is None or raw == "":
            continue
        try:
            value = float(raw) if not isinstance(raw, bool) else None
        except (TypeError, ValueError):
            value = None
        if value is None or not math.isfinite(value) or (kind is int and not value.is_integer()) \
                or not _within(value, low, high):
            what = "a whole number " if kind is int else ""
            raise ConfigError(f"{key} must be {what}{_describe(low, high)}, got {raw!r}")
        out[key] = kind(value)
    return out


def _within(value: float, low: Bound, high: Bound) -> bool:
    above = low is None or (value > low[0] if isinstance(low, list) else value >= low)
    return above and (high is None or (value < high[0] if isinstance(high, list) else value <= high))


def _describe(low: Bound, high: Bound) -> str:
    def number(x: float) -> str:
        return str(int(x)) if float(x).is_integer() else f"{x:g}"

    parts = []
    if low is not None:
        parts.append(f"above {number(low[0])}" if isinstance(low, list) else f"at least {number(low)}")
    if high is not None:
        parts.append(f"below {number(high[0])}" if isinstance(high, list) else f"at most {number(high)}")
    return " and ".join(parts)


def unknown_option_message(unknown: Iterable[str], accepted: Collection[str], command: str,
                           reason: str = "") -> str:
    """One line naming the unknown keys (each with a close accepted key, when there is one), ``command`` and the
    accepted keys."""
    choices = sorted(accepted)
    named = []
    for key in unknown:
        close = difflib.get_close_matches(key, choices, n=1, cutoff=0.6) or \
            difflib.get_close_matches(key.lower(), choices, n=1, cutoff=0.6)
        named.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    noun = "option" if len(named) == 1 else "options"
    return (f"unknown {noun} {', '.join(named)} for '{command}'{reason}; accepted options: "
            f"{', '.join(choices) or 'none'}")


def check_options(options: Iterable[str], accepted: Collection[str] | None, command: str) -> None:
    """Refuse a ``-o KEY=VALUE`` key that ``command`` does not take (a typo was silently ignored, and the numbers
    measured came from the defaults). ``accepted`` ``None``: not declared, every key passes.

    Raises:
        ConfigError: one line naming the unknown keys, ``command``, a close accepted key and the accepted keys.
    """
    if accepted is None:
        return
    unknown = [key for key in options if key not in accepted]
    if unknown:
        raise ConfigError(unknown_option_message(unknown, accepted, command))


def _checking(run: Callable[[Any], dict[str, Any]], accepted: frozenset[str],
              command: str) -> Callable[[Any], dict[str, Any]]:
    """``run`` refusing unknown option keys before it starts."""
    if getattr(run, "_kgllm_checks_options", None) == (accepted, command):
        return run

    @functools.wraps(run)
    def checked(request: Any) -> dict[str, Any]:
        check_options(request.options, accepted, command)
        return run(request)

    checked._kgllm_checks_options = (accepted, command)  # type: ignore[attr-defined]
    return checked


@dataclass
class EvalRequest:
    """What ``kgllm eval`` passes to a benchmark's run function."""

    data: Path
    split: str = "dev"
    limit: int | None = None
    model: Path | None = None
    kb: Path | None = None
    options: dict[str, Any] = field(default_factory=dict)
    progress: bool = False


@dataclass
class TrainRequest:
    """What ``kgllm train`` passes to a trainer."""

    data: Path
    out: Path
    split: str = "train"
    options: dict[str, Any] = field(default_factory=dict)
    progress: bool = False


@dataclass
class Benchmark:
    """A registered benchmark.

    ``run`` returns a dict with at least ``n`` and ``metrics``; it may add ``latency_ms``,
    ``config``, ``per_type``, ``predictions`` and ``warnings``. The runner adds the envelope fields.
    ``options`` are the ``-o`` keys it accepts: ``run`` refuses any other with a :class:`ConfigError` before
    any work (``None``, not declared: every key passes, and typos are silently ignored).
    """

    name: str
    description: str
    primary_metric: str
    run: Callable[[EvalRequest], dict[str, Any]]
    required_files: Callable[[Path, str], list[str]] | None = None
    splits: tuple[str, ...] = ("dev", "test")
    options: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if self.options is not None:
            self.options = frozenset(self.options)
            self.run = _checking(self.run, self.options, f"kgllm eval {self.name}")


@dataclass
class Trainer:
    """A registered trainer; ``options`` as for :class:`Benchmark` (the CLI's ``--epochs``, ``--lr``, ``--seed``
    and ``--no-graph`` arrive as options ``epochs``, ``lr``, ``seed``, ``no_graph``)."""

    name: str
    description: str
    run: Callable[[TrainRequest], dict[str, Any]]
    options: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if self.options is not None:
            self.options = frozenset(self.options)
            self.run = _checking(self.run, self.options, f"kgllm train {self.name}")


_BENCHMARKS: dict[str, Benchmark] = {}
_TRAINERS: dict[str, Trainer] = {}
_loaded = False


def benchmark(spec: Benchmark) -> Benchmark:
    if spec.name in _BENCHMARKS and _BENCHMARKS[spec.name] is not spec:
        raise BenchmarkError(f"benchmark {spec.name!r} registered twice")
    _BENCHMARKS[spec.name] = spec
    return spec


def trainer(spec: Trainer) -> Trainer:
    if spec.name in _TRAINERS and _TRAINERS[spec.name] is not spec:
        raise BenchmarkError(f"trainer {spec.name!r} registered twice")
    _TRAINERS[spec.name] = spec
    return spec


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    for module in BENCHMARK_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:  # a real missing dependency, not a module yet to be written
                raise
    _loaded = True


def benchmarks() -> dict[str, Benchmark]:
    _load_all()
    return dict(sorted(_BENCHMARKS.items()))


def trainers() -> dict[str, Trainer]:
    _load_all()
    return dict(sorted(_TRAINERS.items()))


def get_benchmark(name: str) -> Benchmark:
    known = benchmarks()
    if name not in known:
        raise BenchmarkError(f"unknown benchmark {name!r}; known benchmarks: {', '.join(known)}")
    return known[name]


def get_trainer(name: str) -> Trainer:
    known = trainers()
    if name not in known:
        raise BenchmarkError(f"unknown training target {name!r}; known targets: {', '.join(known)}")
    return known[name]
