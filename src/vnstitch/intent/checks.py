"""Checks of an intent before anything is in force: references and translators, contradictions with the
tenant's other intents, and feasibility on the substrate (which also answers a ProbeIntent). Pure: they
read an admission snapshot and the virtual network graph and raise or return."""

from __future__ import annotations

from dataclasses import dataclass, field

from vnstitch.domain.intent import Intent
from vnstitch.domain.stitch import Endpoint
from vnstitch.errors import Conflict, InvalidInput
from vnstitch.intent.translators import INTENT_LABEL, Context, TranslatorRegistry, in_force, when
from vnstitch.intent.vngraph import VNGraph
from vnstitch.planning.desired import attach_node
from vnstitch.units import format_bandwidth


def context_for(intent: Intent, graph: VNGraph, now: float, **extra) -> Context:
    return Context(intent.metadata.tenant, intent.metadata.name, intent.spec.priority, now, graph,
                   expectations=list(intent.spec.expectations), **extra)


def validate(intent: Intent, graph: VNGraph, registry: TranslatorRegistry, now: float) -> None:
    """Every expectation has a translator that accepts it; the validity has not ended."""
    validity = intent.spec.validity
    if validity is not None and validity.end is not None and validity.end <= now:
        raise InvalidInput("the validity window has already ended", field="spec.validity.end")
    ctx = context_for(intent, graph, now)
    for index, exp in enumerate(intent.spec.expectations):
        where = f"spec.expectations[{index}]"
        registry.get(exp.type, f"{where}.type").validate(exp, ctx, where)


def _reach_pairs(intent: Intent, graph: VNGraph) -> list[tuple[int, str, str]]:
    """(expectation index, group key, service network key) of each reachability the intent asks."""
    out = []
    for index, exp in enumerate(intent.spec.expectations):
        if exp.type != "reachability" or not exp.service:
            continue
        try:
            group = graph.resolve_group(intent.metadata.tenant, exp.object, "object")
            service = graph.resolve_service(intent.metadata.tenant, exp.service, "service")
        except InvalidInput:
            continue
        out.append((index, group.key, service.network.key))
    return out


def _isolations(intent: Intent, graph: VNGraph) -> list[tuple[int, str, set[str]]]:
    """(index, isolated group key, the peers this intent lets it reach)."""
    pairs = _reach_pairs(intent, graph)
    out = []
    for index, exp in enumerate(intent.spec.expectations):
        if exp.type != "isolation":
            continue
        try:
            group = graph.resolve_group(intent.metadata.tenant, exp.object, "object")
        except InvalidInput:
            continue
        peers = {b if a == group.key else a for _, a, b in pairs if group.key in (a, b)}
        out.append((index, group.key, peers))
    return out


def contradictions(intent: Intent, others: list[Intent], graph: VNGraph) -> None:
    """Conflict naming both intents when one isolates a group the other lets reach (or be reached from)
    a network the first does not allow. Only among one tenant's intents: across tenants, consent is
    negotiated (a proposal), never assumed."""
    mine_reach, mine_iso = _reach_pairs(intent, graph), _isolations(intent, graph)
    for other in others:
        if other.metadata.tenant != intent.metadata.tenant or other.metadata.name == intent.metadata.name \
                or other.metadata.deletion_timestamp:
            continue
        for iso_intent, reach_intent, isolations, reaches, first in (
                (other, intent, _isolations(other, graph), mine_reach, True),
                (intent, other, mine_iso, _reach_pairs(other, graph), False)):
            for iso_index, group, peers in isolations:
                for reach_index, a, b in reaches:
                    if group not in (a, b):
                        continue
                    peer = b if a == group else a
                    if peer in peers:
                        continue
                    index = reach_index if first else iso_index
                    raise Conflict(
                        f"intent '{intent.metadata.name}' contradicts intent '{other.metadata.name}': "
                        f"'{iso_intent.metadata.name}' isolates {group} and does not let it reach {peer}, "
                        f"which '{reach_intent.metadata.name}' asks for", field=f"spec.expectations[{index}]")


@dataclass
class Feasibility:
    expectation: str
    feasible: bool
    reason: str = ""
    path: list[str] = field(default_factory=list)
    best_bandwidth_bps: float | None = None   # within the latency target
    best_latency_s: float | None = None       # at the bandwidth target
    consent: str | None = None                # whose agreement it needs

    def to_dict(self) -> dict:
        out = {"expectation": self.expectation, "feasible": self.feasible, "reason": self.reason,
               "path": self.path, "bestBandwidth": self.best_bandwidth_bps, "bestLatency": self.best_latency_s}
        if self.consent:
            out["needsConsentOf"] = self.consent
        return out


def _nodes(graph: VNGraph, tenant: str, exp) -> tuple | None:
    group = graph.resolve_group(tenant, exp.object, "object")
    service = graph.resolve_service(tenant, exp.service, "service")
    if group.vnet is None:
        return None
    a = attach_node(group.vnet, Endpoint(network=group.name))
    b = attach_node(service.network.vnet, Endpoint(network=service.network.name))
    return (group, service, a, b) if a and b else None


def _capacity_without(snapshot, skip_intent: tuple[str, str] | None, only_intents: bool) -> dict:
    """arc → free bit/s: the capacity of each up link less what stitches hold there — every stitch, or
    (`only_intents`) only other intents' — never counting the intent `skip_intent` itself."""
    free: dict = {}
    for arc, link_name in snapshot.arc_links.items():
        link = snapshot.link(link_name)
        free[arc] = float(link.spec.capacity) if link is not None and link.spec.state == "up" else 0.0
    for stitch in snapshot.stitches():
        owner = stitch.metadata.labels.get(INTENT_LABEL)
        if skip_intent is not None and owner == skip_intent[1] and stitch.metadata.tenant == skip_intent[0]:
            continue
        if only_intents and not owner:
            continue
        for arc, bps in snapshot.holdings(f"{stitch.metadata.tenant}/{stitch.metadata.name}").items():
            if arc in free:
                free[arc] -= bps
    return free


def holders_on(snapshot, arcs, skip_intent: tuple[str, str]) -> list[str]:
    """The intents ('tenant/name', or 'name' in the same tenant) holding capacity on `arcs`."""
    names = []
    for stitch in snapshot.stitches():
        owner = stitch.metadata.labels.get(INTENT_LABEL)
        if not owner or (stitch.metadata.tenant, owner) == skip_intent:
            continue
        held = snapshot.holdings(f"{stitch.metadata.tenant}/{stitch.metadata.name}")
        if any(arc in held for arc in arcs):
            names.append(owner if stitch.metadata.tenant == skip_intent[0] else f"{stitch.metadata.tenant}/{owner}")
    return sorted(set(names))


def feasibility(intent: Intent, graph: VNGraph, snapshot, now: float, residual: str = "current") -> list[Feasibility]:
    """For each reachability: could it be met now (`residual` 'current': what every stitch leaves;
    'intents': what the other intents leave; 'empty': the bare substrate), and if not the best on offer."""
    out = []
    key = (intent.metadata.tenant, intent.metadata.name)
    for exp in intent.spec.expectations:
        if exp.type != "reachability" or not exp.service:
            out.append(Feasibility(exp.id, True, f"{exp.type}: needs no capacity"))
            continue
        placed = _nodes(graph, intent.metadata.tenant, exp)
        if placed is None:
            out.append(Feasibility(exp.id, True, "the group or the service has no members yet: nothing to place"))
            continue
        group, service, a, b = placed
        active = in_force(exp, now)
        bw = exp.target("bandwidth")
        lat = exp.target("latency")
        bandwidth = float(bw.value) if bw is not None and active else 0.0
        bound = float(lat.value) if lat is not None and active else None
        free = None if residual == "empty" else _capacity_without(snapshot, key, residual == "intents")
        answer = snapshot.finder.availability(a, b, bandwidth_bps=bandwidth, max_latency_s=bound,
                                              symmetric=True, residual=free)
        consent = None if graph.allows(service.network, group) else service.network.tenant
        reason = answer.reason
        if answer.feasible:
            reason = f"{format_bandwidth(bandwidth)} within {bound * 1e3:g} ms" if bound is not None and bandwidth \
                else "reachable"
            if not active:
                reason += f" (targets hold {when(exp)}; not in force now)"
            if consent:
                reason += f"; needs tenant {consent}'s consent (a proposal is sent)"
        out.append(Feasibility(exp.id, answer.feasible, reason, list(answer.path.nodes) if answer.path else [],
                               answer.best_bandwidth_bps, answer.best_latency_s, consent))
    return out


def refuse_infeasible(intent: Intent, graph: VNGraph, snapshot, now: float) -> None:
    """InvalidInput for a target no substrate could meet; Conflict naming the intents whose reservations
    stand in the way of one it could."""
    bare = feasibility(intent, graph, snapshot, now, residual="empty")
    index_of = {e.id: i for i, e in enumerate(intent.spec.expectations)}
    for result in bare:
        if not result.feasible:
            raise InvalidInput(f"expectation '{result.expectation}' cannot be met on this substrate: {result.reason}",
                               field=f"spec.expectations[{index_of[result.expectation]}].targets")
    shared = feasibility(intent, graph, snapshot, now, residual="intents")
    for result, bare_result in zip(shared, bare):
        if result.feasible:
            continue
        arcs = list(zip(bare_result.path, bare_result.path[1:]))
        arcs += [(v, u) for u, v in arcs]
        holders = holders_on(snapshot, arcs, (intent.metadata.tenant, intent.metadata.name))
        named = ", ".join(f"'{h}'" for h in holders[:5]) or "other intents"
        if len(holders) > 5:
            named += f" and {len(holders) - 5} more"
        raise Conflict(f"intent '{intent.metadata.name}' over-subscribes the substrate with intent {named}: "
                       f"expectation '{result.expectation}' {result.reason}",
                       field=f"spec.expectations[{index_of[result.expectation]}].targets")


def check_intent(intent: Intent, others: list[Intent], graph: VNGraph, snapshot, registry: TranslatorRegistry,
                 now: float) -> None:
    """Everything an intent must pass before it is stored; raises the first problem, naming the field."""
    validate(intent, graph, registry, now)
    contradictions(intent, others, graph)
    refuse_infeasible(intent, graph, snapshot, now)
