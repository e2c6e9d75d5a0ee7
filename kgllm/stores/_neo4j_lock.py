"""Per-domain locks held in Neo4j itself, so that loads and deletes of one domain never overlap.

Two clients loading into one domain used to lose triples: a load ``MERGE``\\ s nodes another pending
load created, and that load's rollback deletes them with the first load's relationships. Every load
(from its first batch until its commit or rollback) and every ``delete_domain`` therefore holds the
domain's lock, one node per domain name::

    (:KgllmLock {domain, owner, what, client, since, expires})   unique domain; free while owner is null

The lock is a lease on the server's clock (``timestamp()``, so clients' clocks do not matter): its holder
renews it from a background thread every third of the lease. A second load or delete of the same domain
waits for it (polling, up to ``wait`` seconds) and then fails with a :class:`~kgllm.exceptions.StoreError`
naming the domain and the holder. A lock whose holder died stops being renewed and is free once it
expires; its holder's pending load is then rolled back by the next load into that domain.
``Neo4jGraphStore.unlock_domain`` frees a lock at once (for a holder known to be dead).

Taking and checking the lock first write-locks its node (``SET l.touched``) and only then reads the owner
in a second statement of the same transaction, so two clients never both see the lock free. Lock nodes
are never deleted (a free lock has no owner): deleting them would race with clients waiting on them.
A holder that lost its lock (it stopped renewing for a whole lease, or the lock was freed by hand) fails
at its next batch and at its commit, whose transaction checks the owner before the commit point.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kgllm.exceptions import StoreError

if TYPE_CHECKING:
    from kgllm.stores.neo4j import Neo4jGraphStore

__all__ = ["DomainLock", "LOCK_SCHEMA", "lock_owner", "free_lock"]

LOCK_SCHEMA = "CREATE CONSTRAINT kgllm_lock_domain IF NOT EXISTS FOR (l:KgllmLock) REQUIRE l.domain IS UNIQUE"
# Queries are constant strings: every value travels as a parameter.
_GRAB = "MERGE (l:KgllmLock {domain: $domain}) SET l.touched = timestamp()"
_TOUCH = "MATCH (l:KgllmLock {domain: $domain}) SET l.touched = timestamp()"
_READ = """
MATCH (l:KgllmLock {domain: $domain})
RETURN l.owner AS owner, l.what AS what, l.client AS client, toString(l.since) AS since,
       l.expires - timestamp() AS left
"""
_TAKE = """
MATCH (l:KgllmLock {domain: $domain})
SET l.owner = $owner, l.what = $what, l.client = $client, l.since = datetime(), l.expires = timestamp() + $lease
"""
_RENEW = """
MATCH (l:KgllmLock {domain: $domain}) WHERE l.owner = $owner
SET l.expires = timestamp() + $lease
RETURN count(l) AS n
"""
_FREE = "MATCH (l:KgllmLock {domain: $domain}) SET l.owner = null, l.what = null, l.client = null, l.expires = null"
# Read-only check at the start of each batch transaction of a load.
FENCE = "OPTIONAL MATCH (l:KgllmLock {domain: $domain}) RETURN l.owner = $owner AS ours"
POLL = (0.05, 1.0)  # first and longest pause between two attempts to take a busy lock, seconds


def _client() -> str:
    return f"pid {os.getpid()} on {socket.gethostname()}"


def lock_owner(tx: Any, domain: str) -> dict[str, Any] | None:
    """The lock's state, read after write-locking its node in ``tx`` (None when it has never existed)."""
    tx.run(_TOUCH, domain=domain).consume()
    return tx.run(_READ, domain=domain).single()  # type: ignore[no-any-return]


def free_lock(tx: Any, domain: str, owner: str | None) -> bool:
    """Free the lock in ``tx`` if ``owner`` holds it (any holder when ``owner`` is None); whether it did."""
    state = lock_owner(tx, domain)
    if state is None or state["owner"] is None or (owner is not None and state["owner"] != owner):
        return False
    tx.run(_FREE, domain=domain).consume()
    return True


def describe(domain: str, state: dict[str, Any]) -> str:
    left = state["left"]
    expiry = f"its lease expires in {left / 1000:.0f} s unless renewed" if left is not None else "no lease"
    return (f"domain {domain!r} is locked by {state['what'] or 'a load'} {state['owner']} of {state['client']} "
            f"(since {state['since']}; {expiry})")


class DomainLock:
    """One client's lease on one domain (see the module docstring); ``owner`` is a load id or a delete id."""

    def __init__(self, store: Neo4jGraphStore, domain: str, owner: str, what: str) -> None:
        self.store, self.domain, self.owner, self.what = store, domain, owner, what
        self.lease_ms = max(1, int(store.lock_lease * 1000))
        self.held = False
        self.lost: str | None = None  # why the lock is no longer ours, once known
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"DomainLock(domain={self.domain!r}, owner={self.owner!r}, held={self.held})"

    def acquire(self, then: Callable[[Any], Any] | None = None) -> Any:
        """Take the lock, waiting up to ``store.lock_wait`` seconds; returns what ``then(tx)`` returns, run in
        the transaction that takes it (a failure of ``then`` leaves the lock untaken).

        Raises:
            StoreError: another client held it all that time (the message names the domain and holder).
        """
        deadline = time.monotonic() + self.store.lock_wait
        pause = POLL[0]
        while True:
            taken, state, result = self.store._write(lambda tx: self._try(tx, then))
            if taken:
                break
            if time.monotonic() + pause > deadline:
                raise StoreError(f"{describe(self.domain, state)}; waited {self.store.lock_wait:g} s for it. "
                                 f"Retry when that client is done; if it died, its lock is free once the lease "
                                 f"expires, or at once with store.unlock_domain({self.domain!r})")
            time.sleep(pause)
            pause = min(2 * pause, POLL[1])
        self.held = True
        self._thread = threading.Thread(target=self._renew, name=f"kgllm-neo4j-lock-{self.domain[:20]}",
                                        daemon=True)
        self._thread.start()
        return result

    def _try(self, tx: Any, then: Callable[[Any], Any] | None) -> tuple[bool, dict[str, Any], Any]:
        tx.run(_GRAB, domain=self.domain).consume()
        state = tx.run(_READ, domain=self.domain).single()
        if state["owner"] is not None and state["owner"] != self.owner and state["left"] is not None \
                and state["left"] > 0:
            return False, state.data(), None
        tx.run(_TAKE, domain=self.domain, owner=self.owner, what=self.what, client=_client(),
               lease=self.lease_ms).consume()
        return True, state.data(), then(tx) if then is not None else None

    def _renew(self) -> None:
        period = self.lease_ms / 3000
        while not self._stop.wait(period):
            try:
                renewed = self.store._write(
                    lambda tx: tx.run(_RENEW, domain=self.domain, owner=self.owner, lease=self.lease_ms).single()["n"])
            except Exception:  # noqa: BLE001 - the server is away: try again next period
                continue
            if not renewed:
                self.lost = "another client took it over or freed it"
                return

    def check(self) -> None:
        """Raise if the lock is known to be lost (cheap: no query)."""
        if self.lost is not None:
            raise StoreError(f"{self.what} {self.owner} lost its lock on domain {self.domain!r}: {self.lost}")

    def fence(self, tx: Any) -> None:
        """In a write transaction of the holder: fail it unless the lock is still ours."""
        self.check()
        if not tx.run(FENCE, domain=self.domain, owner=self.owner).single()["ours"]:
            self.lost = "another client took it over or freed it"
            self.check()

    def confirm(self, tx: Any) -> None:
        """In the holder's commit transaction: write-lock the lock node and fail unless it is ours, so that
        no takeover can commit between this check and the commit point."""
        self.check()
        state = lock_owner(tx, self.domain)
        if state is None or state["owner"] != self.owner:
            self.lost = "another client took it over or freed it"
            self.check()

    def free(self, tx: Any) -> None:
        """Free the lock in the holder's commit transaction, after :meth:`confirm`."""
        tx.run(_FREE, domain=self.domain).consume()

    def stop(self) -> None:
        """Stop renewing (the lock itself is freed by :meth:`release` or in the commit transaction)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self._thread = None

    def release(self) -> None:
        """Stop renewing and free the lock if it is still ours. Idempotent."""
        self.stop()
        if self.held:
            self.held = False
            self.store._write(lambda tx: free_lock(tx, self.domain, self.owner))
