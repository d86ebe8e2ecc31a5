"""Leader election on a store lease, with fencing.

The leader key `Leader//reconciler` is created once, attached to a lease, and then only kept
alive (never re-put), so its mod revision stays equal to the revision that created it. The
leader's writes carry `Compare("Leader", "", "reconciler", that revision)`: once the lease
expires (the process was paused, partitioned or killed) the key is gone or belongs to another
replica, and every write of the old leader fails in the store, whatever the old leader believes.
Locally a leader also stops acting once a TTL has passed since its last confirmed keepalive.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from typing import Callable

from vnstitch.errors import VnstitchError
from vnstitch.store import Compare, LeaseNotFound, Put, Store

log = logging.getLogger("vnstitch.election")

LEADER_KEY = ("Leader", "", "reconciler")
NEVER = -1  # a fence that never holds (no object has mod revision -1)


def default_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class LeaderElection:
    """Campaign for the leader key; keep the lease alive; step down or resign.

    `on_change(leading)` runs in the election thread after each transition.
    """

    def __init__(self, store: Store, identity: str | None = None, ttl_s: float = 10.0,
                 on_change: Callable[[bool], None] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        if ttl_s <= 0:
            raise ValueError("leader TTL must be positive")
        self.store = store
        self.identity = identity or default_identity()
        self.ttl_s = float(ttl_s)
        self.on_change = on_change
        self.clock = clock
        self.transitions = 0
        self.leader_identity: str | None = None   # who leads, as last seen
        self.fence_revision: int | None = None    # create revision of our key while we lead
        self.last_error: str | None = None
        self.elected_at: float | None = None      # wall time of our latest election
        self._lease: int | None = None
        self._valid_until = 0.0                   # local deadline: last confirmed keepalive + TTL − margin
        self._leading = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None

    # state -------------------------------------------------------------------------------
    @property
    def renew_interval_s(self) -> float:
        return max(0.1, self.ttl_s / 3)

    @property
    def margin_s(self) -> float:
        return min(1.0, self.ttl_s * 0.2)

    def is_leader(self) -> bool:
        """Leading, and a keepalive was confirmed within the TTL (less a margin)."""
        return self._leading.is_set() and self.clock() < self._valid_until

    def fence(self) -> list[Compare]:
        """The compare every reconciler write carries; one that never holds when not leading."""
        with self._lock:
            revision = self.fence_revision if self._leading.is_set() and self.fence_revision else NEVER
        return [Compare(*LEADER_KEY, revision)]

    def wait_leading(self, timeout_s: float) -> bool:
        return self._leading.wait(timeout_s) and self.is_leader()

    # lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="vnstitch-election", daemon=True)
        self._thread.start()

    def resign(self, timeout_s: float = 5.0) -> None:
        """Stop campaigning and hand leadership over now (revoking the lease deletes the key)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)
        self._step_down("resigned", revoke=True)

    # the loop ----------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if self._leading.is_set():
                    self._renew()
                    self._stop.wait(self.renew_interval_s)
                else:
                    self._campaign()
                self.last_error = None
            except VnstitchError as exc:
                self.last_error = f"{exc.code}: {exc.message}"
                log.warning("election: %s", self.last_error)
                if self._leading.is_set() and self.clock() >= self._valid_until:
                    self._step_down("no keepalive confirmed within the TTL")
                self._stop.wait(min(0.5, self.renew_interval_s))
            except Exception:  # noqa: BLE001 - logged; the election thread must survive
                log.exception("election loop failed")
                self._stop.wait(0.5)

    def _campaign(self) -> None:
        revision = self.store.revision()
        current = self.store.get(*LEADER_KEY)
        if current is not None:
            self.leader_identity = current.value.get("identity")
            # wake on the next change (the key's deletion among them), or re-check soon
            self.store.wait(revision, min(1.0, self.renew_interval_s))
            return
        started = self.clock()
        lease = self.store.lease_grant(self.ttl_s)
        value = {"identity": self.identity, "ttlSeconds": self.ttl_s, "electedAt": time.time()}
        try:
            result = self.store.txn([Compare(*LEADER_KEY, 0)], [Put(*LEADER_KEY, value, lease=lease)])
        except Exception:
            self._revoke_quietly(lease)
            raise
        if not result.succeeded:
            self._revoke_quietly(lease)
            return
        with self._lock:
            self._lease = lease
            self.fence_revision = result.revision
            self._valid_until = started + self.ttl_s - self.margin_s
            self.leader_identity = self.identity
            self.elected_at = value["electedAt"]
            self._leading.set()
            self.transitions += 1
        log.warning("election: %s leads (fence revision %d, TTL %g s)", self.identity, result.revision, self.ttl_s)
        self._notify(True)

    def _renew(self) -> None:
        started = self.clock()
        lease = self._lease
        if lease is None:
            return
        try:
            self.store.lease_keepalive(lease)
        except LeaseNotFound:
            self._step_down("lease expired")
            return
        current = self.store.get(*LEADER_KEY)
        if current is None or current.create_revision != self.fence_revision:
            self._step_down("leader key gone or replaced")
            return
        with self._lock:
            self._valid_until = started + self.ttl_s - self.margin_s

    def _step_down(self, reason: str, revoke: bool = False) -> None:
        with self._lock:
            was_leading = self._leading.is_set()
            self._leading.clear()
            lease, self._lease = self._lease, None
            self.fence_revision = None
            self._valid_until = 0.0
            if was_leading:
                self.transitions += 1
                self.leader_identity = None
        if lease is not None and (revoke or was_leading):
            self._revoke_quietly(lease)
        if was_leading:
            log.warning("election: %s steps down (%s)", self.identity, reason)
            self._notify(False)

    def _revoke_quietly(self, lease: int) -> None:
        try:
            self.store.lease_revoke(lease)
        except Exception as exc:  # noqa: BLE001 - the lease expires by itself anyway
            log.info("election: revoking lease %d failed: %s", lease, exc)

    def _notify(self, leading: bool) -> None:
        if self.on_change is not None:
            try:
                self.on_change(leading)
            except Exception:  # noqa: BLE001
                log.exception("election on_change callback failed")

    def current_leader(self) -> str | None:
        """Who leads now according to the store (a read)."""
        record = self.store.get(*LEADER_KEY)
        return record.value.get("identity") if record else None
