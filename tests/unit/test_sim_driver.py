"""The simulator answers reachability, isolation and rate questions from what was applied."""

from vnstitch.drivers.sim import SimDriver
from vnstitch.planning.ops import EnsureStitch, StitchEnd
from tests.contract.test_driver_contract import BLUE, GREEN, PATH, RED, direct


def bandwidth(rate, symmetric=True):
    return EnsureStitch("acme/bw", "bandwidth", StitchEnd("acme/blue", 1001, "10.1.0.0/24", "NYCMng"),
                        StitchEnd("acme/red", 1002, "10.2.0.0/24", "LOSAng"), PATH, rate, True, symmetric)


def test_isolation_until_stitched_and_only_for_stitched_pairs(abilene):
    sim = SimDriver(topology=abilene.links)
    for op in (BLUE, RED, GREEN):
        sim.apply(op)
    assert sim.reach("acme/blue/blue-1", "acme/blue/blue-2").reachable  # same network
    assert not sim.reach("acme/blue/blue-1", "acme/red/red-1").reachable
    sim.apply(direct(50e6))
    answer = sim.reach("acme/blue/blue-1", "acme/red/red-1")
    assert answer.reachable and answer.stitch == "acme/d" and answer.rate_bps == 50e6
    assert answer.path == PATH
    assert sim.reach("acme/red/red-1", "acme/blue/blue-1").path == tuple(reversed(PATH))
    # a direct stitch joins two VMs only: blue-2 and green stay isolated
    assert not sim.reach("acme/blue/blue-2", "acme/red/red-1").reachable
    assert not sim.reach("acme/blue/blue-1", "acme/green/green-1").reachable


def test_blue2_reaches_red_over_bandwidth_stitch_via_its_own_network(abilene):
    sim = SimDriver(topology=abilene.links)
    for op in (BLUE, RED):
        sim.apply(op)
    sim.apply(bandwidth(2e9, symmetric=False))
    forward = sim.reach("acme/blue/blue-2", "acme/red/red-1")
    assert forward.reachable and forward.path[0] == "CHINng" and forward.path[-1] == "LOSAng"
    assert forward.rate_bps == 2e9
    assert sim.reach("acme/red/red-1", "acme/blue/blue-2").rate_bps is None  # not reserved backwards


def test_traffic_matrix_loads_the_stitch_path_and_reports_overload(abilene):
    sim = SimDriver(topology=abilene.links)
    for op in (BLUE, RED, GREEN):
        sim.apply(op)
    sim.apply(bandwidth(2e9))
    report = sim.carry({("acme/blue", "acme/red"): 12e9, ("acme/blue", "acme/green"): 1e9}, interval_s=300)
    arcs = list(zip(PATH, PATH[1:]))
    assert all(report.link_load_bps[arc] == 12e9 for arc in arcs)
    assert set(report.overloaded()) == set(arcs)  # 12 Gbit/s over 9.92 Gbit/s links
    assert report.isolated_bps == {("acme/blue", "acme/green"): 1e9}
    assert report.stitch_carried_bps == {"acme/bw": 12e9}
    # 2 Gbit/s is guaranteed; the other 10 share the 7.92 left: the link drops 2.08 Gbit/s once
    assert abs(report.delivered_bps[("acme/blue", "acme/red")] - 9.92e9) < 1e3
    assert sim.observe().stitches["acme/bw"].tx_bytes == int(report.delivered_bps[("acme/blue", "acme/red")] * 300 / 8)


def test_reservation_protects_stitched_traffic_from_best_effort(abilene):
    sim = SimDriver(topology=abilene.links)
    for op in (BLUE, RED, GREEN):
        sim.apply(op)
    sim.apply(bandwidth(4e9))
    # green→red is routed best effort over the same last link into LOSAng
    demands = {("acme/blue", "acme/red"): 4e9, ("acme/green", "acme/red"): 0.0}
    quiet = sim.carry(demands, default_route=True)
    assert quiet.delivered_bps[("acme/blue", "acme/red")] == 4e9 and not quiet.overloaded()
    unrouted = sim.carry({("acme/blue", "acme/green"): 1e9})
    assert unrouted.dropped_bps[("acme/blue", "acme/green")] == 1e9  # isolated without default routing
    routed = sim.carry({("acme/blue", "acme/green"): 1e9}, default_route=True)
    assert routed.delivered_bps[("acme/blue", "acme/green")] == 1e9


def test_a_split_pair_divides_its_traffic_by_reserved_rate(abilene):
    sim = SimDriver(topology=abilene.links)
    for op in (BLUE, RED):
        sim.apply(op)
    south = ("NYCMng", "WASHng", "ATLAng", "HSTNng", "LOSAng")
    sim.apply(bandwidth(2e9, symmetric=False))                      # north: PATH
    sim.apply(EnsureStitch("acme/bw-p1", "bandwidth", StitchEnd("acme/blue", 1001, "10.1.0.0/24", "NYCMng"),
                           StitchEnd("acme/red", 1002, "10.2.0.0/24", "LOSAng"), south, 1e9, True, False))
    report = sim.carry({("acme/blue", "acme/red"): 3e9})
    assert report.link_load_bps[("NYCMng", "CHINng")] == 2e9
    assert report.link_load_bps[("NYCMng", "WASHng")] == 1e9
    assert report.delivered_bps[("acme/blue", "acme/red")] == 3e9
    assert report.stitch_carried_bps == {"acme/bw": 2e9, "acme/bw-p1": 1e9}
