"""The driver plumbing under ``Neo4jGraphStore``: connecting, transactions and their retries, errors.

:class:`Neo4jClient` is the store's base class: it opens the driver and checks the server, runs work in
read or write transactions retried on transient errors, runs read queries under the read isolation of
kgllm/stores/_neo4j_reads.py, and turns driver exceptions into kgllm's.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from kgllm.exceptions import ConfigError, KGLLMError, StoreError, StoreUnavailable
from kgllm.stores._neo4j_reads import PENDING, Reading

__all__ = ["Neo4jClient", "URI_SCHEMES"]

URI_SCHEMES = ("bolt", "bolt+s", "bolt+ssc", "neo4j", "neo4j+s", "neo4j+ssc")
T = TypeVar("T")
CONNECT_TIMEOUT = 5.0  # seconds to open a connection: how long a host that does not answer is waited for
RETRY_TIME = 15.0  # seconds a transaction is retried on transient errors of a server that answers


class Neo4jClient:
    """A connection to a Neo4j 5 server; ``_connect`` opens it once the attributes below are set."""

    uri: str
    user: str | None
    database: str | None
    batch_size: int  # rows per write transaction, also of each batch of a :meth:`_drain`

    def _connect(self, password: str | None) -> None:
        """Open the driver on ``uri`` and check the server, or raise ConfigError / StoreUnavailable."""
        import neo4j

        uri, user = self.uri, self.user
        scheme = uri.partition("://")[0] if isinstance(uri, str) and "://" in uri else None
        if scheme not in URI_SCHEMES:
            raise ConfigError(f"invalid Neo4j URI {uri!r}: expected one of the schemes {', '.join(URI_SCHEMES)} "
                              f"(e.g. bolt://127.0.0.1:7687)")
        auth = (user or "neo4j", password) if password is not None else None
        try:
            # Transactions are retried by _transaction (not by the driver, which would also retry a
            # server that is down); connection_timeout bounds the wait for a host that does not answer.
            self._driver = neo4j.GraphDatabase.driver(uri, auth=auth, connection_timeout=CONNECT_TIMEOUT,
                                                      notifications_min_severity="OFF")
        except (ValueError, neo4j.exceptions.ConfigurationError) as exc:
            raise ConfigError(f"invalid Neo4j URI {uri!r}: {exc}") from exc
        try:
            self.server_version = self._check_server()
        except BaseException:
            self._driver.close()
            raise

    def _check_server(self) -> str:
        # Auto-commit, not a managed transaction: a server that is down fails at once, without retries.
        with self._errors(), self._driver.session(database=self.database) as session:
            rows = session.run("CALL dbms.components() YIELD name, versions, edition "
                               "RETURN name, versions, edition").data()
        version = next((r["versions"][0] for r in rows if r["name"] == "Neo4j Kernel"), None)
        if version is None or not str(version).startswith("5."):
            raise StoreUnavailable(f"the server at {self.uri} is Neo4j {version or 'of unknown version'}; "
                                   f"kgllm needs Neo4j 5.x")
        return str(version)

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn driver exceptions into kgllm's: StoreUnavailable for connectivity, StoreError otherwise."""
        from neo4j import exceptions as ne

        try:
            yield
        except KGLLMError:  # ours already (StoreUnavailable is an OSError too): pass it on as it is
            raise
        except ne.AuthError as exc:
            raise StoreUnavailable(f"Neo4j at {self.uri} refused the credentials for user "
                                   f"{self.user or 'neo4j'!r}: {exc.message}") from exc
        except (ne.ServiceUnavailable, ne.SessionExpired, OSError) as exc:
            # The driver's message lists every address tried, one per line; the last says why.
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[-1].strip()
            raise StoreUnavailable(f"cannot reach Neo4j at {self.uri}: {reason}") from exc
        except ne.Neo4jError as exc:
            raise StoreError(f"Neo4j query failed: {exc.code}: {exc.message}") from exc
        except ne.DriverError as exc:
            raise StoreError(f"Neo4j driver error: {exc}") from exc

    def _transaction(self, work: Callable[[Any], T], access_mode: str) -> T:
        """Run ``work(tx)`` in a transaction, retried with backoff for up to ``RETRY_TIME`` seconds on
        transient errors while the server answers; a server that cannot be reached fails at once.

        The driver's managed transactions (``execute_read``/``execute_write``) retry a server that is
        down too, for ``max_transaction_retry_time`` (with 15 s: 16-32 s a call), logging a warning each time.
        """
        from neo4j import exceptions as ne

        deadline = time.monotonic() + RETRY_TIME
        delay = 0.1
        with self._errors():
            while True:
                try:
                    with self._driver.session(database=self.database, default_access_mode=access_mode) as session, \
                            session.begin_transaction() as tx:
                        result = work(tx)
                        tx.commit()
                        return result
                except (ne.Neo4jError, ne.DriverError) as exc:
                    if not exc.is_retryable() or time.monotonic() + delay > deadline or not self._reachable(exc):
                        raise
                time.sleep(delay)
                delay = min(2 * delay, 2.0)

    def _reachable(self, exc: Exception) -> bool:
        """Whether the server answers after ``exc``: a lost connection is retried only when a new one opens
        (the server restarted, or dropped idle connections); other retryable errors come from the server."""
        from neo4j import exceptions as ne

        if not isinstance(exc, (ne.ServiceUnavailable, ne.SessionExpired)):
            return True
        try:
            self._driver.verify_connectivity()
        except (ne.ServiceUnavailable, ne.SessionExpired, OSError):
            return False
        return True

    def _read(self, work: Callable[[Any], T]) -> T:
        import neo4j

        return self._transaction(work, neo4j.READ_ACCESS)

    def _write(self, work: Callable[[Any], T]) -> T:
        """Run ``work(tx)`` in a write transaction (retried on transient errors, see :meth:`_transaction`)."""
        import neo4j

        return self._transaction(work, neo4j.WRITE_ACCESS)

    def _query(self, query: str | Reading, **params: Any) -> list[dict[str, Any]]:
        def work(tx: Any) -> list[dict[str, Any]]:
            text = query
            if isinstance(query, Reading):  # skip what uncommitted loads wrote and deleted domains, if any
                state = tx.run(PENDING).single()
                params["pending"], params["gone"] = state["ids"], state["gone"]
                text = query.filtered if state["ids"] or state["gone"] else query.plain
            return tx.run(text, params).data()

        return self._read(work)

    def _drain(self, query: str, **params: Any) -> None:
        """Repeat a batched ``... LIMIT $batch ... RETURN count(*) AS n`` write until it touches nothing."""
        while self._write(lambda tx: tx.run(query, params, batch=self.batch_size).single()["n"]):
            pass
