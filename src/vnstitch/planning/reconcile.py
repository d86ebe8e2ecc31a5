"""Desired vs observed → a Plan of ops, each with a reason. Pure: no I/O, no clock (`now` is an argument)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from vnstitch.planning.observed import Observed
from vnstitch.planning.ops import (
    ROTATE_KEYS, EnsureStitch, EnsureNetwork, Op, RemoveNetwork, RemoveStitch, SetStitchRate, describe,
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


def keys_after(op: EnsureStitch, now: float | None) -> float:
    """The time the stitch's keys must be newer than: its rotate-keys request, or now − its rotation
    period when that is later (no `now`: the request alone)."""
    if op.key_rotation_s and now is not None:
        return max(op.keys_after, now - op.key_rotation_s)
    return op.keys_after


def _rotation_reason(op: EnsureStitch, keys_at: float, now: float | None) -> str:
    if keys_at < op.keys_after:
        return f"{ROTATE_KEYS}: requested after they were made"
    return f"{ROTATE_KEYS}: made {(now or 0.0) - keys_at:.0f} s ago, period {op.key_rotation_s:.0f} s"


def compute_plan(desired: Desired, observed: Observed, now: float | None = None) -> Plan:
    """Ops that take the data plane from `observed` to `desired`, networks before stitches. With `now`,
    a stitch whose keys are older than its rotation period gets them replaced too."""
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
        op, due = want.op, keys_after(want.op, now)
        if due != op.keys_after:  # the rotation period is up: the driver is to hold keys newer than `due`
            op = replace(op, keys_after=due)
        if have is None:
            reason = ("drift: tunnel missing" if want.state in ("ACTIVE", "ADJUSTING", "DEGRADED")
                      else f"establish stitch ({want.state.lower()})")
            stitch_ops.append(_with_reason(op, reason))
        elif tuple(have.path) != op.path or have.encrypted != op.encrypted or have.type != op.type:
            stitch_ops.append(_with_reason(op, f"drift: observed path {'→'.join(have.path)} "
                                               f"encrypted={have.encrypted}, want {'→'.join(op.path)} "
                                               f"encrypted={op.encrypted}"))
        elif have.services is not None and tuple(have.services) != op.services:
            stitch_ops.append(_with_reason(op, "drift: the flows the stitch lets through differ from its services"))
        elif have.qos is not None and tuple(have.qos) != op.qos:
            stitch_ops.append(_with_reason(op, "drift: the stitch's QoS classes differ"))
        elif not have.healthy:
            stitch_ops.append(_with_reason(op, f"repair: {have.problem or 'tunnel unhealthy'}"))
        else:
            if not rate_matches(have.rate_bps, op.rate_bps):
                stitch_ops.append(SetStitchRate(key, op.rate_bps,
                                                reason=f"reservation is {format_bandwidth(op.rate_bps)}, "
                                                       f"data plane has {format_bandwidth(have.rate_bps)}"))
            if have.keys_at is not None and have.keys_at < op.keys_after:  # healthy, but its keys are due
                stitch_ops.append(_with_reason(op, _rotation_reason(want.op, have.keys_at, now)))
    for key in sorted(set(observed.stitches) - set(desired.stitches)):
        stitch_ops.append(RemoveStitch(key, reason="orphan: no such stitch in the store"))
    # Stitches go before network removal (a stitch may use a network being removed).
    removals = [RemoveNetwork(key, reason="network deleted") for key in sorted(set(observed.networks) - set(desired.networks))]
    return Plan(ops + stitch_ops + removals)


def _with_reason(op, reason: str):
    return replace(op, reason=reason)
