"""Per-token rate limiting (token bucket) and per-tenant quotas on stitches."""

from __future__ import annotations

import threading
import time

from vnstitch.api.errors import QuotaExceeded, RateLimited
from vnstitch.units import format_bandwidth


class RateLimiter:
    """One token bucket per key: `rate_per_s` refill, `burst` capacity. rate 0 = unlimited."""

    def __init__(self, rate_per_s: float, burst: int, clock=time.monotonic):
        self.rate_per_s = rate_per_s
        self.burst = max(1, burst)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> None:
        if self.rate_per_s <= 0:
            return
        now = self.clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate_per_s)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                raise RateLimited(f"rate limit of {self.rate_per_s:g} requests/s per token exceeded",
                                  retry_after_s=(1.0 - tokens) / self.rate_per_s)
            self._buckets[key] = (tokens - 1.0, now)


class TenantUsage:
    """Per-tenant stitch count and requested bandwidth, kept current from store events so
    that a quota check costs O(1) instead of a scan of every stitch."""

    def __init__(self, store):
        from vnstitch.controller.cache import StateCache

        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], float] = {}  # (tenant, stitch) → bit/s, live stitches only
        self._totals: dict[str, list[float]] = {}          # tenant → [count, bit/s]
        self._cache = StateCache(store, ["Stitch"], on_change=self._on_change)

    def _on_change(self, kind: str, old, new) -> None:
        record = new or old
        key = (record.namespace, record.name)
        live = new is not None and not new.value["metadata"].get("deletionTimestamp")
        totals = self._totals.setdefault(record.namespace, [0, 0.0])
        if key in self._entries:
            totals[0] -= 1
            totals[1] -= self._entries.pop(key)
        if live:
            bps = float(new.value["spec"].get("bandwidth", 0.0))
            self._entries[key] = bps
            totals[0] += 1
            totals[1] += bps

    def check(self, tenant: str, incoming: list[dict], max_stitches: int, max_bandwidth_bps: float) -> None:
        """Refuse when this write would grow the tenant's usage beyond a quota; names the quota.

        `incoming` are stitch values being written (replacing stored ones of the same name).
        A write that does not grow usage passes even over quota (quotas may have been lowered)."""
        with self._lock:
            self._cache.refresh()
            count, bandwidth = self._totals.get(tenant, [0, 0.0])
            after_count, after_bandwidth = count, bandwidth
            for value in incoming:
                key = (tenant, value["metadata"]["name"])
                if key in self._entries:
                    after_count -= 1
                    after_bandwidth -= self._entries[key]
                after_count += 1
                after_bandwidth += float(value["spec"].get("bandwidth", 0.0))
        if after_count > max_stitches and after_count > count:
            raise QuotaExceeded(f"quota 'stitches' of tenant '{tenant}' is {max_stitches}; "
                                f"this write would make {after_count}", field="metadata.name")
        if after_bandwidth > max_bandwidth_bps + 1e-3 and after_bandwidth > bandwidth + 1e-3:
            raise QuotaExceeded(f"quota 'bandwidth' of tenant '{tenant}' is {format_bandwidth(max_bandwidth_bps)}; "
                                f"this write would reserve {format_bandwidth(after_bandwidth)} in all",
                                field="spec.bandwidth")
