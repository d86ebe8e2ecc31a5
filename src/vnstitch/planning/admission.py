"""Stitch admission, pure: (snapshot, stitch, now) → what to write, or the VnstitchError that refuses it.

Policy (both sides consent, trust zones), path choice under residual capacity and maxLatency,
pre-emption of lower-priority forecast stitches and the reservation per link are decided here
from a read-only `Snapshot`; the controller builds that snapshot over one transaction's reads,
writes what these functions return and commits it with compare-and-swap. Nothing here touches
a store, a cache or the clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Iterator, Mapping, Protocol

from vnstitch.domain import ledger as ledgers
from vnstitch.domain.ledger import Arc, LinkLedger
from vnstitch.domain.policy import check_policies, check_side, visible_to
from vnstitch.domain.stitch import ALLOWED_TRANSITIONS, Endpoint, State, Stitch, StitchSpec, StitchStatus, \
    initial_status, transition
from vnstitch.domain.substrate import DEFAULT_TRUST_ZONE, Link, Node
from vnstitch.domain.vnet import VirtualNetwork
from vnstitch.errors import Conflict, InsufficientCapacity, InvalidInput, PolicyDenied, VnstitchError
from vnstitch.pathing.paths import Availability, PathFinder

PREEMPTIBLE_ORIGIN = "forecast"  # only the forecast loop's stitches give way to a higher priority
_LATENCY_SLACK_S = 1e-12


@dataclass(frozen=True)
class Residual:
    """Free bit/s per arc in the form the snapshot's PathFinder takes: a vector in its arc order
    (with `positions`) or a mapping arc → bit/s (`positions` None)."""

    for_finder: object
    positions: Mapping[Arc, int] | None = None

    def bps(self, arc: Arc) -> float:
        return float(self.for_finder[self.positions[arc]] if self.positions is not None else self.for_finder[arc])


class Snapshot(Protocol):
    """What an admission decision may read, as one transaction sees it (its own staged writes included)."""

    @property
    def finder(self) -> PathFinder: ...                # over the substrate as this snapshot sees it

    @property
    def arc_links(self) -> Mapping[Arc, str]: ...      # arc → name of the link that carries it

    @property
    def ledgers(self) -> Mapping[str, LinkLedger]: ... # link → what stitches hold on it

    def network(self, namespace: str, name: str) -> VirtualNetwork | None: ...

    def link(self, name: str) -> Link | None: ...

    def node(self, name: str) -> Node | None: ...

    def stitch(self, namespace: str, name: str) -> Stitch | None: ...

    def stitches(self) -> Iterable[Stitch]: ...         # every stored stitch: the pre-emption candidates

    def holdings(self, stitch: str) -> Mapping[Arc, int]: ...  # arc → bit/s that 'tenant/name' holds

    def residual(self, released: Iterable[str] = ()) -> Residual: ...  # free bit/s, `released` stitches given back


@dataclass(frozen=True)
class Ends:
    """Both ends of a stitch, resolved and agreed by both sides' policies."""

    a_net: VirtualNetwork
    a_node: str
    b_net: VirtualNetwork
    b_node: str
    zones: frozenset[str] | None  # trust zones the path may use; None: any


@dataclass(frozen=True)
class PinnedPath:
    nodes: tuple[str, ...]
    latency_s: float


@dataclass(frozen=True)
class Admitted:
    """What an admission decided: the stitch's new status, each touched link's new ledger, and the
    stitches it pre-empts (key 'tenant/name' → their TERMINATING status; each is marked deleted at `now`)."""

    status: StitchStatus
    ledgers: dict[str, LinkLedger] = field(default_factory=dict)
    preempted: dict[str, StitchStatus] = field(default_factory=dict)
    outcome: str = "admitted"  # admitted | replanned | rerouted | withdrawn


def stitch_key(stitch: Stitch) -> str:
    return f"{stitch.namespace}/{stitch.name}"


# ends and policies ---------------------------------------------------------------------------
def resolve_endpoint(snapshot: Snapshot, tenant: str, end: Endpoint, field: str,
                     seen_from: VirtualNetwork | None = None) -> tuple[VirtualNetwork, str]:
    """The endpoint's network and the substrate node where the stitch attaches. With `seen_from`
    (the stitch's own network), another tenant's network that does not accept it is unknown."""
    namespace = end.tenant or tenant
    vnet = snapshot.network(namespace, end.network)
    if vnet is not None and seen_from is not None and namespace != tenant and not visible_to(vnet, seen_from):
        vnet = None  # exactly as if it did not exist: same error, and nothing of it is read below
    if vnet is None:
        raise InvalidInput(f"unknown network '{namespace}/{end.network}'", field=f"{field}.network")
    if end.member:
        member = vnet.member(end.member)
        if member is None:
            raise InvalidInput(f"network '{end.network}' has no member '{end.member}'", field=f"{field}.member")
        return vnet, member.node
    if not vnet.spec.members:
        raise InvalidInput(f"network '{end.network}' has no members to attach a stitch to", field=f"{field}.network")
    counts: dict[str, int] = {}
    for member in vnet.spec.members:
        counts[member.node] = counts.get(member.node, 0) + 1
    return vnet, min(counts, key=lambda node: (-counts[node], node))


def resolve_ends(snapshot: Snapshot, tenant: str, from_end: Endpoint, to_end: Endpoint, encrypted: bool = True,
                 fields: tuple[str, str] = ("spec.from", "spec.to")) -> Ends:
    """Both ends of a stitch in `tenant` checked against both sides' policies. No answer depends on
    whether an unseen network of another tenant exists: our own side is resolved and asked first,
    then the peer exists only if it accepts us."""
    ends = ((from_end, fields[0]), (to_end, fields[1]))
    foreign = [(end.tenant or tenant) != tenant for end, _ in ends]
    if all(foreign):
        raise InvalidInput("a stitch must have at least one endpoint in its own tenant", field=f"{fields[0]}.tenant")
    own = foreign.index(False)
    (own_end, own_field), (peer_end, peer_field) = ends[own], ends[1 - own]
    own_net, own_node = resolve_endpoint(snapshot, tenant, own_end, own_field)
    if foreign[1 - own]:
        candidate = snapshot.network(peer_end.tenant, peer_end.network)
        if candidate is None or not visible_to(candidate, own_net):
            # Our own policy decides alone, whatever the peer's labels, before "unknown network".
            check_side(own_net, peer_end.tenant, peer_end.network, None, encrypted, own_field)
    peer_net, peer_node = resolve_endpoint(snapshot, tenant, peer_end, peer_field, seen_from=own_net)
    if own == 0:
        a_net, a_node, b_net, b_node = own_net, own_node, peer_net, peer_node
    else:
        a_net, a_node, b_net, b_node = peer_net, peer_node, own_net, own_node
    return Ends(a_net, a_node, b_net, b_node, check_policies(a_net, b_net, encrypted, fields))


# paths ------------------------------------------------------------------------------------------
def _hops(snapshot: Snapshot, nodes: list[str]) -> Iterator[tuple[int, str, str, str | None, Link | None, Node | None]]:
    """(index, u, v, link name, link, node v) for each hop of a node path, as the snapshot sees them."""
    arcs = snapshot.arc_links
    for index, (u, v) in enumerate(zip(nodes, nodes[1:])):
        name = arcs.get((u, v))
        link = snapshot.link(name) if name else None
        yield index, u, v, name, link, (snapshot.node(v) if link is not None else None)


def _outside(link: Link, node: Node | None, zones: frozenset[str] | None) -> bool:
    node_zone = node.spec.trust_zone if node is not None else DEFAULT_TRUST_ZONE
    return zones is not None and (link.spec.trust_zone not in zones or node_zone not in zones)


def explicit_path(snapshot: Snapshot, spec: StitchSpec, a_node: str, b_node: str,
                  zones: frozenset[str] | None) -> PinnedPath:
    """The pinned route, checked: it joins the endpoints over real links within zones and latency."""
    nodes = list(spec.path)
    if not nodes or nodes[0] != a_node or nodes[-1] != b_node:
        raise InvalidInput(f"the path must run from {a_node} to {b_node}", field="spec.path")
    if len(set(nodes)) != len(nodes):
        raise InvalidInput("the path visits a node twice", field="spec.path")
    latency = 0.0
    for index, u, v, name, link, node in _hops(snapshot, nodes):
        if link is None:
            raise InvalidInput(f"no link joins {u} and {v}", field=f"spec.path[{index + 1}]")
        if link.spec.state != "up":
            raise InsufficientCapacity(f"link {name} on the path is {link.spec.state}", field=f"spec.path[{index + 1}]")
        if _outside(link, node, zones):
            raise PolicyDenied(f"link {name} or node {v} is outside the allowed trust zones", field="spec.path")
        latency += link.spec.latency
    if spec.max_latency is not None and latency > spec.max_latency + _LATENCY_SLACK_S:
        raise InsufficientCapacity(f"the path takes {latency * 1e3:.3g} ms, above maxLatency", field="spec.maxLatency")
    return PinnedPath(tuple(nodes), latency)


def choose_path(snapshot: Snapshot, spec: StitchSpec, key: str, ends: Ends,
                released: Iterable[str] = (), avoid: Iterable[str] = ()):
    """The lowest-latency path meeting bandwidth, latency and zones, counting this stitch's own holdings
    (and `released` stitches') as free and keeping off the `avoid`ed links; None when there is none."""
    residual = snapshot.residual((key, *released))
    found = snapshot.finder.paths(ends.a_node, ends.b_node, metric="latency", bandwidth_bps=spec.bandwidth,
                                  symmetric=spec.symmetric, max_latency_s=spec.max_latency, allowed_zones=ends.zones,
                                  residual=residual.for_finder, k=1, exclude_links=tuple(avoid))
    return found[0] if found else None


def preemptible(snapshot: Snapshot, spec: StitchSpec, key: str) -> list[Stitch]:
    """Stitches a stitch of `spec`'s priority may pre-empt: forecast stitches of a lower priority."""
    return [s for s in snapshot.stitches()
            if s.spec.origin == PREEMPTIBLE_ORIGIN and s.spec.priority < spec.priority and stitch_key(s) != key]


def path_with_preemption(snapshot: Snapshot, spec: StitchSpec, key: str, ends: Ends):
    """A path freed by pre-empting lower-priority forecast stitches and the victims (fewest, lowest
    priority first, only those holding capacity on it), or InsufficientCapacity saying why there is none."""
    candidates = {stitch_key(s): s for s in preemptible(snapshot, spec, key)}
    path = choose_path(snapshot, spec, key, ends, released=list(candidates)) if candidates else None
    if path is None:
        availability: Availability = snapshot.finder.availability(
            ends.a_node, ends.b_node, bandwidth_bps=spec.bandwidth, max_latency_s=spec.max_latency,
            residual=snapshot.residual((key,)).for_finder, allowed_zones=ends.zones, symmetric=spec.symmetric)
        raise InsufficientCapacity(f"no path from {ends.a_node} to {ends.b_node}: {availability.reason}",
                                   field="spec.maxLatency" if "latency" in availability.reason else "spec.bandwidth")
    arcs = set(ledgers.stitch_arcs(path.nodes, spec.symmetric))
    wanted = ledgers.as_reservation(spec.bandwidth)
    on_path = sorted((k for k in candidates if arcs & set(snapshot.holdings(k))),
                     key=lambda k: candidates[k].spec.priority)
    chosen: list[str] = []
    for victim in on_path:
        chosen.append(victim)
        residual = snapshot.residual((key, *chosen))
        if all(residual.bps(arc) >= wanted for arc in arcs):
            break
    return path, chosen


def preempted_status(victim: Stitch, by: str, now: float) -> StitchStatus:
    """The victim's status once pre-empted by stitch `by` ('tenant/name', named only to its own tenant)."""
    who = by if by.split("/", 1)[0] == victim.namespace else "another tenant's stitch"
    status = transition(victim.status, State.TERMINATING, now, f"pre-empted by higher-priority stitch {who}")
    return status.model_copy(update={"reserved_bandwidth": 0.0})


# admission -----------------------------------------------------------------------------------
def replaces(stitch: Stitch, current: Stitch | None) -> Stitch | None:
    """The stored stitch that admitting `stitch` replaces (None: it is new), or why it may not."""
    if current is not None and current.status.state is State.TERMINATED:
        return None  # a finished stitch's record is replaced by the new one of the same name
    if current is not None and current.metadata.deletion_timestamp:
        raise Conflict(f"stitch '{stitch.name}' is being deleted; wait until it is gone", field="metadata.name")
    if current is not None and current.spec.symmetric != stitch.spec.symmetric:
        raise InvalidInput("symmetric cannot change on an existing stitch; delete and recreate it",
                           field="spec.symmetric")
    return current


def admit_stitch(snapshot: Snapshot, stitch: Stitch, current: Stitch | None, now: float,
                 avoid: tuple[str, ...] = ()) -> Admitted:
    """Admit `stitch` (replacing `current`, see `replaces`): ends and policies, a path (pinned, the best
    with capacity, or one freed by pre-emption), and the reservation along it as one net change."""
    key, spec = stitch_key(stitch), stitch.spec
    ends = resolve_ends(snapshot, stitch.namespace, spec.from_, spec.to, spec.encrypted)
    if (ends.a_net.metadata.tenant, ends.a_net.metadata.name) == (ends.b_net.metadata.tenant, ends.b_net.metadata.name) \
            and spec.from_.member == spec.to.member:
        raise InvalidInput("a stitch must join two different endpoints; both ends name "
                           f"{spec.from_.member or ends.a_net.metadata.name}", field="spec.to")
    preempted: list[str] = []
    if spec.path is not None:
        path = explicit_path(snapshot, spec, ends.a_node, ends.b_node, ends.zones)
    else:
        path = choose_path(snapshot, spec, key, ends, avoid=avoid)
        if path is None and avoid:
            raise InsufficientCapacity("no other path meets the stitch's bounds", field="spec.path")
        if path is None:
            path, preempted = path_with_preemption(snapshot, spec, key, ends)
    # Release what this stitch and its victims held, reserve along the new path: one net change.
    wanted = {arc: ledgers.as_reservation(spec.bandwidth) for arc in ledgers.stitch_arcs(path.nodes, spec.symmetric)} \
        if spec.bandwidth > 0 else {}
    deltas = ledgers.net_deltas((snapshot.holdings(key), -1), (wanted, +1),
                                *((snapshot.holdings(victim), -1) for victim in preempted))
    changed = ledgers.apply_deltas(snapshot.ledgers, snapshot.arc_links, deltas)
    victims = {victim: preempted_status(snapshot.stitch(*victim.split("/", 1)), key, now) for victim in preempted}
    # A stored status carries on (its history); a new stitch (or one stored without a status) starts "accepted".
    has_status = current is not None and "status" in current.model_fields_set and current.status.model_fields_set
    status = current.status if has_status else initial_status(now, "accepted")
    status = status.model_copy(update={"path": list(path.nodes), "reserved_bandwidth": spec.bandwidth})
    return Admitted(status, changed, victims)


# re-planning ---------------------------------------------------------------------------------
def replan_reason(snapshot: Snapshot, stitch: Stitch) -> str | None:
    """Why an admitted stitch no longer holds as admitted (an end moved, a link on its path went away
    or down, a policy no longer consents, the path leaves the allowed trust zones or latency), or None.
    A stitch withdrawn earlier is always worth another try when something changed."""
    status = stitch.status
    if status.state in (State.TERMINATING, State.TERMINATED) or stitch.metadata.deletion_timestamp:
        return None
    if not status.path:
        return "retry: what it depends on changed" if status.state is State.FAILED else None
    if slo_breached(stitch):
        return f"SLO breach: {status.message}"
    try:  # the same check as admission: a peer that no longer consents looks like one that is gone
        ends = resolve_ends(snapshot, stitch.namespace, stitch.spec.from_, stitch.spec.to, stitch.spec.encrypted)
    except VnstitchError as exc:
        return str(exc)
    for end, net, node, at in ((stitch.spec.from_, ends.a_net, ends.a_node, status.path[0]),
                               (stitch.spec.to, ends.b_net, ends.b_node, status.path[-1])):
        if end.member and node != at:
            return f"member {end.member} moved from {at} to {node}"
        if not end.member and at not in {m.node for m in net.spec.members}:
            return f"network {net.metadata.name} has no member on {at} any more"
    latency = 0.0
    for _, u, v, name, link, node in _hops(snapshot, status.path):
        if link is None:
            return f"no link joins {u} and {v} any more"
        if link.spec.state != "up":
            return f"link {name} is {link.spec.state}"
        if _outside(link, node, ends.zones):
            return f"link {name} or node {v} is outside the allowed trust zones"
        latency += link.spec.latency
    if stitch.spec.max_latency is not None and latency > stitch.spec.max_latency + _LATENCY_SLACK_S:
        return f"the path now takes {latency * 1e3:.3g} ms, above maxLatency"
    return None


def slo_breached(stitch: Stitch) -> bool:
    """DEGRADED because a measured latency or loss broke the stitch's bound (planning.status says so)."""
    message = stitch.status.message
    return stitch.status.state is State.DEGRADED and (message.startswith("latency ") or message.startswith("loss "))


def replan(snapshot: Snapshot, stitch: Stitch, reason: str, now: float) -> Admitted | None:
    """Admit a stored stitch again against what it depends on now: a new path and reservation
    (ADJUSTING, or PENDING for a withdrawn one), or, when that is forbidden or impossible, its
    reservation released and the stitch FAILED with no path ('withdrawn'). None: nothing moved."""
    old = stitch.status
    try:
        admitted = admit_stitch(snapshot, stitch, stitch, now)
    except VnstitchError as exc:
        released = ledgers.apply_deltas(snapshot.ledgers, snapshot.arc_links,
                                        ledgers.net_deltas((snapshot.holdings(stitch_key(stitch)), -1)))
        why = f"withdrawn: {exc}" if str(exc) == reason else f"withdrawn ({reason}): {exc}"
        status = transition(old, State.FAILED, now, why) if old.state is not State.FAILED \
            else old.model_copy(update={"message": why})
        status = status.model_copy(update={"path": [], "reserved_bandwidth": 0.0})
        return None if status == old else Admitted(status, released, outcome="withdrawn")
    status = admitted.status
    if status.path == old.path and status.reserved_bandwidth == old.reserved_bandwidth and old.state is not State.FAILED:
        return None
    target = State.PENDING if old.state is State.FAILED else State.ADJUSTING
    if target in ALLOWED_TRANSITIONS[old.state]:
        status = transition(status, target, now, f"re-planned ({reason}): path {'→'.join(status.path)}")
    return Admitted(status, admitted.ledgers, admitted.preempted, outcome="replanned")


def reroute(snapshot: Snapshot, stitch: Stitch, reason: str, now: float) -> Admitted | None:
    """After an SLO breach: another path that meets the stitch's bounds, off every link of the current
    one (ADJUSTING); None when there is none (it stays, DEGRADED) or the path is pinned by its owner."""
    if stitch.spec.path is not None or not stitch.status.path:
        return None  # a pinned path is its owner's (the proactive loop reroutes its own)
    arcs = snapshot.arc_links
    path = stitch.status.path
    avoid = tuple(sorted({arcs[arc] for arc in zip(path, path[1:]) if arc in arcs}))
    try:
        admitted = admit_stitch(snapshot, stitch, stitch, now, avoid=avoid)
    except VnstitchError:
        return None
    status = transition(admitted.status, State.ADJUSTING, now,
                        f"rerouted ({reason}): path {'→'.join(admitted.status.path)}")
    return Admitted(status, admitted.ledgers, admitted.preempted, outcome="rerouted")


# queries --------------------------------------------------------------------------------------
def availability(snapshot: Snapshot, tenant: str, from_end: Endpoint, to_end: Endpoint, bandwidth_bps: float,
                 max_latency_s: float | None = None, symmetric: bool = True, encrypted: bool = True) -> Availability:
    """Could X bit/s at ≤ Y s be stitched between two endpoints now? Checks the ends and both sides'
    policies as admission does (an unseen peer is an unknown network); reserves nothing."""
    ends = resolve_ends(snapshot, tenant, from_end, to_end, encrypted, ("from", "to"))
    return snapshot.finder.availability(ends.a_node, ends.b_node, bandwidth_bps=bandwidth_bps,
                                        max_latency_s=max_latency_s, symmetric=symmetric,
                                        allowed_zones=ends.zones, residual=snapshot.residual().for_finder)
