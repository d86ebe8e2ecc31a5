"""Data-plane operations: what the planner asks a driver to do, each with a reason.

Every op is idempotent by contract: applying it when the data plane already matches
changes nothing. Keys are "tenant/name" strings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union


@dataclass(frozen=True)
class MemberPlacement:
    name: str
    node: str
    address: str


@dataclass(frozen=True)
class EnsureNetwork:
    """Bridge per node hosting members, joined across nodes (VXLAN with VNI = vnid)."""

    network: str
    vnid: int
    cidr: str
    members: tuple[MemberPlacement, ...]
    reason: str = field(default="", compare=False)


@dataclass(frozen=True)
class RemoveNetwork:
    network: str
    reason: str = field(default="", compare=False)


@dataclass(frozen=True)
class StitchEnd:
    network: str                 # "tenant/name"
    vnid: int
    cidr: str                    # the network's (or segment's) address space
    node: str                    # substrate node where this end attaches
    member: str | None = None    # VM name (direct stitches)
    address: str | None = None   # VM address (direct stitches)


@dataclass(frozen=True)
class ServiceRule:
    """A flow a stitch lets cross from end a to end b (and its replies back): protocol, port (None: any)."""

    protocol: str                # tcp | udp | icmp
    port: int | None = None


@dataclass(frozen=True)
class QosRule:
    """A ranked class of the stitch's traffic: rank 1 highest, `share` of the rate guaranteed, matched by
    DSCP or destination ports (neither: the class for traffic no other class matches)."""

    name: str
    rank: int
    share: float
    dscp: int | None = None
    ports: tuple[int, ...] = ()


@dataclass(frozen=True)
class EnsureStitch:
    stitch: str
    type: str                    # direct | segment | bandwidth
    a: StitchEnd
    b: StitchEnd
    path: tuple[str, ...]        # substrate nodes, a.node first, b.node last
    rate_bps: float              # reserved rate; 0 = not shaped
    encrypted: bool
    symmetric: bool = True
    reason: str = field(default="", compare=False)
    # Unix time: WireGuard keys made before it are replaced, without loss (0: keep them). The compiler sets
    # it from a rotate-keys request, the plan raises it to now − key_rotation_s when the period is up.
    keys_after: float = 0.0
    key_rotation_s: float | None = field(default=None, compare=False)  # spec.keyRotation; only the plan reads it
    services: tuple[ServiceRule, ...] = ()  # empty: all traffic between the ends crosses
    qos: tuple[QosRule, ...] = ()           # empty: one class at rate_bps


ROTATE_KEYS = "rotate keys"  # the reason of an ensure-stitch that only replaces a healthy stitch's keys


def is_key_rotation(op: "Op") -> bool:
    """An ensure-stitch the plan emitted only to replace the keys of a healthy stitch (not a repair)."""
    return isinstance(op, EnsureStitch) and op.reason.startswith(ROTATE_KEYS)


@dataclass(frozen=True)
class SetStitchRate:
    stitch: str
    rate_bps: float
    reason: str = field(default="", compare=False)


@dataclass(frozen=True)
class RemoveStitch:
    stitch: str
    reason: str = field(default="", compare=False)


@dataclass(frozen=True)
class EnsureFilter:
    """Drop (`action` drop) or police to `rate_bps` (`action` limit) the traffic from `src` to `dst` where the
    source attaches (`node`), before any stitch sees it, with a counter; flows in `allow` pass untouched.
    Made by the anomaly engine: `filter` is the anomaly ('tenant/name'), the reason why."""

    filter: str
    node: str
    src: str                     # an address or CIDR (a member's address: that member only)
    dst: str                     # CIDR
    action: str = "drop"         # drop | limit
    rate_bps: float = 0.0        # limit: what is let through
    allow: tuple[ServiceRule, ...] = ()
    reason: str = field(default="", compare=False)


@dataclass(frozen=True)
class RemoveFilter:
    filter: str
    reason: str = field(default="", compare=False)


Op = Union[EnsureNetwork, RemoveNetwork, EnsureStitch, SetStitchRate, RemoveStitch, EnsureFilter, RemoveFilter]


def describe(op: Op) -> str:
    """One line for humans: 'ensure-stitch acme/blue-red over A→B→C at 2 Gbps (reason)'."""
    from vnstitch.units import format_bandwidth

    if isinstance(op, EnsureNetwork):
        nodes = sorted({m.node for m in op.members})
        text = f"ensure-network {op.network} vnid={op.vnid} on {','.join(nodes) or '-'}"
    elif isinstance(op, RemoveNetwork):
        text = f"remove-network {op.network}"
    elif isinstance(op, EnsureStitch):
        rate = format_bandwidth(op.rate_bps) if op.rate_bps else "unshaped"
        text = (f"ensure-stitch {op.stitch} ({op.type}{', encrypted' if op.encrypted else ''}) "
                f"over {'→'.join(op.path)} at {rate}")
    elif isinstance(op, SetStitchRate):
        text = f"set-rate {op.stitch} {format_bandwidth(op.rate_bps)}"
    elif isinstance(op, EnsureFilter):
        how = "drop" if op.action == "drop" else f"limit {format_bandwidth(op.rate_bps)}"
        text = f"ensure-filter {op.filter} {op.src}→{op.dst} at {op.node}: {how}"
    elif isinstance(op, RemoveFilter):
        text = f"remove-filter {op.filter}"
    else:
        text = f"remove-stitch {op.stitch}"
    return f"{text}  ({op.reason})" if op.reason else text
