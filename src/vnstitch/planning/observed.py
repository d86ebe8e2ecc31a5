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


@dataclass(frozen=True)
class ObservedFilter:
    """An anomaly's filter as the data plane has it, with what its counter dropped."""

    filter: str
    node: str
    src: str
    dst: str
    action: str
    rate_bps: float = 0.0
    allow: tuple = ()
    dropped_packets: int = 0
    dropped_bytes: int = 0


@dataclass
class Observed:
    networks: dict[str, ObservedNetwork] = field(default_factory=dict)
    stitches: dict[str, ObservedStitch] = field(default_factory=dict)
    filters: dict[str, ObservedFilter] = field(default_factory=dict)  # drivers with the "filters" capability
