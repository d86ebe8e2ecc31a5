"""Telemetry with several replicas: every replica keeps a full copy in its own SQLite file.

etcd is not a time-series store, so samples never go into it. Instead:

- **Write to all.** A replica that accepts samples (a push to its API, or what its pull sources
  collected) stores them locally, then sends them to every other registered replica
  (`POST /v1/internal/telemetry`, in parallel, bounded by `timeout_s`) before it answers. The
  push's answer says how many peers confirmed (`replicatedTo`). So a sample accepted by any
  replica is in the leader's store, whichever replica leads, and survives the accepting replica.
- **Retry.** A peer that did not confirm gets the samples again later (`retry()`, every second
  from the membership thread), from a per-peer queue bounded at `max_pending` samples; a peer that
  left the replica list loses its queue: it catches up when it comes back.
- **Catch up.** A replica that starts pages through each peer's copy of the last `catch_up_s`
  (default the 7-day raw window, `GET /v1/internal/telemetry`) and inserts what it lacks; a replica
  that becomes leader does the same for the last hour (what a retry queue lost with a dead peer).
  Inserts are idempotent per (series, time): copies converge whatever the order.

Peers authenticate with the cluster's replication secret (`controller.membership`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Sequence

import httpx

from vnstitch.telemetry.base import RAW_S, Sample, time_key
from vnstitch.telemetry.store import Compaction, Pair, TelemetryStore

log = logging.getLogger("vnstitch.telemetry.replication")

SECRET_HEADER = "Vnstitch-Replica-Secret"
PATH = "/v1/internal/telemetry"
PAGE = 10_000           # samples per request, both ways


def to_wire(samples: Iterable[Sample]) -> list[list]:
    return [[s.tenant, s.src, s.dst, s.time, s.rate_bps, s.latency_s, s.loss] for s in samples]


def from_wire(rows: Sequence[Sequence]) -> list[Sample]:
    """Rows of a peer (already validated where they were accepted); a malformed row raises ValueError."""
    out = []
    for row in rows:
        tenant, src, dst, t, rate, latency, loss = row
        if not all(isinstance(v, str) for v in (tenant, src, dst)):
            raise ValueError(f"bad replicated sample {row!r}")
        out.append(Sample(tenant, src, dst, float(t), float(rate),
                          None if latency is None else float(latency), None if loss is None else float(loss)))
    return out


class ReplicatedTelemetryStore(TelemetryStore):
    """A local store that also writes to its peers (see the module docstring); reads are local."""

    def __init__(self, local: TelemetryStore, peers: Callable[[], list], secret: str, timeout_s: float = 2.0,
                 max_pending: int = 200_000, catch_up_s: float = RAW_S, clock: Callable[[], float] = time.time):
        self.local, self.peers, self.secret = local, peers, secret
        self.timeout_s, self.max_pending, self.catch_up_s, self.clock = timeout_s, max_pending, catch_up_s, clock
        self.dropped = 0          # samples a full retry queue had to drop (the peer catches up later)
        self.caught_up = 0        # rows a catch-up added
        self.last_error: str | None = None
        self._pending: dict[str, tuple[str, deque]] = {}   # peer identity → (url, samples)
        self._lock = threading.Lock()
        self._http = httpx.Client(timeout=timeout_s, headers={SECRET_HEADER: secret})
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="vnstitch-replicate")

    # writes ----------------------------------------------------------------------------------
    def insert(self, samples: Iterable[Sample]) -> int:
        return self.insert_counted(samples)[0]

    def insert_counted(self, samples: Iterable[Sample]) -> tuple[int, int]:
        """Store and replicate: (rows new or changed here, peers that confirmed)."""
        samples = list(samples)
        changed = self.local.insert(samples)
        return changed, self.replicate(samples)

    def insert_local(self, samples: Iterable[Sample]) -> int:
        """What a peer replicated to us: stored here, not sent on."""
        return self.local.insert(samples)

    def replicate(self, samples: list[Sample]) -> int:
        """Send to every peer at once; the number that confirmed. The others get a retry queue."""
        peers = self.peers()
        if not samples or not peers:
            return 0
        rows = to_wire(samples)
        results = list(self._pool.map(lambda peer: self._send(peer.url, rows), peers))
        for peer, ok in zip(peers, results):
            if not ok:
                self._queue(peer, samples)
        return sum(results)

    def _send(self, url: str, rows: list[list]) -> bool:
        try:
            for start in range(0, len(rows), PAGE):
                response = self._http.post(url + PATH, json={"samples": rows[start:start + PAGE]})
                if response.status_code != 200:
                    self.last_error = f"{url}: HTTP {response.status_code} {response.text[:200]}"
                    log.warning("replicating telemetry to %s", self.last_error)
                    return False
            return True
        except httpx.HTTPError as exc:
            self.last_error = f"{url}: {type(exc).__name__}: {exc}"
            log.info("replicating telemetry to %s", self.last_error)
            return False

    def _queue(self, peer, samples: list[Sample]) -> None:
        with self._lock:
            url, queue = self._pending.setdefault(peer.identity, (peer.url, deque()))
            queue.extend(samples)
            over = len(queue) - self.max_pending
            for _ in range(max(0, over)):
                queue.popleft()
            if over > 0:
                self.dropped += over
                log.warning("telemetry retry queue for %s full: dropped the %d oldest samples (it catches up "
                            "when it restarts)", peer.identity, over)

    def pending(self) -> dict[str, int]:
        with self._lock:
            return {identity: len(queue) for identity, (_, queue) in self._pending.items()}

    def retry(self) -> None:
        """Resend what peers did not confirm; forget peers that left the replica list."""
        live = {peer.identity: peer for peer in self.peers()}
        with self._lock:
            for identity in [i for i in self._pending if i not in live]:
                del self._pending[identity]
            work = [(identity, live[identity].url, list(queue)) for identity, (_, queue) in self._pending.items()
                    if queue]
        for identity, url, samples in work:
            if self._send(url, to_wire(samples)):
                with self._lock:
                    _, queue = self._pending.get(identity, (url, deque()))
                    for _ in range(min(len(samples), len(queue))):
                        queue.popleft()

    # catch-up --------------------------------------------------------------------------------
    def catch_up(self, window_s: float | None = None) -> int:
        """Copy what each peer has of the last `window_s` (default `catch_up_s`) that we lack."""
        since = self.clock() - (self.catch_up_s if window_s is None else window_s)
        added = 0
        for peer in self.peers():
            after: list | None = None
            try:
                while True:
                    params = {"since": since, "limit": PAGE}
                    if after is not None:
                        params["after"] = "\x1f".join(str(v) for v in after)
                    response = self._http.get(peer.url + PATH, params=params)
                    if response.status_code != 200:
                        raise httpx.HTTPError(f"HTTP {response.status_code} {response.text[:200]}")
                    body = response.json()
                    samples = from_wire(body["samples"])
                    added += self.local.insert(samples)
                    if len(samples) < PAGE:
                        break
                    last = samples[-1]
                    after = [last.tenant, last.src, last.dst, time_key(last.time)]
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                self.last_error = f"catch-up from {peer.url}: {exc}"
                log.warning("telemetry %s", self.last_error)
        if added:
            log.warning("telemetry: caught up %d samples from peers", added)
        self.caught_up += added
        return added

    # reads and the rest are the local copy's --------------------------------------------------
    def series(self, tenant, src, dst, since, until=None, limit=10_000):
        return self.local.series(tenant, src, dst, since, until, limit)

    def latest(self, tenant):
        return self.local.latest(tenant)

    def export(self, since, after=None, limit=10_000):
        return self.local.export(since, after, limit)

    def compact(self, now, retention_s=None, raw_s=None) -> Compaction:
        kwargs = {k: v for k, v in (("retention_s", retention_s), ("raw_s", raw_s)) if v is not None}
        return self.local.compact(now, **kwargs)

    def _rows(self, tenant: str, pairs: Sequence[Pair], start_ms: int, end_ms: int):
        return self.local._rows(tenant, pairs, start_ms, end_ms)

    def rates(self, tenant, pairs, end, steps, interval_s):
        return self.local.rates(tenant, pairs, end, steps, interval_s)

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        self._http.close()
        self.local.close()
