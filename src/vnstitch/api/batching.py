"""Group commit for creates: concurrent POSTs share one controller transaction (one fsync).

Request threads queue their resource and wait; one committer thread takes whatever is queued
(up to `max_batch`), applies the API's own checks (create-only, per-tenant quota) item by
item, admits the survivors with `Controller.apply_each` (each on its own merits, refusals
leave no trace) and hands every request its own answer. Answers are exactly those of
running the creates one after another in queue order: an item whose check depends on
another item of the same batch (same name, or a quota the others fill) is not decided
against possibly-refused company; it goes first into the next batch instead.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from vnstitch.api.routes._common import dump
from vnstitch.controller.service import Change, terminated
from vnstitch.domain.resources import Resource
from vnstitch.errors import Conflict, VnstitchError

log = logging.getLogger("vnstitch.api.batching")


class BatchFailed(VnstitchError):
    """The shared transaction failed for a reason that is no request's own (see the server log)."""


@dataclass(eq=False)
class _Pending:
    resource: Resource
    done: threading.Event = field(default_factory=threading.Event)
    change: Change | None = None
    error: BaseException | None = None
    on_done: Callable[[], None] | None = None

    def answer(self, change: Change | None = None, error: BaseException | None = None) -> None:
        self.change, self.error = change, error
        self.done.set()
        if self.on_done is not None:
            self.on_done()


class CreateBatcher:
    def __init__(self, context, max_batch: int = 64):
        self.context = context
        self.max_batch = max_batch
        self.batches = 0      # committed transactions (for tests and the bench)
        self.items = 0        # requests decided through them
        self.deciding = 0     # size of the batch being decided now
        self._queue: deque[_Pending] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def create(self, resource: Resource) -> Change:
        """Create one resource (must not exist); blocks until its batch is decided."""
        item = self._submit(_Pending(resource))
        item.done.wait()
        if item.error is not None:
            raise item.error
        return item.change

    async def acreate(self, resource: Resource) -> Change:
        """`create` for the event loop: waits without holding a thread."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()

        def wake() -> None:
            if not future.done():
                future.set_result(None)

        item = self._submit(_Pending(resource, on_done=lambda: loop.call_soon_threadsafe(wake)))
        await future  # a client that goes away does not undo the create: it is decided like the rest
        if item.error is not None:
            raise item.error
        return item.change

    def waiting(self) -> int:
        """Creates queued or being decided (read without the lock: a hint for the reconciler's pace)."""
        return len(self._queue) + self.deciding

    def _submit(self, item: _Pending) -> _Pending:
        with self._cond:
            if self._thread is None:  # first use, or first since close(): an app may start again
                self._stop = threading.Event()
                self._thread = threading.Thread(target=self._loop, args=(self._stop,),
                                                name="vnstitch-create-batcher", daemon=True)
                self._thread.start()
            self._queue.append(item)
            self._cond.notify()
        return item

    def close(self) -> None:
        """Decide what is queued, then stop the committer thread."""
        with self._cond:
            thread, self._thread = self._thread, None
            self._stop.set()
            self._cond.notify_all()
        if thread is not None:
            thread.join(10)

    def _loop(self, stop: threading.Event) -> None:
        while True:
            with self._cond:
                while not self._queue and not stop.is_set():
                    self._cond.wait()
                if stop.is_set() and (not self._queue or self._thread is not None):
                    return  # closed: drained, or a new committer has taken over
                batch = [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]
                self.deciding = len(batch)
            try:
                deferred = self._commit(batch)
            except BaseException as exc:  # noqa: BLE001 - every waiter gets an answer, never a hang
                log.exception("a batch of %d creates failed", len(batch))
                deferred = []
                for item in batch:
                    if not item.done.is_set():
                        item.answer(error=_own_copy(exc))
            with self._cond:
                self.deciding = 0
                self._queue.extendleft(reversed(deferred))

    def _commit(self, batch: list[_Pending]) -> list[_Pending]:
        """Decide a batch; returns the items left for the next one."""
        context = self.context
        controller = context.controller
        settings = context.settings
        namespaces = sorted({item.resource.namespace for item in batch})
        locks = [context.write_lock(ns) for ns in namespaces]
        for lock in locks:  # same order as routes._common.write: no deadlock
            lock.acquire()
        try:
            controller.refresh()
            admitted: list[_Pending] = []
            deferred: list[_Pending] = []
            names: set[tuple[str, str, str]] = set()
            incoming: dict[str, list[dict]] = {}  # tenant → stitches admitted so far in this batch
            for item in batch:
                res = item.resource
                key = (res.KIND, res.namespace, res.name)
                try:
                    existing = controller.cache.get(*key)
                    if existing is not None and not terminated(existing.value):  # TERMINATED: name free again
                        raise Conflict(f"{res.KIND} '{res.name}' already exists", field="metadata.name")
                    if key in names:  # decided once the first one is committed or refused
                        deferred.append(item)
                        continue
                    if res.KIND == "Stitch":
                        value = dump(res)
                        ahead = incoming.get(res.namespace, [])
                        try:
                            context.usage.check(res.namespace, ahead + [value], settings.quota_stitches,
                                                settings.quota_bandwidth_bps)
                        except VnstitchError:
                            if not ahead:
                                raise
                            context.usage.check(res.namespace, [value], settings.quota_stitches,
                                                settings.quota_bandwidth_bps)
                            deferred.append(item)  # over quota only with company that may yet be refused
                            continue
                        incoming.setdefault(res.namespace, []).append(value)
                except VnstitchError as exc:
                    item.answer(error=exc)
                    continue
                names.add(key)
                admitted.append(item)
            if not admitted:
                return deferred
            results = controller.apply_each([item.resource for item in admitted])
            self.batches += 1
            self.items += len(admitted)
        finally:
            for lock in reversed(locks):
                lock.release()
        try:
            controller.refresh()  # so that the waiters' reads find a fresh mirror
        except Exception:  # noqa: BLE001 - the commit stands; each read refreshes again
            log.exception("refreshing after a batch of creates failed")
        for item, result in zip(admitted, results):
            if isinstance(result, BaseException):
                item.answer(error=result)
            else:
                item.answer(change=result)
        return deferred


def _own_copy(exc: BaseException) -> BaseException:
    """A per-request error for a failure shared by the whole batch."""
    if isinstance(exc, VnstitchError):
        return copy.copy(exc)
    return BatchFailed("internal error while committing this create (see the server log)")
