"""Who the replicas are: each registers its API address in the store under a lease.

With several replicas on one etcd cluster, telemetry is not kept in etcd (it is not a time-series
store) but in each replica's own SQLite file, and every replica keeps a full copy
(`telemetry.replication`). For that a replica must know its peers and prove to them that it is
one of them:

- `Replica//<identity>` holds `{"identity", "url", "startedAt"}` under a lease of `ttl_s`, kept
  alive every `ttl_s / 3`; a replica that dies drops out of the list when its lease expires, and
  one whose lease was lost (a long pause) registers again.
- `ReplicaSecret//telemetry` holds a random secret, created once by whichever replica comes first
  (a compare-and-create: all replicas end up with the same one). Peers present it in the
  `Vnstitch-Replica-Secret` header; it lives where the hashed API tokens live, and is never
  returned by the API.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Callable

from vnstitch.errors import VnstitchError
from vnstitch.store import Compare, LeaseNotFound, Put, Store

log = logging.getLogger("vnstitch.membership")

REPLICA_KIND = "Replica"
SECRET_KEY = ("ReplicaSecret", "", "telemetry")


@dataclass(frozen=True)
class Peer:
    identity: str
    url: str


def replication_secret(store: Store) -> str:
    """The cluster's replication secret, created on first use (the first writer wins)."""
    record = store.get(*SECRET_KEY)
    if record is not None:
        return record.value["secret"]
    store.txn([Compare(*SECRET_KEY, 0)], [Put(*SECRET_KEY, {"secret": secrets.token_urlsafe(32)})])
    return store.get(*SECRET_KEY).value["secret"]


class ReplicaRegistry:
    """Register this replica (`url`: where its API is reachable by the others) and list the others.

    `on_leading()` runs in the registry's thread each time `leading()` turns true (a new leader
    catches up on telemetry it may have missed); `tick()` runs there every `tick_s` (retries)."""

    def __init__(self, store: Store, identity: str, url: str, ttl_s: float = 10.0,
                 leading: Callable[[], bool] | None = None, on_leading: Callable[[], None] | None = None,
                 tick: Callable[[], None] | None = None, tick_s: float = 1.0):
        if not url.startswith(("http://", "https://")):
            raise VnstitchError(f"replica address '{url}' must be an http:// or https:// URL")
        self.store, self.identity, self.url = store, identity, url.rstrip("/")
        self.ttl_s, self.tick_s = float(ttl_s), float(tick_s)
        self.leading, self.on_leading, self.tick = leading, on_leading, tick
        self.last_error: str | None = None
        self._lease: int | None = None
        self._peers: tuple[float, list[Peer]] = (0.0, [])
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._was_leading = False
        self.secret = replication_secret(store)

    def register(self) -> None:
        lease = self.store.lease_grant(self.ttl_s)
        self.store.put(REPLICA_KIND, "", self.identity,
                       {"identity": self.identity, "url": self.url, "startedAt": time.time()}, lease=lease)
        self._lease = lease

    PEERS_MAX_AGE_S = 0.25

    def peers(self, max_age_s: float | None = None) -> list[Peer]:
        """The other registered replicas (read at most every `max_age_s`, default PEERS_MAX_AGE_S: a
        replica that registered is sent every sample accepted from then on plus this)."""
        max_age_s = self.PEERS_MAX_AGE_S if max_age_s is None else max_age_s
        at, cached = self._peers
        if time.monotonic() - at < max_age_s:
            return cached
        try:
            found = [Peer(r.value["identity"], r.value["url"]) for r in self.store.list(REPLICA_KIND)
                     if r.name != self.identity and r.value.get("url")]
        except VnstitchError as exc:  # the store is down: the last list we had
            self.last_error = str(exc)
            return cached
        self._peers = (time.monotonic(), found)
        return found

    def start(self) -> None:
        self.register()
        self._thread = threading.Thread(target=self._loop, name="vnstitch-membership", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        lease, self._lease = self._lease, None
        if lease is not None:
            try:
                self.store.lease_revoke(lease)
            except Exception:  # noqa: BLE001 - it expires by itself
                pass

    def _loop(self) -> None:
        renew_every = max(0.1, self.ttl_s / 3)
        next_renew = time.monotonic() + renew_every
        while not self._stop.wait(min(self.tick_s, renew_every)):
            try:
                if time.monotonic() >= next_renew:
                    next_renew = time.monotonic() + renew_every
                    try:
                        self.store.lease_keepalive(self._lease)
                    except LeaseNotFound:
                        log.warning("membership: lease of %s lost; registering again", self.identity)
                        self.register()
                leading = bool(self.leading and self.leading())
                if leading and not self._was_leading and self.on_leading is not None:
                    self.on_leading()
                self._was_leading = leading
                if self.tick is not None:
                    self.tick()
                self.last_error = None
            except Exception as exc:  # noqa: BLE001 - logged; the thread must survive a store outage
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("membership: %s", self.last_error)
