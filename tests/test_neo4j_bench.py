"""``bench/neo4j_bench.py`` end to end on the MetaQA fixture, against the suite's real Neo4j server.

The script runs as a subprocess with ``NEO4J_URI`` naming the session's server (as it would for a
production server), so the launcher settings are not under test here; the JSON fields the README
reads are, and so is what they must mean: every triple loaded, warm-up loads reported, the domain
removed afterwards.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kgllm.stores.neo4j import Neo4jGraphStore

pytestmark = pytest.mark.neo4j

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "neo4j_bench.py"


def test_neo4j_bench_loads_every_triple_and_reports_the_warmup(neo4j_server, fixtures_dir, tmp_path):
    kb = fixtures_dir / "metaqa" / "kb.txt"
    n = sum(1 for line in kb.read_text(encoding="utf-8").splitlines() if line.strip())
    env = neo4j_server.environment()
    out = tmp_path / "neo4j_bench.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--data", str(fixtures_dir / "metaqa"), "--seeds", "5",
                           "--warmup-loads", "1", "--batch-size", "1000", "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())

    assert report["triples"] == n and report["server"] == "NEO4J_URI"
    assert report["config"]["warmup_loads"] == 1 and len(report["neo4j_warmup_loads"]) == 1
    for load in (*report["neo4j_warmup_loads"], report["neo4j"]):
        assert load["added"] == n and load["triples_per_s"] > 0
    neo4j, local = report["neo4j"], report["local"]
    # Same KB, same counts in both stores; k-hop from the same seeds reaches the same subgraphs.
    assert (neo4j["entities"], neo4j["triples"]) == (local["entities"], local["triples"])
    assert neo4j["triples"] == n
    for k in ("1", "2", "3"):
        assert neo4j["k_hop"][k]["mean_facts"] == local["k_hop"][k]["mean_facts"] > 0
    with Neo4jGraphStore(**neo4j_server.connection()) as store:
        assert "metaqa-bench" not in store.domains() and store.pending_loads() == []
