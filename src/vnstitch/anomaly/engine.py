"""The anomaly engine, run by the leader in each reconcile pass (after the intent engine): every interval of
every AnomalyPolicy it scores the tenant's pairs with the policy's detector (through the Detector contract),
adds the rules no statistics are needed for (traffic no stitch allows, a member's sudden fan-out, a
stitch's link losing packets or slowing down), opens and ends Anomaly records and acts on them:

- a surge gets capacity (the pair's user stitch resized, or a stitch established) before it congests;
- a degraded link is avoided (the stitch re-planned off it);
- a forbidden flow or a fan-out is blocked or rate-limited in the data plane (EnsureFilter, counted);
- in mode suggest the actions wait for an operator's approval; in mode off nothing is done;
- when an anomaly ends its actions are undone, unless an operator keeps them.

What is in force is derived from the store on every pass (CONVENTIONS 12): open anomalies and their actions
are the Anomaly records, the filters the data plane should have are the applied block/rateLimit actions,
the last interval scored and the stitches' denied counters are in the policy's status.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from vnstitch.controller.service import Controller
from vnstitch.domain.anomaly import Anomaly, AnomalyAction, AnomalyPolicy, AnomalyPolicyStatus
from vnstitch.domain.stitch import State, Stitch
from vnstitch.domain.vnet import VirtualNetwork
from vnstitch.errors import Conflict, NotFound, VnstitchError
from vnstitch.planning.ops import EnsureFilter, RemoveFilter, ServiceRule
from vnstitch.store import Compare, Put

log = logging.getLogger("vnstitch.anomaly")
ANOMALY_LABEL = "vnstitch.io/anomaly"          # on stitches an anomaly established
POLICY_LABEL = "vnstitch.io/anomaly-policy"    # on anomalies: the policy that found them
CAPACITY_KINDS = ("spike", "ramp", "level_shift")  # an upward alarm on a pair near its capacity is a surge
FILTER_TYPES = ("block", "rateLimit")
ACTIVE_ACTION = ("applied", "kept")
SURGE_RULE_FACTOR = 2.0   # without a detector verdict, a pair at 2× its median and near capacity is a surge


@dataclass
class Finding:
    """One anomaly seen in this interval (before it is matched to an open record)."""

    kind: str
    pairs: list[str]
    score: float
    evidence: dict[str, Any] = field(default_factory=dict)
    links: list[str] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str]:
        return self.kind, self.pairs[0] if self.pairs else ""


@dataclass
class AnomalyRun:
    tenant: str
    policy: str
    end: float
    ready: bool
    message: str
    opened: list[str] = field(default_factory=list)
    ended: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)


def pair_text(src: str, dst: str) -> str:
    return f"{src}>{dst}"


def anomaly_name(kind: str, pair: str, end: float) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]", "-", pair.replace(">", "-to-"))
    return f"{kind.replace('_', '-')}-{slug}"[:50].rstrip("-.") + f"-{int(end)}"


class AnomalyEngine:
    """AnomalyEngine(controller, telemetry store, driver).step(now) once per pass; `driver` may be a callable
    giving it (the local services open theirs on first use); without one, filters cannot be placed."""

    def __init__(self, controller: Controller, telemetry, driver=None, clock: Callable[[], float] | None = None):
        self.controller = controller
        self.telemetry = telemetry
        self._driver = driver
        self.clock = clock or controller.clock

    @property
    def driver(self):
        return self._driver() if callable(self._driver) and not hasattr(self._driver, "apply") else self._driver

    # --- schedule -----------------------------------------------------------------------------------
    def seconds_until_due(self, now: float) -> float:
        due = 60.0
        for record in self.controller.cache.list("AnomalyPolicy"):
            policy = AnomalyPolicy.model_validate(record.value)
            end = (now // policy.spec.interval) * policy.spec.interval
            done = policy.status.last_end is not None and policy.status.last_end >= end
            due = min(due, end + policy.spec.interval - now if done else 0.0)
        return max(0.0, due)

    def step(self, now: float) -> list[AnomalyRun]:
        """Every policy whose interval is due; then approvals, keeps and the data plane's filters."""
        self.controller.refresh()
        runs = []
        for record in self.controller.cache.list("AnomalyPolicy"):
            try:
                run = self.run_policy(record, now)
            except VnstitchError as exc:   # the store moved, a write was refused: next pass tries again
                log.warning("anomaly policy %s/%s: %s", record.namespace, record.name, exc)
                continue
            if run is not None:
                runs.append(run)
        self.controller.refresh()
        self._end_orphans(now, runs)
        self._answer_operators(now, runs)
        self._sync_filters()
        return runs

    # --- one interval of one policy -----------------------------------------------------------------
    def run_policy(self, record, now: float) -> AnomalyRun | None:
        policy = AnomalyPolicy.model_validate(record.value)
        spec, tenant = policy.spec, record.namespace
        end = (now // spec.interval) * spec.interval
        if policy.status.last_end is not None and policy.status.last_end >= end:
            return None
        networks = self._networks(tenant, spec.networks)
        stitches = self._stitches(tenant)
        opened = self._open(tenant, record.name)
        self._original_bw = {a.target: float(a.detail["previousBps"]) for x in opened for a in x.status.actions
                             if a.type == "resize" and a.state in ACTIVE_ACTION}
        self._filter_counts = self._read_filter_counts()
        pairs = self._pairs(tenant, networks)
        steps = spec.history + 1
        rates = self.telemetry.rates(tenant, pairs, end, steps, spec.interval) if pairs else np.zeros((steps, 0))
        current = rates[-1]
        findings: list[Finding] = []
        ready, message = False, "no pairs with telemetry"
        if pairs:
            joined = np.array([self._joined(stitches, src, dst) for src, dst in pairs], bool)
            verdict, ready, message = self._score(spec, rates, pairs, joined)
            findings += self._statistical(spec, verdict, rates, pairs, stitches, ready)
        denied_now = {s_key(s): int(s.status.measured.denied or 0) for s in stitches.values()
                      if s.status.measured.denied is not None}
        findings += self._forbidden(spec, tenant, current, pairs, networks, stitches, policy.status.denied,
                                    denied_now)
        findings += self._fan_out(spec, rates, pairs)
        findings += self._degraded(spec, stitches)
        findings += self._still_filtered(spec, opened)
        run = AnomalyRun(tenant, record.name, end, ready, message)
        self._record(policy, tenant, record.name, findings, current, pairs, end, now, networks, stitches, run)
        self._write_status(record, policy, end, ready, message, len(pairs), denied_now)
        return run

    def _score(self, spec, rates: np.ndarray, pairs: list[tuple[str, str]], joined: np.ndarray | None = None):
        """The detector's verdict on the last interval, fitted on the ones before (refitted every interval,
        so nothing lives in memory); too little history is 'not ready', never an alarm. Only pairs a stitch
        joins are scored: any traffic between the others is a forbidden flow (`_forbidden`), and a blocked
        one falling to nothing is not an outage."""
        from vnstitch.anomaly.errors import AnomalyInputError
        from vnstitch.anomaly.registry import get_detector

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)   # a pair never observed: all-NaN
            typical = np.nanquantile(rates[:-1], 0.9, axis=0) if rates.shape[0] > 1 else np.full(rates.shape[1], np.nan)
        worth = np.nan_to_num(typical, nan=-1.0) >= max(spec.min_rate, 0.0)
        columns = np.flatnonzero(worth if joined is None else worth & joined)  # pairs worth scoring
        if columns.size == 0:
            if joined is not None and not joined.any():
                return None, False, "not ready: no pair a stitch joins to score (forbidden flows are still found)"
            return None, False, f"not ready: no history yet (needs {spec.min_history} intervals)"
        history = rates[:-1, columns] / 1e6
        seen = ~np.isnan(history).all(axis=1)
        if not seen.any():
            return None, False, f"not ready: no history yet (needs {spec.min_history} intervals)"
        history = history[int(np.argmax(seen)):]
        if history.shape[0] < spec.min_history:
            return None, False, f"not ready: {history.shape[0]} of {spec.min_history} intervals of history"
        stamps = np.datetime64(0, "s") + (np.arange(history.shape[0]) * int(spec.interval)).astype("timedelta64[s]")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)   # pairs seen only lately: all-NaN windows
                detector = get_detector(spec.detector, min_history_steps=spec.min_history, **spec.parameters)
                detector.fit(history, stamps, [pairs[i] for i in columns])
                verdict = detector.score(rates[-1, columns] / 1e6)
        except (AnomalyInputError, TypeError) as exc:
            return None, False, f"not ready: {exc}"
        verdict = dataclasses.replace(verdict, pairs=tuple(int(columns[i]) for i in verdict.pairs))
        if not verdict.ready:
            return verdict, False, f"not ready: {verdict.evidence.get('reason', '')}"
        return verdict, True, "alarm" if verdict.alarm else "ok"

    def _statistical(self, spec, verdict, rates, pairs, stitches, ready: bool) -> list[Finding]:
        current = rates[-1]
        out: list[Finding] = []
        named: set[int] = set()
        if verdict is not None and verdict.ready and verdict.alarm and verdict.pairs:
            top = verdict.pairs[0]
            kind = verdict.kind or "spike"
            kind = "surge" if kind == "ramp" else kind   # a ramp is a surge building up
            names = [pair_text(*pairs[i]) for i in verdict.pairs]
            evidence = {k: v for k, v in verdict.evidence.items() if isinstance(v, (int, float, str)) and "pair" not in k}
            evidence.update(detector=spec.detector, observedBps=_num(current[top]))
            capacity = self._capacity(stitches, *pairs[top])
            if kind in CAPACITY_KINDS and capacity and current[top] > spec.congestion_threshold * capacity:
                kind = "surge"
                evidence["capacityBps"] = capacity
            out.append(Finding(kind, names, float(verdict.score), evidence))
            named.add(top)
        if not ready:   # too little history: nothing statistical is judged, not even the capacity rule
            return out
        # the capacity rule: no detector needed to see a pair running at its stitch's limit far above its norm
        history = rates[:-1]
        for index, (src, dst) in enumerate(pairs):
            if index in named or math.isnan(current[index]):
                continue
            capacity = self._capacity(stitches, src, dst)
            past = history[:, index][~np.isnan(history[:, index])]
            if not capacity or past.size < 3:
                continue
            median = float(np.median(past))
            if current[index] > spec.congestion_threshold * capacity and current[index] > SURGE_RULE_FACTOR * median:
                out.append(Finding("surge", [pair_text(src, dst)], float(current[index] / max(median, 1.0)),
                                   {"rule": "near capacity, above 2x its median", "observedBps": _num(current[index]),
                                    "medianBps": median, "capacityBps": capacity}))
        return out

    def _forbidden(self, spec, tenant, current, pairs, networks, stitches, denied_before, denied_now) -> list[Finding]:
        out = []
        flagged = []
        for index, (src, dst) in enumerate(pairs):
            a, b = src.partition("/")[0], dst.partition("/")[0]
            if a == b or math.isnan(current[index]) or current[index] <= spec.forbidden_rate:
                continue
            if not self._joined(stitches, src, dst):
                flagged.append((index, src, dst))
        # one event once: where the members that send it are known (the Linux driver's guard counts each
        # member), they are named and the network's own sum is left out (its filter would block every member)
        # when they account for it; members each under the forbidden rate leave the network's finding in place
        by_member: dict[tuple[str, str], float] = {}
        for index, src, dst in flagged:
            if "/" in src:
                key = (src.partition("/")[0], dst)
                by_member[key] = by_member.get(key, 0.0) + float(current[index])
        for index, src, dst in flagged:
            if "/" not in src and (src, dst) in by_member \
                    and by_member[(src, dst)] >= float(current[index]) - spec.forbidden_rate:
                continue
            out.append(Finding("forbidden_flow", [pair_text(src, dst)], float(current[index] / spec.forbidden_rate),
                               {"rule": "no stitch, policy or intent lets this pair cross",
                                "observedBps": _num(current[index])}))
        for key, count in denied_now.items():
            before = denied_before.get(key)
            if before is None or count - before < spec.denied_packets:
                continue
            stitch = stitches[key]
            src, dst = stitch.spec.from_.network, stitch.spec.to.network
            if stitch.spec.from_.member:
                src = f"{src}/{stitch.spec.from_.member}"
            out.append(Finding("forbidden_flow", [pair_text(src, dst)], float((count - before) / spec.denied_packets),
                               {"rule": f"stitch {key} denied flows its services do not allow",
                                "deniedPackets": count - before, "stitch": key},
                               links=self._links(stitch)))
        return out

    def _still_filtered(self, spec, opened: list[Anomaly]) -> list[Finding]:
        """An open forbidden flow or fan-out whose filter keeps dropping is still going on (its traffic no
        longer reaches the counters that found it)."""
        out = []
        for anomaly in opened:
            dropped = 0
            for a in anomaly.status.actions:
                if a.type in FILTER_TYPES and a.state in ACTIVE_ACTION and a.detail.get("filter") in self._filter_counts:
                    dropped += self._filter_counts[a.detail["filter"]] - int(a.detail.get("droppedPackets", 0))
            if dropped >= spec.denied_packets:
                out.append(Finding(anomaly.spec.kind, list(anomaly.spec.pairs), float(dropped / spec.denied_packets),
                                   {"rule": "its filter is still dropping", "filterDroppedPackets": dropped}))
        return out

    def _read_filter_counts(self) -> dict[str, int]:
        driver = self.driver
        if driver is None or "filters" not in getattr(driver, "capabilities", ()):
            return {}
        try:
            return {name: f.dropped_packets for name, f in driver.filters().items()}
        except VnstitchError as exc:
            log.warning("reading the filters' counters: %s", exc)
            return {}

    def _open(self, tenant: str, policy: str) -> list[Anomaly]:
        found = [Anomaly.model_validate(r.value) for r in self.controller.cache.list("Anomaly", tenant)]
        return [a for a in found if a.spec.policy == policy and a.status.state == "Open"]

    def _fan_out(self, spec, rates, pairs) -> list[Finding]:
        """A member that starts sending to fanOut or more destinations it never sent to in the history."""
        history, current = rates[:-1], rates[-1]
        new: dict[str, list[str]] = {}
        for index, (src, dst) in enumerate(pairs):
            if "/" not in src or math.isnan(current[index]) or current[index] <= spec.forbidden_rate:
                continue
            past = history[:, index]
            if np.nan_to_num(past).max(initial=0.0) > spec.forbidden_rate:
                continue
            new.setdefault(src, []).append(dst)
        return [Finding("fan_out", [pair_text(src, d) for d in sorted(dsts)], float(len(dsts) / spec.fan_out),
                        {"rule": f"{len(dsts)} new destinations at once (fanOut {spec.fan_out})", "source": src})
                for src, dsts in sorted(new.items()) if len(dsts) >= spec.fan_out]

    def _degraded(self, spec, stitches) -> list[Finding]:
        out = []
        latency = self._link_latencies()
        for key, s in sorted(stitches.items()):
            if s.status.state not in (State.ACTIVE, State.DEGRADED):
                continue
            m = s.status.measured
            path_latency = sum(latency.get(frozenset(arc), 0.0) for arc in zip(s.status.path, s.status.path[1:]))
            why = None
            # every probe lost is a stitch that is down (or a service port nobody answers): the reconciler's to
            # repair, not a link degrading
            if m.loss is not None and spec.max_loss < m.loss < 1.0:
                why = f"loss {m.loss:.1%} above {spec.max_loss:.1%}"
            elif m.latency is not None and path_latency > 0 and m.latency > spec.latency_factor * path_latency:
                why = f"latency {m.latency * 1e3:.1f} ms above {spec.latency_factor:g}× the path's {path_latency * 1e3:.1f} ms"
            if why:
                pair = pair_text(s.spec.from_.network, s.spec.to.network)
                out.append(Finding("link_degraded", [pair], 1.0, {"rule": why, "stitch": key}, self._links(s)))
        return out

    # --- records ---------------------------------------------------------------------------------------
    def _record(self, policy: AnomalyPolicy, tenant: str, policy_name: str, findings: list[Finding], current,
                pairs, end: float, now: float, networks, stitches, run: AnomalyRun) -> None:
        spec = policy.spec
        open_records = {}
        for record in self.controller.cache.list("Anomaly", tenant):
            anomaly = Anomaly.model_validate(record.value)
            if anomaly.spec.policy == policy_name and anomaly.status.state == "Open":
                open_records[(anomaly.spec.kind, anomaly.spec.pairs[0] if anomaly.spec.pairs else "")] = (record, anomaly)
        seen: set[tuple[str, str]] = set()
        for finding in _merge(findings):
            key = finding.key
            if key in seen:
                continue
            seen.add(key)
            if key in open_records:
                record, anomaly = open_records[key]
                status = anomaly.status.model_copy(update={"last_seen": end, "intervals": anomaly.status.intervals + 1})
                new_spec = anomaly.spec.model_copy(update={"score": max(anomaly.spec.score, finding.score)})
                anomaly = anomaly.model_copy(update={"spec": new_spec, "status": status})
                anomaly = self._act(anomaly, finding, spec, tenant, current, pairs, networks, stitches, now, run)
                self._put(record, anomaly)
                continue
            name = anomaly_name(finding.kind, finding.pairs[0], end)
            links = sorted(set(finding.links) | {link for p in finding.pairs for link in self._pair_links(stitches, p)})
            anomaly = Anomaly.model_validate({
                "metadata": {"name": name, "tenant": tenant, "labels": {POLICY_LABEL: policy_name},
                             "creationTimestamp": now, "generation": 1},
                "spec": {"policy": policy_name, "detector": spec.detector, "kind": finding.kind,
                         "pairs": finding.pairs, "links": links, "start": end - spec.interval,
                         "score": finding.score, "evidence": finding.evidence},
                "status": {"state": "Open", "lastSeen": end, "intervals": 1, "detectedAt": self.clock(),
                           "message": f"{finding.kind} on {', '.join(finding.pairs[:3])}"}})
            anomaly = self._act(anomaly, finding, spec, tenant, current, pairs, networks, stitches, now, run)
            self._put(None, anomaly)
            run.opened.append(name)
        for key, (record, anomaly) in open_records.items():
            if key in seen or anomaly.status.last_seen is None:
                continue
            if end - anomaly.status.last_seen >= spec.end_after * spec.interval - 1e-9:
                self._end(record, anomaly, end, now, run)

    def _end(self, record, anomaly: Anomaly, end: float, now: float, run: AnomalyRun,
             message: str = "ended: traffic back to normal") -> None:
        keep = anomaly.spec.keep
        actions = []
        for action in anomaly.status.actions:
            if keep and action.state == "applied":
                action = action.model_copy(update={"state": "kept", "message": "kept by an operator"})
            elif action.state == "applied":
                action = self._undo(anomaly, action, now)
            elif action.state == "suggested":
                action = action.model_copy(update={"state": "declined", "message": "not approved before it ended"})
            actions.append(action)
            if action.state == "undone":
                run.actions.append(f"undid {action.type} {action.target}")
        status = anomaly.status.model_copy(update={"state": "Kept" if keep else "Ended", "end": end, "actions": actions,
                                                   "message": message})
        self._put(record, anomaly.model_copy(update={"status": status}))
        run.ended.append(anomaly.name)

    def _put(self, record, anomaly: Anomaly) -> None:
        tenant, name = anomaly.metadata.tenant, anomaly.name
        value = anomaly.model_dump(by_alias=True, mode="json", exclude_none=True)
        value["metadata"].pop("resourceVersion", None)
        if record is not None:   # the operator's answers (approve, keep) written since we read win
            fresh = self.controller.store.get("Anomaly", tenant, name)
            if fresh is not None:
                value["spec"]["approved"] = fresh.value["spec"].get("approved", False) or value["spec"]["approved"]
                value["spec"]["keep"] = fresh.value["spec"].get("keep", False)
            revision = fresh.revision if fresh is not None else 0
        else:
            revision = 0
        self.controller.store.txn([Compare("Anomaly", tenant, name, revision)] + self.controller.fence,
                                  [Put("Anomaly", tenant, name, value)])

    # --- actions ---------------------------------------------------------------------------------------
    def _act(self, anomaly: Anomaly, finding: Finding, spec, tenant, current, pairs, networks, stitches,
             now: float, run: AnomalyRun) -> Anomaly:
        """Plan the finding's actions once (suggested, or applied in mode auto); re-size a surge that grew."""
        if spec.mode == "off":
            return anomaly
        actions = list(anomaly.status.actions)
        if not actions:
            actions = self._plan_actions(anomaly, finding, spec, tenant, current, pairs, networks, stitches, now)
        elif anomaly.spec.kind == "surge":
            actions = [self._grow(a, finding, spec, now) for a in actions]
        apply_now = spec.mode == "auto" or anomaly.spec.approved
        done = []
        counts = getattr(self, "_filter_counts", {})
        for action in actions:
            if action.type in FILTER_TYPES and action.detail.get("filter") in counts:
                action = action.model_copy(update={"detail": {**action.detail,
                                                              "droppedPackets": counts[action.detail["filter"]]}})
            if action.state == "suggested" and apply_now:
                action = self._apply(anomaly, action, now)
                run.actions.append(f"{action.state} {action.type} {action.target}"
                                   + (f": {action.message}" if action.message else ""))
            elif action.state == "applied" and action.detail.get("grow"):
                action = self._apply(anomaly, action, now)
            done.append(action)
        return anomaly.model_copy(update={"status": anomaly.status.model_copy(update={"actions": done})})

    def _plan_actions(self, anomaly, finding, spec, tenant, current, pairs, networks, stitches,
                      now: float) -> list[AnomalyAction]:
        kind = anomaly.spec.kind
        base = {"state": "suggested", "suggestedAt": now, "reason": f"anomaly {tenant}/{anomaly.name}: {kind}"}
        out = []
        if kind in ("forbidden_flow", "fan_out"):
            action_type = spec.forbidden_action if kind == "forbidden_flow" else "rateLimit"
            for i, pair in enumerate(finding.pairs):
                src, _, dst = pair.partition(">")
                for node, src_addr in self._sources(networks, src):
                    dst_addr = self._address(networks, dst)
                    if dst_addr is None:
                        continue
                    allow = self._allowed_services(stitches, src, dst)
                    out.append(AnomalyAction.model_validate({**base, "type": action_type, "target": pair, "detail": {
                        "filter": f"{tenant}/{anomaly.name}/{len(out)}", "node": node, "src": src_addr,
                        "dst": dst_addr, "rateBps": spec.rate_limit if action_type == "rateLimit" else 0.0,
                        "allow": [{"protocol": r.protocol, "port": r.port} for r in allow]}}))
        elif kind == "surge":
            src, _, dst = finding.pairs[0].partition(">")
            index = pairs.index((src, dst)) if (src, dst) in pairs else None
            observed = float(current[index]) if index is not None and not math.isnan(current[index]) else 0.0
            want = _round_bps(observed * spec.headroom)
            user = self._user_stitch(stitches, src, dst)
            if user is not None:
                out.append(AnomalyAction.model_validate({**base, "type": "resize", "target": s_key(user), "detail": {
                    "previousBps": user.spec.bandwidth, "bandwidthBps": max(want, user.spec.bandwidth)}}))
            elif "/" not in src and "/" not in dst:
                name = f"an-{anomaly.name}"[:63].rstrip("-.")
                out.append(AnomalyAction.model_validate({**base, "type": "establish", "target": f"{tenant}/{name}",
                                                         "detail": {"from": src, "to": dst, "bandwidthBps": want}}))
        elif kind == "link_degraded":
            key = finding.evidence.get("stitch")
            if key:
                out.append(AnomalyAction.model_validate({**base, "type": "reroute", "target": key,
                                                         "detail": {"links": finding.links}}))
        return out

    def _grow(self, action: AnomalyAction, finding: Finding, spec, now: float) -> AnomalyAction:
        """A surge that outgrew what it was given gets more (at the next apply)."""
        observed = float(finding.evidence.get("observedBps") or 0.0)
        if action.type not in ("resize", "establish") or action.state != "applied":
            return action
        given = float(action.detail.get("bandwidthBps", 0.0))
        if observed * spec.headroom > given * 1.1:
            return action.model_copy(update={"detail": {**action.detail, "bandwidthBps": _round_bps(
                observed * spec.headroom), "grow": True}})
        return action

    def _apply(self, anomaly: Anomaly, action: AnomalyAction, now: float) -> AnomalyAction:
        detail = dict(action.detail)
        detail.pop("grow", None)
        try:
            if action.type in FILTER_TYPES:
                driver = self.driver
                if driver is None or "filters" not in getattr(driver, "capabilities", ()):
                    raise VnstitchError(f"the data plane ({getattr(driver, 'name', 'none')}) cannot place filters")
                driver.apply(self._filter_op(action, anomaly))
                message = f"{'dropping' if action.type == 'block' else 'rate-limiting'} {detail['src']}→{detail['dst']} at {detail['node']}"
            elif action.type == "resize":
                owner, _, name = action.target.partition("/")
                record = self.controller.store.get("Stitch", owner, name)
                if record is None:
                    raise NotFound(f"stitch {action.target} is gone")
                stitch = Stitch.model_validate(record.value)
                self._apply_stitch(stitch.model_copy(update={"spec": stitch.spec.model_copy(
                    update={"bandwidth": float(detail["bandwidthBps"])})}))
                message = f"bandwidth {detail['previousBps']:.0f} → {detail['bandwidthBps']:.0f} bit/s"
            elif action.type == "establish":
                owner, _, name = action.target.partition("/")
                self._apply_stitch(Stitch.model_validate({
                    "metadata": {"name": name, "tenant": owner, "labels": {ANOMALY_LABEL: anomaly.name},
                                 "annotations": {"vnstitch.io/why": action.reason}},
                    "spec": {"type": "bandwidth", "from": {"network": detail["from"]}, "to": {"network": detail["to"]},
                             "bandwidth": float(detail["bandwidthBps"]), "origin": "forecast", "priority": 10,
                             "symmetric": False}}))
                message = f"established with {detail['bandwidthBps']:.0f} bit/s"
            elif action.type == "reroute":
                owner, _, name = action.target.partition("/")
                record = self.controller.cache.get("Stitch", owner, name)
                if record is None:
                    raise NotFound(f"stitch {action.target} is gone")
                message = self.controller.replan(record, f"SLO breach: {action.reason}")
            else:
                raise VnstitchError(f"unknown action {action.type}")
        except VnstitchError as exc:
            return action.model_copy(update={"state": "failed", "message": str(exc), "detail": detail})
        return action.model_copy(update={"state": "applied", "applied_at": action.applied_at or now,
                                         "message": message, "detail": detail})

    def _undo(self, anomaly: Anomaly, action: AnomalyAction, now: float) -> AnomalyAction:
        detail = action.detail
        try:
            if action.type in FILTER_TYPES:
                message = "filter removed"   # _sync_filters removes it from the data plane this pass
            elif action.type == "resize":
                owner, _, name = action.target.partition("/")
                record = self.controller.store.get("Stitch", owner, name)
                if record is None:
                    message = "the stitch is gone"
                else:
                    stitch = Stitch.model_validate(record.value)
                    if stitch.spec.bandwidth != float(detail["bandwidthBps"]):
                        message = "left as it is: its bandwidth was changed since"
                    else:
                        self._apply_stitch(stitch.model_copy(update={"spec": stitch.spec.model_copy(
                            update={"bandwidth": float(detail["previousBps"])})}))
                        message = f"bandwidth back to {detail['previousBps']:.0f} bit/s"
            elif action.type == "establish":
                owner, _, name = action.target.partition("/")
                try:
                    self.controller.delete("Stitch", name, owner, fenced=True)
                except NotFound:
                    pass
                message = "stitch ended"
            else:   # reroute: admitted again, so it may take its best path back
                owner, _, name = action.target.partition("/")
                record = self.controller.cache.get("Stitch", owner, name)
                message = self.controller.replan(record, "anomaly ended") if record is not None else "the stitch is gone"
        except VnstitchError as exc:
            return action.model_copy(update={"state": "failed", "message": f"undo failed: {exc}"})
        return action.model_copy(update={"state": "undone", "undone_at": now, "message": message})

    def _apply_stitch(self, stitch: Stitch) -> None:
        for result in self.controller.apply_each([stitch], fenced=True):
            if isinstance(result, VnstitchError):
                raise result

    @staticmethod
    def _filter_op(action: AnomalyAction, anomaly: Anomaly) -> EnsureFilter:
        d = action.detail
        return EnsureFilter(d["filter"], d["node"], d["src"], d["dst"], "drop" if action.type == "block" else "limit",
                            float(d.get("rateBps") or 0.0), tuple(ServiceRule(r["protocol"], r.get("port"))
                                                                  for r in d.get("allow", ())),
                            reason=action.reason)

    def _end_orphans(self, now: float, runs: list[AnomalyRun]) -> None:
        """Open anomalies whose policy was deleted end (their actions undone, unless kept)."""
        policies = {(r.namespace, r.name) for r in self.controller.cache.list("AnomalyPolicy")}
        for record in self.controller.cache.list("Anomaly"):
            anomaly = Anomaly.model_validate(record.value)
            if anomaly.status.state == "Open" and (record.namespace, anomaly.spec.policy) not in policies:
                run = AnomalyRun(record.namespace, anomaly.spec.policy, now, False, "policy deleted")
                self._end(record, anomaly, anomaly.status.last_seen or now, now, run, "ended: its policy was deleted")
                runs.append(run)

    # --- operators and the data plane ----------------------------------------------------------------
    def _answer_operators(self, now: float, runs: list[AnomalyRun]) -> None:
        """Approved suggestions are applied; an ended anomaly kept late keeps nothing (already undone);
        a kept one released (keep false) is undone."""
        for record in self.controller.cache.list("Anomaly"):
            anomaly = Anomaly.model_validate(record.value)
            changed = False
            actions = []
            for action in anomaly.status.actions:
                if anomaly.status.state == "Open" and anomaly.spec.approved and action.state == "suggested":
                    action, changed = self._apply(anomaly, action, now), True
                elif anomaly.status.state == "Kept" and not anomaly.spec.keep and action.state == "kept":
                    action, changed = self._undo(anomaly, action, now), True
                actions.append(action)
            if changed:
                state = "Ended" if anomaly.status.state == "Kept" and not anomaly.spec.keep else anomaly.status.state
                self._put(record, anomaly.model_copy(update={"status": anomaly.status.model_copy(
                    update={"actions": actions, "state": state})}))

    def _sync_filters(self) -> None:
        """The data plane's filters are exactly the applied (or kept) block/rateLimit actions."""
        driver = self.driver
        if driver is None or "filters" not in getattr(driver, "capabilities", ()):
            return
        self.controller.refresh()
        wanted = {}
        for record in self.controller.cache.list("Anomaly"):
            anomaly = Anomaly.model_validate(record.value)
            for action in anomaly.status.actions:
                if action.type in FILTER_TYPES and action.state in ACTIVE_ACTION:
                    op = self._filter_op(action, anomaly)
                    wanted[op.filter] = op
        have = driver.filters()
        for name, op in wanted.items():
            try:
                driver.apply(op)
            except VnstitchError as exc:
                log.warning("filter %s: %s", name, exc)
        for name in set(have) - set(wanted):
            try:
                driver.apply(RemoveFilter(name, reason="its anomaly ended"))
            except VnstitchError as exc:
                log.warning("removing filter %s: %s", name, exc)

    # --- reading the store --------------------------------------------------------------------------------
    def _networks(self, tenant: str, names: list[str] | None) -> dict[str, VirtualNetwork]:
        nets = {r.name: VirtualNetwork.model_validate(r.value) for r in self.controller.cache.list("VirtualNetwork", tenant)}
        return {n: v for n, v in nets.items() if names is None or n in names}

    def _stitches(self, tenant: str) -> dict[str, Stitch]:
        out = {}
        for record in self.controller.cache.list("Stitch", tenant):
            stitch = Stitch.model_validate(record.value)
            if stitch.status.state is State.TERMINATED or stitch.metadata.deletion_timestamp:
                continue
            if stitch.spec.from_.tenant not in (None, tenant) or stitch.spec.to.tenant not in (None, tenant):
                continue
            out[s_key(stitch)] = stitch
        return out

    def _pairs(self, tenant: str, networks: dict[str, VirtualNetwork]) -> list[tuple[str, str]]:
        """Every ordered pair of the selected networks, and every series the telemetry has of them."""
        pairs = {(a, b) for a in networks for b in networks if a != b}
        for sample in self.telemetry.latest(tenant):
            if sample.src.partition("/")[0] in networks and sample.dst.partition("/")[0] in networks:
                pairs.add((sample.src, sample.dst))
        return sorted(pairs)

    @staticmethod
    def _forward(stitch: Stitch, src: str, dst: str) -> bool | None:
        """True when the stitch carries src → dst forward, False backwards, None when it does not join them."""
        a, b = src.partition("/"), dst.partition("/")
        f, t = stitch.spec.from_, stitch.spec.to
        for forward, x, y in ((True, f, t), (False, t, f)):
            if x.network == a[0] and y.network == b[0] and (not x.member or x.member == a[2]) \
                    and (not y.member or y.member == b[2]):
                return forward
        return None

    def _joined(self, stitches, src, dst) -> bool:
        return any(self._forward(s, src, dst) is not None for s in stitches.values())

    def _capacity(self, stitches, src, dst) -> float:
        """The pair's bandwidth as it was before any anomaly gave it more (so a surge stays a surge)."""
        total = 0.0
        original = getattr(self, "_original_bw", {})
        for key, s in stitches.items():
            if ANOMALY_LABEL in s.metadata.labels:
                continue
            forward = self._forward(s, src, dst)
            if forward is True or (forward is False and s.spec.symmetric):
                total += original.get(key, s.spec.bandwidth)
        return total

    def _user_stitch(self, stitches, src, dst) -> Stitch | None:
        found = [s for s in stitches.values() if s.spec.origin == "user" and s.spec.type.value == "bandwidth"
                 and self._forward(s, src, dst) is True]
        return max(found, key=lambda s: (s.spec.bandwidth, s.name)) if found else None

    def _allowed_services(self, stitches, src, dst) -> list[ServiceRule]:
        rules = []
        for s in stitches.values():
            if self._forward(s, src, dst) is True and s.spec.services:
                rules += [ServiceRule(p.protocol, p.port) for p in s.spec.services]
        return rules

    @staticmethod
    def _sources(networks, name: str) -> list[tuple[str, str]]:
        """(node, address or CIDR) where traffic from `name` ('net' or 'net/member') enters the substrate."""
        net, _, member = name.partition("/")
        vnet = networks.get(net)
        if vnet is None:
            return []
        if member:
            m = vnet.member(member)
            return [(m.node, f"{m.address}/32")] if m else []
        return [(node, vnet.spec.cidr) for node in sorted({m.node for m in vnet.spec.members})]

    @staticmethod
    def _address(networks, name: str) -> str | None:
        net, _, member = name.partition("/")
        vnet = networks.get(net)
        if vnet is None:
            return None
        if member:
            m = vnet.member(member)
            return f"{m.address}/32" if m else None
        return vnet.spec.cidr

    def _link_latencies(self) -> dict[frozenset, float]:
        return {frozenset(r.value["spec"]["endpoints"]): float(r.value["spec"].get("latency") or 0.0)
                for r in self.controller.cache.list("Link")}

    def _links(self, stitch: Stitch) -> list[str]:
        names = {frozenset(r.value["spec"]["endpoints"]): r.name for r in self.controller.cache.list("Link")}
        return [names[frozenset(arc)] for arc in zip(stitch.status.path, stitch.status.path[1:]) if frozenset(arc) in names]

    def _pair_links(self, stitches, pair: str) -> list[str]:
        src, _, dst = pair.partition(">")
        return [link for s in stitches.values() if self._forward(s, src, dst) is not None for link in self._links(s)]

    def _write_status(self, record, policy: AnomalyPolicy, end: float, ready: bool, message: str, pairs: int,
                      denied: dict[str, int]) -> None:
        open_count = sum(1 for r in self.controller.store.list("Anomaly", record.namespace)
                         if r.value.get("status", {}).get("state") == "Open"
                         and r.value["spec"].get("policy") == record.name)
        status = AnomalyPolicyStatus(lastEnd=end, ready=ready, message=message, pairs=pairs, open=open_count,
                                     denied=denied, observedGeneration=policy.metadata.generation)
        current = self.controller.store.get("AnomalyPolicy", record.namespace, record.name)
        if current is None:
            return
        value = {**current.value, "status": status.model_dump(by_alias=True, mode="json", exclude_none=True)}
        self.controller.store.txn([Compare("AnomalyPolicy", record.namespace, record.name, current.revision)]
                                  + self.controller.fence, [Put("AnomalyPolicy", record.namespace, record.name, value)])


def s_key(stitch: Stitch) -> str:
    return f"{stitch.metadata.tenant}/{stitch.name}"


def _num(value) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _round_bps(bps: float) -> float:
    """Up to 2 significant digits (a resize does not chase every kbit/s)."""
    if bps <= 0:
        return 0.0
    step = 10 ** max(0, int(math.floor(math.log10(bps))) - 1)
    return float(math.ceil(bps / step) * step)


def _merge(findings: list[Finding]) -> list[Finding]:
    """One finding per (kind, first pair): the strongest, with the others' pairs and evidence folded in."""
    best: dict[tuple[str, str], Finding] = {}
    for f in findings:
        have = best.get(f.key)
        if have is None:
            best[f.key] = f
            continue
        strong, weak = (f, have) if f.score > have.score else (have, f)
        strong.pairs += [p for p in weak.pairs if p not in strong.pairs]
        seen_by = weak.evidence.get("rule") or f"detector {weak.evidence.get('detector', '')}".strip()
        strong.evidence.setdefault("alsoSeenBy", [])
        strong.evidence["alsoSeenBy"] = strong.evidence["alsoSeenBy"] + [seen_by]
        best[f.key] = strong
    return sorted(best.values(), key=lambda f: -f.score)


def answer_anomaly(store, tenant: str, name: str, what: str, value: bool = True) -> Anomaly:
    """An operator's answer: what 'approve' (apply the suggested actions) or 'keep' (keep the actions after the
    anomaly ends; value False releases them), written to the spec with compare-and-swap; the engine acts on it
    at its next pass."""
    field_name = {"approve": "approved", "keep": "keep"}[what]
    for _ in range(8):
        record = store.get("Anomaly", tenant, name)
        if record is None:
            raise NotFound(f"anomaly '{name}' not found in tenant '{tenant}'", field="metadata.name")
        anomaly = Anomaly.model_validate(record.value)
        if what == "approve" and anomaly.status.state != "Open":
            raise Conflict(f"anomaly '{name}' has ended: nothing to approve", field="status.state")
        if what == "keep" and value and anomaly.status.state == "Ended":
            raise Conflict(f"anomaly '{name}' has ended and its actions were undone: nothing to keep",
                           field="status.state")
        updated = {**record.value, "spec": {**record.value["spec"], field_name: value}}
        if store.txn([Compare("Anomaly", tenant, name, record.revision)], [Put("Anomaly", tenant, name, updated)]).succeeded:
            return Anomaly.model_validate(updated)
    raise Conflict(f"anomaly '{name}' kept changing; try again", field="metadata.name")


def metric_families(controller):
    """/metrics: anomalies by kind and state, their actions by type and state (aggregates only)."""
    from prometheus_client.core import GaugeMetricFamily

    records = controller.cache.list("Anomaly")
    anomalies = GaugeMetricFamily("vnstitch_anomalies", "Anomaly records by kind and state.", labels=["kind", "state"])
    actions = GaugeMetricFamily("vnstitch_anomaly_actions", "Remediation actions by type and state.",
                                labels=["type", "state"])
    counts: dict[tuple[str, str], int] = {}
    done: dict[tuple[str, str], int] = {}
    for record in records:
        spec, status = record.value.get("spec", {}), record.value.get("status", {})
        key = (spec.get("kind", ""), status.get("state", "Open"))
        counts[key] = counts.get(key, 0) + 1
        for action in status.get("actions", []):
            akey = (action.get("type", ""), action.get("state", ""))
            done[akey] = done.get(akey, 0) + 1
    for (kind, state), n in sorted(counts.items()):
        anomalies.add_metric([kind, state], n)
    for (kind, state), n in sorted(done.items()):
        actions.add_metric([kind, state], n)
    yield anomalies
    yield actions


__all__ = ["AnomalyEngine", "AnomalyRun", "Finding", "answer_anomaly", "metric_families", "ANOMALY_LABEL", "POLICY_LABEL"]
