"""Per-token rate limiting (token bucket) and per-tenant quotas on stitches."""

from __future__ import annotations

import threading
import time
from typing import Iterable

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


def check_stitch_quota(tenant: str, current: Iterable[dict], incoming: Iterable[dict],
                       max_stitches: int, max_bandwidth_bps: float) -> None:
    """Refuse when the tenant's stitches after this write exceed a quota; names the quota.

    `current` are the stored stitch values of the tenant, `incoming` the stitch values being
    written (they replace stored ones of the same name). Stitches being deleted do not count.
    """
    current = [s for s in current if not s["metadata"].get("deletionTimestamp")]
    incoming = list(incoming)
    replaced = {s["metadata"]["name"] for s in incoming}
    after = [s for s in current if s["metadata"]["name"] not in replaced] + incoming

    def bandwidth(stitches: list[dict]) -> float:
        return sum(float(s["spec"].get("bandwidth", 0.0)) for s in stitches)

    # A write that does not grow usage passes even over quota (quotas may have been lowered).
    if len(after) > max_stitches and len(after) > len(current):
        raise QuotaExceeded(f"quota 'stitches' of tenant '{tenant}' is {max_stitches}; "
                            f"this write would make {len(after)}", field="metadata.name")
    if bandwidth(after) > max_bandwidth_bps and bandwidth(after) > bandwidth(current):
        raise QuotaExceeded(f"quota 'bandwidth' of tenant '{tenant}' is {format_bandwidth(max_bandwidth_bps)}; "
                            f"this write would reserve {format_bandwidth(bandwidth(after))} in all",
                            field="spec.bandwidth")
