"""Watch streams: store events of one kind as newline-delimited JSON or Server-Sent Events.

Events look like Kubernetes': {"type": "ADDED"|"MODIFIED"|"DELETED"|"ERROR", "object": {...}}.
Without a resourceVersion the stream starts with ADDED for every current object.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import AsyncIterator, Callable

import anyio

from vnstitch.store import Compacted, Store

POLL_INTERVAL_S = 0.1


def _frame(event: dict, sse: bool) -> bytes:
    data = json.dumps(event, separators=(",", ":"))
    if sse:
        return f"event: {event['type']}\ndata: {data}\n\n".encode()
    return (data + "\n").encode()


async def stream(store: Store, kind: str, visible: Callable[[str, dict], bool], render: Callable[[dict, int], dict],
                 initial: list[dict] | None, since: int, timeout_s: float, sse: bool) -> AsyncIterator[bytes]:
    """Yield events after revision `since` that `visible(namespace, value)` lets through,
    until `timeout_s` passes. Polls the store's revision without holding a worker thread."""
    for obj in initial or []:
        yield _frame({"type": "ADDED", "object": obj}, sse)
    deadline = time.monotonic() + timeout_s
    revision = since
    while time.monotonic() < deadline:
        current = await anyio.to_thread.run_sync(store.revision)
        if current > revision:
            try:
                events = await anyio.to_thread.run_sync(lambda: store.events_since(revision, [kind]))
            except Compacted as exc:
                yield _frame({"type": "ERROR", "object": {"code": exc.code, "message": exc.message,
                                                          "field": None}}, sse)
                return
            for event in events:
                record = event.record
                if not visible(record.namespace, record.value):
                    continue
                if event.type == "DELETE":
                    kind_name = "DELETED"
                else:
                    kind_name = "ADDED" if record.create_revision == record.revision else "MODIFIED"
                yield _frame({"type": kind_name, "object": render(record.value, event.revision)}, sse)
            revision = max(current, events[-1].revision if events else current)
        await asyncio.sleep(min(POLL_INTERVAL_S, max(0.0, deadline - time.monotonic())))
