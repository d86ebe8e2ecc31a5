"""The rules engine's translators: one per expectation type, behind one contract, in one registry.

A translator validates an expectation against the virtual network graph, compiles it into what must
be in force (stitches, policy entries, consents to ask for, networks to create, rules), and assesses
it from what is measured. Built-ins: isolation, reachability, qos. Third parties add their own through
the entry-point group `vnstitch.intent_translators` (a class or a factory returning an instance).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import entry_points
from typing import Protocol, runtime_checkable

from vnstitch.domain.intent import Expectation, parse_days, window_minutes
from vnstitch.domain.stitch import State, Stitch
from vnstitch.errors import InvalidInput
from vnstitch.intent.vngraph import NetworkRef, ServiceRef, VNGraph
from vnstitch.units import format_bandwidth

log = logging.getLogger("vnstitch.intent")
ENTRY_POINT_GROUP = "vnstitch.intent_translators"
INTENT_LABEL = "vnstitch.io/intent"            # on every object an intent owns: the intent's name
EXPECTATION_LABEL = "vnstitch.io/expectation"  # … and the expectation it serves


# --- what a translator returns ---------------------------------------------------------------
@dataclass
class WantedStitch:
    name: str        # in the intent's tenant
    spec: dict       # a StitchSpec as the store holds it (canonical numbers)
    why: str
    consent: "Consent | None" = None   # the far side's agreement it waits for (None: none needed)


@dataclass(frozen=True)
class Consent:
    """`network` (another tenant's) must allow `peer` (the intent's group) before anything crosses."""

    network: NetworkRef
    peer: NetworkRef
    services: tuple[tuple[str, int | None], ...] = ()
    bandwidth_bps: float = 0.0
    max_latency_s: float | None = None


@dataclass
class Compiled:
    stitches: list[WantedStitch] = field(default_factory=list)
    isolate: list[NetworkRef] = field(default_factory=list)                   # policy: only what intents allow
    allow: list[tuple[NetworkRef, NetworkRef]] = field(default_factory=list)  # (own network, peer it may reach)
    networks: list[dict] = field(default_factory=list)                        # VirtualNetwork docs to create
    policy: list[tuple[NetworkRef, dict]] = field(default_factory=list)       # (own network, policy fields set)
    qos: dict[str, list[dict]] = field(default_factory=dict)                  # service key → classes
    rules: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def merge(self, other: "Compiled") -> "Compiled":
        self.stitches += other.stitches
        self.isolate += other.isolate
        self.allow += other.allow
        self.networks += other.networks
        self.policy += other.policy
        self.qos.update(other.qos)
        self.rules += other.rules
        self.notes += other.notes
        return self


@dataclass
class Assessment:
    verdict: str                    # FULFILLED | NOT_FULFILLED
    reason: str = ""
    state: str | None = None        # 28.312 notFulfilledState when NOT_FULFILLED
    measured: dict = field(default_factory=dict)
    remedies: list[tuple[str, str, str]] = field(default_factory=list)  # (action, stitch or network key, why)


def fulfilled(reason: str = "", **measured) -> Assessment:
    return Assessment("FULFILLED", reason, None, measured)


def not_fulfilled(state: str, reason: str, remedies=(), **measured) -> Assessment:
    return Assessment("NOT_FULFILLED", reason, state, measured, list(remedies))


# --- what a translator reads -------------------------------------------------------------------
@dataclass
class Context:
    """The intent being compiled or assessed and the world as one read sees it."""

    tenant: str
    intent: str
    priority: int
    now: float
    graph: VNGraph
    stitches: dict[str, Stitch] = field(default_factory=dict)   # 'tenant/name' → every stored stitch
    proposals: dict[str, str] = field(default_factory=dict)      # consent key → proposal state
    expectations: list[Expectation] = field(default_factory=list)  # all of the intent's (a translator may look)

    def group(self, exp: Expectation, where: str) -> NetworkRef:
        return self.graph.resolve_group(self.tenant, exp.object, f"{where}.object")

    def service(self, exp: Expectation, where: str) -> ServiceRef:
        if not exp.service:
            raise InvalidInput(f"a {exp.type} expectation names the service it reaches", field=f"{where}.service")
        return self.graph.resolve_service(self.tenant, exp.service, f"{where}.service")

    def owned_stitch(self, name: str) -> Stitch | None:
        return self.stitches.get(f"{self.tenant}/{name}")


def in_force(exp: Expectation, now: float) -> bool:
    """Whether the expectation's time contexts (timeWindow, days, timeZone) hold at `now`."""
    window, days, zone = exp.context("timeWindow"), exp.context("days"), exp.context("timeZone")
    if window is None and days is None:
        return True
    tz = timezone.utc
    if zone:
        from zoneinfo import ZoneInfo

        tz = ZoneInfo(zone)
    moment = datetime.fromtimestamp(now, tz)
    if days is not None and moment.weekday() not in parse_days(days):
        return False
    if window is not None:
        start, end = window_minutes(window)
        minute = moment.hour * 60 + moment.minute
        return start <= minute < end if start < end else (minute >= start or minute < end)
    return True


def when(exp: Expectation) -> str:
    parts = [exp.context("days") or "", exp.context("timeWindow") or "", exp.context("timeZone") or ""]
    return " ".join(p for p in parts if p) or "always"


@runtime_checkable
class Translator(Protocol):
    """One expectation type. `targets`: the target names it understands (others are refused);
    `capabilities`: what it compiles into ('stitches', 'policy', 'qos', 'networks')."""

    type: str
    targets: frozenset[str]
    capabilities: frozenset[str]

    def validate(self, exp: Expectation, ctx: Context, where: str) -> None: ...

    def compile(self, exp: Expectation, ctx: Context) -> Compiled: ...

    def assess(self, exp: Expectation, ctx: Context) -> Assessment: ...


def check_targets(translator: Translator, exp: Expectation, where: str) -> None:
    for index, target in enumerate(exp.targets):
        if target.name not in translator.targets:
            known = ", ".join(sorted(translator.targets)) or "none"
            raise InvalidInput(f"a {exp.type} expectation has no target '{target.name}' (valid: {known})",
                               field=f"{where}.targets[{index}].name")


def stitch_name(intent: str, exp_id: str) -> str:
    return f"in-{intent}-{exp_id}"[:63].rstrip("-.")


# --- built-ins -------------------------------------------------------------------------------------
class Isolation:
    """The group reaches nothing and nothing reaches it, except what the tenant's intents allow: its policy
    is rewritten to exactly those peers, so any other stitch to or from it loses consent and is withdrawn."""

    type = "isolation"
    targets: frozenset[str] = frozenset()
    capabilities = frozenset({"policy", "networks"})

    def validate(self, exp: Expectation, ctx: Context, where: str) -> None:
        check_targets(self, exp, where)
        if exp.service:
            raise InvalidInput("an isolation expectation names no service (allow it in a reachability one)",
                               field=f"{where}.service")
        ctx.graph.resolve_group(ctx.tenant, exp.object, f"{where}.object", may_create=True)

    def compile(self, exp: Expectation, ctx: Context) -> Compiled:
        out = Compiled()
        group = ctx.graph.resolve_group(ctx.tenant, exp.object, "object", may_create=True)
        if group.vnet is None:  # a selector nothing matches: make the isolated segment the group needs
            out.networks.append(ctx.graph.new_segment(group, ctx.intent))
            out.notes.append(f"created network {group.key} for the group (no network matched)")
        out.isolate.append(group)
        out.rules.append(f"{group.key}: isolated (only what the tenant's intents allow crosses)")
        return out

    def assess(self, exp: Expectation, ctx: Context) -> Assessment:
        group = ctx.graph.resolve_group(ctx.tenant, exp.object, "object", may_create=True)
        if group.vnet is None:
            return not_fulfilled("ACKNOWLEDGED", f"network {group.key} is being created")
        allowed = ctx.graph.allowed_peers(group)
        crossing = []
        denied = 0
        for key, stitch in sorted(ctx.stitches.items()):
            if stitch.status.state in (State.TERMINATED, State.TERMINATING) or stitch.metadata.deletion_timestamp:
                continue
            ends = ctx.graph.stitch_ends(stitch)
            if group.key not in ends:
                continue
            other = ends[1] if ends[0] == group.key else ends[0]
            owner = stitch.metadata.labels.get(INTENT_LABEL)
            if stitch.status.state not in (State.FAILED,) and other not in allowed:
                crossing.append((key, other))
            if owner:
                denied += stitch.status.measured.denied or 0
        if crossing:
            key, other = crossing[0]
            return not_fulfilled("DEGRADED", f"stitch {key} lets {group.key} reach {other}",
                                 [("tighten", group.key, f"stitch {key} crosses the isolation")],
                                 crossing=len(crossing), deniedPackets=denied)
        policy = group.vnet.spec.policy
        if policy is None or sorted(policy.allow_stitch_to or [], key=str) != sorted(allowed_entries(group, allowed)):
            return not_fulfilled("DEGRADED", f"the policy of {group.key} was changed by hand",
                                 [("tighten", group.key, "policy differs from the isolation")], deniedPackets=denied)
        return fulfilled(f"{group.key} reaches only {', '.join(sorted(allowed)) or 'nothing'}", deniedPackets=denied)


def allowed_entries(group: NetworkRef, peers) -> list[str]:
    """allowStitchTo entries of an isolated group that lets exactly `peers` in ('tenant/name')."""
    return sorted(p if p.split("/", 1)[0] != group.tenant else p.split("/", 1)[1] for p in peers)


class Reachability:
    """The group reaches the service (its protocol and port only), within the latency, bandwidth, loss
    and encryption targets while its time contexts hold: one stitch from the group to the service's
    network, asking the other tenant's consent where its policy does not already give it."""

    type = "reachability"
    targets = frozenset({"latency", "bandwidth", "loss", "encryption"})
    capabilities = frozenset({"stitches", "policy"})

    def validate(self, exp: Expectation, ctx: Context, where: str) -> None:
        check_targets(self, exp, where)
        group = ctx.group(exp, where)
        service = ctx.service(exp, where)
        if group.key == service.network.key:
            raise InvalidInput("the service is in the group itself: nothing to stitch", field=f"{where}.service")
        for index, target in enumerate(exp.targets):
            if target.name in ("latency", "loss") and target.condition not in ("lessThan", "atMost"):
                raise InvalidInput(f"{target.name} is bounded from above: use < or <=",
                                   field=f"{where}.targets[{index}].condition")
            if target.name == "bandwidth" and target.condition not in ("atLeast", "greaterThan"):
                raise InvalidInput("bandwidth is bounded from below: use >= or >",
                                   field=f"{where}.targets[{index}].condition")
            if target.name == "latency" and float(target.value) <= 0:
                raise InvalidInput("latency must be above 0", field=f"{where}.targets[{index}].value")

    def stitch_spec(self, exp: Expectation, ctx: Context, group: NetworkRef, service: ServiceRef,
                    now_in_force: bool) -> dict:
        latency, bandwidth, loss = exp.target("latency"), exp.target("bandwidth"), exp.target("loss")
        encryption = exp.target("encryption")
        to = {"network": service.network.name}
        if service.network.tenant != ctx.tenant:
            to["tenant"] = service.network.tenant
        spec = {"type": "segment", "from": {"network": group.name}, "to": to,
                "bandwidth": float(bandwidth.value) if bandwidth is not None and now_in_force else 0.0,
                "encryption": encryption.value if encryption is not None else "required",
                "priority": ctx.priority, "origin": "intent",
                "services": [{"protocol": service.protocol, "port": service.port}]}
        if latency is not None and now_in_force:
            spec["maxLatency"] = float(latency.value)
        if loss is not None and now_in_force:
            spec["maxLoss"] = float(loss.value)
        classes = qos_classes_for(ctx, exp)
        if classes and spec["bandwidth"] > 0:
            spec["qos"] = classes
        return spec

    def compile(self, exp: Expectation, ctx: Context) -> Compiled:
        out = Compiled()
        group, service = ctx.group(exp, "object"), ctx.service(exp, "service")
        active = in_force(exp, ctx.now)
        spec = self.stitch_spec(exp, ctx, group, service, active)
        consent = None
        if not ctx.graph.allows(service.network, group):
            consent = Consent(service.network, group, ((service.protocol, service.port),), spec["bandwidth"],
                              spec.get("maxLatency"))
        out.allow.append((group, service.network))
        out.stitches.append(WantedStitch(stitch_name(ctx.intent, exp.id), spec,
                                         f"{group.key} reaches {service.text}", consent))
        out.rules.append(f"{group.key} → {service.network.key}: {service.protocol}"
                         f"{'/' + str(service.port) if service.port else ''} only"
                         + (f", {format_bandwidth(spec['bandwidth'])} reserved" if spec["bandwidth"] else "")
                         + (f" ({when(exp)})" if when(exp) != "always" else ""))
        return out

    def assess(self, exp: Expectation, ctx: Context) -> Assessment:
        group, service = ctx.group(exp, "object"), ctx.service(exp, "service")
        key = consent_key(service.network.key, group.key)
        answer = ctx.proposals.get(key)
        if answer in ("Pending",):
            return not_fulfilled("ACKNOWLEDGED", f"waiting for tenant {service.network.tenant} to accept the proposal")
        if answer in ("Rejected", "Expired"):
            return not_fulfilled("FULFILMENTFAILED", f"tenant {service.network.tenant} {answer.lower()} the proposal")
        stitch = ctx.owned_stitch(stitch_name(ctx.intent, exp.id))
        if stitch is None:
            return not_fulfilled("ACKNOWLEDGED", "its stitch is not admitted yet")
        status, measured = stitch.status, stitch.status.measured
        values = {"latency": measured.latency, "throughput": measured.throughput, "loss": measured.loss,
                  "reserved": status.reserved_bandwidth, "deniedPackets": measured.denied,
                  "path": "→".join(status.path) or None, "stitchState": status.state.value}
        key = f"{ctx.tenant}/{stitch.metadata.name}"
        if status.state is State.FAILED:
            return not_fulfilled("FULFILMENTFAILED", f"stitch {key}: {status.message}", **values)
        if status.state in (State.PENDING, State.ESTABLISHING):
            return not_fulfilled("ACKNOWLEDGED", f"stitch {key} is {status.state.value.lower()}", **values)
        if not in_force(exp, ctx.now):
            return fulfilled(f"reachable; its targets hold only {when(exp)}", **values)
        latency, bandwidth, loss = exp.target("latency"), exp.target("bandwidth"), exp.target("loss")
        if latency is not None and measured.latency is not None and not _holds(measured.latency, latency):
            return not_fulfilled("DEGRADED", f"latency {measured.latency * 1e3:.1f} ms, target "
                                 f"{'<' if latency.condition == 'lessThan' else '<='} {float(latency.value) * 1e3:g} ms",
                                 [("reroute", key, "latency above the target")], **values)
        if loss is not None and measured.loss is not None and not _holds(measured.loss, loss):
            return not_fulfilled("DEGRADED", f"loss {measured.loss:.3%} above {float(loss.value):.3%}",
                                 [("reroute", key, "loss above the target")], **values)
        if bandwidth is not None and status.reserved_bandwidth + 1e-6 < float(bandwidth.value):
            return not_fulfilled("DEGRADED", f"{format_bandwidth(status.reserved_bandwidth)} reserved of "
                                 f"{format_bandwidth(float(bandwidth.value))}",
                                 [("resize", key, "reservation below the bandwidth target")], **values)
        if stitch.spec.encrypted is False and (exp.target("encryption") is None
                                                or exp.target("encryption").value == "required"):
            return not_fulfilled("DEGRADED", "its stitch is not encrypted", [("rekey", key, "encryption required")],
                                 **values)
        if status.state is State.DEGRADED:
            return not_fulfilled("DEGRADED", f"stitch {key}: {status.message}",
                                 [("reroute", key, status.message)], **values)
        if latency is not None and measured.latency is None:
            return not_fulfilled("ACKNOWLEDGED", "latency not measured yet", **values)
        return fulfilled(f"{group.key} reaches {service.text}", **values)


def _holds(value: float, target) -> bool:
    bound = float(target.value)
    return value < bound if target.condition == "lessThan" else value <= bound


def consent_key(network_key: str, peer_key: str) -> str:
    return f"{network_key}<{peer_key}"


def qos_classes_for(ctx: Context, reach: Expectation) -> list[dict] | None:
    """The classes a qos expectation of the same intent ranks for the same group and service."""
    for exp in ctx.expectations:
        if exp.type == "qos" and exp.service == reach.service and exp.object == reach.object and exp.classes:
            return [c.model_dump(exclude_none=True) for c in exp.classes]
    return None


class Qos:
    """Ranked classes of the group's traffic to the service: under saturation a higher class keeps its
    share (HTB child classes on the reachability stitch, classified by DSCP or port)."""

    type = "qos"
    targets: frozenset[str] = frozenset()
    capabilities = frozenset({"qos"})

    def _reach(self, exp: Expectation, ctx: Context) -> Expectation | None:
        return next((e for e in ctx.expectations if e.type == "reachability" and e.service == exp.service
                     and e.object == exp.object), None)

    def validate(self, exp: Expectation, ctx: Context, where: str) -> None:
        check_targets(self, exp, where)
        ctx.group(exp, where)
        ctx.service(exp, where)
        if not exp.classes:
            raise InvalidInput("a qos expectation ranks classes (classes gold > bronze)", field=f"{where}.classes")
        reach = self._reach(exp, ctx)
        if reach is None:
            raise InvalidInput("a qos expectation needs a reachability expectation for the same group and service",
                               field=f"{where}.service")
        if reach.target("bandwidth") is None:
            raise InvalidInput("ranked classes share a bandwidth: give the reachability a bandwidth target",
                               field=f"{where}.classes")

    def compile(self, exp: Expectation, ctx: Context) -> Compiled:
        out = Compiled()
        out.rules.append("classes " + " > ".join(f"{c.name} ({c.share:.0%})" for c in sorted(exp.classes, key=lambda c: c.rank)))
        return out

    def assess(self, exp: Expectation, ctx: Context) -> Assessment:
        reach = self._reach(exp, ctx)
        stitch = ctx.owned_stitch(stitch_name(ctx.intent, reach.id)) if reach else None
        if stitch is None:
            return not_fulfilled("ACKNOWLEDGED", "its stitch is not admitted yet")
        if not in_force(exp, ctx.now):
            return fulfilled(f"not in force ({when(exp)})")
        if not stitch.spec.qos:
            return not_fulfilled("DEGRADED", "its stitch carries no classes", [("resize", f"{ctx.tenant}/{stitch.metadata.name}", "classes missing")])
        return fulfilled(f"{len(stitch.spec.qos)} classes on stitch {stitch.metadata.name}")


# --- the registry ------------------------------------------------------------------------------------
class TranslatorRegistry:
    """Explicit registry; `load_plugins` adds the entry points of group vnstitch.intent_translators."""

    def __init__(self, translators=()):
        self._by_type: dict[str, Translator] = {}
        self.plugin_errors: list[str] = []
        for translator in translators:
            self.register(translator)

    def register(self, translator: Translator) -> None:
        if not isinstance(translator, Translator):
            raise TypeError(f"{translator!r} does not implement the Translator contract")
        if translator.type in self._by_type:
            raise ValueError(f"a translator for '{translator.type}' is already registered")
        self._by_type[translator.type] = translator

    def types(self) -> list[str]:
        return sorted(self._by_type)

    def get(self, type_: str, where: str = "type") -> Translator:
        found = self._by_type.get(type_)
        if found is None:
            raise InvalidInput(f"no translator for expectation type '{type_}' (valid: {', '.join(self.types())})",
                               field=where)
        return found

    def load_plugins(self, group: str = ENTRY_POINT_GROUP) -> "TranslatorRegistry":
        for ep in entry_points(group=group):
            try:
                loaded = ep.load()
                self.register(loaded() if isinstance(loaded, type) or callable(loaded) and not
                              isinstance(loaded, Translator) else loaded)
            except Exception as exc:  # noqa: BLE001 - a broken plugin is reported, the built-ins still work
                message = f"intent translator plugin '{ep.name}' ({ep.value}) failed to load: {exc}"
                self.plugin_errors.append(message)
                log.error(message)
        return self


def builtin_translators() -> list[Translator]:
    return [Isolation(), Reachability(), Qos()]


_DEFAULT: TranslatorRegistry | None = None


def default_registry() -> TranslatorRegistry:
    """Built-ins plus the installed plugins (loaded once per process)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = TranslatorRegistry(builtin_translators()).load_plugins()
    return _DEFAULT


__all__ = ["Translator", "TranslatorRegistry", "Compiled", "Assessment", "Context", "WantedStitch", "Consent",
           "default_registry", "builtin_translators", "in_force", "fulfilled", "not_fulfilled", "INTENT_LABEL"]
