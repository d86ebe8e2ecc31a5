"""The Linux driver's nftables stitch counters as a pull source: rates from counter deltas between collects."""

from __future__ import annotations

import time
from typing import Callable

from vnstitch.telemetry.base import COUNTERS, PULL, VM_PAIRS, Sample

Key = tuple[str, str, str]          # (stitch, src, dst) as LinuxDriver.stitch_bytes() names a direction


class LinuxCountersSource:
    """Reads `LinuxDriver.stitch_bytes()` and reports each (src, dst) the stitches carry.

    rate_bps is what entered the stitches from src towards dst (offered, before shaping), summed
    over the stitches that join them; direct stitches also give their VM pair ("blue/blue-1"). It is
    in the controller's units, as link capacities and reservations are: the kernel's rate divided by
    the lab's scale (the lab shapes a link to capacity × scale; a driver without a lab: scale 1).
    The first collect only takes a baseline; elapsed time is measured with `clock` (monotonic),
    `now` only stamps the samples. Each stitch direction is its own counter, so one stitch's reset
    does not hide in a pair's sum: a counter that went down, or whose rule was rewritten (a new
    nft handle: the chain was repaired, the stitch re-created), counts from zero; one that appears
    after the baseline started from zero; one that cannot be read now keeps its last reading and
    gives its traffic at the next collect that reads it, over the time since that reading. A pair
    whose counters are all unreadable gives no sample (not a zero). A pair of two tenants is
    skipped (a sample belongs to one tenant) and counted in `skipped_cross_tenant`."""

    name = "linux"
    capabilities = frozenset({PULL, COUNTERS, VM_PAIRS})

    def __init__(self, driver, clock: Callable[[], float] = time.monotonic):
        self.driver = driver
        self.clock = clock
        self.scale = float(getattr(getattr(driver, "lab", None), "scale", 1.0) or 1.0)
        self._last: dict[Key, tuple[str, int, float]] = {}   # → (counter id, bytes, clock() when read)
        self._last_time: float | None = None
        self.skipped_cross_tenant = 0
        self.resets = 0

    def collect(self, now: float) -> list[Sample]:
        # what members sent where no stitch leads (guard.py), then the stitches' counters
        current = dict(self.driver.unstitched_bytes()) if hasattr(self.driver, "unstitched_bytes") else {}
        current.update(self.driver.stitch_bytes())
        read_at = self.clock()
        if self._last_time is None or read_at <= self._last_time:
            if self._last_time is None:
                self._remember(current, read_at)
            return []
        bits: dict[tuple[str, str], float] = {}   # pair → bit/s, summed over its counters
        for key, counter in sorted(current.items()):
            if counter is None:
                continue
            counter_id, value = counter
            before = self._last.get(key)
            if before is None:                     # new since the last collect: counted from zero
                delta, since = value, self._last_time
            elif before[0] != counter_id or value < before[1]:
                self.resets += 1                   # reset (rewritten chain, re-created stitch)
                delta, since = value, before[2]
            else:
                delta, since = value - before[1], before[2]
            pair = key[1:]
            bits[pair] = bits.get(pair, 0.0) + delta * 8 / (read_at - since) / self.scale
        out = []
        for (src_key, dst_key), rate_bps in sorted(bits.items()):
            src_tenant, _, src = src_key.partition("/")
            dst_tenant, _, dst = dst_key.partition("/")
            if src_tenant != dst_tenant or not src or not dst:
                self.skipped_cross_tenant += 1
                continue
            out.append(Sample(src_tenant, src, dst, now, rate_bps))
        self._remember(current, read_at)
        return out

    def _remember(self, current: dict, read_at: float) -> None:
        """Readings to diff against next time; an unreadable counter keeps its older one; a stitch
        the driver no longer has is forgotten."""
        kept = {}
        for key, counter in current.items():
            if counter is not None:
                kept[key] = (counter[0], counter[1], read_at)
            elif key in self._last:
                kept[key] = self._last[key]
        self._last, self._last_time = kept, read_at
