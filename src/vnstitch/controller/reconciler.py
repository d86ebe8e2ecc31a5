"""The level-triggered reconcile loop: desired (store) vs observed (driver) → plan → apply → status."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Callable

from vnstitch.controller.service import Controller, slo_breached, terminated
from vnstitch.domain.stitch import State, Stitch
from vnstitch.domain.vnet import VirtualNetwork
from vnstitch.drivers.base import Driver
from vnstitch.errors import VnstitchError
from vnstitch.planning.observed import ObservedStitch
from vnstitch.planning import desired as desired_ops
from vnstitch.planning.desired import network_key
from vnstitch.planning.ops import EnsureNetwork, EnsureStitch, Op
from vnstitch.planning.reconcile import Desired, DesiredStitch, Plan, compute_plan
from vnstitch.planning.status import next_status
from vnstitch.store import Record

log = logging.getLogger("vnstitch.reconciler")
TERMINATED_RETENTION_S = 24 * 3600.0  # a finished stitch stays readable this long, like a finished Job


@dataclass
class PassResult:
    plan: Plan
    applied: list[tuple[Op, bool]] = field(default_factory=list)
    errors: list[tuple[Op, str]] = field(default_factory=list)
    transitions: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    replanned: list[tuple[str, str, str]] = field(default_factory=list)  # stitch, why, outcome
    purged: list[str] = field(default_factory=list)                      # finished stitches removed


class Reconciler:
    """One controller's reconcile loop. `failpoint(name)` may raise to simulate a crash (tests)."""

    def __init__(self, controller: Controller, driver: Driver,
                 failpoint: Callable[[str], None] | None = None, pace: Callable[[], None] | None = None,
                 terminated_retention_s: float = TERMINATED_RETENTION_S):
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
        # Stitches whose admission was last checked against these inputs (generation, its networks'
        # revisions, the substrate's version): a change to any re-plans it in the same pass.
        self._checked: dict[str, tuple] = {}
        self._replans: dict[str, tuple[str, tuple]] = {}  # found by the last desired(): reason, inputs
        self._terminated: list[Record] = []               # finished stitches seen by the last desired()
        self.terminated_retention_s = terminated_retention_s

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
                hit = (record.revision, vnet, desired_ops.network_op(vnet))
                self._network_cache[key] = hit
            network_revisions[key] = record.revision
            vnets[key], desired.networks[key] = hit[1], hit[2]
        for gone in set(self._network_cache) - set(vnets):
            del self._network_cache[gone]
        records: dict[str, Record] = {}
        self._replans = {}
        substrate = self.controller.substrate_version
        self._terminated = []
        for n, record in enumerate(cache.list("Stitch")):
            if n % 64 == 63:
                self.pace()
            if terminated(record.value):
                self._terminated.append(record)  # finished: kept for inspection, not desired
                continue
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
            # an SLO breach is an input too: a stitch that starts missing its bound is re-planned once
            inputs = (hit[2].metadata.generation, *version[1:], substrate, slo_breached(hit[2]))
            if self._checked.get(key) != inputs:
                reason = self.controller.replan_reason(hit[2])
                if reason is None:
                    self._checked[key] = inputs
                else:
                    self._replans[key] = (reason, inputs)
        for gone in set(self._stitch_cache) - set(records):
            del self._stitch_cache[gone]
            self._settled.pop(gone, None)
            self._checked.pop(gone, None)
        return desired, records

    def _desired_stitch(self, key: str, tenant: str, stitch: Stitch,
                        vnets: dict[str, VirtualNetwork]) -> DesiredStitch | None:
        terminating = bool(stitch.metadata.deletion_timestamp) or stitch.status.state in (
            State.TERMINATING, State.TERMINATED)
        op = self._stitch_op(key, tenant, stitch, vnets) if not terminating else None
        if op is None and not terminating:  # withdrawn, or its ends vanished: nothing of it may stay
            return DesiredStitch(None, stitch.status.state.value, False,
                                 stitch.status.message or "it has no admitted path")
        return DesiredStitch(op, stitch.status.state.value, terminating)

    @staticmethod
    def _stitch_op(key: str, tenant: str, stitch: Stitch, vnets: dict[str, VirtualNetwork]) -> EnsureStitch | None:
        return desired_ops.stitch_op(key, tenant, stitch, tuple(stitch.status.path), vnets,
                                     stitch.status.reserved_bandwidth)

    def plan(self) -> Plan:
        desired, _ = self.desired()
        plan = compute_plan(desired, self.driver.observe(), self.controller.clock())
        plan.replans = sorted((key, reason) for key, (reason, _) in self._replans.items())
        return plan

    def _replan(self, result: "PassResult") -> None:
        """Re-admit every stitch whose inputs changed so that it no longer holds as admitted."""
        for key, (reason, inputs) in sorted(self._replans.items()):
            self.pace()
            self.failpoint("before_replan")
            try:
                outcome = self.controller.replan(self._stitch_record(key), reason)
            except VnstitchError as exc:  # e.g. fenced out: no longer the leader; the next pass retries
                log.warning("re-plan %s (%s) failed: %s", key, reason, exc)
                continue
            log.info("re-plan %s (%s): %s", key, reason, outcome)
            result.replanned.append((key, reason, outcome))
            self._checked[key] = inputs

    def _stitch_record(self, key: str) -> Record:
        namespace, name = key.split("/", 1)
        return self.controller.cache.get("Stitch", namespace, name)

    # one pass ---------------------------------------------------------------------------
    def reconcile_once(self, now: float) -> PassResult:
        desired, records = self.desired()
        replanned: list[tuple[str, str, str]] = []
        if self._replans:
            self._replan(PassResult(Plan(), replanned=replanned))
            desired, records = self.desired()  # with the new paths and reservations
        observed = self.driver.observe()
        self.failpoint("after_observe")
        result = PassResult(compute_plan(desired, observed, now), replanned=replanned)
        result.plan.replans = [(key, reason) for key, reason, _ in replanned]
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
            if want.op is None and not want.terminating:
                continue  # withdrawn: its status says why; the plan removed what the data plane had
            if want.terminating:
                if key not in observed.stitches and key not in failed:
                    self.failpoint("before_release")
                    if self.controller.finalize_stitch(record, now):
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
        self._purge_terminated(now, result)
        return result

    def _purge_terminated(self, now: float, result: PassResult) -> None:
        """Delete the records of stitches that finished more than the retention period ago."""
        for record in self._terminated:
            history = record.value["status"].get("history") or [{}]
            finished = history[-1].get("time") or record.value["metadata"].get("deletionTimestamp") or now
            if now - finished >= self.terminated_retention_s and self.controller.purge(record):
                result.purged.append(network_key(record.namespace, record.name))

    def _new_status(self, stitch: Stitch, want: DesiredStitch, have: ObservedStitch | None, ops: list[Op],
                    error: str | None, now: float, result: PassResult):
        """The stitch's next status, or None when it stays as it is (planning.status decides)."""
        new, taken = next_status(stitch, want.op, have, ops, error, now)
        result.transitions.extend(taken)
        return new


__all__ = ["Reconciler", "PassResult"]
