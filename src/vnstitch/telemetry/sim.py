"""The simulator's per-pair byte counters as a pull source: rates from counter deltas between collects."""

from __future__ import annotations

from vnstitch.telemetry.base import COUNTERS, LOSS, PULL, Sample

Counters = tuple[int, int]  # (offered bytes, delivered bytes), cumulative


class SimCountersSource:
    """Reads `SimDriver.pair_bytes` ({('acme/web', 'acme/db'): [offered, delivered]}).

    rate_bps is what the pair offered (the demand a forecaster wants, not what congestion let
    through) and loss the fraction of it that was not delivered. The first collect only takes a
    baseline (no rate yet); a counter that went down was reset and counts from zero (a reset after
    which the counter grew past its old value cannot be told from traffic: collect more often than
    that takes, as with any counter); a pair whose
    counters appear after the baseline started from zero; a pair of two tenants is skipped
    (a sample belongs to one tenant) and counted in `skipped_cross_tenant`."""

    name = "sim"
    capabilities = frozenset({PULL, COUNTERS, LOSS})

    def __init__(self, driver):
        self.driver = driver
        self._last: dict[tuple[str, str], Counters] = {}
        self._last_time: float | None = None
        self.skipped_cross_tenant = 0
        self.resets = 0

    def collect(self, now: float) -> list[Sample]:
        current = {pair: (int(v[0]), int(v[1])) for pair, v in self.driver.pair_bytes.items()}
        if self._last_time is None or now <= self._last_time:
            if self._last_time is None:
                self._last, self._last_time = current, now
            return []
        elapsed = now - self._last_time
        out = []
        for pair, (offered, delivered) in sorted(current.items()):
            before = self._last.get(pair, (0, 0))
            offered_delta, delivered_delta = offered - before[0], delivered - before[1]
            if offered_delta < 0 or delivered_delta < 0:  # reset (a restarted data plane): counts from 0
                self.resets += 1
                offered_delta, delivered_delta = offered, delivered
            src_tenant, _, src = pair[0].partition("/")
            dst_tenant, _, dst = pair[1].partition("/")
            if src_tenant != dst_tenant or not src or not dst:
                self.skipped_cross_tenant += 1
                continue
            loss = None
            if offered_delta > 0:
                loss = min(1.0, max(0.0, 1.0 - delivered_delta / offered_delta))
            out.append(Sample(src_tenant, src, dst, now, offered_delta * 8 / elapsed, None, loss))
        self._last, self._last_time = current, now
        return out
