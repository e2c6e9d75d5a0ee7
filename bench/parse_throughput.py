"""Parse throughput of the triple and document loaders, and their memory while streaming.

Cases, each timed as the best of ``--repeats`` runs in this process:

* every triple format on the same rows: the MetaQA KB (``kb.txt``, pipe) rewritten as tsv, csv
  (quoted), jsonl and N-Triples (IRIs plus an ``rdfs:label`` per entity); CN-100K ``train.txt``
  (tsv, relation first) as it is;
* documents: OpenBookQA ``openbook.txt`` (line chunking);
* streaming: a generated pipe file of ``--stream-lines`` lines read to the end in a fresh
  subprocess, whose peak RSS (``getrusage``) is compared with the file size.

Usage::

    python bench/parse_throughput.py --data DATA_DIR [--stream-lines 10000000] [--out FILE.json]

Writes ``bench/results/parse_throughput.json`` with wall-clock and CPU-time rates (on a shared
machine the CPU rate is the stable one). Targets: pipe/tsv >= 300k triples per CPU-second,
N-Triples >= 30k; streaming peak RSS independent of the file size (a few MB over the imports).
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from kgllm.loaders import read_documents, read_triples

RESULTS = Path(__file__).resolve().parent / "results" / "parse_throughput.json"


def _best(fn: Callable[[], int], repeats: int) -> tuple[int, float, float]:
    """(rows, best wall seconds, best CPU seconds) over ``repeats`` runs."""
    wall = cpu = float("inf")
    rows = 0
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        rows = fn()
        wall = min(wall, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - start_cpu)
    return rows, wall, cpu


def _count(iterable) -> int:  # type: ignore[no-untyped-def]
    n = 0
    for _ in iterable:
        n += 1
    return n


def _count_file(path: Path, fmt: str) -> int:
    return _count(read_triples(path, fmt))


def _write_variants(kb: Path, tmp: Path) -> dict[str, Path]:
    rows = [(t.head, t.relation, t.tail) for t in read_triples(kb, "pipe")]
    paths = {fmt: tmp / f"kb.{fmt}" for fmt in ("tsv", "csv", "jsonl", "nt")}
    with paths["tsv"].open("w", encoding="utf-8") as handle:
        handle.writelines(f"{h}\t{r}\t{t}\n" for h, r, t in rows)
    with paths["csv"].open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle, lineterminator="\n", quoting=csv.QUOTE_ALL).writerows(rows)
    with paths["jsonl"].open("w", encoding="utf-8") as handle:
        handle.writelines(json.dumps({"head": h, "relation": r, "tail": t}) + "\n" for h, r, t in rows)

    def iri(name: str) -> str:
        return "<http://example.org/metaqa/" + quote(name.replace(" ", "_"), safe="") + ">"

    with paths["nt"].open("w", encoding="utf-8") as handle:
        entities: set[str] = set()
        for h, r, t in rows:
            handle.write(f"{iri(h)} <http://example.org/metaqa/rel/{r}> {iri(t)} .\n")
            entities.update((h, t))
        for name in sorted(entities):
            label = name.replace("\\", "\\\\").replace('"', '\\"')
            handle.write(f'{iri(name)} <http://www.w3.org/2000/01/rdf-schema#label> "{label}" .\n')
    return paths


_STREAM_CHILD = """
import resource, sys, time
from kgllm.loaders import read_triples
start, start_cpu = time.perf_counter(), time.process_time()
n = 0
for _ in read_triples(sys.argv[1], "pipe"):
    n += 1
seconds, cpu = time.perf_counter() - start, time.process_time() - start_cpu
print(n, seconds, cpu, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""

_BASELINE_CHILD = """
import resource
import kgllm.loaders
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


def _stream(lines: int, tmp: Path) -> dict[str, float]:
    path = tmp / "stream.txt"
    with path.open("w", encoding="utf-8") as handle:
        for i in range(lines):
            handle.write(f"Film {i}|directed_by|Director {i % 50_000}\n")
    out = subprocess.run([sys.executable, "-c", _STREAM_CHILD, str(path)], check=True, capture_output=True,
                         text=True).stdout.split()
    baseline = int(subprocess.run([sys.executable, "-c", _BASELINE_CHILD], check=True, capture_output=True,
                                  text=True).stdout)
    n, seconds, cpu, peak = int(out[0]), float(out[1]), float(out[2]), int(out[3])
    return {"lines": n, "file_mb": round(path.stat().st_size / 2**20, 1), "seconds": round(seconds, 2),
            "triples_per_s": round(n / seconds), "triples_per_cpu_s": round(n / cpu),
            "peak_rss_mb": round(peak / 2**20, 1),
            "import_rss_mb": round(baseline / 2**20, 1), "streaming_overhead_mb": round((peak - baseline) / 2**20, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="the shared benchmark data folder")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--stream-lines", type=int, default=10_000_000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    kb = args.data / "metaqa" / "kb.txt"
    results: dict[str, object] = {"benchmark": "parse_throughput", "formats": {}}
    formats: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="kgllm-parse-") as tmp_name:
        tmp = Path(tmp_name)
        cases: dict[str, Callable[[], int]] = {"pipe (MetaQA kb.txt)": lambda: _count(read_triples(kb, "pipe"))}
        for fmt, path in _write_variants(kb, tmp).items():
            cases[f"{fmt} (MetaQA rewritten)"] = functools.partial(_count_file, path, fmt)
        cn = args.data / "conceptnet_100k" / "train.txt"
        cases["tsv rht (CN-100K train)"] = lambda: _count(read_triples(cn, "tsv", order="rht"))
        book = args.data / "openbookqa" / "openbook.txt"
        cases["documents line (openbook.txt)"] = lambda: _count(read_documents(book, chunking="line"))
        for name, fn in cases.items():
            rows, seconds, cpu = _best(fn, args.repeats)
            formats[name] = {"rows": rows, "seconds": round(seconds, 3), "rows_per_s": round(rows / seconds),
                             "cpu_seconds": round(cpu, 3), "rows_per_cpu_s": round(rows / cpu)}
            print(f"{name:32s} {rows:>8d} rows  {seconds:7.3f} s  {rows / seconds:>10,.0f} rows/s  "
                  f"{rows / cpu:>10,.0f} rows/CPU-s")
        results["formats"] = formats
        if args.stream_lines:
            results["stream"] = stream = _stream(args.stream_lines, tmp)
            print(f"stream {stream['lines']:,} lines ({stream['file_mb']} MB): {stream['triples_per_s']:,} triples/s, "
                  f"{stream['triples_per_cpu_s']:,} per CPU-s, peak RSS {stream['peak_rss_mb']} MB "
                  f"(after imports {stream['import_rss_mb']} MB)")
    results["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()}
    results["command"] = "python bench/parse_throughput.py " + " ".join(argv if argv is not None else sys.argv[1:])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
