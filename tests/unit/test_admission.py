"""Admission as pure functions over a hand-built snapshot: no store, no cache, no clock."""

import pytest

from vnstitch.domain import ledger as ledgers
from vnstitch.domain.ledger import LinkLedger
from vnstitch.domain.registry import parse_resource
from vnstitch.domain.stitch import State, StitchStatus
from vnstitch.errors import Conflict, InsufficientCapacity, InvalidInput, PolicyDenied
from vnstitch.pathing.paths import PathFinder
from vnstitch.planning import admission
from vnstitch.planning.admission import Residual
from tests.helpers import stitch, vnet

NOW = 1000.0
GBPS = 1e9


def node(name, zone="default"):
    return parse_resource({"kind": "Node", "metadata": {"name": name}, "spec": {"trustZone": zone}})


def link(a, b, latency, capacity="10Gbps", state="up"):
    return parse_resource({"kind": "Link", "metadata": {"name": f"{a}-{b}"},
                           "spec": {"endpoints": [a, b], "capacity": capacity, "latency": latency, "state": state}})


class World:
    """A Snapshot built by hand: typed objects in dicts, each ledger the sum of what the stitches hold."""

    def __init__(self, nodes, links, networks=(), stitches=()):
        self.nodes = {n.name: n for n in nodes}
        self.links = {l.name: l for l in links}
        self.networks = {(v.metadata.tenant, v.name): v for v in networks}
        self.stored = {f"{s.namespace}/{s.name}": s for s in stitches}
        self.finder = PathFinder(nodes, links)
        self.arc_links = {}
        for l in links:
            a, b = l.spec.endpoints
            self.arc_links[(a, b)] = self.arc_links[(b, a)] = l.name
        self.ledgers = {l.name: LinkLedger(l.name, tuple(l.spec.endpoints), l.spec.capacity) for l in links}
        deltas = ledgers.net_deltas(*((ledgers.held_by_stitch(s), +1) for s in self.stored.values()))
        self.ledgers.update(ledgers.apply_deltas(self.ledgers, self.arc_links, deltas))

    # the Snapshot protocol
    def network(self, namespace, name):
        return self.networks.get((namespace, name))

    def link(self, name):
        return self.links.get(name)

    def node(self, name):
        return self.nodes.get(name)

    def stitch(self, namespace, name):
        return self.stored.get(f"{namespace}/{name}")

    def stitches(self):
        return list(self.stored.values())

    def holdings(self, key):
        return ledgers.held_by_stitch(self.stored[key]) if key in self.stored else {}

    def residual(self, released=()):
        free = {}
        for ledger in self.ledgers.values():
            a, b = ledger.endpoints
            free[(a, b)], free[(b, a)] = ledger.residual_bps("forward"), ledger.residual_bps("reverse")
        for key in released:
            for arc, bps in self.holdings(key).items():
                free[arc] += bps
        return Residual(free)

    # what the controller does with a decision
    def commit(self, new, admitted):
        self.ledgers.update(admitted.ledgers)
        for key, status in admitted.preempted.items():
            self.stored[key] = self.stored[key].model_copy(update={"status": status})
        self.stored[f"{new.namespace}/{new.name}"] = new.model_copy(update={"status": admitted.status})


# A diamond: A-B-D is fast (2 ms), A-C-D slow (10 ms); every link 10 Gbit/s each way.
NODES = [node("A"), node("B"), node("C", zone="dmz"), node("D")]
LINKS = [link("A", "B", "1ms"), link("B", "D", "1ms"), link("A", "C", "5ms"), link("C", "D", "5ms")]
BLUE = vnet("blue", 1001, "10.1.0.0/24", [("blue-1", "A", "10.1.0.11")])
RED = vnet("red", 1002, "10.2.0.0/24", [("red-1", "D", "10.2.0.11")])
FAST, SLOW = ["A", "B", "D"], ["A", "C", "D"]


def holding(s, path, bps):
    return s.model_copy(update={"status": StitchStatus(state=State.ACTIVE, path=path, reserved_bandwidth=bps)})


def world(*stitches, networks=(BLUE, RED), links=LINKS):
    return World(NODES, links, networks, stitches)


def reserved(w):
    """link → (forward, reverse) bit/s, for the links that hold anything."""
    return {name: (l.forward_bps, l.reverse_bps) for name, l in w.ledgers.items() if l.forward_bps or l.reverse_bps}


def test_a_stitch_takes_the_fastest_path_and_reserves_both_directions_of_it():
    w = world()
    s = stitch("s", "blue", "red", "2Gbps")
    admitted = admission.admit_stitch(w, s, None, NOW)
    assert admitted.status.path == FAST
    assert admitted.status.reserved_bandwidth == 2 * GBPS
    assert admitted.status.history[-1].reason == "accepted" and admitted.status.history[-1].time == NOW
    assert {name: (l.forward_bps, l.reverse_bps) for name, l in admitted.ledgers.items()} == \
        {"A-B": (2 * GBPS, 2 * GBPS), "B-D": (2 * GBPS, 2 * GBPS)}
    assert admitted.preempted == {}


def test_path_choice_follows_the_residual_capacity():
    w = world(holding(stitch("old", "blue", "red", "6Gbps"), FAST, 6 * GBPS))
    admitted = admission.admit_stitch(w, stitch("new", "blue", "red", "6Gbps"), None, NOW)
    assert admitted.status.path == SLOW  # 4 Gbit/s left on the fast path
    assert set(admitted.ledgers) == {"A-C", "C-D"}


def test_a_resize_counts_the_stitchs_own_holding_as_free():
    old = holding(stitch("s", "blue", "red", "6Gbps"), FAST, 6 * GBPS)
    w = world(old)
    admitted = admission.admit_stitch(w, stitch("s", "blue", "red", "9Gbps"), old, NOW)
    assert admitted.status.path == FAST  # 9 fits once its own 6 are given back
    assert admitted.ledgers["A-B"].forward_bps == 9 * GBPS


def test_max_latency_that_no_path_meets_is_refused_naming_the_field():
    w = world()
    with pytest.raises(InsufficientCapacity) as err:
        admission.admit_stitch(w, stitch("s", "blue", "red", "1Gbps", maxLatency="1ms"), None, NOW)
    assert err.value.field == "spec.maxLatency"
    # with the fast path full, a bound only it meets is refused too, not met by the slow one
    w = world(holding(stitch("old", "blue", "red", "9Gbps"), FAST, 9 * GBPS))
    with pytest.raises(InsufficientCapacity):
        admission.admit_stitch(w, stitch("s", "blue", "red", "2Gbps", maxLatency="3ms"), None, NOW)


def test_never_over_reserves_a_link():
    w = world()
    admitted_paths = []
    for i in range(10):  # 3 Gbit/s each: three fit on each path, the seventh has nowhere to go
        s = stitch(f"s{i}", "blue", "red", "3Gbps")
        try:
            admitted = admission.admit_stitch(w, s, None, NOW)
        except InsufficientCapacity as exc:
            assert exc.field == "spec.bandwidth"
            continue
        w.commit(s, admitted)
        admitted_paths.append(admitted.status.path)
    assert admitted_paths == [FAST] * 3 + [SLOW] * 3
    for ledger in w.ledgers.values():
        assert max(ledger.forward_bps, ledger.reverse_bps) <= ledger.capacity_bps
    # every ledger is exactly what the stitches hold
    assert w.ledgers == World(NODES, LINKS, (), w.stored.values()).ledgers


def test_a_lower_priority_forecast_stitch_is_preempted_and_releases_its_reservation():
    forecast = holding(stitch("f", "blue", "red", "8Gbps", origin="forecast", priority=10), FAST, 8 * GBPS)
    user = holding(stitch("u", "blue", "red", "8Gbps"), SLOW, 8 * GBPS)
    w = world(forecast, user)
    new = stitch("new", "blue", "red", "5Gbps", priority=500)
    admitted = admission.admit_stitch(w, new, None, NOW)
    assert admitted.status.path == FAST
    assert list(admitted.preempted) == ["acme/f"]
    victim = admitted.preempted["acme/f"]
    assert victim.state is State.TERMINATING and victim.reserved_bandwidth == 0
    assert "pre-empted by higher-priority stitch acme/new" in victim.message
    w.commit(new, admitted)
    assert reserved(w) == {"A-B": (5 * GBPS, 5 * GBPS), "B-D": (5 * GBPS, 5 * GBPS),
                           "A-C": (8 * GBPS, 8 * GBPS), "C-D": (8 * GBPS, 8 * GBPS)}


def test_preemption_takes_the_lowest_priorities_on_the_path_and_only_as_many_as_it_needs():
    def forecast(name, priority, path, gbps):
        return holding(stitch(name, "blue", "red", f"{gbps}Gbps", origin="forecast", priority=priority), path,
                       gbps * GBPS)

    w = world(forecast("f1", 10, FAST, 4), forecast("f2", 20, FAST, 3), forecast("f4", 30, FAST, 3),
              holding(stitch("u", "blue", "red", "8Gbps"), SLOW, 8 * GBPS), forecast("f3", 5, SLOW, 2))
    new = stitch("new", "blue", "red", "6Gbps", priority=500)
    admitted = admission.admit_stitch(w, new, None, NOW)
    assert admitted.status.path == FAST
    assert sorted(admitted.preempted) == ["acme/f1", "acme/f2"]  # 4 + 3 free ≥ 6: f4 keeps its place
    w.commit(new, admitted)
    for ledger in w.ledgers.values():
        assert max(ledger.forward_bps, ledger.reverse_bps) <= ledger.capacity_bps
    assert reserved(w)["A-B"] == (9 * GBPS, 9 * GBPS)  # f4's 3 and the new 6


def test_only_forecast_stitches_of_a_lower_priority_give_way():
    for blocker in (stitch("b", "blue", "red", "8Gbps", priority=10),                       # a user's stitch
                    stitch("b", "blue", "red", "8Gbps", origin="forecast", priority=500)):  # as important
        w = world(holding(blocker, FAST, 8 * GBPS), holding(stitch("u", "blue", "red", "8Gbps"), SLOW, 8 * GBPS))
        with pytest.raises(InsufficientCapacity):
            admission.admit_stitch(w, stitch("new", "blue", "red", "5Gbps", priority=500), None, NOW)


def test_the_own_policy_refuses_another_tenants_network():
    peer = vnet("red", 1002, "10.2.0.0/24", [("red-1", "D", "10.2.0.11")], tenant="globex",
                policy={"allowStitchTo": ["acme/blue"]})
    w = world(networks=(BLUE, peer))  # blue has no policy: only its own tenant's networks
    with pytest.raises(PolicyDenied) as err:
        admission.admit_stitch(w, stitch("s", "blue", "red", to_={"network": "red", "tenant": "globex"}), None, NOW)
    assert err.value.field == "spec.from"


def test_a_peer_that_does_not_consent_is_as_unknown_as_one_that_does_not_exist():
    blue = vnet("blue", 1001, "10.1.0.0/24", [("blue-1", "A", "10.1.0.11")], policy={"allowStitchTo": ["globex/red"]})
    refusing = vnet("red", 1002, "10.2.0.0/24", [("red-1", "D", "10.2.0.11")], tenant="globex")
    s = stitch("s", "blue", "red", to_={"network": "red", "tenant": "globex"})
    errors = []
    for networks in ((blue, refusing), (blue,)):
        with pytest.raises(InvalidInput) as err:
            admission.admit_stitch(world(networks=networks), s, None, NOW)
        errors.append(err.value.to_dict())
    assert errors[0] == errors[1] and "unknown network 'globex/red'" in errors[0]["message"]
    consenting = vnet("red", 1002, "10.2.0.0/24", [("red-1", "D", "10.2.0.11")], tenant="globex",
                      policy={"allowStitchTo": ["acme/blue"]})
    assert admission.admit_stitch(world(networks=(blue, consenting)), s, None, NOW).status.path == FAST


def test_encryption_and_trust_zones_come_from_both_policies():
    w = world()
    with pytest.raises(PolicyDenied) as err:
        admission.admit_stitch(w, stitch("s", "blue", "red", encryption="none"), None, NOW)
    assert "requires encryption" in err.value.message
    # red keeps the path out of the dmz (node C): with the fast path full there is no other way
    red = vnet("red", 1002, "10.2.0.0/24", [("red-1", "D", "10.2.0.11")], policy={"allowedTrustZones": ["default"]})
    w = world(holding(stitch("old", "blue", "red", "9Gbps"), FAST, 9 * GBPS), networks=(BLUE, red))
    with pytest.raises(InsufficientCapacity):
        admission.admit_stitch(w, stitch("s", "blue", "red", "2Gbps"), None, NOW)


def test_a_pinned_path_is_checked_hop_by_hop():
    w = world(links=[*LINKS[:1], link("B", "D", "1ms", state="maintenance"), *LINKS[2:]])
    with pytest.raises(InsufficientCapacity, match="B-D on the path is maintenance"):
        admission.admit_stitch(w, stitch("s", "blue", "red", path=FAST), None, NOW)
    admitted = admission.admit_stitch(w, stitch("s", "blue", "red", path=SLOW), None, NOW)
    assert admitted.status.path == SLOW
    with pytest.raises(InsufficientCapacity) as err:
        admission.admit_stitch(w, stitch("s", "blue", "red", path=SLOW, maxLatency="5ms"), None, NOW)
    assert err.value.field == "spec.maxLatency"


def test_replan_withdraws_a_stitch_whose_path_went_down_when_no_other_fits():
    s = holding(stitch("s", "blue", "red", "6Gbps"), FAST, 6 * GBPS)
    links = [link("A", "B", "1ms", state="down"), *LINKS[1:]]
    w = World(NODES, links, (BLUE, RED), (s, holding(stitch("u", "blue", "red", "6Gbps"), SLOW, 6 * GBPS)))
    assert admission.replan_reason(w, s) == "link A-B is down"
    decision = admission.replan(w, s, "link A-B is down", NOW)
    assert decision.outcome == "withdrawn"
    assert decision.status.state is State.FAILED and decision.status.path == []
    assert {name: (l.forward_bps, l.reverse_bps) for name, l in decision.ledgers.items()} == \
        {"A-B": (0, 0), "B-D": (0, 0)}


def test_what_an_admission_may_replace():
    new = stitch("s", "blue", "red", "1Gbps")
    finished = new.model_copy(update={"status": StitchStatus(state=State.TERMINATED)})
    assert admission.replaces(new, finished) is None  # a finished record is replaced by a new stitch
    deleting = new.model_copy(update={"metadata": new.metadata.model_copy(update={"deletion_timestamp": NOW})})
    with pytest.raises(Conflict):
        admission.replaces(new, deleting)
    with pytest.raises(InvalidInput) as err:
        admission.replaces(stitch("s", "blue", "red", "1Gbps", symmetric=False), new)
    assert err.value.field == "spec.symmetric"


def test_availability_answers_as_admission_would_and_reserves_nothing():
    w = world(holding(stitch("old", "blue", "red", "6Gbps"), FAST, 6 * GBPS))
    before = dict(w.ledgers)
    s = stitch("s", "blue", "red", "6Gbps")
    answer = admission.availability(w, "acme", s.spec.from_, s.spec.to, 6 * GBPS)
    assert answer.feasible and list(answer.path.nodes) == SLOW
    assert not admission.availability(w, "acme", s.spec.from_, s.spec.to, 6 * GBPS, max_latency_s=0.003).feasible
    assert w.ledgers == before
