"""The level-triggered reconcile loop: desired (store) vs observed (driver) → plan → apply → status."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Callable

from vnstitch.controller.service import Controller
from vnstitch.domain.stitch import ALLOWED_TRANSITIONS, Measured, State, Stitch, transition
from vnstitch.domain.vnet import VirtualNetwork
from vnstitch.drivers.base import Driver
from vnstitch.errors import VnstitchError
from vnstitch.planning.observed import ObservedStitch
from vnstitch.planning.ops import EnsureNetwork, EnsureStitch, MemberPlacement, Op, SetStitchRate, StitchEnd
from vnstitch.planning.reconcile import Desired, DesiredStitch, Plan, compute_plan
from vnstitch.store import Record
from vnstitch.units import format_bandwidth

log = logging.getLogger("vnstitch.reconciler")


@dataclass
class PassResult:
    plan: Plan
    applied: list[tuple[Op, bool]] = field(default_factory=list)
    errors: list[tuple[Op, str]] = field(default_factory=list)
    transitions: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)


def network_key(tenant: str, name: str) -> str:
    return f"{tenant}/{name}"


class Reconciler:
    """One controller's reconcile loop. `failpoint(name)` may raise to simulate a crash (tests)."""

    def __init__(self, controller: Controller, driver: Driver,
                 failpoint: Callable[[str], None] | None = None, pace: Callable[[], None] | None = None):
        self.controller = controller
        self.driver = driver
        self.failpoint = failpoint or (lambda name: None)
        # Called between items of a pass: the API server passes one that sleeps while requests are in
        # flight, so that a pass over thousands of stitches does not hold the interpreter against them.
        self.pace = pace or (lambda: None)
        # Parsed desired state by object revision: a pass re-parses only what changed.
        self._network_cache: dict[str, tuple[int, VirtualNetwork, EnsureNetwork]] = {}
        self._stitch_cache: dict[str, tuple[tuple[int, ...], DesiredStitch | None, Stitch]] = {}
        # Stitches whose status the last pass left as it was, with the inputs it saw (object and network
        # revisions, observed data plane): with the same inputs and no op, the status cannot change.
        self._settled: dict[str, tuple] = {}

    # desired state ----------------------------------------------------------------------
    def desired(self) -> tuple[Desired, dict[str, Record]]:
        self.controller.refresh()
        cache = self.controller.cache
        desired = Desired()
        vnets: dict[str, VirtualNetwork] = {}
        network_revisions: dict[str, int] = {}
        for record in cache.list("VirtualNetwork"):
            key = network_key(record.namespace, record.name)
            hit = self._network_cache.get(key)
            if hit is None or hit[0] != record.revision:
                vnet = VirtualNetwork.model_validate(record.value)
                hit = (record.revision, vnet, EnsureNetwork(
                    key, vnet.spec.vnid, vnet.spec.cidr,
                    tuple(MemberPlacement(m.name, m.node, m.address) for m in vnet.spec.members)))
                self._network_cache[key] = hit
            network_revisions[key] = record.revision
            vnets[key], desired.networks[key] = hit[1], hit[2]
        for gone in set(self._network_cache) - set(vnets):
            del self._network_cache[gone]
        records: dict[str, Record] = {}
        for n, record in enumerate(cache.list("Stitch")):
            if n % 64 == 63:
                self.pace()
            key = network_key(record.namespace, record.name)
            records[key] = record
            spec = record.value["spec"]
            ends = [network_key(spec[side].get("tenant") or record.namespace, spec[side]["network"]) for side in ("from", "to")]
            version = (record.revision, *(network_revisions.get(e, -1) for e in ends))
            hit = self._stitch_cache.get(key)
            if hit is None or hit[0] != version:
                stitch = Stitch.model_validate(record.value)
                hit = (version, self._desired_stitch(key, record.namespace, stitch, vnets), stitch)
                self._stitch_cache[key] = hit
            if hit[1] is not None:
                desired.stitches[key] = hit[1]
        for gone in set(self._stitch_cache) - set(records):
            del self._stitch_cache[gone]
            self._settled.pop(gone, None)
        return desired, records

    def _desired_stitch(self, key: str, tenant: str, stitch: Stitch,
                        vnets: dict[str, VirtualNetwork]) -> DesiredStitch | None:
        terminating = bool(stitch.metadata.deletion_timestamp) or stitch.status.state in (
            State.TERMINATING, State.TERMINATED)
        op = self._stitch_op(key, tenant, stitch, vnets) if not terminating else None
        if op is None and not terminating:
            return None  # endpoints vanished: leave it to the user to fix or delete
        return DesiredStitch(op, stitch.status.state.value, terminating)

    @staticmethod
    def _stitch_op(key: str, tenant: str, stitch: Stitch, vnets: dict[str, VirtualNetwork]) -> EnsureStitch | None:
        ends = []
        for end, node in ((stitch.spec.from_, stitch.status.path[0] if stitch.status.path else None),
                          (stitch.spec.to, stitch.status.path[-1] if stitch.status.path else None)):
            net_key = network_key(end.tenant or tenant, end.network)
            vnet = vnets.get(net_key)
            if vnet is None or node is None:
                return None
            member = vnet.member(end.member) if end.member else None
            ends.append(StitchEnd(net_key, vnet.spec.vnid, end.subnet or vnet.spec.cidr, node,
                                  member.name if member else None, member.address if member else None))
        return EnsureStitch(key, stitch.spec.type.value, ends[0], ends[1], tuple(stitch.status.path),
                            stitch.status.reserved_bandwidth, stitch.spec.encrypted, stitch.spec.symmetric)

    def plan(self) -> Plan:
        desired, _ = self.desired()
        return compute_plan(desired, self.driver.observe())

    # one pass ---------------------------------------------------------------------------
    def reconcile_once(self, now: float) -> PassResult:
        desired, records = self.desired()
        observed = self.driver.observe()
        self.failpoint("after_observe")
        result = PassResult(compute_plan(desired, observed))
        failed: dict[str, str] = {}
        touched: dict[str, list[Op]] = {}
        for op in result.plan.ops:
            self.pace()
            self.failpoint("before_op")
            try:
                changed = self.driver.apply(op)
                result.applied.append((op, changed))
                touched.setdefault(getattr(op, "stitch", ""), []).append(op)
            except VnstitchError as exc:
                log.warning("op failed: %s: %s", op, exc)
                result.errors.append((op, str(exc)))
                if hasattr(op, "stitch"):
                    failed[op.stitch] = str(exc)
            self.failpoint("after_op")
        observed = self.driver.observe() if result.plan.ops else observed
        self.failpoint("before_status")
        updates = []
        for n, (key, want) in enumerate(desired.stitches.items()):
            if n % 16 == 0:
                self.pace()
            record = records[key]
            if want.terminating:
                if key not in observed.stitches and key not in failed:
                    self.failpoint("before_release")
                    if self.controller.finalize_stitch(record):
                        result.released.append(key)
                continue
            version, _, stitch = self._stitch_cache[key]
            have = observed.stitches.get(want.op.stitch)
            # byte counters move with traffic but never change a status: leave them out of the inputs
            inputs = (version, have and replace(have, tx_bytes=0, rx_bytes=0))
            ops, error = touched.get(key, []), failed.get(key)
            quiet = not ops and error is None
            if quiet and self._settled.get(key) == inputs:
                continue
            new = self._new_status(stitch, want, have, ops, error, now, result)
            if new is None and quiet:
                self._settled[key] = inputs
            else:
                self._settled.pop(key, None)
                if new is not None:
                    updates.append((record, new))
        self.controller.write_statuses(updates, between=self.pace)
        return result

    def _new_status(self, stitch: Stitch, want: DesiredStitch, have: ObservedStitch | None, ops: list[Op],
                    error: str | None, now: float, result: PassResult):
        """The stitch's next status, or None when it stays as it is (a function of its inputs: `now` is
        only stamped on transitions)."""
        status = stitch.status
        steps: list[tuple[State, str]] = []
        if error is not None:
            steps.append((State.FAILED, f"data plane: {error}"))
        elif have is None:
            steps.append((State.ESTABLISHING, "establishing"))
        else:
            matches = (tuple(have.path) == want.op.path and have.encrypted == want.op.encrypted
                       and abs(have.rate_bps - want.op.rate_bps) <= 1e-6 * max(1.0, want.op.rate_bps))
            ensured = [op for op in ops if isinstance(op, EnsureStitch)]
            rate_set = [op for op in ops if isinstance(op, SetStitchRate)]
            if ensured and status.state in (State.ACTIVE, State.ADJUSTING, State.DEGRADED):
                steps.append((State.DEGRADED, ensured[0].reason))
            if status.state in (State.PENDING, State.FAILED):
                steps.append((State.ESTABLISHING, "establishing on " + "→".join(want.op.path)))
            if rate_set:
                steps.append((State.ADJUSTING, f"rate set to {format_bandwidth(rate_set[0].rate_bps)}"))
            slo = self._slo_breach(stitch, have)
            if not matches:
                steps.append((State.DEGRADED, "data plane does not match the reservation"))
            elif slo:
                steps.append((State.DEGRADED, slo))
            else:
                steps.append((State.ACTIVE, "established" if status.state in (State.PENDING, State.ESTABLISHING,
                                                                              State.FAILED) else "up and within SLO"))
        new = status
        for state, reason in steps:
            if state != new.state and state in ALLOWED_TRANSITIONS[new.state]:
                new = transition(new, state, now, reason)
                result.transitions.append(f"{want.op.stitch}: {state.value} ({reason})")
        measured = Measured(latency=have.latency_s, throughput=have.throughput_bps, loss=have.loss) if have else status.measured
        new = new.model_copy(update={"measured": measured, "observed_generation": stitch.metadata.generation})
        return new if new != status else None

    @staticmethod
    def _slo_breach(stitch: Stitch, have) -> str | None:
        if not have.healthy:
            return "tunnel unhealthy"
        if stitch.spec.max_latency is not None and have.latency_s is not None \
                and have.latency_s > stitch.spec.max_latency:
            return f"latency {have.latency_s * 1e3:.1f} ms above {stitch.spec.max_latency * 1e3:.1f} ms"
        if stitch.spec.max_loss is not None and have.loss is not None and have.loss > stitch.spec.max_loss:
            return f"loss {have.loss:.3%} above {stitch.spec.max_loss:.3%}"
        return None

    # loop -------------------------------------------------------------------------------
    def run(self, stop: threading.Event, interval_s: float = 5.0, clock: Callable[[], float] = time.time) -> None:
        """Reconcile at every tick and whenever the store changes, until `stop` is set."""
        store = self.controller.store
        while not stop.is_set():
            try:
                self.reconcile_once(clock())
            except VnstitchError as exc:
                log.error("reconcile pass failed: %s", exc)
            revision = store.revision()  # after our own status writes
            deadline = time.monotonic() + interval_s
            while not stop.is_set() and time.monotonic() < deadline:
                if store.wait(revision, min(0.5, interval_s)):
                    break


__all__ = ["Reconciler", "PassResult"]
