"""The anomaly engine on the simulator: traffic carried by the sim driver, counted by its per-pair counters,
read by the telemetry source into a telemetry store, scored by the policy's detector. Outcomes, not calls:
a forbidden flood is dropped and counted while other traffic crosses, a surging pair gets bandwidth, both
are undone when the traffic returns to normal; a kept action stays; suggest mode waits for approval."""

import numpy as np
import pytest

from tests.helpers import stitch, vnet
from vnstitch.anomaly.engine import AnomalyEngine, answer_anomaly
from vnstitch.controller.reconciler import Reconciler
from vnstitch.domain.registry import parse_resource
from vnstitch.drivers.sim import SimDriver
from vnstitch.errors import InvalidInput
from vnstitch.telemetry.base import Sample
from vnstitch.telemetry.sim import SimCountersSource
from vnstitch.telemetry.store import MemoryTelemetryStore

INTERVAL = 300.0
BLUE = vnet("blue", 1001, "10.1.0.0/24", [("blue-1", "NYCMng", "10.1.0.11")])
RED = vnet("red", 1002, "10.2.0.0/24", [("red-1", "LOSAng", "10.2.0.11"), ("red-2", "LOSAng", "10.2.0.12")])
GREEN = vnet("green", 1003, "10.3.0.0/24", [("green-1", "CHINng", "10.3.0.11"), ("green-2", "CHINng", "10.3.0.12")])
NORMAL = {("acme/blue", "acme/red"): 50e6, ("acme/red", "acme/blue"): 20e6}


def policy(mode="auto", **spec):
    return parse_resource({"kind": "AnomalyPolicy", "metadata": {"name": "watch", "tenant": "acme"},
                           "spec": {"networks": ["blue", "red", "green"], "interval": "5m", "mode": mode,
                                    "minHistory": 60, **spec}}, user_input=True)


class World:
    def __init__(self, controller, clock, abilene, mode="auto", **spec):
        controller.apply([BLUE, RED, GREEN, stitch("br", "blue", "red", "100Mbps"), policy(mode, **spec)])
        self.controller, self.clock = controller, clock
        self.driver = SimDriver(topology=abilene.links)
        self.reconciler = Reconciler(controller, self.driver)
        self.telemetry = MemoryTelemetryStore()
        self.source = SimCountersSource(self.driver)
        self.engine = AnomalyEngine(controller, self.telemetry, self.driver, clock=clock)
        self.rng = np.random.default_rng(13)
        clock.now = 6_000_000 * INTERVAL
        self.reconciler.reconcile_once(clock.now)
        self.source.collect(clock.now)   # the counters' baseline
        self.report = None

    def interval(self, demands=None, collect=True, noise=0.03):
        """One interval of traffic, collected at its end, then the engine and a reconcile pass."""
        self.clock.now += INTERVAL
        demands = {pair: bps * (1 + noise * self.rng.standard_normal()) for pair, bps in (demands or NORMAL).items()}
        self.report = self.driver.carry(demands, INTERVAL)
        if collect:
            self.telemetry.insert(self.source.collect(self.clock.now))
        runs = self.engine.step(self.clock.now)
        self.reconciler.reconcile_once(self.clock.now)
        return runs

    def anomalies(self, kind=None):
        self.controller.refresh()
        found = [a for a in self.controller.list("Anomaly", "acme") if kind in (None, a.spec.kind)]
        return sorted(found, key=lambda a: a.spec.start)

    def bandwidth(self, name="br"):
        return self.controller.get("Stitch", name, "acme").spec.bandwidth

    def warm(self, intervals=64):
        for _ in range(intervals):
            self.interval()


@pytest.fixture
def world(controller, clock, abilene):
    return World(controller, clock, abilene)


FLOOD = {**NORMAL, ("acme/blue", "acme/green"): 200e6}
SURGE = {**NORMAL, ("acme/blue", "acme/red"): 95e6}


def test_flood_is_blocked_surge_gets_capacity_and_both_are_undone(world):
    world.warm()
    assert world.anomalies() == []
    status = world.controller.get("AnomalyPolicy", "watch", "acme").status
    assert status.ready and status.message == "ok", status

    # blue floods green (no stitch, no policy lets it) while blue→red surges past 80 % of its stitch
    for _ in range(2):
        world.interval({**FLOOD, **SURGE})
    flood, = world.anomalies("forbidden_flow")
    surge, = world.anomalies("surge")
    assert flood.spec.pairs[0] == "blue>green" and surge.spec.pairs[0] == "blue>red"
    block, = flood.status.actions
    assert (block.type, block.state, block.detail["src"], block.detail["dst"]) == ("block", "applied", "10.1.0.0/24",
                                                                                  "10.3.0.0/24")
    resize, = surge.status.actions
    assert resize.type == "resize" and resize.state == "applied" and world.bandwidth() >= 95e6 * 1.25 * 0.99
    # on the data plane: the flood is dropped and counted, the other traffic crosses in full
    assert not world.driver.reach("acme/blue/blue-1", "acme/green/green-1").reachable
    assert world.driver.filters()[block.detail["filter"]].dropped_packets > 0
    assert world.report.dropped_bps[("acme/blue", "acme/green")] > 0
    assert world.report.delivered_bps[("acme/red", "acme/blue")] == pytest.approx(
        world.report.dropped_bps.get(("acme/red", "acme/blue"), 0) + world.report.delivered_bps[("acme/red", "acme/blue")])
    assert world.driver.reach("acme/blue/blue-1", "acme/red/red-1").reachable
    assert world.driver.observe().stitches["acme/br"].rate_bps >= 95e6 * 1.25 * 0.99
    # the flood goes on: still open, still blocked
    world.interval({**FLOOD, **SURGE})
    assert world.anomalies("forbidden_flow")[0].status.state == "Open"

    # traffic back to normal: after endAfter (2) quiet intervals both end and their actions are undone
    for _ in range(3):
        world.interval()
    flood, = world.anomalies("forbidden_flow")
    surge, = world.anomalies("surge")
    assert (flood.status.state, surge.status.state) == ("Ended", "Ended")
    assert [a.state for a in flood.status.actions + surge.status.actions] == ["undone", "undone"]
    assert world.driver.filters() == {}
    assert world.bandwidth() == 100e6
    assert world.driver.reach("acme/blue/blue-1", "acme/red/red-1").reachable


def test_a_kept_block_stays_after_the_anomaly_ends_until_released(world):
    world.warm()
    world.interval(FLOOD)
    flood, = world.anomalies("forbidden_flow")
    answer_anomaly(world.controller.store, "acme", flood.name, "keep")
    for _ in range(3):
        world.interval()
    flood, = world.anomalies("forbidden_flow")
    assert flood.status.state == "Kept" and flood.status.actions[0].state == "kept"
    assert len(world.driver.filters()) == 1 and not world.driver.reach("acme/blue/blue-1", "acme/green/green-1").reachable
    answer_anomaly(world.controller.store, "acme", flood.name, "keep", False)
    world.interval()
    flood, = world.anomalies("forbidden_flow")
    assert flood.status.state == "Ended" and flood.status.actions[0].state == "undone"
    assert world.driver.filters() == {}


def test_suggest_mode_records_actions_and_applies_them_once_approved(controller, clock, abilene):
    world = World(controller, clock, abilene, mode="suggest")
    world.warm()
    world.interval(FLOOD)
    flood, = world.anomalies("forbidden_flow")
    assert [a.state for a in flood.status.actions] == ["suggested"] and world.driver.filters() == {}
    answer_anomaly(controller.store, "acme", flood.name, "approve")
    world.interval(FLOOD)
    flood, = world.anomalies("forbidden_flow")
    assert flood.status.actions[0].state == "applied" and len(world.driver.filters()) == 1


def test_too_little_history_is_not_ready_never_an_alarm(world):
    world.warm(5)
    world.interval({("acme/blue", "acme/red"): 5e6, ("acme/red", "acme/blue"): 90e6})   # wild, but unjudgeable
    status = world.controller.get("AnomalyPolicy", "watch", "acme").status
    assert not status.ready and status.message.startswith("not ready: ") and "of 60 intervals" in status.message
    assert world.anomalies() == []


def test_a_telemetry_gap_is_never_an_outage(world):
    world.warm()
    world.interval(collect=False)          # nothing collected: a gap, not zero traffic
    world.interval(collect=False)
    assert world.anomalies() == []
    world.interval()
    assert [a.spec.kind for a in world.anomalies()] == []


def test_a_member_fanning_out_is_rate_limited(controller, clock, abilene):
    world = World(controller, clock, abilene, fanOut=2)
    world.warm()
    end = world.clock.now + INTERVAL   # blue-1 suddenly talks to every member of red (a stitch allows it)
    world.telemetry.insert([Sample("acme", "blue/blue-1", dst, end, 30e6) for dst in ("red/red-1", "red/red-2")])
    world.interval()
    fan, = world.anomalies("fan_out")
    assert fan.spec.pairs == ["blue/blue-1>red/red-1", "blue/blue-1>red/red-2"]
    assert {a.type for a in fan.status.actions} == {"rateLimit"}
    limits = world.driver.filters().values()
    assert {f.src for f in limits} == {"10.1.0.11/32"} and {f.action for f in limits} == {"limit"}


def test_unknown_detector_lists_the_valid_ones_and_anomalies_cannot_be_made_by_hand(world):
    with pytest.raises(InvalidInput) as info:
        policy(detector="nope")
    assert "unknown detector 'nope'" in str(info.value) and "residual" in str(info.value)
    world.warm(1)
    world.interval(FLOOD)
    flood, = world.anomalies("forbidden_flow")
    with pytest.raises(InvalidInput, match="recorded by the anomaly engine"):
        world.controller.apply([flood])
    with pytest.raises(InvalidInput, match="not deleted by hand"):
        world.controller.delete("Anomaly", flood.name, "acme")


def test_deleting_the_policy_ends_its_anomalies_and_undoes_their_actions(world):
    world.warm(1)
    world.interval(FLOOD)
    assert len(world.driver.filters()) == 1
    world.controller.delete("AnomalyPolicy", "watch", "acme")
    world.interval(FLOOD)
    flood, = world.anomalies("forbidden_flow")
    assert flood.status.state == "Ended" and flood.status.actions[0].state == "undone"
    assert world.driver.filters() == {}


def test_the_linux_filter_lets_allowed_flows_on_then_drops_or_polices_with_a_counter():
    from vnstitch.drivers.linux.filters import filter_rules, fingerprint
    from vnstitch.planning.ops import ServiceRule

    allow = (ServiceRule("tcp", 5201), ServiceRule("icmp"))
    assert filter_rules("10.1.0.11/32", "10.3.0.0/24", "drop", 0, allow) == [
        "ip saddr 10.1.0.11/32 ip daddr 10.3.0.0/24 tcp dport 5201 accept",
        "ip saddr 10.1.0.11/32 ip daddr 10.3.0.0/24 meta l4proto icmp accept",
        "ip saddr 10.1.0.11/32 ip daddr 10.3.0.0/24 counter drop"]
    assert filter_rules("10.1.0.0/24", "10.3.0.0/24", "limit", 8e6, ())[-1] == \
        "ip saddr 10.1.0.0/24 ip daddr 10.3.0.0/24 limit rate over 1000 kbytes/second counter drop"
    assert fingerprint("a", "b", "drop", 0, allow) != fingerprint("a", "b", "limit", 1e6, allow)


def test_a_flood_counted_per_member_is_one_anomaly_that_names_and_blocks_the_member(world):
    """The Linux driver's guard reports what a member sends where no stitch leads twice: as the member's
    traffic and in its network's sum. One event: the member is named, and only its address is blocked."""
    world.warm()
    for _ in range(2):
        world.clock.now += INTERVAL
        world.driver.carry(NORMAL, INTERVAL)
        world.telemetry.insert(world.source.collect(world.clock.now))
        world.telemetry.insert([Sample("acme", "blue", "green", world.clock.now, 200e6),
                                Sample("acme", "blue/blue-1", "green", world.clock.now, 200e6)])
        world.engine.step(world.clock.now)
        world.reconciler.reconcile_once(world.clock.now)
    flood, = world.anomalies("forbidden_flow")
    assert flood.spec.pairs == ["blue/blue-1>green"], flood.spec.pairs
    block, = flood.status.actions
    assert (block.type, block.detail["src"], block.detail["dst"]) == ("block", "10.1.0.11/32", "10.3.0.0/24")


def test_members_that_do_not_account_for_their_networks_flood_leave_the_network_named(world):
    """One member over the forbidden rate and others under it (5 Mbit/s of the network's sum is no named
    member's): the network's finding stays beside the member's (its filter covers the others too)."""
    world.warm()
    for _ in range(2):
        world.clock.now += INTERVAL
        world.driver.carry(NORMAL, INTERVAL)
        world.telemetry.insert(world.source.collect(world.clock.now))
        world.telemetry.insert([Sample("acme", "blue", "green", world.clock.now, 200e6 + 5e6),
                                Sample("acme", "blue/blue-1", "green", world.clock.now, 200e6)])
        world.engine.step(world.clock.now)
        world.reconciler.reconcile_once(world.clock.now)
    assert sorted(a.spec.pairs[0] for a in world.anomalies("forbidden_flow")) == ["blue/blue-1>green",
                                                                                 "blue>green"]
