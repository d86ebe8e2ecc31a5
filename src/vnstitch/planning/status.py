"""A stitch's next status from what was asked, what the driver observes and what the pass did.

Pure: a function of its inputs (`now` is only stamped on transitions); the reconciler writes it."""

from __future__ import annotations

from vnstitch.domain.stitch import ALLOWED_TRANSITIONS, Measured, State, Stitch, StitchStatus, transition
from vnstitch.planning.observed import ObservedStitch
from vnstitch.planning.ops import EnsureStitch, Op, SetStitchRate, is_key_rotation
from vnstitch.units import format_bandwidth

RATE_TOLERANCE = 1e-6  # relative


def rate_matches(have_bps: float, want_bps: float) -> bool:
    return abs(have_bps - want_bps) <= RATE_TOLERANCE * max(1.0, want_bps)


def slo_breach(stitch: Stitch, have: ObservedStitch) -> str | None:
    """Why an established stitch misses its SLO (health, maxLatency, maxLoss), or None."""
    if not have.healthy:
        return f"tunnel unhealthy: {have.problem}" if have.problem else "tunnel unhealthy"
    spec = stitch.spec
    if spec.max_latency is not None and have.latency_s is not None and have.latency_s > spec.max_latency:
        return f"latency {have.latency_s * 1e3:.1f} ms above {spec.max_latency * 1e3:.1f} ms"
    if spec.max_loss is not None and have.loss is not None and have.loss > spec.max_loss:
        return f"loss {have.loss:.3%} above {spec.max_loss:.3%}"
    return None


def next_status(stitch: Stitch, want: EnsureStitch, have: ObservedStitch | None, ops: list[Op],
                error: str | None, now: float) -> tuple[StitchStatus | None, list[str]]:
    """The stitch's next status (None when it stays as it is) and the transitions taken, as text."""
    status = stitch.status
    steps: list[tuple[State, str]] = []
    if error is not None:
        steps.append((State.FAILED, f"data plane: {error}"))
    elif have is None:
        steps.append((State.ESTABLISHING, "establishing"))
    else:
        matches = (tuple(have.path) == want.path and have.encrypted == want.encrypted
                   and rate_matches(have.rate_bps, want.rate_bps))
        # a key rotation keeps a healthy stitch up: it is not a repair, and does not degrade it
        ensured = [op for op in ops if isinstance(op, EnsureStitch) and not is_key_rotation(op)]
        rate_set = [op for op in ops if isinstance(op, SetStitchRate)]
        if ensured and status.state in (State.ACTIVE, State.ADJUSTING, State.DEGRADED):
            steps.append((State.DEGRADED, ensured[0].reason))
        if status.state in (State.PENDING, State.FAILED):
            steps.append((State.ESTABLISHING, "establishing on " + "→".join(want.path)))
        if rate_set:
            steps.append((State.ADJUSTING, f"rate set to {format_bandwidth(rate_set[0].rate_bps)}"))
        slo = slo_breach(stitch, have)
        if not matches:
            steps.append((State.DEGRADED, "data plane does not match the reservation"))
        elif slo:
            steps.append((State.DEGRADED, slo))
        elif ensured and status.state in (State.ACTIVE, State.ADJUSTING, State.DEGRADED):
            steps.append((State.ACTIVE, f"repaired ({ensured[0].reason})"))
        else:
            steps.append((State.ACTIVE, "established" if status.state in (State.PENDING, State.ESTABLISHING,
                                                                          State.FAILED) else "up and within SLO"))
    new, taken = status, []
    for state, reason in steps:
        if state != new.state and state in ALLOWED_TRANSITIONS[new.state]:
            new = transition(new, state, now, reason)
            taken.append(f"{want.stitch}: {state.value} ({reason})")
    measured = status.measured
    if have is not None:  # a value the driver has not measured (yet) keeps the last one measured
        old = status.measured
        measured = Measured(latency=_or(have.latency_s, old.latency), throughput=_or(have.throughput_bps, old.throughput),
                            loss=_or(have.loss, old.loss), denied=_or(have.denied_packets, old.denied))
    update = {"measured": measured, "observed_generation": stitch.metadata.generation}
    if have is not None and have.keys_at is not None:
        update["keys_rotated_at"] = have.keys_at
    new = new.model_copy(update=update)
    if new == status:
        return None, taken
    if new.model_copy(update={"measured": status.measured}) == status and _close(status.measured, measured):
        return None, taken  # only a measurement moved, and by little: not worth a write on every pass
    return new, taken


MEASURED_CHANGE = 0.10  # relative change of a measured value that is written back to the status


def _or(value, fallback):
    return fallback if value is None else value


def _close(old: Measured, new: Measured) -> bool:
    if old.denied != new.denied:  # a forbidden flow's packets: every one is news to the intent engine
        return False
    for before, after in ((old.latency, new.latency), (old.throughput, new.throughput), (old.loss, new.loss)):
        if (before is None) != (after is None):
            return False
        if before is not None and abs(after - before) > MEASURED_CHANGE * max(abs(before), 1e-9):
            return False
    return True


__all__ = ["next_status", "slo_breach", "rate_matches"]
