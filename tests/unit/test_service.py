"""Apply, admission, policies, pre-emption and bad input through the controller services."""

import pytest

from vnstitch.domain.ledger import LEDGER_KIND, held_by
from vnstitch.domain.substrate import link_name
from vnstitch.errors import Conflict, InsufficientCapacity, InvalidInput, NotFound, PolicyDenied
from tests.helpers import stitch, vnet

BLUE = vnet("blue", 1001, "10.1.0.0/24", [("blue-1", "NYCMng", "10.1.0.11")])
RED = vnet("red", 1002, "10.2.0.0/24", [("red-1", "LOSAng", "10.2.0.11")])


def reserved(controller):
    """(link, direction) → reserved bit/s, for the links that hold anything."""
    controller.refresh()
    return {(r.name, d): r.value[d] for r in controller.cache.list(LEDGER_KIND) for d in ("forward", "reverse")
            if r.value[d]}


def live_holdings(controller):
    """The same, computed from the stitches' own status (the invariant: both agree)."""
    out = {}
    for s in controller.list("stitches"):
        for arc, bps in held_by(s.to_dict()).items():
            link = link_name(*arc)
            direction = "forward" if arc == tuple(controller.get("link", link).spec.endpoints) else "reverse"
            out[(link, direction)] = out.get((link, direction), 0) + bps
    return out


def test_bandwidth_stitch_reserves_on_every_link_of_its_path(controller):
    changes = controller.apply([BLUE, RED, stitch("blue-red", "blue", "red", "2Gbps", maxLatency="30ms")])
    assert [c.action for c in changes] == ["created"] * 3
    s = controller.get("stitch", "blue-red", "acme")
    assert s.status.state.value == "PENDING"
    assert s.status.path[0] == "NYCMng" and s.status.path[-1] == "LOSAng"
    assert s.status.reserved_bandwidth == 2e9
    held = reserved(controller)
    # symmetric: both directions of each of the path's links
    assert len(held) == 2 * (len(s.status.path) - 1)
    assert set(held.values()) == {2e9}


def test_apply_is_idempotent_and_updates_bump_generation(controller):
    controller.apply([BLUE, RED, stitch("s", "blue", "red", "1Gbps")])
    assert [c.action for c in controller.apply([BLUE, RED, stitch("s", "blue", "red", "1Gbps")])] == ["unchanged"] * 3
    controller.apply([stitch("s", "blue", "red", "3Gbps")])
    s = controller.get("stitch", "s", "acme")
    assert s.metadata.generation == 2 and s.status.reserved_bandwidth == 3e9
    assert set(reserved(controller).values()) == {3e9}


def test_capacity_is_never_exceeded_and_second_path_is_used(controller):
    controller.apply([BLUE, RED])
    # Abilene links are 9.92 Gbps: two 6 Gbps stitches cannot share a link.
    controller.apply([stitch("a", "blue", "red", "6Gbps")])
    controller.apply([stitch("b", "blue", "red", "6Gbps")])
    a, b = controller.get("stitch", "a", "acme"), controller.get("stitch", "b", "acme")
    links_a = set(zip(a.status.path, a.status.path[1:]))
    links_b = set(zip(b.status.path, b.status.path[1:]))
    assert not links_a & links_b
    with pytest.raises(InsufficientCapacity):
        controller.apply([stitch("c", "blue", "red", "6Gbps")])


@pytest.mark.parametrize("resources,field,fragment", [
    (lambda: [vnet("x", 5, "10.9.0.0/24", [("x-1", "XYZ", "10.9.0.2")])], "spec.members[0].node", "unknown node 'XYZ'"),
    (lambda: [BLUE, stitch("s", "blue", "nope")], "spec.to.network", "unknown network"),
    (lambda: [BLUE, RED, stitch("s", "blue/ghost", "red/red-1", type="direct", bandwidth=0)], "spec.from.member", "no member"),
    (lambda: [BLUE, vnet("dup", 1001, "10.3.0.0/24")], "spec.vnid", "VNID 1001"),
    (lambda: [BLUE, RED, stitch("s", "blue", "red", "2Gbps", maxLatency="1ms")], "spec.maxLatency", "latency"),
    (lambda: [BLUE, RED, stitch("s", "blue", "red", "50Gbps")], "spec.bandwidth", ""),
])
def test_bad_references_name_the_field_and_change_nothing(controller, resources, field, fragment):
    before = controller.store.revision()
    with pytest.raises((InvalidInput, InsufficientCapacity)) as info:
        controller.apply(resources())
    assert info.value.field == field
    assert fragment in info.value.message
    assert controller.store.revision() == before


def test_policies_default_same_tenant_and_explicit_cross_tenant(controller):
    other = vnet("green", 2001, "10.1.0.0/24", [("g-1", "CHINng", "10.1.0.5")], tenant="globex")  # same CIDR: fine
    controller.apply([BLUE, other])
    cross = stitch("x", "blue", "green", to_={"network": "green", "tenant": "globex"})
    with pytest.raises(PolicyDenied) as info:
        controller.apply([cross])
    assert info.value.field == "spec.from"  # blue (no policy) refuses another tenant
    controller.apply([vnet("blue", 1001, "10.1.0.0/24", [("blue-1", "NYCMng", "10.1.0.11")],
                           policy={"allowStitchTo": ["globex/green"]})])
    with pytest.raises(InvalidInput) as info:  # green refuses acme: to acme it does not exist
        controller.apply([cross])
    assert info.value.field == "spec.to.network" and "unknown network 'globex/green'" in info.value.message
    controller.apply([vnet("green", 2001, "10.1.0.0/24", [("g-1", "CHINng", "10.1.0.5")], tenant="globex",
                           policy={"allowStitchTo": [{"matchLabels": {}, "tenant": "acme"}]})])
    controller.apply([cross])
    assert controller.get("stitch", "x", "acme").status.path[-1] == "CHINng"


def test_unencrypted_needs_both_sides(controller):
    controller.apply([BLUE, RED])
    plain = stitch("p", "blue", "red", encryption="none")
    with pytest.raises(PolicyDenied) as info:
        controller.apply([plain])
    assert "requires encryption" in info.value.message
    open_policy = {"allowUnencrypted": True}
    controller.apply([vnet("blue", 1001, "10.1.0.0/24", [("blue-1", "NYCMng", "10.1.0.11")], policy=open_policy),
                      vnet("red", 1002, "10.2.0.0/24", [("red-1", "LOSAng", "10.2.0.11")], policy=open_policy)])
    controller.apply([plain])


def test_trust_zones_constrain_the_path(controller):
    controller.apply([BLUE, RED])
    zoned = {"allowedTrustZones": ["vault"]}
    controller.apply([vnet("blue", 1001, "10.1.0.0/24", [("blue-1", "NYCMng", "10.1.0.11")], policy=zoned)])
    with pytest.raises(InsufficientCapacity):
        controller.apply([stitch("z", "blue", "red")])


def test_higher_priority_preempts_forecast_stitches(controller, clock):
    controller.apply([BLUE, RED])
    controller.apply([stitch(f"f{i}", "blue", "red", "4.5Gbps", origin="forecast", priority=10) for i in range(4)])
    clock.now += 10
    controller.apply([stitch("vip", "blue", "red", "9Gbps", priority=500)])
    victims = [s for s in controller.list("stitches", "acme") if s.status.state.value == "TERMINATING"]
    assert victims and all(v.spec.origin == "forecast" for v in victims)
    assert all("pre-empted by higher-priority stitch acme/vip" in v.status.history[-1].reason for v in victims)
    # the ledger equals what the stitches still hold; the victims hold nothing
    assert all(v.status.reserved_bandwidth == 0 for v in victims)
    assert reserved(controller) == live_holdings(controller) != {}


def test_user_stitches_are_never_preempted(controller):
    controller.apply([BLUE, RED])
    controller.apply([stitch(f"u{i}", "blue", "red", "4.5Gbps", priority=10) for i in range(4)])
    with pytest.raises(InsufficientCapacity):
        controller.apply([stitch("vip", "blue", "red", "9Gbps", priority=900)])


def test_delete_guards(controller):
    controller.apply([BLUE, RED, stitch("s", "blue", "red")])
    with pytest.raises(Conflict):
        controller.delete("virtualnetworks", "blue", "acme")
    with pytest.raises(Conflict):
        controller.delete("nodes", "NYCMng")
    path = controller.get("stitch", "s", "acme").status.path
    from vnstitch.domain.substrate import link_name
    with pytest.raises(Conflict):
        controller.delete("links", link_name(path[0], path[1]))
    with pytest.raises(NotFound):
        controller.delete("stitches", "nope", "acme")
    assert controller.delete("stitches", "s", "acme").action == "deleting"
    assert controller.get("stitch", "s", "acme").status.state.value == "TERMINATING"
    # reservation is still held until teardown is confirmed
    assert reserved(controller) == live_holdings(controller) != {}


def test_availability_reserves_nothing(controller):
    from vnstitch.domain.stitch import Endpoint
    controller.apply([BLUE, RED])
    before = controller.store.revision()
    yes = controller.availability("acme", Endpoint(network="blue"), Endpoint(network="red"), 5e9, 0.03)
    no = controller.availability("acme", Endpoint(network="blue"), Endpoint(network="red"), 5e9, 0.001)
    assert yes.feasible and yes.path.nodes[0] == "NYCMng"
    assert not no.feasible and no.best_latency_s is not None and no.best_latency_s > 0.001
    assert controller.store.revision() == before


def test_link_capacity_cannot_drop_below_reservations(controller, abilene):
    controller.apply([BLUE, RED, stitch("s", "blue", "red", "5Gbps")])
    path = controller.get("stitch", "s", "acme").status.path
    from vnstitch.domain.substrate import link_name
    name = link_name(path[0], path[1])
    link = next(l for l in abilene.links if l.name == name).model_copy(deep=True)
    link.spec.capacity = 1e9
    with pytest.raises(InvalidInput) as info:
        controller.apply([link])
    assert info.value.field == "spec.capacity"


def test_group_commit_keeps_earlier_reservations_after_a_refusal_in_the_batch(controller):
    """apply_each: a refused resource between two admitted ones must not drop the first one's debit."""
    controller.apply([BLUE, RED])
    results = controller.apply_each([stitch("a", "blue", "red", "2Gbps"), stitch("bad", "blue", "nope"),
                                     stitch("c", "blue", "red", "2Gbps")])
    assert [type(r).__name__ for r in results] == ["Change", "InvalidInput", "Change"]
    assert reserved(controller) == live_holdings(controller) != {}
    a, c = controller.get("stitch", "a", "acme"), controller.get("stitch", "c", "acme")
    if a.status.path == c.status.path:  # same links: both debits are on them
        assert set(reserved(controller).values()) == {4_000_000_000}


def test_a_capacity_cut_in_the_same_apply_is_respected_by_its_stitches(controller, abilene):
    controller.apply([BLUE, RED])
    cut = []
    for link in abilene.links:
        if "NYCMng" in link.spec.endpoints:
            smaller = link.model_copy(deep=True)
            smaller.spec.capacity = 1e9
            cut.append(smaller)
    with pytest.raises(InsufficientCapacity):
        controller.apply(cut + [stitch("big", "blue", "red", "5Gbps")])  # every way out of NYC is now 1 Gbps
    controller.apply(cut + [stitch("small", "blue", "red", "800Mbps")])
    assert reserved(controller) == live_holdings(controller)
    assert max(reserved(controller).values()) == 800_000_000


def test_an_explicit_path_over_a_link_created_in_the_same_apply(controller):
    from vnstitch.domain.registry import parse_resource
    controller.apply([BLUE, RED])
    direct_link = parse_resource({"kind": "Link", "metadata": {"name": "LOSAng--NYCMng"},
                                  "spec": {"endpoints": ["NYCMng", "LOSAng"], "capacity": "10Gbps", "latency": "20ms"}})
    pinned = stitch("pinned", "blue", "red", "1Gbps", path=["NYCMng", "LOSAng"])
    controller.apply([direct_link, pinned], dry_run=True)      # a dry run leaves nothing behind…
    with pytest.raises(InvalidInput) as info:                  # …not even in the controller's arc map
        controller.apply([stitch("later", "blue", "red", "1Gbps", path=["NYCMng", "LOSAng"])])
    assert info.value.field == "spec.path[1]"
    controller.apply([direct_link, pinned])
    assert controller.get("stitch", "pinned", "acme").status.path == ["NYCMng", "LOSAng"]
    assert reserved(controller) == live_holdings(controller)
