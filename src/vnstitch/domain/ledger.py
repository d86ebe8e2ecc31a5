"""Reservations ledger: per link and direction, which stitch holds how many bit/s.

Stored as one `LinkLedger` object per link so that admitting a stitch is one
transaction guarded by the revisions of exactly the links on its path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

from vnstitch.errors import InsufficientCapacity

LEDGER_KIND = "LinkLedger"
FORWARD, REVERSE = "forward", "reverse"
EPSILON_BPS = 1e-3  # float noise allowance when comparing sums to capacity


@dataclass
class LinkLedger:
    """Reservations on one full-duplex link; forward = endpoints[0] → endpoints[1]."""

    link: str
    endpoints: tuple[str, str]
    capacity_bps: float
    forward: dict[str, float] = field(default_factory=dict)
    reverse: dict[str, float] = field(default_factory=dict)

    def direction(self, from_node: str, to_node: str) -> str:
        if (from_node, to_node) == self.endpoints:
            return FORWARD
        if (to_node, from_node) == self.endpoints:
            return REVERSE
        raise ValueError(f"{from_node}→{to_node} is not an arc of link {self.link}")

    def table(self, direction: str) -> dict[str, float]:
        return self.forward if direction == FORWARD else self.reverse

    def reserved_bps(self, direction: str) -> float:
        return sum(self.table(direction).values())

    def residual_bps(self, direction: str) -> float:
        return self.capacity_bps - self.reserved_bps(direction)

    def to_value(self) -> dict:
        return {"forward": dict(self.forward), "reverse": dict(self.reverse)}

    @classmethod
    def from_value(cls, link: str, endpoints: tuple[str, str], capacity_bps: float,
                   value: Mapping | None) -> "LinkLedger":
        value = value or {}
        return cls(link, tuple(endpoints), capacity_bps, dict(value.get(FORWARD, {})),
                   dict(value.get(REVERSE, {})))

    def copy(self) -> "LinkLedger":
        return LinkLedger(self.link, self.endpoints, self.capacity_bps, dict(self.forward), dict(self.reverse))


def path_arcs(path: Iterable[str]) -> list[tuple[str, str]]:
    nodes = list(path)
    return list(zip(nodes, nodes[1:]))


def stitch_arcs(path: Iterable[str], symmetric: bool) -> list[tuple[str, str]]:
    """Arcs a stitch reserves: its path, plus the reverse arcs when symmetric."""
    arcs = path_arcs(path)
    return arcs + [(v, u) for u, v in arcs] if symmetric else arcs


def reserve(ledgers: dict[str, LinkLedger], arc_links: Mapping[tuple[str, str], str], stitch: str,
            arcs: Iterable[tuple[str, str]], bandwidth_bps: float) -> dict[str, LinkLedger]:
    """Copies of the touched ledgers with `stitch` holding `bandwidth_bps` on every arc.

    Replaces what `stitch` held before on those ledgers; all-or-nothing: raises
    InsufficientCapacity naming the first arc that would go over capacity.
    """
    updated: dict[str, LinkLedger] = {}
    for u, v in arcs:
        link = arc_links[(u, v)]
        ledger = updated.get(link) or ledgers[link].copy()
        table = ledger.table(ledger.direction(u, v))
        table[stitch] = bandwidth_bps
        if ledger.reserved_bps(ledger.direction(u, v)) > ledger.capacity_bps + EPSILON_BPS:
            raise InsufficientCapacity(
                f"link {link} ({u}→{v}) has {max(0.0, ledger.capacity_bps - ledger.reserved_bps(ledger.direction(u, v)) + bandwidth_bps):.6g} bit/s free, "
                f"{bandwidth_bps:.6g} asked", field="spec.bandwidth")
        updated[link] = ledger
    return updated


def release(ledgers: Mapping[str, LinkLedger], stitch: str) -> dict[str, LinkLedger]:
    """Copies of the ledgers where `stitch` held something, with its entries removed."""
    updated: dict[str, LinkLedger] = {}
    for link, ledger in ledgers.items():
        if stitch in ledger.forward or stitch in ledger.reverse:
            copy = ledger.copy()
            copy.forward.pop(stitch, None)
            copy.reverse.pop(stitch, None)
            updated[link] = copy
    return updated


def holdings(ledgers: Mapping[str, LinkLedger]) -> dict[str, dict[tuple[str, str], float]]:
    """Per stitch: arc → bit/s it holds (for invariant checks and reporting)."""
    out: dict[str, dict[tuple[str, str], float]] = {}
    for ledger in ledgers.values():
        a, b = ledger.endpoints
        for stitch, bps in ledger.forward.items():
            out.setdefault(stitch, {})[(a, b)] = bps
        for stitch, bps in ledger.reverse.items():
            out.setdefault(stitch, {})[(b, a)] = bps
    return out
