"""Desired vs observed → a Plan of ops, each with a reason. Pure: no I/O, no clock."""

from __future__ import annotations

from dataclasses import dataclass, field

from vnstitch.planning.observed import Observed
from vnstitch.planning.ops import (
    EnsureNetwork, EnsureStitch, Op, RemoveNetwork, RemoveStitch, SetStitchRate, describe,
)
from vnstitch.planning.status import rate_matches
from vnstitch.units import format_bandwidth


@dataclass(frozen=True)
class DesiredStitch:
    """What one stored stitch asks of the data plane, or that it be removed."""

    op: EnsureStitch | None   # None: withdrawn (re-planning found it forbidden or impossible)
    state: str
    terminating: bool = False
    reason: str = ""          # why it is withdrawn


@dataclass
class Desired:
    networks: dict[str, EnsureNetwork] = field(default_factory=dict)
    stitches: dict[str, DesiredStitch] = field(default_factory=dict)


@dataclass
class Plan:
    ops: list[Op] = field(default_factory=list)
    # stitches to admit again (new path and reservation, or withdrawal) before the ops: (stitch, why)
    replans: list[tuple[str, str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.ops or self.replans)

    def lines(self) -> list[str]:
        return [f"re-plan stitch {key}: {reason}" for key, reason in self.replans] + [describe(op) for op in self.ops]

    def render(self) -> str:
        if not self:
            return "No changes: the data plane matches the desired state."
        return "\n".join(f"{i + 1:3d}. {line}" for i, line in enumerate(self.lines()))


def _network_matches(want: EnsureNetwork, observed) -> bool:
    return (observed is not None and observed.vnid == want.vnid
            and observed.nodes == frozenset(m.node for m in want.members)
            and observed.members == frozenset(m.name for m in want.members)
            and (observed.placements is None  # a member that moved to another node is drift too
                 or observed.placements == frozenset((m.name, m.node) for m in want.members)))


def compute_plan(desired: Desired, observed: Observed) -> Plan:
    """Ops that take the data plane from `observed` to `desired`, networks before stitches."""
    ops: list[Op] = []
    for key, want in sorted(desired.networks.items()):
        have = observed.networks.get(key)
        if have is None:
            ops.append(_with_reason(want, "network has no data-plane state yet"))
        elif not _network_matches(want, have):
            ops.append(_with_reason(want, "drift: network membership or VNID differs"))
    stitch_ops: list[Op] = []
    for key, want in sorted(desired.stitches.items()):
        have = observed.stitches.get(key)
        if want.terminating:
            if have is not None:
                stitch_ops.append(RemoveStitch(key, reason="stitch is terminating"))
            continue
        if want.op is None:  # admitted no longer (forbidden or impossible): nothing of it may stay
            if have is not None:
                stitch_ops.append(RemoveStitch(key, reason=f"withdrawn: {want.reason}"))
            continue
        op = want.op
        if have is None:
            reason = ("drift: tunnel missing" if want.state in ("ACTIVE", "ADJUSTING", "DEGRADED")
                      else f"establish stitch ({want.state.lower()})")
            stitch_ops.append(_with_reason(op, reason))
        elif tuple(have.path) != op.path or have.encrypted != op.encrypted or have.type != op.type:
            stitch_ops.append(_with_reason(op, f"drift: observed path {'→'.join(have.path)} "
                                               f"encrypted={have.encrypted}, want {'→'.join(op.path)} "
                                               f"encrypted={op.encrypted}"))
        elif not have.healthy:
            stitch_ops.append(_with_reason(op, f"repair: {have.problem or 'tunnel unhealthy'}"))
        elif not rate_matches(have.rate_bps, op.rate_bps):
            stitch_ops.append(SetStitchRate(key, op.rate_bps, reason=f"reservation is {format_bandwidth(op.rate_bps)}, "
                                                                    f"data plane has {format_bandwidth(have.rate_bps)}"))
    for key in sorted(set(observed.stitches) - set(desired.stitches)):
        stitch_ops.append(RemoveStitch(key, reason="orphan: no such stitch in the store"))
    # Stitches go before network removal (a stitch may use a network being removed).
    removals = [RemoveNetwork(key, reason="network deleted") for key in sorted(set(observed.networks) - set(desired.networks))]
    return Plan(ops + stitch_ops + removals)


def _with_reason(op, reason: str):
    from dataclasses import replace

    return replace(op, reason=reason)
