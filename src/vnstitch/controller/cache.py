"""Local mirror of store kinds, kept current from the event history (an informer)."""

from __future__ import annotations

import threading
from typing import Callable, Iterable

from vnstitch.store import Compacted, Record, Store


class StateCache:
    """Mirror of some kinds; `refresh()` applies events since the last seen revision."""

    def __init__(self, store: Store, kinds: Iterable[str],
                 on_change: Callable[[str, Record | None, Record | None], None] | None = None):
        self.store = store
        self.kinds = tuple(kinds)
        self.revision = -1
        self.objects: dict[tuple[str, str, str], Record] = {}
        self._on_change = on_change
        self._lock = threading.RLock()

    def refresh(self) -> bool:
        """Bring the mirror up to date; True when anything changed."""
        with self._lock:
            if self.revision < 0:
                return self._relist()
            target = self.store.revision()  # read first: every event up to it is in the answer
            try:
                events = self.store.events_since(self.revision, self.kinds, limit=1_000_000)
            except Compacted:
                return self._relist()
            for event in events:
                key = event.record.key
                old = self.objects.get(key)
                if event.type == "PUT":
                    self.objects[key] = event.record
                    self._notify(key[0], old, event.record)
                else:
                    self.objects.pop(key, None)
                    self._notify(key[0], old, None)
            self.revision = max(target, events[-1].revision if events else target)
            return bool(events)

    def relist(self) -> None:
        """Forget what was seen: the next refresh lists every kind afresh (after a watch gap)."""
        with self._lock:
            self.revision = -1

    def _relist(self) -> bool:
        revision = self.store.revision()
        fresh = {r.key: r for kind in self.kinds for r in self.store.list(kind)}
        for key in set(self.objects) | set(fresh):
            if self.objects.get(key) != fresh.get(key):
                self._notify(key[0], self.objects.get(key), fresh.get(key))
        self.objects = fresh
        self.revision = revision
        return True

    def _notify(self, kind: str, old: Record | None, new: Record | None) -> None:
        if self._on_change:
            self._on_change(kind, old, new)

    def get(self, kind: str, namespace: str, name: str) -> Record | None:
        return self.objects.get((kind, namespace, name))

    def list(self, kind: str, namespace: str | None = None) -> list[Record]:
        return sorted((r for k, r in self.objects.items()
                       if k[0] == kind and (namespace is None or k[1] == namespace)),
                      key=lambda r: (r.namespace, r.name))
