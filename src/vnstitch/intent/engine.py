"""The intent engine: the fulfilment loop (compile, negotiate, enforce) and the assurance loop (assess,
report, remediate) of RFC 9315, run by the leader before each reconcile pass.

Everything an intent owns carries the label vnstitch.io/intent=<name> (stitches, networks it made) or
names it (proposals), so what is in force is derived from the store on every pass (CONVENTIONS 12):
a restart or a new leader continues where the last stopped, and what an intent no longer wants, or an
intent that is gone, is cleaned up.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field

from vnstitch.controller.service import Controller
from vnstitch.domain.intent import (
    REPORTS_KEPT, Compiled as CompiledStatus, Condition, ExpectationReport, Fulfilment, Intent, IntentReport,
    IntentStatus, Proposal, ProposalEvent, ProposalStatus,
)
from vnstitch.domain.stitch import State, Stitch
from vnstitch.domain.vnet import Policy, VirtualNetwork
from vnstitch.errors import Conflict, NotFound, VnstitchError
from vnstitch.intent import checks
from vnstitch.intent.translators import (
    EXPECTATION_LABEL, INTENT_LABEL, Assessment, Compiled, Context, TranslatorRegistry, WantedStitch,
    allowed_entries, consent_key, default_registry, not_fulfilled,
)
from vnstitch.intent.vngraph import NetworkRef, VNGraph
from vnstitch.store import Compare, Put

log = logging.getLogger("vnstitch.intent")
POLICY_BEFORE = "vnstitch.io/policy-before-intents"  # a network's policy as it was before intents changed it


def graph_of(controller: Controller, staged: dict | None = None) -> tuple[VNGraph, list[Intent]]:
    """The virtual network graph over the controller's cache, and every stored intent; `staged` (an apply's
    batch: (kind, namespace, name) → value or None) overlays what the same apply writes before them."""
    controller.refresh()
    found: dict[str, dict[tuple[str, str], object]] = {}
    for kind, cls in (("VirtualNetwork", VirtualNetwork), ("Stitch", Stitch), ("Intent", Intent)):
        found[kind] = {(r.namespace, r.name): controller._typed(cls, r) for r in controller.cache.list(kind)}
        for (staged_kind, namespace, name), value in (staged or {}).items():
            if staged_kind != kind:
                continue
            if value is None:
                found[kind].pop((namespace, name), None)
            else:
                found[kind][(namespace, name)] = cls.model_validate(value)
    intents = list(found["Intent"].values())
    return VNGraph(list(found["VirtualNetwork"].values()), list(found["Stitch"].values()), intents), intents


def proposal_name(tenant: str, intent: str, expectation: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "-", f"{tenant}-{intent}-{expectation}")[:63].rstrip("-.")


@dataclass
class IntentRun:
    tenant: str
    intent: str
    state: str
    actions: list[str] = field(default_factory=list)
    report: int | None = None


class IntentEngine:
    def __init__(self, controller: Controller, registry: TranslatorRegistry | None = None):
        self.controller = controller
        self.registry = registry or default_registry()
        self._inputs: dict[tuple[str, str], tuple] = {}  # what each intent's last run saw (scheduling only)

    def _fingerprint(self, record) -> tuple:
        """The revisions of what an intent's verdict depends on: itself, its stitches, its proposals."""
        tenant, name = record.namespace, record.name
        stitches = tuple(sorted((r.name, r.revision) for r in self.controller.cache.list("Stitch", tenant)
                                if r.value["metadata"].get("labels", {}).get(INTENT_LABEL) == name))
        proposals = tuple(sorted((r.namespace, r.name, r.revision) for r in self.controller.cache.list("Proposal")
                                 if r.value["spec"].get("requester") == tenant and r.value["spec"].get("intent") == name))
        return record.value["metadata"].get("generation"), stitches, proposals

    # --- the loop -------------------------------------------------------------------------------
    def step(self, now: float) -> list[IntentRun]:
        """Run every intent that is due (new generation, or its assurance interval passed), then clean up
        what belongs to intents that are gone."""
        controller = self.controller
        controller.refresh()
        runs = []
        for record in controller.cache.list("Intent"):
            intent = controller._typed(Intent, record)
            status = intent.status
            inputs = self._fingerprint(record)
            due = (status.observed_generation != intent.metadata.generation or status.last_assessed is None
                   or now - status.last_assessed >= intent.spec.assurance_interval
                   or self._inputs.get((record.namespace, record.name)) != inputs)
            if not due:
                continue
            try:
                runs.append(self.run(record, intent, now))
                self.controller.refresh()
                self._inputs[(record.namespace, record.name)] = self._fingerprint(record)
            except VnstitchError as exc:  # the store moved, a write was refused: next pass tries again
                log.warning("intent %s/%s: %s", record.namespace, record.name, exc)
        self._collect_orphans(now)
        return runs

    def seconds_until_due(self, now: float) -> float:
        waits = [60.0]
        for record in self.controller.cache.list("Intent"):
            intent = self.controller._typed(Intent, record)
            if intent.status.last_assessed is None or intent.status.observed_generation != intent.metadata.generation:
                return 0.0
            waits.append(intent.status.last_assessed + intent.spec.assurance_interval - now)
        return max(0.0, min(waits))

    def run(self, record, intent: Intent, now: float) -> IntentRun:
        tenant, name = intent.metadata.tenant, intent.metadata.name
        validity = intent.spec.validity
        actions: list[str] = []
        if validity is not None and validity.end is not None and now >= validity.end:
            actions += self._withdraw(tenant, name, keep=set(), reason="the intent's validity ended", now=now)
            state = "Finalized" if not self._owned_stitches(tenant, name) else "Finalizing"
            return self._write_status(record, intent, now, state, [], CompiledStatus(), actions,
                                      "validity ended: everything it put in force is withdrawn")
        if validity is not None and validity.start is not None and now < validity.start:
            actions += self._withdraw(tenant, name, keep=set(), reason="the intent is not valid yet", now=now)
            return self._write_status(record, intent, now, "Received", [], CompiledStatus(), actions,
                                      "valid from its start time: nothing in force yet")
        graph, _ = graph_of(self.controller)
        ctx = self._context(intent, graph, now)
        compiled, failures = Compiled(), {}
        for exp in intent.spec.expectations:
            try:
                compiled.merge(self.registry.get(exp.type).compile(exp, ctx))
            except VnstitchError as exc:
                failures[exp.id] = str(exc)
            except Exception as exc:  # noqa: BLE001 - a plugin's bug fails its expectation, not the engine
                log.exception("translator %s failed to compile %s/%s", exp.type, tenant, name)
                failures[exp.id] = f"translator {exp.type} failed: {type(exc).__name__}: {exc}"
        summary, errors = self._enforce(intent, compiled, graph, now, actions)
        failures.update(errors)
        # assess against what is stored now
        graph, _ = graph_of(self.controller)
        ctx = self._context(intent, graph, now)
        assessments: list[tuple[str, Assessment]] = []
        for exp in intent.spec.expectations:
            if exp.id in failures:
                assessments.append((exp.id, not_fulfilled("FULFILMENTFAILED", failures[exp.id])))
                continue
            try:
                assessments.append((exp.id, self.registry.get(exp.type).assess(exp, ctx)))
            except VnstitchError as exc:
                assessments.append((exp.id, not_fulfilled("FULFILMENTFAILED", str(exc))))
            except Exception as exc:  # noqa: BLE001 - as above
                log.exception("translator %s failed to assess %s/%s", exp.type, tenant, name)
                assessments.append((exp.id, not_fulfilled("FULFILMENTFAILED", f"translator {exp.type} failed: "
                                                                              f"{type(exc).__name__}: {exc}")))
        actions += self._remediate(tenant, assessments, now)
        if all(a.verdict == "FULFILLED" for _, a in assessments):
            state = "Compliant"
        elif all(a.state == "ACKNOWLEDGED" for _, a in assessments if a.verdict != "FULFILLED"):
            state = "Received"
        else:
            state = "Degraded"
        return self._write_status(record, intent, now, state, assessments, summary, actions)

    # --- reading ----------------------------------------------------------------------------------
    def _context(self, intent: Intent, graph: VNGraph, now: float) -> Context:
        stitches = {f"{s.metadata.tenant}/{s.metadata.name}": s for s in graph.stitches}
        ctx = checks.context_for(intent, graph, now, stitches=stitches)
        for proposal in self._proposals():
            spec = proposal.spec
            if spec.requester == intent.metadata.tenant and spec.intent == intent.metadata.name:
                ctx.proposals[consent_key(f"{proposal.metadata.tenant}/{spec.network}", spec.from_network)] = \
                    proposal.status.state
        return ctx

    def _proposals(self) -> list[Proposal]:
        return [self.controller._typed(Proposal, r) for r in self.controller.cache.list("Proposal")]

    def _grants(self, network_key: str) -> set[str]:
        """Peers accepted proposals let into `network_key`."""
        return {p.spec.from_network for p in self._proposals() if p.status.state == "Accepted"
                and f"{p.metadata.tenant}/{p.spec.network}" == network_key}

    def _owned_stitches(self, tenant: str, intent: str) -> list[Stitch]:
        return [self.controller._typed(Stitch, r) for r in self.controller.cache.list("Stitch", tenant)
                if r.value["metadata"].get("labels", {}).get(INTENT_LABEL) == intent]

    # --- enforcing --------------------------------------------------------------------------------
    def _enforce(self, intent: Intent, compiled: Compiled, graph: VNGraph, now: float,
                 actions: list[str]) -> tuple[CompiledStatus, dict[str, str]]:
        tenant, name = intent.metadata.tenant, intent.metadata.name
        errors: dict[str, str] = {}
        created = []
        for doc in compiled.networks:
            if self.controller.cache.get("VirtualNetwork", tenant, doc["metadata"]["name"]) is None:
                self._apply([VirtualNetwork.model_validate(doc)])
                actions.append(f"created network {tenant}/{doc['metadata']['name']} for the group")
            created.append(f"{tenant}/{doc['metadata']['name']}")
        if compiled.networks:
            graph, _ = graph_of(self.controller)
        policies = self._enforce_policies(intent, compiled, graph, actions)
        wanted: dict[str, WantedStitch] = {}
        proposals = []
        for want in compiled.stitches:
            exp_id = next((e.id for e in intent.spec.expectations if want.name.endswith(e.id)), "")
            if want.consent is not None:
                state = self._ensure_proposal(intent, exp_id, want, now, actions)
                proposals.append(f"{want.consent.network.tenant}/{proposal_name(tenant, name, exp_id)}: {state}")
                if state != "Accepted" or not self._consents(graph, want.consent.network.key, want.consent.peer):
                    continue  # nothing crosses until both agree
            elif want.spec["to"].get("tenant", tenant) != tenant:  # consent given by an accepted proposal: keep it
                proposals += [f"{p.metadata.tenant}/{p.metadata.name}: {p.status.state}" for p in self._proposals()
                              if p.spec.requester == tenant and p.spec.intent == name and p.spec.expectation == exp_id
                              and p.status.state == "Accepted"]
            wanted[want.name] = want
            error = self._ensure_stitch(tenant, name, exp_id, want, actions)
            if error:
                errors[exp_id] = error
        actions += self._withdraw(tenant, name, keep=set(wanted), reason="no longer compiled from the intent",
                                  now=now, keep_proposals={p.split(": ")[0] for p in proposals})
        routes = []
        for stitch_name_ in sorted(wanted):
            record = self.controller.store.get("Stitch", tenant, stitch_name_)
            path = (record.value.get("status") or {}).get("path") if record else None
            if path:
                routes.append(f"{tenant}/{stitch_name_}: {'→'.join(path)}")
        return CompiledStatus(stitches=[f"{tenant}/{n}" for n in sorted(wanted)], networks=created,
                              policies=policies, proposals=proposals, rules=compiled.rules, routes=routes), errors

    @staticmethod
    def _consents(graph: VNGraph, network_key: str, peer: NetworkRef) -> bool:
        """Does the policy of `network_key` now let `peer` in (an accepted proposal made it so)? `graph` is
        this run's: an acceptance lands between runs, never during one."""
        net, peer_net = graph.networks.get(network_key), graph.networks.get(peer.key)
        return net is not None and graph.allows(graph.ref(net), graph.ref(peer_net) if peer_net else peer)

    def _apply(self, resources) -> None:
        results = self.controller.apply_each(resources, fenced=True)
        for result in results:
            if isinstance(result, VnstitchError):
                raise result

    def _enforce_policies(self, intent: Intent, compiled: Compiled, graph: VNGraph, actions: list[str]) -> list[str]:
        """Isolated groups: exactly the peers the intent (and accepted proposals) allow. Other groups: the
        peers the intent reaches are added. The policy before the first change is kept (annotation)."""
        tenant = intent.metadata.tenant
        wanted: dict[str, tuple[NetworkRef, list[str] | None, set[str]]] = {}
        isolated = {g.key for g in compiled.isolate}
        extra: dict[str, dict] = {}  # policy fields translators set (allowedTrustZones, allowUnencrypted)
        for group, fields in compiled.policy:
            extra.setdefault(group.key, {}).update(fields)
        reach: dict[str, set[str]] = {}
        for group, peer in compiled.allow:
            reach.setdefault(group.key, set()).add(peer.key)
            if peer.tenant == tenant:  # our own service network lets the group in too
                reach.setdefault(peer.key, set()).add(group.key)
        lines = []
        for key in sorted(isolated | set(reach) | set(extra)):
            net = graph.networks.get(key)
            if net is None or net.metadata.tenant != tenant:
                continue
            ref = graph.ref(net)
            peers = reach.get(key, set()) | self._grants(key)
            policy = net.spec.policy
            current = list(policy.allow_stitch_to) if policy and policy.allow_stitch_to is not None else None
            if key in isolated:
                target = allowed_entries(ref, peers)
                lines.append(f"{key}: isolated; allows {', '.join(target) or 'nothing'}")
            else:
                missing = [e for e in allowed_entries(ref, peers) if not _allows_entry(net, e)]
                if peers:
                    lines.append(f"{key}: allows {', '.join(allowed_entries(ref, peers))}")
                target = (current if current is not None else (["*"] if missing else None))
                target = target + missing if target is not None else None
            fields = extra.get(key, {})
            lines += [f"{key}: {name} {value}" for name, value in sorted(fields.items())]
            have = policy.model_dump(by_alias=True) if policy else {}
            if (current is None and target is None or current is not None and target is not None
                    and sorted(map(str, current)) == sorted(map(str, target))) \
                    and all(have.get(name) == value for name, value in fields.items()):
                continue
            wanted[key] = (ref, target, fields)
        for key, (ref, target, fields) in wanted.items():
            net = graph.networks[key]
            annotations = dict(net.metadata.annotations)
            if POLICY_BEFORE not in annotations:
                before = net.spec.policy.model_dump(by_alias=True, mode="json") if net.spec.policy else None
                annotations[POLICY_BEFORE] = json.dumps(before)
            annotations.setdefault("vnstitch.io/policy-set-by", f"intent {intent.metadata.name}")
            policy = Policy.model_validate({**(net.spec.policy.model_dump(by_alias=True) if net.spec.policy else {}),
                                            "allowStitchTo": target, **fields})
            new = net.model_copy(update={"spec": net.spec.model_copy(update={"policy": policy}),
                                         "metadata": net.metadata.model_copy(update={"annotations": annotations})})
            try:
                self._apply([new])
                said = [f"allows {', '.join(target) or 'nothing'}"] if target is not None else []
                said += [f"{name} {value}" for name, value in sorted(fields.items())]
                actions.append(f"set the policy of {key}: " + "; ".join(said))
            except VnstitchError as exc:
                actions.append(f"could not set the policy of {key}: {exc}")
        return lines

    def _ensure_stitch(self, tenant: str, intent: str, exp_id: str, want: WantedStitch,
                       actions: list[str]) -> str | None:
        current = self.controller.cache.get("Stitch", tenant, want.name)
        doc = {"apiVersion": "vnstitch.io/v1", "kind": "Stitch",
               "metadata": {"name": want.name, "tenant": tenant,
                            "labels": {INTENT_LABEL: intent, EXPECTATION_LABEL: exp_id},
                            "annotations": {"vnstitch.io/why": want.why}},
               "spec": want.spec}
        stitch = Stitch.model_validate(doc)
        if current is not None:
            have = Stitch.model_validate(current.value)
            if have.status.state in (State.TERMINATING, State.TERMINATED) or have.metadata.deletion_timestamp:
                return None  # being torn down (a window closed, a policy changed): the next pass makes it again
            if have.spec == stitch.spec and have.metadata.labels == stitch.metadata.labels:
                return None
        try:
            self._apply([stitch])
        except VnstitchError as exc:
            message = str(exc)
            snapshot_holders = self._holders(intent) if "bandwidth" in message or "capacity" in message else []
            if snapshot_holders:
                message += f" (capacity held by intent {', '.join(snapshot_holders)})"
            return message
        actions.append(f"{'updated' if current else 'established'} stitch {tenant}/{want.name}: {want.why}")
        return None

    def _holders(self, intent: str) -> list[str]:
        """Other intents whose stitches hold capacity (named when this one's admission found none left)."""
        return sorted({s.metadata.labels[INTENT_LABEL] for s in (self.controller._typed(Stitch, r)
                       for r in self.controller.cache.list("Stitch"))
                       if s.metadata.labels.get(INTENT_LABEL) not in (None, intent) and s.status.reserved_bandwidth > 0
                       and s.status.state is not State.TERMINATED})

    def _ensure_proposal(self, intent: Intent, exp_id: str, want: WantedStitch, now: float,
                         actions: list[str]) -> str:
        consent = want.consent
        namespace = consent.network.tenant
        name = proposal_name(intent.metadata.tenant, intent.metadata.name, exp_id)
        record = self.controller.store.get("Proposal", namespace, name)
        if record is not None:
            proposal = Proposal.model_validate(record.value)
            if proposal.status.state not in ("Withdrawn",):
                return proposal.status.state
        validity = intent.spec.validity
        doc = {"apiVersion": "vnstitch.io/v1", "kind": "Proposal",
               "metadata": {"name": name, "tenant": namespace, "creationTimestamp": now, "generation": 1,
                            "labels": {"vnstitch.io/requester": intent.metadata.tenant}},
               "spec": {"requester": intent.metadata.tenant, "intent": intent.metadata.name, "expectation": exp_id,
                        "fromNetwork": consent.peer.key, "network": consent.network.name,
                        "services": [{"protocol": p, "port": port} for p, port in consent.services],
                        "bandwidth": consent.bandwidth_bps, "maxLatency": consent.max_latency_s,
                        "reason": f"intent {intent.metadata.tenant}/{intent.metadata.name}: {want.why}",
                        "expires": validity.end if validity and validity.end else None},
               "status": ProposalStatus(history=[ProposalEvent(time=now, state="Pending", by=intent.metadata.tenant,
                                                               note="proposed")]).model_dump(by_alias=True, mode="json")}
        doc = Proposal.model_validate(doc).model_dump(by_alias=True, mode="json", exclude_none=True)
        compares = [Compare("Proposal", namespace, name, record.revision if record else 0)]
        if self.controller.store.txn(compares + self.controller.fence, [Put("Proposal", namespace, name, doc)]).succeeded:
            actions.append(f"asked tenant {namespace} to let {consent.peer.key} reach {consent.network.key} "
                           f"(proposal {name})")
        return "Pending"

    def _withdraw(self, tenant: str, intent: str, keep: set[str], reason: str, now: float,
                  keep_proposals: set[str] = frozenset()) -> list[str]:
        """End the intent's stitches not in `keep`, withdraw its proposals not in `keep_proposals`
        ('tenant/name'), and give back what accepted ones granted."""
        actions = []
        for stitch in self._owned_stitches(tenant, intent):
            if stitch.metadata.name in keep or stitch.metadata.deletion_timestamp \
                    or stitch.status.state in (State.TERMINATING, State.TERMINATED):
                continue
            try:
                self.controller.delete("Stitch", stitch.metadata.name, tenant, fenced=True)
                actions.append(f"ended stitch {tenant}/{stitch.metadata.name}: {reason}")
            except (NotFound, Conflict):
                pass
        for proposal in self._proposals():
            key = f"{proposal.metadata.tenant}/{proposal.metadata.name}"
            if proposal.spec.requester != tenant or proposal.spec.intent != intent or key in keep_proposals:
                continue
            if proposal.status.state in ("Withdrawn", "Rejected", "Expired"):
                continue
            actions += withdraw_proposal(self.controller, proposal, now, reason)
        return actions

    def _collect_orphans(self, now: float) -> None:
        """Stitches and proposals of intents that no longer exist; networks' policies given back."""
        intents = {(r.namespace, r.name) for r in self.controller.cache.list("Intent")}
        for record in self.controller.cache.list("Stitch"):
            owner = record.value["metadata"].get("labels", {}).get(INTENT_LABEL)
            if owner and (record.namespace, owner) not in intents and not record.value["metadata"].get(
                    "deletionTimestamp") and record.value.get("status", {}).get("state") != "TERMINATED":
                try:
                    self.controller.delete("Stitch", record.name, record.namespace, fenced=True)
                except (NotFound, Conflict):
                    pass
        for proposal in self._proposals():
            if (proposal.spec.requester, proposal.spec.intent) not in intents and \
                    proposal.status.state in ("Pending", "Accepted"):
                withdraw_proposal(self.controller, proposal, now, "its intent was deleted")
        for record in self.controller.cache.list("VirtualNetwork"):
            meta = record.value["metadata"]
            setter = meta.get("annotations", {}).get("vnstitch.io/policy-set-by", "")
            if POLICY_BEFORE in meta.get("annotations", {}) and setter.startswith("intent "):
                if (record.namespace, setter.removeprefix("intent ")) not in intents:
                    restore_policy(self.controller, record)

    # --- remediation --------------------------------------------------------------------------------
    def _remediate(self, tenant: str, assessments: list[tuple[str, Assessment]], now: float) -> list[str]:
        actions = []
        from vnstitch.controller.services import request_key_rotation

        for exp_id, assessment in assessments:
            for action, target, why in assessment.remedies:
                owner, _, name = target.partition("/")
                try:
                    if action == "reroute":
                        record = self.controller.cache.get("Stitch", owner, name)
                        stitch = self.controller._typed(Stitch, record) if record else None
                        if stitch is None or stitch.status.state is not State.DEGRADED:
                            continue  # a reroute is under way (ADJUSTING) or the stitch is gone
                        outcome = self.controller.replan(record, f"SLO breach: {why}")
                        fresh = self.controller.store.get("Stitch", owner, name)
                        path = "→".join(fresh.value.get("status", {}).get("path", [])) if fresh else ""
                        actions.append(f"{exp_id}: reroute stitch {target} ({why}): {outcome}"
                                       + (f", path {path}" if outcome == "rerouted" else ""))
                    elif action == "rekey":
                        request_key_rotation(self.controller, owner, name)
                        actions.append(f"{exp_id}: re-key stitch {target} ({why})")
                    elif action in ("tighten", "resize"):
                        # the policy and the stitch's spec are re-enforced on every run; say what was found
                        actions.append(f"{exp_id}: {action} {target} ({why})")
                except VnstitchError as exc:
                    actions.append(f"{exp_id}: {action} {target} failed: {exc}")
        return actions

    # --- status --------------------------------------------------------------------------------------
    def _write_status(self, record, intent: Intent, now: float, state: str, assessments, compiled: CompiledStatus,
                      actions: list[str], message: str = "") -> IntentRun:
        old = intent.status
        fulfilment = [Fulfilment(expectation=exp_id, status=a.verdict, notFulfilledState=a.state, reason=a.reason,
                                 measured=_plain(a.measured)) for exp_id, a in assessments]
        verdict = {"Compliant": "Compliant", "Received": "Received", "Finalizing": "Finalizing",
                   "Finalized": "Finalizing"}.get(state, "Degraded")
        number = old.report_count + 1
        report = IntentReport(number=number, time=now, verdict=verdict,
                              expectations=[ExpectationReport(id=f.expectation, verdict=f.status, reason=f.reason,
                                                              measured=f.measured) for f in fulfilment],
                              actions=actions)
        stalled = [f for f in fulfilment if f.not_fulfilled_state == "FULFILMENTFAILED"]
        conditions = [
            _condition(old, "Ready", state == "Compliant", state, message or _first_reason(fulfilment), now),
            _condition(old, "Reconciling", bool(actions) or state == "Received", "Acting" if actions else "Waiting",
                       "; ".join(actions[:3]), now),
            _condition(old, "Stalled", bool(stalled), "FulfilmentFailed" if stalled else "",
                       stalled[0].reason if stalled else "", now),
        ]
        status = IntentStatus(handlingState=state, observedGeneration=intent.metadata.generation,
                              conditions=conditions, fulfilment=fulfilment, compiled=compiled,
                              reports=(old.reports + [report])[-REPORTS_KEPT:], reportCount=number,
                              lastAssessed=now, message=message or _first_reason(fulfilment))
        value = {**record.value, "status": status.model_dump(by_alias=True, mode="json", exclude_none=True)}
        current = self.controller.store.get("Intent", record.namespace, record.name)
        if current is None:
            return IntentRun(record.namespace, record.name, "gone", actions)
        if current.revision != record.revision:  # its spec changed while we ran: run again next pass
            if current.value.get("metadata", {}).get("generation") != record.value["metadata"].get("generation"):
                return IntentRun(record.namespace, record.name, state, actions)
            value = {**current.value, "status": value["status"]}
        self.controller.store.txn([Compare("Intent", record.namespace, record.name, current.revision)]
                                  + self.controller.fence, [Put("Intent", record.namespace, record.name, value)])
        return IntentRun(record.namespace, record.name, state, actions, number)


def _plain(values: dict) -> dict:
    return {k: v for k, v in values.items() if v is None or isinstance(v, (int, float, str))}


def _first_reason(fulfilment: list[Fulfilment]) -> str:
    bad = [f for f in fulfilment if f.status != "FULFILLED"]
    return f"{bad[0].expectation}: {bad[0].reason}" if bad else "every expectation is fulfilled"


def _condition(old: IntentStatus, kind: str, true: bool, reason: str, message: str, now: float) -> Condition:
    status = "True" if true else "False"
    previous = next((c for c in old.conditions if c.type == kind), None)
    since = previous.last_transition_time if previous is not None and previous.status == status else now
    return Condition(type=kind, status=status, reason=reason, message=message[:500], lastTransitionTime=since)


def _allows_entry(net: VirtualNetwork, entry: str) -> bool:
    tenant, _, name = entry.rpartition("/")
    from vnstitch.domain.policy import _allows

    return _allows(net, tenant or net.metadata.tenant, name, None)


# --- proposals: answered by the asked tenant, withdrawn by the engine --------------------------------------
def answer_proposal(controller: Controller, tenant: str, name: str, accept: bool, by: str, note: str = "") -> Proposal:
    """Accept or reject a pending proposal in `tenant` (the asked one). Accepting adds the requester's group
    to the network's allowStitchTo in the same transaction (what it added is recorded, and taken back when
    the proposal is withdrawn). Every step goes into the proposal's history."""
    for _ in range(8):
        record = controller.store.get("Proposal", tenant, name)
        if record is None:
            raise NotFound(f"proposal '{name}' not found in tenant {tenant} (proposals are answered by the tenant "
                           "they were sent to)", field="metadata.name")
        proposal = Proposal.model_validate(record.value)
        now = controller.clock()
        if proposal.status.state != "Pending":
            raise Conflict(f"proposal '{name}' is {proposal.status.state.lower()} already", field="status.state")
        if proposal.spec.expires is not None and now >= proposal.spec.expires:
            raise Conflict(f"proposal '{name}' has expired", field="spec.expires")
        compares = [Compare("Proposal", tenant, name, record.revision)]
        puts = []
        granted = None
        if accept:
            net_record = controller.store.get("VirtualNetwork", tenant, proposal.spec.network)
            if net_record is None:
                raise NotFound(f"network '{proposal.spec.network}' of the proposal is gone", field="spec.network")
            net = VirtualNetwork.model_validate(net_record.value)
            requester_tenant, _, group = proposal.spec.from_network.partition("/")
            from vnstitch.domain.policy import _allows

            if not _allows(net, requester_tenant, group, None):
                granted = proposal.spec.from_network
                policy = net.spec.policy
                current = list(policy.allow_stitch_to) if policy and policy.allow_stitch_to is not None else ["*"]
                spec = net_record.value["spec"]
                new_policy = {**(spec.get("policy") or {}), "allowStitchTo": [*(_dump_rule(r) for r in current), granted]}
                meta = net_record.value["metadata"]
                value = {**net_record.value, "spec": {**spec, "policy": new_policy},
                         "metadata": {**meta, "generation": meta.get("generation", 0) + 1}}
                compares.append(Compare("VirtualNetwork", tenant, proposal.spec.network, net_record.revision))
                puts.append(Put("VirtualNetwork", tenant, proposal.spec.network, value))
        state = "Accepted" if accept else "Rejected"
        status = proposal.status.model_copy(update={
            "state": state, "answered_by": by, "answered_at": now, "granted": granted,
            "history": proposal.status.history + [ProposalEvent(time=now, state=state, by=by, note=note)]})
        value = {**record.value, "status": status.model_dump(by_alias=True, mode="json", exclude_none=True)}
        puts.append(Put("Proposal", tenant, name, value))
        if controller.store.txn(compares, puts).succeeded:
            return Proposal.model_validate(value)
    raise Conflict(f"proposal '{name}' kept changing; try again", field="metadata.name")


def _dump_rule(rule) -> object:
    return rule if isinstance(rule, str) else rule.model_dump(by_alias=True, exclude_none=True)


def withdraw_proposal(controller: Controller, proposal: Proposal, now: float, reason: str) -> list[str]:
    """Withdrawn (Pending or Accepted → Withdrawn, or Expired when its time is up); an accepted one's grant
    is taken out of the network's policy in the same transaction."""
    namespace, name = proposal.metadata.tenant, proposal.metadata.name
    record = controller.store.get("Proposal", namespace, name)
    if record is None:
        return []
    proposal = Proposal.model_validate(record.value)
    state = "Expired" if proposal.spec.expires is not None and now >= proposal.spec.expires else "Withdrawn"
    compares, puts = [Compare("Proposal", namespace, name, record.revision)], []
    if proposal.status.granted:
        net_record = controller.store.get("VirtualNetwork", namespace, proposal.spec.network)
        if net_record is not None:
            spec = net_record.value["spec"]
            rules = [r for r in (spec.get("policy") or {}).get("allowStitchTo") or [] if r != proposal.status.granted]
            meta = net_record.value["metadata"]
            value = {**net_record.value, "spec": {**spec, "policy": {**spec["policy"], "allowStitchTo": rules}},
                     "metadata": {**meta, "generation": meta.get("generation", 0) + 1}}
            compares.append(Compare("VirtualNetwork", namespace, proposal.spec.network, net_record.revision))
            puts.append(Put("VirtualNetwork", namespace, proposal.spec.network, value))
    status = proposal.status.model_copy(update={
        "state": state, "history": proposal.status.history + [ProposalEvent(time=now, state=state, by="vnstitch",
                                                                            note=reason)]})
    puts.append(Put("Proposal", namespace, name, {**record.value, "status": status.model_dump(
        by_alias=True, mode="json", exclude_none=True)}))
    if controller.store.txn(compares + controller.fence, puts).succeeded:
        return [f"withdrew proposal {namespace}/{name} ({reason})"
                + (f"; took {proposal.status.granted} out of {namespace}/{proposal.spec.network}'s policy"
                   if proposal.status.granted else "")]
    return []


def restore_policy(controller: Controller, record) -> None:
    """Give a network back the policy it had before intents changed it (their intent is gone)."""
    meta = record.value["metadata"]
    annotations = dict(meta.get("annotations", {}))
    before = json.loads(annotations.pop(POLICY_BEFORE))
    annotations.pop("vnstitch.io/policy-set-by", None)
    spec = {**record.value["spec"]}
    if before is None:
        spec.pop("policy", None)
    else:
        spec["policy"] = before
    value = {**record.value, "spec": spec, "metadata": {**meta, "annotations": annotations,
                                                       "generation": meta.get("generation", 0) + 1}}
    controller.store.txn([Compare("VirtualNetwork", record.namespace, record.name, record.revision)] + controller.fence,
                         [Put("VirtualNetwork", record.namespace, record.name, value)])


def probe(controller: Controller, intent: Intent, registry: TranslatorRegistry | None = None) -> dict:
    """TMF921 ProbeIntent: could this intent be met now, and if not, the best on offer. Changes nothing."""
    from vnstitch.controller.service import _View

    registry = registry or default_registry()
    controller.refresh()
    graph, others = graph_of(controller)
    now = controller.clock()
    checks.validate(intent, graph, registry, now)
    problems = []
    try:
        checks.contradictions(intent, others, graph)
    except Conflict as exc:
        problems.append(str(exc))
    results = checks.feasibility(intent, graph, _View(controller, None), now)
    return {"apiVersion": "vnstitch.io/v1", "kind": "ProbeIntentReport",
            "metadata": {"name": intent.metadata.name, "tenant": intent.metadata.tenant},
            "feasible": not problems and all(r.feasible for r in results),
            "conflicts": problems, "expectations": [r.to_dict() for r in results]}


__all__ = ["IntentEngine", "answer_proposal", "probe", "graph_of", "withdraw_proposal"]
