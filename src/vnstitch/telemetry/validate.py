"""Pure checks of a batch of samples: every error names the sample and field; nothing is partial.

Handling that is not an error (documented in docs/TELEMETRY.md):
- out of order: fine, samples are stored by time;
- duplicates of (tenant, src, dst, time) inside one batch: the last one wins (as a re-send would),
  unless `duplicates="reject"`;
- a gap (no sample for a while) is missing data, never zero traffic: nothing is invented here.
"""

from __future__ import annotations

import math
from typing import Callable, Container, Mapping, Sequence

from vnstitch.telemetry.base import RETENTION_S, Sample, TelemetryError, time_key

MAX_RATE_BPS = 10e12   # 10 Tbit/s between two virtual networks is not a measurement, it is a bug
MAX_FUTURE_S = 300.0   # clocks drift; five minutes ahead is the most we believe
MAX_NAME = 253         # 'network/vm', each part a DNS label

Known = Callable[[str], Container[str]] | Mapping[str, Container[str]]


def validate_batch(samples: Sequence[Sample], now: float, known: Known | None = None, *,
                   retention_s: float = RETENTION_S, duplicates: str = "last",
                   names: Mapping[str, str] | None = None, prefix: str = "samples") -> list[Sample]:
    """The samples to store (duplicates resolved), or TelemetryError for the first bad one.

    `known(tenant)` (or `known[tenant]`) holds the endpoints that exist for a tenant: network names
    and 'network/vm' names; None skips that check. `names` maps attribute names to the caller's
    wire names (rate_bps → rateBps) for the error's field."""
    if duplicates not in ("last", "reject"):
        raise ValueError(f"duplicates must be 'last' or 'reject', not {duplicates!r}")
    names = names or {}
    endpoints: dict[str, Container[str]] = {}
    kept: dict[tuple, int] = {}
    oldest = now - retention_s
    for index, sample in enumerate(samples):
        def fail(attribute: str, message: str) -> TelemetryError:
            return TelemetryError(message, index, names.get(attribute, attribute), prefix)

        for attribute in ("tenant", "src", "dst"):
            _check_name(getattr(sample, attribute), attribute, fail)
        t = sample.time
        if not _finite(t):
            raise fail("time", f"time must be a finite unix timestamp in seconds; got {t!r}")
        if t > now + MAX_FUTURE_S:
            raise fail("time", f"time {t:.3f} is {t - now:.0f} s in the future (at most {MAX_FUTURE_S:.0f} s "
                               "is accepted: check the sender's clock)")
        if t < oldest:
            raise fail("time", f"time {t:.3f} is {(now - t) / 86400:.1f} days old, beyond the "
                               f"{retention_s / 86400:g}-day retention")
        rate = sample.rate_bps
        if not _finite(rate) or rate < 0:
            raise fail("rate_bps", f"rate must be a finite number of bit/s >= 0; got {rate!r}")
        if rate > MAX_RATE_BPS:
            raise fail("rate_bps", f"rate {rate:g} bit/s is above the {MAX_RATE_BPS:g} bit/s (10 Tbit/s) "
                                   "that any pair can carry: check the unit (bit/s)")
        if sample.latency_s is not None and (not _finite(sample.latency_s) or sample.latency_s < 0):
            raise fail("latency_s", f"latency must be a finite number of seconds >= 0; got {sample.latency_s!r}")
        if sample.loss is not None and (not _finite(sample.loss) or not 0.0 <= sample.loss <= 1.0):
            raise fail("loss", f"loss is a fraction in [0, 1]; got {sample.loss!r}")
        if known is not None:
            have = endpoints.get(sample.tenant)
            if have is None:
                have = endpoints[sample.tenant] = _endpoints(known, sample.tenant)
            for attribute in ("src", "dst"):
                name = getattr(sample, attribute)
                if name not in have:
                    what = "VM" if "/" in name else "virtual network"
                    raise fail(attribute, f"unknown {what} '{name}' in tenant '{sample.tenant}'")
        key = (sample.tenant, sample.src, sample.dst, time_key(t))
        if key in kept:
            if duplicates == "reject":
                raise fail("time", f"repeats {prefix}[{kept[key]}]: same series and time")
            del kept[key]  # last wins, at its own position
        kept[key] = index
    return [samples[i] for i in kept.values()]


def endpoints_of(networks: Mapping[str, Sequence[str]]) -> frozenset[str]:
    """{network: [vm, ...]} → the endpoint names a sample may use: 'net' and 'net/vm'."""
    out = set(networks)
    for network, vms in networks.items():
        out.update(f"{network}/{vm}" for vm in vms)
    return frozenset(out)


def _endpoints(known: Known, tenant: str) -> Container[str]:
    if callable(known):
        return known(tenant)
    return known.get(tenant, ())


def _check_name(value, attribute: str, fail) -> None:
    if not isinstance(value, str) or not value:
        raise fail(attribute, f"{attribute} must be a non-empty name; got {value!r}")
    if len(value) > MAX_NAME or value.count("/") > (0 if attribute == "tenant" else 1) \
            or value.startswith("/") or value.endswith("/"):
        shape = "a tenant name" if attribute == "tenant" else "'network' or 'network/vm'"
        raise fail(attribute, f"'{value[:80]}' is not {shape}")


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
