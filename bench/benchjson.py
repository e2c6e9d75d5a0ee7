"""What every benchmark script records beside its numbers, and how it writes them."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["machine_info", "write_result", "datasets_present"]


def machine_info() -> dict[str, Any]:
    """CPU count, load and platform: numbers from a busy machine are read differently."""
    return {"cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
            "platform": platform.platform(), "python": platform.python_version()}


def write_result(out: Path, result: dict[str, Any]) -> dict[str, Any]:
    """Write ``result`` as JSON to ``out`` (creating its folder) and echo it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


def datasets_present(data_root: Path, names: Iterable[str]) -> Iterator[tuple[str, Path]]:
    """``(name, folder)`` of each dataset under ``data_root`` that has a ``train.txt``; says which are skipped."""
    for name in names:
        folder = data_root / name
        if (folder / "train.txt").is_file():
            yield name, folder
        else:
            print(f"skipping {name}: no {folder / 'train.txt'}", flush=True)
