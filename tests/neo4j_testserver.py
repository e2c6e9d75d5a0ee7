"""A real Neo4j 5 server for the test suite: the embedded launcher in ``tests/neo4j_server``.

``neo4j_server`` (session scope) is the server every ``neo4j``-marked test talks to: the one named by
``NEO4J_URI`` (with ``NEO4J_USER`` / ``NEO4J_PASSWORD`` / ``NEO4J_DATABASE``) when that is set, else a
fresh Neo4j 5.26 Community JVM on a free port in a temporary directory, with authentication on, stopped
when the session ends. A server that cannot start fails the tests; it never skips them.

The same helpers serve ``bench/neo4j_bench.py``: :func:`start_server` returns a running
:class:`Neo4jServer`, ``stop()`` ends it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

__all__ = ["SERVER_DIR", "Neo4jServer", "ServerStartError", "build_server", "start_server", "neo4j_server"]

SERVER_DIR = Path(__file__).resolve().parent / "neo4j_server"
READY = "NEO4J_READY "
JVM_OPENS = ["--add-opens", "java.base/java.nio=ALL-UNNAMED", "--add-opens", "java.base/java.io=ALL-UNNAMED",
             "--add-opens", "java.base/sun.nio.ch=ALL-UNNAMED", "--add-opens", "java.base/java.lang=ALL-UNNAMED"]


class ServerStartError(RuntimeError):
    """The launcher could not be built or the server did not come up."""


@dataclass
class Neo4jServer:
    """A Neo4j server to test against: where it listens and how to log in."""

    uri: str
    user: str | None = None
    password: str | None = None
    database: str | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    home: Path | None = None

    def connection(self) -> dict[str, str | None]:
        """Keyword arguments for ``Neo4jGraphStore``."""
        return {"uri": self.uri, "user": self.user, "password": self.password, "database": self.database}

    def environment(self) -> dict[str, str]:
        """``os.environ`` pointing a subprocess (a benchmark script, a nested pytest) at this server."""
        env = {**os.environ, "NEO4J_URI": self.uri, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        for name, value in (("NEO4J_USER", self.user), ("NEO4J_PASSWORD", self.password),
                            ("NEO4J_DATABASE", self.database)):
            env.pop(name, None)
            if value is not None:
                env[name] = value
        return env

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM (clean shutdown through the launcher's hook), then SIGKILL if it hangs."""
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        finally:
            if proc.stdin is not None:
                proc.stdin.close()


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise ServerStartError("no `java` found (Java 17+ is needed for the Neo4j test server)")
    return java


def build_server() -> None:
    """Fetch the jars and compile the launcher (``make -C tests/neo4j_server``) unless already done."""
    if (SERVER_DIR / "target" / "classes" / "Neo4jTestServer.class").exists() and \
            (SERVER_DIR / "target" / "lib" / ".copied").exists():
        return
    make = shutil.which("make")
    if make is None:
        raise ServerStartError("`make` is needed to build the Neo4j test server (tests/neo4j_server)")
    done = subprocess.run([make, "-C", str(SERVER_DIR)], capture_output=True, text=True)
    if done.returncode != 0:
        raise ServerStartError(f"building the Neo4j test server failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")


def start_server(home: Path, *, auth: bool = True, password: str | None = None, heap: str = "1g",
                 initial_heap: str = "128m", pagecache: str = "256m", timeout: float = 120.0) -> Neo4jServer:
    """Start the embedded Neo4j launcher with its store in ``home`` and wait until Bolt is up.

    Args:
        home: an empty or reusable directory for the database files and logs.
        auth: authentication on (user ``neo4j`` with ``password``) or off.
        password: the password when ``auth``; a random one when not given.
        heap: JVM ``-Xmx``.
        initial_heap: JVM ``-Xms``: small for the tests; a production server (and the benchmark) sets it
            to ``heap``, as Neo4j recommends, so the young generation is not collected over and over.
        pagecache: Neo4j page cache size.
        timeout: seconds to wait for the ready line.

    Raises:
        ServerStartError: the build failed, the JVM died, or it was not ready in time.
    """
    build_server()
    home.mkdir(parents=True, exist_ok=True)
    if auth and password is None:
        password = "kg-" + secrets.token_hex(8)
    cmd = [_java(), f"-Xms{initial_heap}", f"-Xmx{heap}", "-XX:+UseSerialGC", *JVM_OPENS,
           "-cp", f"{SERVER_DIR / 'target' / 'classes'}{os.pathsep}{SERVER_DIR / 'target' / 'lib' / '*'}",
           "Neo4jTestServer", "--home", str(home), "--port", "0", "--auth", "on" if auth else "off",
           "--pagecache", pagecache, "--watch-stdin"]
    if auth:
        cmd += ["--password", str(password)]
    out_path, err_path = home / "launcher.out", home / "launcher.err"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        # stdin stays open as a lifeline: if this process dies, the server sees EOF and shuts down.
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=out, stderr=err, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = out_path.read_text(errors="replace")
        for line in text.splitlines():
            if line.startswith(READY):
                return Neo4jServer(uri=line[len(READY):].strip(), user="neo4j" if auth else None,
                                   password=password if auth else None, process=proc, home=home)
        if proc.poll() is not None:
            raise ServerStartError(f"Neo4j test server exited with {proc.returncode}:\n"
                                   f"{err_path.read_text(errors='replace')[-3000:]}")
        time.sleep(0.2)
    server = Neo4jServer(uri="", process=proc)
    server.stop()
    raise ServerStartError(f"Neo4j test server not ready after {timeout:.0f} s; see {home}/logs")


def _serve(auth: bool, heap: str, pagecache: str) -> Iterator[Neo4jServer]:
    with tempfile.TemporaryDirectory(prefix="kgllm-neo4j-") as tmp:
        try:
            server = start_server(Path(tmp), auth=auth, heap=heap, pagecache=pagecache)
        except ServerStartError as exc:
            pytest.fail(f"cannot start the Neo4j test server: {exc}", pytrace=False)
        try:
            yield server
        finally:
            server.stop()


def _kgllm_data(server: Neo4jServer) -> list[str]:
    """The kgllm domains and loads in progress in the server's database, described."""
    from kgllm.exceptions import StoreUnavailable
    from kgllm.stores.neo4j import Neo4jGraphStore

    try:
        with Neo4jGraphStore(**server.connection()) as store:
            return [*map(repr, store.domains()),
                    *(f"a load into {row['domain']!r} in progress" for row in store.pending_loads())]
    except StoreUnavailable as exc:
        pytest.fail(f"cannot use NEO4J_URI {server.uri} for the Neo4j tests: {exc}", pytrace=False)


def _clear(server: Neo4jServer) -> None:
    from kgllm.stores.neo4j import Neo4jGraphStore

    with Neo4jGraphStore(**server.connection()) as store:
        store.rollback_pending_loads()
        for domain in store.domains():
            store.delete_domain(domain)


@pytest.fixture(scope="session")
def neo4j_server() -> Iterator[Neo4jServer]:
    """The Neo4j server for the session: ``NEO4J_URI`` if set, else a fresh one (auth on).

    The tests delete every kgllm domain (and load in progress) they find there before each test, so
    a ``NEO4J_URI`` database that already holds any is refused, untouched; at the end the domains the
    session created are deleted.
    """
    uri = os.environ.get("NEO4J_URI")
    if uri:
        server = Neo4jServer(uri=uri, user=os.environ.get("NEO4J_USER", "neo4j"),
                             password=os.environ.get("NEO4J_PASSWORD"), database=os.environ.get("NEO4J_DATABASE"))
        found = _kgllm_data(server)
        if found:
            pytest.fail(f"NEO4J_URI {uri} (database {server.database or 'default'}) holds kgllm data: "
                        f"{', '.join(found)}; the Neo4j tests delete every kgllm domain they find, so "
                        "they need a database without any (a scratch server, or no NEO4J_URI for a fresh one)",
                        pytrace=False)
        try:
            yield server
        finally:
            _clear(server)
        return
    yield from _serve(auth=True, heap="1g", pagecache="256m")


