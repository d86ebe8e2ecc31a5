"""Keep the network true: a broken stitch is repaired, a change to what a stitch depends on re-plans it
in the same pass, a revoked consent withdraws it, nonsense is refused. Each on the simulator, which
carries traffic (reach) rather than recording calls."""

import pytest

from tests.helpers import stitch, vnet
from tests.unit.test_reconciler import BLUE, RED, converged, make
from vnstitch.domain.ledger import LEDGER_KIND, held_by
from vnstitch.domain.substrate import Link
from vnstitch.errors import InvalidInput, PolicyDenied


def _state(controller, name, tenant="acme"):
    return controller.get("stitch", name, tenant).status


def _ledger_matches_holdings(controller):
    """Every link's ledger equals what the live stitches hold on it (nothing leaked, nothing double)."""
    controller.refresh()
    reserved = {}
    for r in controller.cache.list(LEDGER_KIND):
        ends = tuple(controller.cache.get("Link", "", r.name).value["spec"]["endpoints"])
        for direction, arc in (("forward", ends), ("reverse", ends[::-1])):
            if r.value[direction]:
                reserved[arc] = r.value[direction]
    held = {}
    for r in controller.cache.list("Stitch"):
        for arc, bps in held_by(r.value).items():
            held[arc] = held.get(arc, 0) + bps
    assert reserved == held


def test_a_broken_tunnel_is_repaired_in_the_next_pass_with_the_reason(controller, store, clock, abilene):
    _, rec = make(store, clock, abilene)
    controller.apply([BLUE, RED, stitch("d", "blue/blue-1", "red/red-1", type="direct", bandwidth=0)])
    rec.reconcile_once(clock.now)
    assert rec.driver.reach("acme/blue/blue-1", "acme/red/red-1").reachable
    rec.driver.fault("acme/d", "wireguard-go for wg-a is not running")   # the tunnel process died
    assert not rec.driver.reach("acme/blue/blue-1", "acme/red/red-1").reachable
    plan = rec.plan()
    assert plan, "the plan must not say 'No changes' while a tunnel is down"
    assert len(plan.lines()) == 1 and plan.lines()[0].endswith("(repair: wireguard-go for wg-a is not running)")
    rec.reconcile_once(clock.now + 5)
    assert rec.driver.reach("acme/blue/blue-1", "acme/red/red-1").reachable
    status = _state(controller, "d")
    assert status.state.value == "ACTIVE"
    assert [h.to_state.value for h in status.history][-2:] == ["DEGRADED", "ACTIVE"]
    assert "repair: wireguard-go" in status.history[-2].reason
    assert not rec.plan()
    converged(controller, rec.driver)


def test_moving_a_member_replans_its_stitches_in_the_same_pass(controller, store, clock, abilene):
    _, rec = make(store, clock, abilene)
    controller.apply([BLUE, RED, stitch("d", "blue/blue-1", "red/red-1", type="direct", bandwidth="1Gbps"),
                      stitch("s", "blue", "red", "2Gbps")])
    rec.reconcile_once(clock.now)
    assert _state(controller, "d").path[0] == "NYCMng"
    moved = vnet("blue", 1001, "10.1.0.0/24", [("blue-1", "ATLAng", "10.1.0.11")])
    controller.apply([moved])
    assert [line.split(":")[0] for line in rec.plan().lines()[:2]] == ["re-plan stitch acme/d", "re-plan stitch acme/s"]
    rec.reconcile_once(clock.now + 5)
    for name in ("d", "s"):
        status = _state(controller, name)
        assert status.path[0] == "ATLAng", (name, status.path)
        assert status.state.value == "ACTIVE", (name, status.state, status.message)
        assert any("re-planned (member blue-1 moved from NYCMng to ATLAng" in h.reason
                   or "re-planned (network blue has no member on NYCMng" in h.reason for h in status.history)
        assert rec.driver.stitches[f"acme/{name}"]["path"] == status.path
    assert rec.driver.reach("acme/blue/blue-1", "acme/red/red-1").path[0] == "ATLAng"
    _ledger_matches_holdings(controller)
    converged(controller, rec.driver)


def _cross_tenant(allow_back=True):
    shop = vnet("shop", 2001, "10.3.0.0/24", [("shop-1", "NYCMng", "10.3.0.11")], tenant="acme",
                policy={"allowStitchTo": ["globex/ana"]})
    ana = vnet("ana", 2002, "10.4.0.0/24", [("ana-1", "LOSAng", "10.4.0.11")], tenant="globex",
               policy={"allowStitchTo": ["acme/shop"]} if allow_back else None)
    return shop, ana


def test_revoking_consent_withdraws_the_stitch_and_restoring_it_readmits(controller, store, clock, abilene):
    _, rec = make(store, clock, abilene)
    shop, ana = _cross_tenant()
    x = stitch("x", "shop", "ana", "1Gbps", to_={"network": "ana", "tenant": "globex"})
    controller.apply([shop, ana, x])
    rec.reconcile_once(clock.now)
    assert _state(controller, "x").state.value == "ACTIVE"
    assert rec.driver.reach("acme/shop/shop-1", "globex/ana/ana-1").reachable

    controller.apply([_cross_tenant(allow_back=False)[1]])   # globex takes its consent back
    rec.reconcile_once(clock.now + 5)
    status = _state(controller, "x")
    assert status.state.value == "FAILED" and "withdrawn" in status.message and "unknown network 'globex/ana'" in status.message, \
        "the peer that no longer consents looks as if it were gone"
    assert status.reserved_bandwidth == 0 and status.path == []
    assert not rec.driver.reach("acme/shop/shop-1", "globex/ana/ana-1").reachable, "no traffic after revocation"
    _ledger_matches_holdings(controller)
    assert all(not r.value["forward"] and not r.value["reverse"] for r in controller.cache.list(LEDGER_KIND))
    assert not rec.plan(), "a withdrawn stitch stays withdrawn without a change"

    controller.apply([ana])                                    # consent given again
    rec.reconcile_once(clock.now + 10)
    rec.reconcile_once(clock.now + 15)
    assert _state(controller, "x").state.value == "ACTIVE"
    assert rec.driver.reach("acme/shop/shop-1", "globex/ana/ana-1").reachable
    _ledger_matches_holdings(controller)


def test_a_link_in_maintenance_is_drained_and_avoided(controller, store, clock, abilene):
    _, rec = make(store, clock, abilene)
    controller.apply([BLUE, RED, stitch("s", "blue", "red", "1Gbps")])
    rec.reconcile_once(clock.now)
    path = _state(controller, "s").path
    arcs = {frozenset(a) for a in zip(path, path[1:])}
    link = next(link for link in abilene.links if frozenset(link.spec.endpoints) in arcs)
    drained = Link.model_validate({**link.model_dump(by_alias=True, mode="json"),
                                   "spec": {**link.model_dump(by_alias=True, mode="json")["spec"], "state": "maintenance"}})
    controller.apply([drained])
    rec.reconcile_once(clock.now + 5)
    new_path = _state(controller, "s").path
    assert frozenset(link.spec.endpoints) not in {frozenset(a) for a in zip(new_path, new_path[1:])}
    assert any(f"link {link.name} is maintenance" in h.reason for h in _state(controller, "s").history)
    assert _state(controller, "s").state.value == "ACTIVE"
    controller.apply([stitch("t", "blue", "red", "1Gbps")])
    t_path = _state(controller, "t").path
    assert frozenset(link.spec.endpoints) not in {frozenset(a) for a in zip(t_path, t_path[1:])}
    _ledger_matches_holdings(controller)


def test_a_stitch_from_a_network_or_vm_to_itself_is_refused(controller):
    controller.apply([BLUE])
    for bad in (stitch("self", "blue", "blue", "1Gbps"),
                stitch("self", "blue/blue-1", "blue/blue-1", type="direct", bandwidth=0),
                stitch("self", "blue", "blue", "1Gbps", to_={"network": "blue", "tenant": "acme"})):
        with pytest.raises(InvalidInput, match="two different endpoints"):
            controller.apply([bad])
    assert controller.list("stitches") == []


def test_readmission_respects_policy_errors_as_before(controller):
    shop, ana = _cross_tenant(allow_back=False)
    controller.apply([shop, ana])
    with pytest.raises((PolicyDenied, InvalidInput)):
        controller.apply([stitch("x", "shop", "ana", "1Gbps", to_={"network": "ana", "tenant": "globex"})])


def test_the_simulator_measures_what_a_stitch_carried_and_a_loss_breach_degrades_it(controller, store, clock, abilene):
    from vnstitch.api.metrics import state_lines

    _, rec = make(store, clock, abilene)
    green = vnet("green", 1003, "10.3.0.0/24", [("green-1", "NYCMng", "10.3.0.11")])
    controller.apply([BLUE, RED, green, stitch("s", "blue", "red", "1Gbps", maxLoss=0.01)])
    rec.reconcile_once(clock.now)
    path = _state(controller, "s").path
    rec.driver.carry({("acme/blue", "acme/red"): 0.8e9}, interval_s=300)
    rec.reconcile_once(clock.now + 5)
    status = _state(controller, "s")
    assert status.measured.throughput == pytest.approx(0.8e9) and status.measured.loss == 0
    assert status.state.value == "ACTIVE"
    first = f'link="{"--".join(sorted(path[:2]))}"'
    measured = [line for line in state_lines(controller) if line.startswith("vnstitch_link_measured_bps") and first in line]
    assert measured and float(measured[0].split()[-1]) == pytest.approx(0.8e9)
    # blue offers 3 Gbit/s over its 1 Gbit/s stitch while green floods the same links: the excess is
    # best effort and loses, so the stitch misses its maxLoss
    rec.driver.carry({("acme/blue", "acme/red"): 3e9, ("acme/green", "acme/red"): 9.5e9}, interval_s=300,
                     default_route=True)
    rec.reconcile_once(clock.now + 10)
    status = _state(controller, "s")
    assert status.measured.loss > 0.01
    assert status.state.value == "DEGRADED" and status.message.startswith("loss ")
    # the breach re-plans it in the next pass: onto a path that avoids the congested links, where the
    # same traffic arrives whole
    rec.reconcile_once(clock.now + 15)
    moved = _state(controller, "s")
    assert any(h.reason.startswith("rerouted (SLO breach: loss") for h in moved.history), moved.history[-3:]
    old_links = {frozenset(a) for a in zip(path, path[1:])}
    assert not old_links & {frozenset(a) for a in zip(moved.path, moved.path[1:])}
    assert rec.driver.stitches["acme/s"]["path"] == moved.path
    rec.driver.carry({("acme/blue", "acme/red"): 3e9, ("acme/green", "acme/red"): 9.5e9}, interval_s=300,
                     default_route=True)
    rec.reconcile_once(clock.now + 20)
    assert _state(controller, "s").measured.loss < 0.01
    assert _state(controller, "s").state.value == "ACTIVE"
    _ledger_matches_holdings(controller)
    revision = store.revision()
    rec.reconcile_once(clock.now + 25)
    assert store.revision() == revision, "settled: no flapping back"


def test_queueing_delay_grows_with_load_and_is_capped_by_the_buffer():
    from vnstitch.drivers.sim import BUFFER_S, PACKET_BITS, queueing_delay

    assert queueing_delay(0, 1e9) == 0.0
    assert queueing_delay(0.5e9, 1e9) == pytest.approx(PACKET_BITS / 1e9)  # ρ/(1-ρ) = 1
    assert queueing_delay(0.9e9, 1e9) == pytest.approx(9 * PACKET_BITS / 1e9)
    assert queueing_delay(0.99e9, 1e9) > queueing_delay(0.9e9, 1e9)
    assert queueing_delay(1e9, 1e9) == queueing_delay(5e9, 1e9) == BUFFER_S


def test_the_simulator_measures_latency_from_carried_traffic_and_a_latency_breach_reroutes(
        controller, store, clock, abilene):
    _, rec = make(store, clock, abilene)
    green = vnet("green", 1003, "10.3.0.0/24", [("green-1", "NYCMng", "10.3.0.11")])
    controller.apply([BLUE, RED, green, stitch("s", "blue", "red", "1Gbps")])
    rec.reconcile_once(clock.now)
    path = _state(controller, "s").path
    rec.driver.carry({("acme/blue", "acme/red"): 0.5e9}, interval_s=300, default_route=True)
    rec.reconcile_once(clock.now + 5)
    quiet = _state(controller, "s").measured.latency
    propagation = rec.driver.path_latency(path)
    assert quiet == pytest.approx(propagation, abs=1e-4), "an idle network adds next to no queueing"
    # a best-effort stitch (no reservation) with a latency bound 5 ms above its propagation latency
    controller.apply([stitch("b", "blue", "red", 0, type="segment", maxLatency=f"{(propagation + 0.005) * 1e3:.3f}ms")])
    rec.reconcile_once(clock.now + 10)
    assert _state(controller, "b").state.value == "ACTIVE"
    b_path = _state(controller, "b").path
    # green floods the links: their queues fill. The reserved stitch's traffic is served first and
    # keeps its latency; the best-effort one waits behind the flood and misses its bound
    flood = {("acme/blue", "acme/red"): 0.5e9, ("acme/green", "acme/red"): 12e9}
    rec.driver.carry(flood, interval_s=300, default_route=True)
    rec.reconcile_once(clock.now + 15)
    assert _state(controller, "s").measured.latency < propagation + 1e-3
    status = _state(controller, "b")
    assert status.measured.latency >= propagation + 0.040, status.measured
    assert status.state.value == "DEGRADED" and status.message.startswith("latency "), status.message
    rec.reconcile_once(clock.now + 20)
    moved = _state(controller, "b")
    assert any(h.reason.startswith("rerouted (SLO breach: latency") for h in moved.history), moved.history[-3:]
    assert moved.path != b_path
