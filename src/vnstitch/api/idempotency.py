"""Idempotency-Key on create: retried or concurrent requests with one key create one object.

The first request claims the key with a create-only write (compare: absent) in the store;
duplicates wait for it and replay its stored answer. Only successful answers are kept: a
failed create frees the key so that a retry runs again. A claim whose holder died is taken
over after `pending_timeout_s`.
"""

from __future__ import annotations

import hashlib
import time
from typing import Callable

from vnstitch.api.errors import IdempotencyKeyReused
from vnstitch.errors import Conflict, InvalidInput
from vnstitch.store import Store

KEY_KIND = "IdempotencyKey"
MAX_KEY_LENGTH = 255


class IdempotencyKeys:
    def __init__(self, store: Store, ttl_s: float, wait_s: float, pending_timeout_s: float = 30.0,
                 clock: Callable[[], float] = time.time):
        self.store = store
        self.ttl_s = ttl_s
        self.wait_s = wait_s
        self.pending_timeout_s = pending_timeout_s
        self.clock = clock

    @staticmethod
    def record_name(token_id: str, key: str) -> str:
        return hashlib.sha256(f"{token_id}\0{key}".encode()).hexdigest()

    def run(self, tenant: str, token_id: str, key: str, fingerprint: str,
            create: Callable[[], tuple[int, dict, dict]],
            recover: Callable[[], tuple[int, dict, dict] | None] | None = None) -> tuple[int, dict, dict, bool]:
        """(status, body, headers, replayed): the first request's answer for this key.

        `recover` finds the outcome of an attempt whose key record stayed "pending" (the server
        died after committing the object but before recording the answer)."""
        if not key or len(key) > MAX_KEY_LENGTH:
            raise InvalidInput(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters", field="Idempotency-Key")
        name = self.record_name(token_id, key)
        deadline = time.monotonic() + self.wait_s
        while True:
            now = self.clock()
            record = self.store.get(KEY_KIND, tenant, name)
            claim = {"state": "pending", "fingerprint": fingerprint, "created": now}
            if record is None or self._stale(record.value, now):
                expected = 0 if record is None else record.revision
                try:
                    revision = self.store.put(KEY_KIND, tenant, name, claim, expect_revision=expected)
                except Conflict:
                    continue  # someone else claimed it first: look again
                return (*self._run_claimed(tenant, name, revision, fingerprint, create), False)
            value = record.value
            if value["fingerprint"] != fingerprint:
                raise IdempotencyKeyReused("this Idempotency-Key was used for a different request",
                                           field="Idempotency-Key")
            if value["state"] == "done":
                return value["status"], value["body"], value.get("headers", {}), True
            found = recover() if recover is not None else None
            if found is not None:
                return (*found, True)
            if time.monotonic() > deadline:
                raise Conflict("a request with this Idempotency-Key is still in progress; retry later",
                               field="Idempotency-Key")
            self.store.wait(self.store.revision(), 0.05)

    def _stale(self, value: dict, now: float) -> bool:
        age = now - float(value.get("created", 0))
        return age > (self.pending_timeout_s if value.get("state") == "pending" else self.ttl_s)

    def _run_claimed(self, tenant, name, revision, fingerprint, create) -> tuple[int, dict, dict]:
        try:
            status, body, headers = create()
        except BaseException:
            try:  # free the key so a retry runs again, unless another request took it over meanwhile
                self.store.delete(KEY_KIND, tenant, name, expect_revision=revision)
            except Conflict:
                pass
            raise
        done = {"state": "done", "fingerprint": fingerprint, "created": self.clock(),
                "status": status, "body": body, "headers": headers}
        try:
            self.store.put(KEY_KIND, tenant, name, done, expect_revision=revision)
        except Conflict:
            pass  # our claim went stale and another request took the key over: its answer stands
        return status, body, headers

    def purge(self) -> int:
        """Forget keys older than the TTL; returns how many."""
        now = self.clock()
        removed = 0
        for record in self.store.list(KEY_KIND):
            if record.value.get("state") == "done" and now - float(record.value.get("created", 0)) > self.ttl_s:
                try:
                    self.store.delete(KEY_KIND, record.namespace, record.name, expect_revision=record.revision)
                    removed += 1
                except Conflict:
                    pass
        return removed
