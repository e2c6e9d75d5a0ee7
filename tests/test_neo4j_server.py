"""The Neo4j test server itself: authentication on and off, clean shutdown, durable store."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from neo4j_testserver import start_server

from kgllm.exceptions import StoreUnavailable
from kgllm.stores.base import RawTriple
from kgllm.stores.neo4j import Neo4jGraphStore

pytestmark = pytest.mark.neo4j


def test_session_server_is_neo4j_5_with_authentication(neo4j_server):
    with Neo4jGraphStore(**neo4j_server.connection()) as store:
        assert store.server_version.startswith("5.")
    if neo4j_server.password is None:
        pytest.fail("the session's Neo4j server must run with authentication")
    with pytest.raises(StoreUnavailable, match="refused the credentials"):
        Neo4jGraphStore(uri=neo4j_server.uri)  # no credentials at all


def test_a_neo4j_uri_database_with_kgllm_domains_is_refused_untouched(neo4j_server, tmp_path):
    # NEO4J_URI tests used to delete every kgllm domain of that database before each test
    tests = Path(__file__).resolve().parent
    env = neo4j_server.environment()
    with Neo4jGraphStore(**neo4j_server.connection()) as store:
        store.add_triples("someone-elses", [RawTriple("keep", "me", "safe")])
        try:
            done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                   f"{tests / 'test_neo4j_security.py'}::test_schema_survives_hostile_loads"],
                                  cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
            assert done.returncode != 0
            assert "holds kgllm data: " in done.stdout and "'someone-elses'" in done.stdout, done.stdout[-3000:]
            assert store.count("someone-elses") == {"entities": 2, "triples": 1}
        finally:
            store.delete_domain("someone-elses")


def test_server_without_auth_then_with_auth_keeps_its_data(tmp_path):
    home = tmp_path / "neo4j"
    server = start_server(home, auth=False, heap="512m", pagecache="32m")
    try:
        assert server.user is None and server.password is None
        with Neo4jGraphStore(uri=server.uri) as store:  # no credentials needed
            assert store.add_triples("d", [RawTriple("a", "r", "b"), RawTriple("b", "r", "c")]) == 2
    finally:
        server.stop()
    assert server.process is not None and server.process.returncode in (0, 143)  # SIGTERM, shut down by the hook

    secured = start_server(home, auth=True, password="restart-pw-1", heap="512m", pagecache="32m")
    try:
        with pytest.raises(StoreUnavailable, match="refused the credentials"):
            Neo4jGraphStore(uri=secured.uri)
        with Neo4jGraphStore(**secured.connection()) as store:
            assert store.count("d") == {"entities": 3, "triples": 2}
            assert {(f.head, f.tail) for f in store.iter_triples("d")} == {("a", "b"), ("b", "c")}
    finally:
        secured.stop()
    assert "Recovery completed" not in (home / "logs" / "debug.log").read_text(errors="replace")
