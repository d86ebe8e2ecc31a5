"""Reads of one object straight from the controller's mirror, rendered once per revision.

A read asks the store for its revision (one cheap query) and refreshes the mirror only when
the store has moved, so a GET sees every write committed before it started (a GET after a
201 sees the object) without taking the controller's lock, which a commit holds across its
fsync. The JSON of an object is memoised by (key, revision): the bytes equal what
`json_response(dump(controller.get(...)))` would send.
"""

from __future__ import annotations

import json
import threading

from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from vnstitch.domain.resources import WIRE_TIMES, Resource
from vnstitch.errors import NotFound

MAX_RENDERED = 20_000  # memoised objects; cleared wholesale beyond this


class RenderedReads:
    def __init__(self, controller, store):
        self.controller = controller
        self.store = store
        self._rendered: dict[tuple[str, str, str], tuple[int, bytes]] = {}
        self._lock = threading.Lock()

    @property
    def inline(self) -> bool:
        """Whether asking the store for its revision is cheap enough for the event loop
        (a local file, not a network round trip)."""
        return not getattr(self.store, "replicated", False)

    def fresh(self) -> bool:
        """The mirror has every write the store has committed so far."""
        return self.store.revision() <= self.controller.cache.revision

    def record(self, cls: type[Resource], name: str, tenant: str | None):
        """The stored record, at least as fresh as the store when this call started."""
        cache = self.controller.cache
        if not self.fresh():
            self.controller.refresh()
        namespace = (tenant or "default") if cls.NAMESPACED else ""
        record = cache.get(cls.KIND, namespace, name)
        if record is None:
            raise NotFound(f"{cls.KIND} '{name}' not found" + (f" in tenant '{namespace}'" if namespace else ""),
                           field="metadata.name")
        return record

    def body(self, cls: type[Resource], name: str, tenant: str | None) -> bytes:
        """The object's JSON as the API shows it (validated and dumped through its model)."""
        return self._render(cls, self.record(cls, name, tenant))

    def listed(self, cls: type[Resource], tenant: str | None) -> list[tuple[object, bytes]]:
        """Every object of the kind (of one tenant, or all: None) in (tenant, name) order with its JSON, at
        least as fresh as the store when this call started: what a list shows, each rendered once a revision."""
        if not self.fresh():
            self.controller.refresh()
        return [(record, self._render(cls, record))
                for record in self.controller.cache.list(cls.KIND, tenant if cls.NAMESPACED else None)]

    def _render(self, cls: type[Resource], record) -> bytes:
        hit = self._rendered.get(record.key)
        if hit is not None and hit[0] == record.revision:
            return hit[1]
        resource = cls.model_validate(record.value)
        resource.metadata.resource_version = record.revision
        rendered = render(resource.model_dump(by_alias=True, mode="json", context=WIRE_TIMES))
        with self._lock:
            if len(self._rendered) >= MAX_RENDERED:
                self._rendered.clear()
            self._rendered[record.key] = (record.revision, rendered)
        return rendered

    def response(self, cls: type[Resource], name: str, tenant: str | None, status: int = 200,
                 headers: dict | None = None) -> Response:
        return Response(self.body(cls, name, tenant), status_code=status, headers=headers,
                        media_type="application/json")

    async def respond(self, cls: type[Resource], name: str, tenant: str | None) -> Response:
        """From the event loop when the mirror is fresh (no thread hop, no lock); otherwise the
        refresh, which may wait for a commit's fsync, runs in the thread pool."""
        if self.inline and self.fresh():
            return self.response(cls, name, tenant)
        return await run_in_threadpool(self.response, cls, name, tenant)


def render(body) -> bytes:
    """JSON exactly as Starlette's JSONResponse writes it."""
    return json.dumps(body, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode("utf-8")
