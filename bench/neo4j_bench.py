"""Neo4j graph store benchmark: bulk load of the MetaQA KB and k-hop latency, Neo4j vs the local store.

    python bench/neo4j_bench.py --data DATA/metaqa [--out bench/results/neo4j_bench.json]

Measures, in one run:

* bulk load of ``kb.txt`` (133,582 triples, pipe format) through ``GraphStore.add_triples`` into Neo4j
  (target >= 30k triples/s) and into the local store; parsing is timed apart. A fresh JVM spends
  seconds of CPU compiling Neo4j's hot paths during its first loads, which a long-running server has
  done long ago: ``--warmup-loads`` full loads (each timed and reported, then deleted) come first, and
  the server's CPU during the measured load is split by thread (query workers, JIT compiler, GC);
* ``k_hop`` latency (k = 1, 2, 3; p50 / p95) from 100 topic entities of MetaQA dev questions;
* with ``--designs N``: the two relationship designs on the first N triples with raw Cypher: one
  generic ``:REL {type}`` relationship type (what the store uses) vs one relationship type per relation.

The Neo4j server is ``$NEO4J_URI`` (``NEO4J_USER`` / ``NEO4J_PASSWORD``) when set, else the test-suite
launcher (tests/neo4j_server, built by ``make neo4j-server``) started in a temporary directory with
the settings in ``SERVER_SETTINGS`` (recorded in the JSON).
The run deletes and reloads the domain ``metaqa-bench`` on that server.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DOMAIN = "metaqa-bench"
# The launcher's settings for this benchmark. Initial heap = max heap is what Neo4j recommends for
# production (a growing heap re-collects its small young generation over and over: 2 s of GC CPU
# per load at -Xms128m, 0.4 s at -Xms1g); heap and page cache are the test server's.
SERVER_SETTINGS = {"heap": "1g", "initial_heap": "1g", "pagecache": "256m"}
# Thread name prefixes of the server's JVM (Linux /proc/PID/task/*/comm), grouped for the report.
THREAD_GROUPS = {"neo4j.BoltW": "query_workers", "neo4j.BoltN": "bolt_network", "C1 Compiler": "jit",
                 "C2 Compiler": "jit", "VM Thread": "gc_vm"}


def _server_module() -> Any:
    spec = importlib.util.spec_from_file_location("neo4j_testserver", REPO / "tests" / "neo4j_testserver.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = module  # type: ignore[union-attr]  # dataclasses look their module up
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def percentiles(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    pick = lambda q: ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]  # noqa: E731
    return {"p50_ms": round(pick(0.50) * 1000, 2), "p95_ms": round(pick(0.95) * 1000, 2),
            "mean_ms": round(statistics.fmean(ordered) * 1000, 2)}


def topic_entities(data: Path, n: int, seed: int = 0) -> list[str]:
    """``n`` distinct [bracketed] topic entities of MetaQA dev questions (1-, 2- and 3-hop), sampled."""
    found: list[str] = []
    for hops in ("1-hop", "2-hop", "3-hop"):
        path = data / hops / "qa_dev.txt"
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                match = re.search(r"\[([^\]]+)\]", line)
                if match:
                    found.append(match.group(1))
    unique = sorted(set(found))
    return random.Random(seed).sample(unique, min(n, len(unique)))


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of process ``pid`` so far (Linux ``/proc``), None when unknown."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu_seconds(pid: int | None) -> dict[str, float]:
    """CPU seconds of process ``pid`` so far by thread group (``THREAD_GROUPS``; the rest is ``other``)."""
    groups: dict[str, float] = {}
    if pid is None:
        return groups
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        group = next((g for prefix, g in THREAD_GROUPS.items() if name.startswith(prefix)), "other")
        groups[group] = groups.get(group, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return groups


def timed_load(store: Any, triples: list[Any], batch_size: int, server_pid: int | None) -> dict[str, Any]:
    """Load ``triples`` into a fresh ``DOMAIN``: wall and CPU seconds of client and server."""
    if DOMAIN in store.domains():
        store.delete_domain(DOMAIN)
    threads0, server0 = thread_cpu_seconds(server_pid), cpu_seconds(server_pid)
    start, client0 = time.perf_counter(), time.process_time()
    added = store.add_triples(DOMAIN, triples, batch_size=batch_size)
    load_s = time.perf_counter() - start
    # CPU seconds do not depend on what else the machine runs: triples per CPU-second of client +
    # server is what a dedicated machine would reach with one core each (~2x on two idle cores).
    client_cpu, server1 = time.process_time() - client0, cpu_seconds(server_pid)
    server_cpu = server1 - server0 if server0 is not None and server1 is not None else None
    result: dict[str, Any] = {"added": added, "load_s": round(load_s, 2),
                              "triples_per_s": round(len(triples) / load_s),
                              "client_cpu_s": round(client_cpu, 2),
                              "server_cpu_s": round(server_cpu, 2) if server_cpu is not None else None}
    if server_cpu is not None:
        result["triples_per_cpu_s"] = round(len(triples) / (client_cpu + server_cpu))
        threads1 = thread_cpu_seconds(server_pid)
        result["server_cpu_by_thread_s"] = {group: round(threads1[group] - threads0.get(group, 0.0), 2)
                                            for group in sorted(threads1)}
    return result


def bench_store(store: Any, triples: list[Any], seeds: list[str], batch_size: int, limit: int,
                server_pid: int | None = None) -> dict[str, Any]:
    result = timed_load(store, triples, batch_size, server_pid)
    result.update(store.count(DOMAIN))
    start = time.perf_counter()
    store.k_hop(seeds[:1], 1, domain=DOMAIN)  # first query: caches, CSR build, query plans
    result["first_query_s"] = round(time.perf_counter() - start, 3)
    result["k_hop"] = {}
    for k in (1, 2, 3):
        times, nodes, facts, truncated = [], [], [], 0
        for seed in seeds:
            t0 = time.perf_counter()
            sub = store.k_hop([seed], k, domain=DOMAIN, limit=limit)
            times.append(time.perf_counter() - t0)
            nodes.append(len(sub.nodes))
            facts.append(len(sub.facts))
            truncated += sub.truncated
        result["k_hop"][str(k)] = {**percentiles(times), "mean_nodes": round(statistics.fmean(nodes), 1),
                                   "mean_facts": round(statistics.fmean(facts), 1), "truncated": truncated}
    return result


def compare_designs(connection: dict[str, Any], triples: list[Any], seeds: list[str], batch: int) -> dict[str, Any]:
    """Generic ``:REL {type}`` vs one relationship type per relation, on raw Cypher, same data and seeds."""
    import neo4j

    auth = (connection["user"] or "neo4j", connection["password"]) if connection["password"] else None
    driver = neo4j.GraphDatabase.driver(connection["uri"], auth=auth, notifications_min_severity="OFF")
    db = connection.get("database")
    safe = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
    relations = sorted({t.relation for t in triples})
    assert all(safe.match(r) for r in relations), "the typed design here needs identifier-like relations"
    out_rel: dict[str, str] = {}  # a relation each seed has outgoing, for the filtered-expansion query
    for t in triples:
        out_rel.setdefault(t.head, t.relation)
    seeds = [s for s in seeds if s in out_rel] or list(out_rel)[:100]

    def write(query: str, **params: Any) -> list[Any]:
        with driver.session(database=db) as session:
            return session.execute_write(lambda tx: list(tx.run(query, params)))

    def read(query: str, **params: Any) -> None:
        with driver.session(database=db) as session:
            session.execute_read(lambda tx: tx.run(query, params).consume())

    def clear(label: str) -> None:
        while write(f"MATCH (n:{label}) WITH n LIMIT 5000 DETACH DELETE n RETURN count(*) AS n")[0]["n"]:
            pass

    results: dict[str, Any] = {}
    designs = (("generic_rel_type_property", "BenchGeneric"), ("type_per_relation", "BenchTyped"))
    # Two alternating rounds; the second is reported, so neither design profits from running later.
    for design, label in designs * 2:
        clear(label)
        write(f"CREATE CONSTRAINT bench_{label.lower()} IF NOT EXISTS FOR (n:{label}) REQUIRE n.key IS UNIQUE")
        write("CALL db.awaitIndexes(120)")
        start = time.perf_counter()
        ids = sorted({x for t in triples for x in (t.head, t.tail)})
        element: dict[str, str] = {}
        for i in range(0, len(ids), batch):
            rows = write(f"UNWIND $ids AS id MERGE (n:{label} {{key: id}}) RETURN id, elementId(n) AS e",
                         ids=ids[i:i + batch])
            element.update((r["id"], r["e"]) for r in rows)
        match = "UNWIND $rows AS row MATCH (h) WHERE elementId(h) = row[0] MATCH (t) WHERE elementId(t) = row[2] "
        if design == "type_per_relation":
            grouped: dict[str, list[list[Any]]] = defaultdict(list)
            for t in triples:
                grouped[t.relation].append([element[t.head], t.relation, element[t.tail], t.source, t.line])
            for rel, rows in grouped.items():
                for i in range(0, len(rows), batch):
                    write(match + f"CREATE (h)-[:`{rel}` {{source: row[3], line: row[4]}}]->(t)", rows=rows[i:i + batch])
        else:
            rows = [[element[t.head], t.relation, element[t.tail], t.source, t.line] for t in triples]
            for i in range(0, len(rows), batch):
                write(match + "CREATE (h)-[:REL {type: row[1], source: row[3], line: row[4]}]->(t)",
                      rows=rows[i:i + batch])
        load_s = time.perf_counter() - start
        if design == "type_per_relation":
            filtered = {rel: f"MATCH (s:{label} {{key: $k}})-[r:`{rel}`]-(n) RETURN n.key, r.line" for rel in relations}
            two_hop = f"MATCH (s:{label} {{key: $k}})-[r1]-(m)-[r2]-(n) RETURN type(r1), m.key, type(r2), n.key"
        else:
            filtered = {rel: f"MATCH (s:{label} {{key: $k}})-[r:REL]-(n) WHERE r.type = $rel RETURN n.key, r.line"
                        for rel in relations}
            two_hop = f"MATCH (s:{label} {{key: $k}})-[r1:REL]-(m)-[r2:REL]-(n) RETURN r1.type, m.key, r2.type, n.key"
        timings: dict[str, list[float]] = {"filtered_1hop": [], "two_hop": []}
        for _ in range(2):  # the first pass warms plans and caches; the second is measured
            for name in timings:
                timings[name].clear()
            for seed in seeds:
                t0 = time.perf_counter()
                read(filtered[out_rel[seed]], k=seed, rel=out_rel[seed])
                timings["filtered_1hop"].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                read(two_hop, k=seed)
                timings["two_hop"].append(time.perf_counter() - t0)
        results[design] = {"load_s": round(load_s, 2), "triples_per_s": round(len(triples) / load_s),
                           **{name: percentiles(values) for name, values in timings.items()}}
        clear(label)
        write(f"DROP CONSTRAINT bench_{label.lower()} IF EXISTS")
    driver.close()
    results["triples"] = len(triples)
    results["seeds"] = len(seeds)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="the MetaQA folder (kb.txt, N-hop/qa_dev.txt)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "neo4j_bench.json")
    parser.add_argument("--seeds", type=int, default=100, help="topic entities for the k-hop latencies")
    parser.add_argument("--limit", type=int, default=10_000, help="k_hop fact limit")
    parser.add_argument("--batch-size", type=int, default=10_000, help="rows per Neo4j write transaction")
    parser.add_argument("--triples", type=int, default=None, help="only the first N triples of kb.txt")
    parser.add_argument("--designs", type=int, default=0, help="compare relationship designs on N triples")
    parser.add_argument("--warmup-loads", type=int, default=3,
                        help="full loads (timed, reported, deleted) before the measured one: a fresh JVM "
                             "compiles its hot paths during its first loads, which a long-running server has done")
    parser.add_argument("--no-local", action="store_true", help="skip the local store")
    args = parser.parse_args()

    from kgllm.loaders import read_triples
    from kgllm.stores.neo4j import Neo4jGraphStore

    start = time.perf_counter()
    triples = list(read_triples(args.data / "kb.txt", "pipe"))[:args.triples]
    parse_s = time.perf_counter() - start
    seeds = topic_entities(args.data, args.seeds)
    report: dict[str, Any] = {
        "benchmark": "neo4j_bench", "triples": len(triples), "parse_s": round(parse_s, 2), "seeds": len(seeds),
        "config": {"batch_size": args.batch_size, "k_hop_limit": args.limit, "designs": args.designs,
                   "warmup_loads": args.warmup_loads},
        "machine": {"cpus": os.cpu_count(), "loadavg_before": [round(x, 2) for x in os.getloadavg()]}}

    server = None
    with tempfile.TemporaryDirectory(prefix="kgllm-neo4j-bench-") as tmp:
        if os.environ.get("NEO4J_URI"):
            connection: dict[str, Any] = {"uri": os.environ["NEO4J_URI"], "user": os.environ.get("NEO4J_USER", "neo4j"),
                          "password": os.environ.get("NEO4J_PASSWORD"), "database": os.environ.get("NEO4J_DATABASE")}
            report["server"] = "NEO4J_URI"
        else:
            server = _server_module().start_server(Path(tmp) / "neo4j", auth=True, **SERVER_SETTINGS)
            connection = server.connection()
            report["server"] = {"launcher": "tests/neo4j_server (embedded Neo4j Community, Bolt)",
                                "gc": "serial", **SERVER_SETTINGS}
        try:
            store = Neo4jGraphStore(**connection)
            report["neo4j_version"] = store.server_version
            pid = server.process.pid if server is not None and server.process is not None else None
            report["neo4j_warmup_loads"] = [timed_load(store, triples, args.batch_size, pid)
                                            for _ in range(args.warmup_loads)]
            if args.designs:
                report["designs"] = compare_designs(connection, triples[:args.designs], seeds, args.batch_size)
            report["neo4j"] = bench_store(store, triples, seeds, args.batch_size, args.limit, server_pid=pid)
            store.delete_domain(DOMAIN)
            store.close()
        finally:
            if server is not None:
                server.stop()
        if not args.no_local:
            try:
                from kgllm.stores.local import LocalGraphStore
            except ImportError:
                report["local"] = None
            else:
                local = LocalGraphStore(Path(tmp) / "local")
                report["local"] = bench_store(local, triples, seeds, 50_000, args.limit)
                local.close()
    report["machine"]["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
