"""Hostile input against the Neo4j store: values never become query text; failures are clear errors.

Entity ids, names, relation names, domain names and questions that would break a query built by
string splicing (Cypher injection, backticks, parameter markers, unicode look-alikes) must be stored
and read back exactly and must not change anything else in the database.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time

import pytest

from kgllm.exceptions import StoreUnavailable
from kgllm.stores.base import RawTriple
from kgllm.stores.neo4j import Neo4jGraphStore

pytestmark = pytest.mark.neo4j

HOSTILE = [
    "') DETACH DELETE n //",
    "'}) MATCH (n) DETACH DELETE n //",
    "`}]->() MATCH (x) DETACH DELETE x //",
    "back``tick`",
    "$password",
    "{key: $keys[0]}",
    "\\u0060) DETACH DELETE n //",  # an escaped backtick, as text
    "\u0060) DETACH DELETE n //",  # a real backtick
    "ｍａｔｃｈ (n) ＤＥＴＡＣＨ ＤＥＬＥＴＥ n",  # fullwidth look-alikes
    "a\u202eDELETE\u202c",  # right-to-left override
    "line\nbreak\r\n\t; DROP CONSTRAINT kgllm_entity_key",
    "CALL dbms.security.createUser('x', 'y', false)",
]


@pytest.fixture
def store(neo4j_server):
    backend = Neo4jGraphStore(**neo4j_server.connection())
    for domain in backend.domains():
        backend.delete_domain(domain)
    backend.add_triples("bystander", [RawTriple("keep", "me", "safe"), RawTriple("safe", "me", "keep")])
    yield backend
    backend.close()


def _untouched(store: Neo4jGraphStore) -> None:
    assert {(f.head, f.relation, f.tail) for f in store.iter_triples("bystander")} == {
        ("keep", "me", "safe"), ("safe", "me", "keep")}
    assert store.count("bystander") == {"entities": 2, "triples": 2}


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_entity_ids_and_names_round_trip(store, text):
    with store.writer("films") as writer:
        writer.add([RawTriple(text, "directed_by", "plain"), RawTriple("plain", text, text)])
        writer.set_names({"plain": text})
    _untouched(store)
    assert store.entity(text, "films").name == text
    assert store.entity("plain", "films").name == text
    assert {(f.head, f.relation, f.tail) for f in store.iter_triples("films")} == {
        (text, "directed_by", "plain"), ("plain", text, text)}
    assert store.relations("films") == sorted(["directed_by", text])
    facts = store.neighbors([text], domain="films", direction="both", relations=[text, "directed_by"])
    assert {(f.head, f.relation, f.tail, f.tail_name) for f in facts} == {
        (text, "directed_by", "plain", text), ("plain", text, text, text)}
    assert text in {e.id for e in store.find_entities(text.strip(), domain="films")}


@pytest.mark.parametrize("domain", HOSTILE[:6] + ["films 🎬", "Δομή"])
def test_hostile_domain_names_are_separate_domains(store, domain):
    store.add_triples(domain, [RawTriple("a", "r", "b")])
    assert sorted(store.domains()) == sorted(["bystander", domain])
    assert store.count(domain) == {"entities": 2, "triples": 1}
    assert [e.domain for e in store.find_entities("a")] == [domain]
    snap = store.snapshot(domain)
    assert (snap.domain, snap.ids, snap.relations) == (domain, ["a", "b"], ["r"])
    store.delete_domain(domain)
    _untouched(store)
    assert store.domains() == ["bystander"]


@pytest.mark.parametrize("question", HOSTILE)
def test_hostile_lookups_find_nothing_and_change_nothing(store, question):
    assert store.find_entities(question) == []
    assert store.entity(question, "bystander") is None
    assert store.neighbors([question], domain="bystander", relations=[question]) == []
    assert store.k_hop([question], 2, domain="bystander").nodes == []
    _untouched(store)


def test_schema_survives_hostile_loads(store):
    store.add_triples("films", [RawTriple(t, t, t) for t in HOSTILE])
    constraints = store._query("SHOW CONSTRAINTS YIELD labelsOrTypes, properties, type "
                               "RETURN labelsOrTypes AS labels, properties, type")
    assert {"labels": ["Entity"], "properties": ["key"], "type": "UNIQUENESS"} in constraints
    assert store.count("films")["triples"] == len(HOSTILE)
    _untouched(store)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_server_down_is_store_unavailable():
    uri = f"bolt://127.0.0.1:{_free_port()}"
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="cannot reach Neo4j at " + uri):
        Neo4jGraphStore(uri=uri, user="neo4j", password="whatever-pw")
    assert time.monotonic() - started < 10


class _Relay:
    """A TCP relay in front of the test server; ``close()`` is the server going away: the port closes
    and every open connection is cut."""

    def __init__(self, uri: str) -> None:
        host, _, port = uri.partition("://")[2].rpartition(":")
        self.target = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.uri = f"bolt://127.0.0.1:{self.listener.getsockname()[1]}"
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client = self.listener.accept()[0]
            except OSError:  # closed
                return
            server = socket.create_connection(self.target)
            self.sockets += [client, server]
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        for sock in [self.listener, *self.sockets]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
            sock.close()


def test_server_gone_from_an_open_store_fails_fast_and_quietly(neo4j_server, caplog):
    # The driver's managed transactions used to retry a server that had gone for ~16 s per call
    # (an ask: ~32 s), logging "Transaction failed and will be retried" each time
    relay = _Relay(neo4j_server.uri)
    store = Neo4jGraphStore(**{**neo4j_server.connection(), "uri": relay.uri})
    try:
        store.domains()
        relay.close()
        for call in (store.domains, lambda: store.count("bystander"),
                     lambda: store._write(lambda tx: tx.run("RETURN 1").consume())):
            started = time.monotonic()
            with caplog.at_level(logging.WARNING), \
                    pytest.raises(StoreUnavailable, match=f"cannot reach Neo4j at {relay.uri}: .*refused"):
                call()
            assert time.monotonic() - started < 10
        assert [r.getMessage() for r in caplog.records if r.name.startswith("neo4j")] == []
    finally:
        relay.close()
        store.close()


def test_wrong_password_is_store_unavailable(neo4j_server):
    if neo4j_server.password is None:
        pytest.fail("the session's Neo4j server must run with authentication")
    with pytest.raises(StoreUnavailable, match="refused the credentials for user 'neo4j'"):
        Neo4jGraphStore(uri=neo4j_server.uri, user=neo4j_server.user, password=neo4j_server.password + "x")


def test_not_a_neo4j_uri_is_a_config_error():
    from kgllm.exceptions import ConfigError

    with pytest.raises(ConfigError, match="invalid Neo4j URI 'http://example.invalid'"):
        Neo4jGraphStore(uri="http://example.invalid")


@pytest.mark.parametrize("case", ["down", "bad-password"])
def test_cli_reports_an_unavailable_server_in_one_line(tmp_path, capsys, neo4j_server, case):
    import kgllm
    from kgllm.cli import main

    kgllm.open(tmp_path / "kb").close()
    if case == "down":
        args = ["--neo4j-uri", f"bolt://127.0.0.1:{_free_port()}", "--neo4j-password", "whatever-pw"]
    else:
        args = ["--neo4j-uri", neo4j_server.uri, "--neo4j-user", neo4j_server.user or "neo4j",
                "--neo4j-password", (neo4j_server.password or "") + "-wrong"]
    assert main(["--kb", str(tmp_path / "kb"), "--store", "neo4j", *args, "stats"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("StoreUnavailable: ") and "\n" not in err and "Traceback" not in err
