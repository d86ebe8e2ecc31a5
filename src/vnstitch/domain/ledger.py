"""Reservations ledger: per link and direction, how many bit/s stitches hold (integers, exact).

Stored as one small `LinkLedger` object per link ({"forward": bps, "reverse": bps}) so that
admitting a stitch is one transaction guarded by the revisions of exactly the links on its
path, and an object's size does not grow with the number of stitches crossing it. What each
stitch holds is derived from its own status (path × reserved bandwidth, both directions when
symmetric); the invariant is that every ledger total equals the sum over the stitches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from vnstitch.domain.stitch import Stitch, StitchSpec, StitchStatus
from vnstitch.errors import InsufficientCapacity

LEDGER_KIND = "LinkLedger"
FORWARD, REVERSE = "forward", "reverse"
Arc = tuple[str, str]


@dataclass(frozen=True)
class LinkLedger:
    """Reserved totals on one full-duplex link; forward = endpoints[0] → endpoints[1]."""

    link: str
    endpoints: tuple[str, str]
    capacity_bps: float
    forward_bps: int = 0
    reverse_bps: int = 0

    def direction(self, from_node: str, to_node: str) -> str:
        if (from_node, to_node) == self.endpoints:
            return FORWARD
        if (to_node, from_node) == self.endpoints:
            return REVERSE
        raise ValueError(f"{from_node}→{to_node} is not an arc of link {self.link}")

    def reserved_bps(self, direction: str) -> int:
        return self.forward_bps if direction == FORWARD else self.reverse_bps

    def residual_bps(self, direction: str) -> float:
        return self.capacity_bps - self.reserved_bps(direction)

    def to_value(self) -> dict:
        return {FORWARD: self.forward_bps, REVERSE: self.reverse_bps}

    @classmethod
    def from_value(cls, link: str, endpoints: Iterable[str], capacity_bps: float, value: Mapping | None) -> "LinkLedger":
        value = value or {}
        return cls(link, tuple(endpoints), float(capacity_bps), int(value.get(FORWARD, 0)), int(value.get(REVERSE, 0)))


def as_reservation(bandwidth_bps: float) -> int:
    """Reservations are whole bit/s, so ledger sums are exact."""
    return int(round(bandwidth_bps))


def path_arcs(path: Iterable[str]) -> list[Arc]:
    nodes = list(path)
    return list(zip(nodes, nodes[1:]))


def stitch_arcs(path: Iterable[str], symmetric: bool) -> list[Arc]:
    """Arcs a stitch reserves: its path, plus the reverse arcs when symmetric."""
    arcs = path_arcs(path)
    return arcs + [(v, u) for u, v in arcs] if symmetric else arcs


# held_by reads stored values on the hot path without parsing them; where a field is absent it takes
# the model's own default, so the default still lives only on the model.
_SYMMETRIC_DEFAULT = StitchSpec.model_fields["symmetric"].default
_RESERVED_DEFAULT = StitchStatus.model_fields["reserved_bandwidth"].default


def held_by(stitch_value: Mapping | None) -> dict[Arc, int]:
    """What a stored stitch holds: arc → bit/s, from its status and spec."""
    if not stitch_value:
        return {}
    status = stitch_value.get("status") or {}
    bps = as_reservation(status.get("reservedBandwidth", _RESERVED_DEFAULT))
    path = status.get("path") or ()
    if bps <= 0 or len(path) < 2:
        return {}
    return {arc: bps for arc in stitch_arcs(path, stitch_value["spec"].get("symmetric", _SYMMETRIC_DEFAULT))}


def held_by_stitch(stitch: Stitch) -> dict[Arc, int]:
    """What a parsed stitch holds: arc → bit/s (held_by over the model)."""
    bps = as_reservation(stitch.status.reserved_bandwidth)
    if bps <= 0 or len(stitch.status.path) < 2:
        return {}
    return {arc: bps for arc in stitch_arcs(stitch.status.path, stitch.spec.symmetric)}


def apply_deltas(ledgers: Mapping[str, LinkLedger], arc_links: Mapping[Arc, str],
                 deltas: Mapping[Arc, int]) -> dict[str, LinkLedger]:
    """New versions of the touched ledgers with `deltas` (arc → ±bit/s) applied, all or nothing.

    Raises InsufficientCapacity naming the first arc that would go over its capacity.
    """
    updated: dict[str, LinkLedger] = {}
    for (u, v), delta in deltas.items():
        if delta == 0:
            continue
        link = arc_links[(u, v)]
        ledger = updated.get(link) or ledgers[link]
        forward = (u, v) == ledger.endpoints
        if not forward and (v, u) != ledger.endpoints:
            raise ValueError(f"{u}→{v} is not an arc of link {link}")
        updated[link] = LinkLedger(ledger.link, ledger.endpoints, ledger.capacity_bps,
                                   ledger.forward_bps + (delta if forward else 0),
                                   ledger.reverse_bps + (0 if forward else delta))
    for (u, v), delta in deltas.items():
        if delta <= 0:
            continue
        ledger = updated[arc_links[(u, v)]]
        direction = ledger.direction(u, v)
        if ledger.reserved_bps(direction) > ledger.capacity_bps:
            free = ledger.capacity_bps - (ledger.reserved_bps(direction) - delta)
            raise InsufficientCapacity(f"link {ledger.link} ({u}→{v}) has {max(0.0, free):.6g} bit/s free, "
                                       f"{delta:.6g} asked", field="spec.bandwidth")
    for ledger in updated.values():
        if min(ledger.forward_bps, ledger.reverse_bps) < 0:  # would mean a double release: a bug, never data
            raise AssertionError(f"ledger of {ledger.link} went negative: {ledger}")
    return updated


def net_deltas(*changes: tuple[Mapping[Arc, int], int]) -> dict[Arc, int]:
    """Sum holdings with signs: net_deltas((old, -1), (new, +1)) → arc → change."""
    out: dict[Arc, int] = {}
    for holdings, sign in changes:
        for arc, bps in holdings.items():
            out[arc] = out.get(arc, 0) + sign * bps
    return out
