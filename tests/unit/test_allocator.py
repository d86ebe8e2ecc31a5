"""The predictive allocator on a small hand-made substrate: what it decides, and why."""

from vnstitch.domain.registry import parse_resource
from vnstitch.pathing.paths import PathFinder
from vnstitch.planning.allocator import AllocatorConfig, AllocatorState, Held, allocate

#   a ── b ── d      a–b–d is the short way (1 ms links); a–c–d the long way (5 ms).
#    \── c ──/       every link 10 Gbit/s
LINKS = [("a", "b", 0.001), ("b", "d", 0.001), ("a", "c", 0.005), ("c", "d", 0.005)]
NODES = [parse_resource({"kind": "Node", "metadata": {"name": n}}) for n in "abcd"]
LINK_OBJS = [parse_resource({"kind": "Link", "metadata": {"name": f"{x}--{y}"},
                             "spec": {"endpoints": [x, y], "capacity": 10e9, "latency": lat}}) for x, y, lat in LINKS]
FINDER = PathFinder(NODES, LINK_OBJS)
CAPACITY = {arc: FINDER.capacity_bps(arc) for arc in FINDER.arcs()}
DEFAULT = {("a", "d"): ("a", "b", "d"), ("b", "d"): ("b", "d"), ("a", "b"): ("a", "b")}
G = 1e9


def run(state, mean, upper=None, config=AllocatorConfig()):
    upper = upper or mean
    return allocate(state, mean, upper, DEFAULT, CAPACITY, FINDER, config)


def test_quiet_network_gets_no_stitches():
    result = run(AllocatorState(), {("a", "d"): 2 * G, ("b", "d"): 2 * G, ("a", "b"): 1 * G})
    assert result.decisions == [] and result.state.held == {}


def test_forecast_congestion_moves_the_largest_pair_off_the_hot_link():
    mean = {("a", "d"): 5 * G, ("b", "d"): 4 * G, ("a", "b"): 1 * G}
    upper = {("a", "d"): 6 * G, ("b", "d"): 4.5 * G, ("a", "b"): 1 * G}
    result = run(AllocatorState(), mean, upper)
    assert [(d.action, d.pair, d.path) for d in result.decisions] == [("establish", ("a", "d"), ("a", "c", "d"))]
    decision = result.decisions[0]
    assert decision.bandwidth_bps == 6 * G                      # sized to the upper quantile
    assert "would load b→d to 100% of capacity" in decision.reason  # 4 + 6 Gbit/s: the forecast, in the reason
    assert decision.forecast_mean_bps == 5 * G and decision.forecast_upper_bps == 6 * G
    assert result.routes[("a", "d")] == ("a", "c", "d")
    assert abs(result.predicted_load_bps[("b", "d")] - 4 * G) < 1   # a→d's mean left b→d


def test_adjust_when_forecast_leaves_the_band_and_terminate_after_hysteresis():
    held = AllocatorState({("a", "d"): Held(("a", "c", "d"), 6 * G)})
    busy = {("a", "d"): 5 * G, ("b", "d"): 4 * G, ("a", "b"): 1 * G}
    bigger = run(held, busy, {**busy, ("a", "d"): 8 * G})
    assert [(d.action, d.bandwidth_bps) for d in bigger.decisions] == [("adjust", 8 * G)]
    same = run(held, busy, {**busy, ("a", "d"): 6.5 * G})        # inside ±10% of 6: leave it
    assert same.decisions == []
    quiet = {("a", "d"): 1 * G, ("b", "d"): 1 * G, ("a", "b"): 1 * G}
    state = held
    actions = []
    for _ in range(3):
        result = run(state, quiet)
        state = result.state
        actions.append([d.action for d in result.decisions if d.action == "terminate"])
    assert actions == [[], [], ["terminate"]]                  # 3 safe intervals, then terminate
    assert state.held == {}


def test_te_splits_a_pair_no_single_path_can_relieve():
    mean = {("a", "d"): 6 * G, ("b", "d"): 4 * G, ("a", "b"): 5 * G}
    occupied = AllocatorState({("a", "b"): Held(("a", "c", "d", "b"), 5 * G)})  # a–c–d has 5 Gbit/s free
    result = run(occupied, mean, config=AllocatorConfig(terminate_after=99))
    (decision,) = [d for d in result.decisions if d.pair == ("a", "d")]
    # a–b–d alone would keep b→d at 100%; a–c–d cannot hold 6 Gbit/s: the LP splits the pair
    assert decision.action == "establish" and len(decision.parts) == 2
    parts = dict(decision.parts)
    assert set(parts) == {("a", "b", "d"), ("a", "c", "d")}
    assert abs(sum(parts.values()) - 6 * G) < 1 and parts[("a", "c", "d")] <= 5 * G
    assert "TE split" in decision.reason
    assert result.predicted_load_bps[("b", "d")] < 0.9 * 10 * G  # the hot link is relieved
    held = result.state.held[("a", "d")]
    assert held.total_bps == decision.bandwidth_bps and len(held.parts) == 2


def test_per_pair_threshold_reserves_on_the_best_path():
    mean = {("a", "d"): 2 * G, ("b", "d"): 0.5 * G, ("a", "b"): 0.5 * G}
    result = run(AllocatorState(), mean, config=AllocatorConfig(pair_threshold_bps=1.5 * G))
    assert [(d.action, d.pair, d.path) for d in result.decisions] == [("establish", ("a", "d"), ("a", "b", "d"))]
    assert "per-pair threshold" in result.decisions[0].reason


def test_latency_bound_keeps_a_pair_off_a_detour():
    mean = {("a", "d"): 5 * G, ("b", "d"): 4 * G, ("a", "b"): 1 * G}
    upper = {("a", "d"): 6 * G, ("b", "d"): 4.5 * G, ("a", "b"): 1 * G}
    strict = allocate(AllocatorState(), mean, upper, DEFAULT, CAPACITY, FINDER, AllocatorConfig(),
                      latency_bound_s={pair: 0.005 for pair in DEFAULT})  # every detour takes ≥ 10 ms
    assert strict.decisions == []
    loose = allocate(AllocatorState(), mean, upper, DEFAULT, CAPACITY, FINDER, AllocatorConfig(),
                     latency_bound_s={**{pair: 0.005 for pair in DEFAULT}, ("a", "d"): 0.015})
    assert [(d.pair, d.path) for d in loose.decisions] == [(("a", "d"), ("a", "c", "d"))]
