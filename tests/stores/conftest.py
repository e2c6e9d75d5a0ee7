"""The ``store`` fixture: every GraphStore protocol test runs on each backend."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["local", pytest.param("neo4j", marks=pytest.mark.neo4j)])
def store(request, tmp_path):
    if request.param == "local":
        from kgllm.stores.local import LocalGraphStore

        backend = LocalGraphStore(tmp_path / "graph")
    else:
        from kgllm.stores.neo4j import Neo4jGraphStore

        server = request.getfixturevalue("neo4j_server")
        backend = Neo4jGraphStore(**server.connection())
        for domain in backend.domains():  # each test starts from an empty database
            backend.delete_domain(domain)
    yield backend
    backend.close()
