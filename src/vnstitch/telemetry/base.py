"""The telemetry contract: one `Sample` type, one `TelemetrySource` protocol, two errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from vnstitch.errors import InvalidInput, VnstitchError

# What a source can tell; callers check flags, never the class.
PULL = "pull"              # collect(now) returns what happened since the last call
PUSH = "push"              # samples arrive on their own (POST /v1/telemetry); collect() is not the way in
COUNTERS = "counters"      # rates are computed from counter deltas (resets handled)
VM_PAIRS = "vm_pairs"      # may report VM-to-VM pairs ("web/vm-1"), not only network pairs
LATENCY = "latency"        # fills Sample.latency_s
LOSS = "loss"              # fills Sample.loss
CAPABILITIES = frozenset({PULL, PUSH, COUNTERS, VM_PAIRS, LATENCY, LOSS})

DAY_S = 86_400.0
RETENTION_S = 14 * DAY_S   # nothing older is kept (or accepted)
RAW_S = 7 * DAY_S          # kept at full resolution; older samples are folded into hourly means
DOWNSAMPLE_S = 3_600.0     # the width of a downsampled bucket
TIME_RESOLUTION_S = 0.001  # two samples of a series less than 1 ms apart are the same sample


def time_key(time_s: float) -> int:
    """The integer (ms) a sample is keyed by: re-sending a sample addresses the same row."""
    return round(time_s * 1000)


@dataclass(frozen=True, slots=True)
class Sample:
    """One measurement of the traffic from `src` to `dst` of one tenant.

    `src`/`dst` name a virtual network ("web") or a VM of it ("web/vm-1"); `time` (unix s) is the
    end of the period whose mean rate `rate_bps` (bit/s) is; `latency_s` (s) and `loss` (0..1,
    the fraction offered that did not arrive) are optional."""

    tenant: str
    src: str
    dst: str
    time: float
    rate_bps: float
    latency_s: float | None = None
    loss: float | None = None

    @property
    def series(self) -> tuple[str, str, str]:
        return (self.tenant, self.src, self.dst)


@runtime_checkable
class TelemetrySource(Protocol):
    """A source of samples. Pull sources answer `collect(now)`; a push source has nothing to collect."""

    name: str
    capabilities: frozenset[str]

    def collect(self, now: float) -> list[Sample]: ...


class TelemetryError(InvalidInput):
    """A sample that cannot be accepted; `field` names it: 'samples[3].rateBps'."""

    def __init__(self, message: str, index: int | None = None, attribute: str | None = None,
                 prefix: str = "samples"):
        where = None
        if index is not None:
            where = f"{prefix}[{index}]" + (f".{attribute}" if attribute else "")
        elif attribute:
            where = attribute
        super().__init__(message, field=where)
        self.index = index
        self.attribute = attribute


class TelemetryUnavailable(VnstitchError):
    """A telemetry source cannot answer now (server down, garbage answer); the caller degrades and goes on."""

    code = "telemetry_unavailable"
    http_status = 503

    def __init__(self, message: str, source: str | None = None):
        super().__init__(message, field=None)
        self.source = source
