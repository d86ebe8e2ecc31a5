"""What a data plane reports it has: the observed half of desired vs observed (drivers fill it,
planning reads it; neither imports the other)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ObservedNetwork:
    network: str
    vnid: int
    nodes: frozenset[str]
    members: frozenset[str] = frozenset()
    placements: frozenset[tuple[str, str]] | None = None  # (member, node) attached; None: not reported


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
    problem: str = ""  # why it is not healthy, as the driver saw it
    keys_at: float | None = None  # unix time its WireGuard keys were made; None: no keys, or not reported
    services: tuple | None = None  # the ServiceRules in force; None: not reported
    qos: tuple | None = None       # the QosRules in force; None: not reported
    denied_packets: int | None = None  # packets its rules dropped; None: not counted


@dataclass
class Observed:
    networks: dict[str, ObservedNetwork] = field(default_factory=dict)
    stitches: dict[str, ObservedStitch] = field(default_factory=dict)
