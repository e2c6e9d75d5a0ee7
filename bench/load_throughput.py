"""Load throughput, peak memory and reopen time of the embedded local graph store.

Cases: the full MetaQA KB (``kb.txt``, pipe format, parsed by ``kgllm.loaders.read_triples``) and
synthetic graphs of the sizes given with ``--sizes`` (generated streaming: ``size / 5`` entities,
50 relations, uniform random triples). Every case runs in fresh subprocesses — one to load, one to
reopen and build the first snapshot — so each peak RSS (``getrusage``) is that case's alone.
Embeddings are not part of a load here.

Usage::

    python bench/load_throughput.py                            # MetaQA + 10M synthetic triples
    python bench/load_throughput.py --sizes 200000 --no-metaqa --out small.json

Writes ``bench/results/load_throughput.json`` (see ``--out``). Targets: >= 100k triples/s (wall clock,
input parsing included) and <= 4 GB peak RSS. CPU-time rates are reported too (``*_per_cpu_s``),
since wall time on a shared machine also counts other processes' work; ``store_triples_per_cpu_s``
leaves out the time spent parsing or generating the input.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET_TRIPLES_PER_S = 100_000
TARGET_PEAK_RSS_MB = 4096
DOMAIN = "bench"


def default_metaqa() -> Path:
    """``$KGLLM_DATA/metaqa/kb.txt``, else the shared data folder beside the repository."""
    return Path(os.environ.get("KGLLM_DATA", REPO.parent / "shared" / "data")) / "metaqa" / "kb.txt"


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


# -- inputs ------------------------------------------------------------------------------------
def read_pipe_file(path: Path) -> Iterator:
    """MetaQA triples, through the project's reader when it is importable, else a minimal one."""
    try:
        from kgllm.loaders import read_triples
    except ImportError:  # a minimal streaming reader, so the bench runs on the store alone
        from kgllm.stores.base import RawTriple

        def minimal() -> Iterator[RawTriple]:
            with open(path, encoding="utf-8") as handle:
                for number, line in enumerate(handle, start=1):
                    if line.strip():
                        head, rel, tail = line.rstrip("\n").split("|")
                        yield RawTriple(head, rel, tail, path.name, number)

        return minimal()
    return read_triples(path, "pipe")


def synthetic(size: int, entities: int, relations: int, seed: int = 0, batch: int = 100_000) -> Iterator:
    """``size`` random triples over ``entities`` × ``relations``, generated batch by batch."""
    import numpy as np

    from kgllm.stores.base import RawTriple

    rng = np.random.default_rng(seed)
    rel_names = [f"relation_{i}" for i in range(relations)]
    for start in range(0, size, batch):
        m = min(batch, size - start)
        heads = [f"entity_{i}" for i in rng.integers(0, entities, m).tolist()]
        rels = [rel_names[i] for i in rng.integers(0, relations, m).tolist()]
        tails = [f"entity_{i}" for i in rng.integers(0, entities, m).tolist()]
        yield from map(RawTriple, heads, rels, tails, itertools.repeat("synthetic"), range(start + 1, start + m + 1))


def make_input(spec: dict) -> Iterator:
    if spec["kind"] == "metaqa":
        return read_pipe_file(Path(spec["path"]))
    return synthetic(spec["size"], spec["entities"], spec["relations"], spec.get("seed", 0))


# -- child processes ---------------------------------------------------------------------------
def child_parse(spec: dict) -> dict:
    """Time producing the input alone (parsing / generating), to separate it from the store's share."""
    start, cpu = time.perf_counter(), time.process_time()
    n = sum(1 for _ in make_input(spec))
    return {"triples_read": n, "parse_seconds": time.perf_counter() - start,
            "parse_cpu_seconds": time.process_time() - cpu}


def child_load(spec: dict) -> dict:
    from kgllm.stores.local import LocalGraphStore

    start, cpu = time.perf_counter(), time.process_time()
    store = LocalGraphStore(spec["store"])
    added = store.add_triples(DOMAIN, make_input(spec), batch_size=spec["batch_size"])
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    count = store.count(DOMAIN)
    store.close()
    return {"triples_stored": added, "entities": count["entities"], "load_seconds": seconds,
            "load_cpu_seconds": cpu_seconds, "load_peak_rss_mb": peak_rss_mb()}


def child_open(spec: dict) -> dict:
    from kgllm.stores.local import LocalGraphStore

    start, cpu = time.perf_counter(), time.process_time()
    store = LocalGraphStore(spec["store"], create=False)
    snap = store.snapshot(DOMAIN)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    probe = snap.ids[0]
    query_start = time.perf_counter()
    store.neighbors([probe], domain=DOMAIN, direction="both")
    store.k_hop([probe], 2, domain=DOMAIN, limit=1000)
    query_ms = (time.perf_counter() - query_start) * 1000
    return {"open_seconds": seconds, "open_cpu_seconds": cpu_seconds, "open_peak_rss_mb": peak_rss_mb(), "edges": snap.num_edges,
            "first_queries_ms": query_ms}


CHILDREN = {"parse": child_parse, "load": child_load, "open": child_open}


def run_child(step: str, spec: dict) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", step, json.dumps(spec)], capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{step} of {spec['name']} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_case(spec: dict, workdir: Path, *, breakdown: bool) -> dict:
    spec = {**spec, "store": str(workdir / spec["name"])}
    shutil.rmtree(spec["store"], ignore_errors=True)
    result: dict = {"name": spec["name"]}
    if breakdown:
        result.update(run_child("parse", spec))
    result.update(run_child("load", spec))
    result.update(run_child("open", spec))
    read = result.get("triples_read", result["triples_stored"])
    result["triples_per_s"] = round(read / result["load_seconds"])
    # CPU-time rates: what the load costs regardless of other work sharing the machine's cores
    result["triples_per_cpu_s"] = round(read / result["load_cpu_seconds"])
    if "parse_cpu_seconds" in result:  # the store's own share, input parsing/generation excluded
        result["store_triples_per_cpu_s"] = round(read / max(result["load_cpu_seconds"] - result["parse_cpu_seconds"],
                                                             1e-9))
    result["meets_targets"] = (result["triples_per_s"] >= TARGET_TRIPLES_PER_S
                               and result["load_peak_rss_mb"] <= TARGET_PEAK_RSS_MB)
    result["store_mb_on_disk"] = sum(p.stat().st_size for p in Path(spec["store"]).rglob("*") if p.is_file()) / 2**20
    shutil.rmtree(spec["store"], ignore_errors=True)
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000_000],
                        help="synthetic graph sizes in triples (default: 10000000)")
    parser.add_argument("--relations", type=int, default=50)
    parser.add_argument("--triples-per-entity", type=float, default=5.0)
    parser.add_argument("--metaqa", type=Path, default=None, help="MetaQA kb.txt (default: the shared data)")
    parser.add_argument("--no-metaqa", action="store_true")
    parser.add_argument("--batch-size", type=int, default=50_000)
    parser.add_argument("--no-breakdown", action="store_true", help="skip timing input parsing on its own")
    parser.add_argument("--workdir", type=Path, default=None, help="where stores are built (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "load_throughput.json")
    args = parser.parse_args(argv)

    specs = []
    if not args.no_metaqa:
        kb = args.metaqa or default_metaqa()
        if kb.is_file():
            specs.append({"name": "metaqa-kb", "kind": "metaqa", "path": str(kb)})
        else:
            print(f"skipping MetaQA: {kb} not found (pass --metaqa)", file=sys.stderr)
    for size in args.sizes:
        specs.append({"name": f"synthetic-{size}", "kind": "synthetic", "size": size, "relations": args.relations,
                      "entities": max(1, int(size / args.triples_per_entity))})
    for spec in specs:
        spec["batch_size"] = args.batch_size

    cases = []
    with tempfile.TemporaryDirectory(prefix="kgllm-bench-", dir=args.workdir) as tmp:
        for spec in specs:
            case = run_case(spec, Path(tmp), breakdown=not args.no_breakdown)
            print(json.dumps(case), file=sys.stderr)
            cases.append(case)

    from importlib.metadata import version

    report = {
        "benchmark": "load_throughput",
        "store": "local",
        "targets": {"triples_per_s": TARGET_TRIPLES_PER_S, "peak_rss_mb": TARGET_PEAK_RSS_MB},
        "cases": cases,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "kgllm_version": version("kgllm"),
        "command": " ".join(["python", "bench/load_throughput.py", *(argv if argv is not None else sys.argv[1:])]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0 if all(c["meets_targets"] for c in cases) else 1


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        print(json.dumps(CHILDREN[sys.argv[2]](json.loads(sys.argv[3]))))
        sys.exit(0)
    sys.exit(main())
