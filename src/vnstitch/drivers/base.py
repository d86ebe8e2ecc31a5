"""The data-plane driver contract: apply idempotent ops, observe what really exists."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from vnstitch.planning.ops import Op


@dataclass(frozen=True)
class ObservedNetwork:
    network: str
    vnid: int
    nodes: frozenset[str]
    members: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ObservedStitch:
    stitch: str
    type: str
    path: tuple[str, ...]
    rate_bps: float
    encrypted: bool
    healthy: bool = True
    tx_bytes: int = 0
    rx_bytes: int = 0
    latency_s: float | None = None
    throughput_bps: float | None = None
    loss: float | None = None


@dataclass
class Observed:
    networks: dict[str, ObservedNetwork] = field(default_factory=dict)
    stitches: dict[str, ObservedStitch] = field(default_factory=dict)


@runtime_checkable
class Driver(Protocol):
    """A data plane. `apply` returns True when it changed something, False when already so."""

    name: str
    capabilities: frozenset[str]   # e.g. {"encryption", "rate_limit", "counters", "reachability"}

    def apply(self, op: Op) -> bool: ...

    def observe(self) -> Observed: ...

    def close(self) -> None: ...
