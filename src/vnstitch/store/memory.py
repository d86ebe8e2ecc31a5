"""In-process store: dicts under a lock. For tests, the simulator and single-shot runs."""

from __future__ import annotations

import threading
import time
from typing import Iterable, Sequence

from vnstitch.store.base import (
    Compacted, Compare, Delete, Event, LeaseNotFound, Op, Put, Record, Store, TxnResult,
)

HISTORY_LIMIT = 100_000


class MemoryStore(Store):
    def __init__(self, history_limit: int = HISTORY_LIMIT, clock=time.monotonic):
        self._objects: dict[tuple[str, str, str], Record] = {}
        self._events: list[Event] = []
        self._revision = 0
        self._compacted_before = 0
        self._history_limit = history_limit
        self._leases: dict[int, tuple[float, float]] = {}  # id -> (ttl, expires_at)
        self._next_lease = 1
        self._clock = clock
        self._cond = threading.Condition(threading.RLock())

    def get(self, kind: str, namespace: str, name: str) -> Record | None:
        with self._cond:
            self._expire_leases()
            return self._objects.get((kind, namespace, name))

    def list(self, kind: str, namespace: str | None = None) -> list[Record]:
        with self._cond:
            self._expire_leases()
            found = [r for k, r in self._objects.items()
                     if k[0] == kind and (namespace is None or k[1] == namespace)]
        return sorted(found, key=lambda r: (r.namespace, r.name))

    def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> TxnResult:
        with self._cond:
            self._expire_leases()
            failed = [c for c in compares if self._mod_revision(c) != c.revision]
            if failed:
                return TxnResult(False, self._revision, failed)
            for op in ops:
                if isinstance(op, Put) and op.lease is not None and op.lease not in self._leases:
                    raise LeaseNotFound(f"lease {op.lease} does not exist or has expired")
            if not ops:
                return TxnResult(True, self._revision)
            self._revision += 1
            for op in ops:
                self._apply(op, self._revision)
            self._cond.notify_all()
            return TxnResult(True, self._revision)

    def revision(self) -> int:
        with self._cond:
            return self._revision

    def events_since(self, revision: int, kinds: Iterable[str] | None = None,
                     limit: int = 10_000) -> list[Event]:
        wanted = set(kinds) if kinds is not None else None
        with self._cond:
            if revision < self._compacted_before:
                raise Compacted(f"revision {revision} is compacted (oldest kept: {self._compacted_before})")
            # events are in revision order: binary search would do, a scan from the end is enough
            start = len(self._events)
            while start > 0 and self._events[start - 1].revision > revision:
                start -= 1
            out = [e for e in self._events[start:] if wanted is None or e.record.kind in wanted]
        return out[:limit]

    def wait(self, revision: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._revision <= revision:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def lease_grant(self, ttl_s: float) -> int:
        with self._cond:
            lease = self._next_lease
            self._next_lease += 1
            self._leases[lease] = (ttl_s, self._clock() + ttl_s)
            return lease

    def lease_keepalive(self, lease: int) -> None:
        with self._cond:
            self._expire_leases()
            if lease not in self._leases:
                raise LeaseNotFound(f"lease {lease} does not exist or has expired")
            ttl, _ = self._leases[lease]
            self._leases[lease] = (ttl, self._clock() + ttl)

    def lease_revoke(self, lease: int) -> None:
        with self._cond:
            self._leases.pop(lease, None)
            self._drop_lease_objects({lease})

    def _mod_revision(self, compare: Compare) -> int:
        record = self._objects.get((compare.kind, compare.namespace, compare.name))
        return record.revision if record else 0

    def _apply(self, op: Op, revision: int) -> None:
        key = (op.kind, op.namespace, op.name)
        if isinstance(op, Put):
            old = self._objects.get(key)
            record = Record(op.kind, op.namespace, op.name, op.value, revision,
                            old.create_revision if old else revision, op.lease)
            self._objects[key] = record
            self._record(Event("PUT", record, revision))
        elif isinstance(op, Delete):
            old = self._objects.pop(key, None)
            if old is not None:
                gone = Record(old.kind, old.namespace, old.name, old.value, revision, old.create_revision)
                self._record(Event("DELETE", gone, revision))

    def _record(self, event: Event) -> None:
        self._events.append(event)
        if len(self._events) > self._history_limit:
            drop = len(self._events) - self._history_limit
            self._compacted_before = self._events[drop - 1].revision
            del self._events[:drop]

    def _expire_leases(self) -> None:
        now = self._clock()
        expired = {lease for lease, (_, expires) in self._leases.items() if expires <= now}
        if expired:
            for lease in expired:
                del self._leases[lease]
            self._drop_lease_objects(expired)

    def _drop_lease_objects(self, leases: set[int]) -> None:
        doomed = [Delete(*key) for key, r in self._objects.items() if r.lease in leases]
        if doomed:
            self._revision += 1
            for op in doomed:
                self._apply(op, self._revision)
            self._cond.notify_all()
