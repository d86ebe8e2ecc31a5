"""Constrained path queries: each constraint on hand-made graphs, availability answers, brute-force property."""

from __future__ import annotations

import math

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vnstitch.domain.substrate import Link, Node, link_name
from vnstitch.errors import InvalidInput, NotFound
from vnstitch.pathing import PathFinder

MS = 1e-3
G = 1e9


def make_finder(nodes, links):
    """nodes: {name: zone}; links: [(a, b, latency_s, cost, capacity_bps, zone)]."""
    node_objs = [Node(metadata={"name": n}, spec={"trustZone": z}) for n, z in nodes.items()]
    link_objs = [Link(metadata={"name": link_name(a, b)},
                      spec={"endpoints": (a, b), "latency": lat, "cost": cost, "capacity": cap, "trustZone": zone})
                 for a, b, lat, cost, cap, zone in links]
    return PathFinder(node_objs, link_objs)


@pytest.fixture
def diamond():
    """A→D three ways: via B (2 ms, cost 10), via C (4 ms, cost 2), via red E (10 ms, cost 6, 40 G)."""
    return make_finder(
        {"A": "default", "B": "default", "C": "default", "D": "default", "E": "red"},
        [("A", "B", 1 * MS, 5, 10 * G, "default"), ("B", "D", 1 * MS, 5, 10 * G, "default"),
         ("A", "C", 2 * MS, 1, 10 * G, "default"), ("C", "D", 2 * MS, 1, 10 * G, "default"),
         ("A", "E", 5 * MS, 3, 40 * G, "default"), ("E", "D", 5 * MS, 3, 40 * G, "default")])


def nodes_of(paths):
    return ["".join(p.nodes) for p in paths]


def test_lowest_latency_path(diamond):
    [path] = diamond.paths("A", "D")
    assert path.nodes == ("A", "B", "D")
    assert path.links == ("A--B", "B--D") and path.arcs == (("A", "B"), ("B", "D"))
    assert path.latency_s == pytest.approx(2 * MS) and path.cost == 10 and path.bottleneck_bps == 10 * G


def test_cheapest_path_and_cheapest_within_latency_bound(diamond):
    assert nodes_of(diamond.paths("A", "D", metric="cost")) == ["ACD"]
    assert nodes_of(diamond.paths("A", "D", metric="cost", max_latency_s=5 * MS)) == ["ACD"]
    assert nodes_of(diamond.paths("A", "D", metric="cost", max_latency_s=3 * MS)) == ["ABD"]
    assert diamond.paths("A", "D", metric="cost", max_latency_s=1.5 * MS) == []


def test_latency_bound_is_inclusive_and_prunes(diamond):
    assert nodes_of(diamond.paths("A", "D", max_latency_s=2 * MS)) == ["ABD"]
    assert diamond.paths("A", "D", max_latency_s=1.9 * MS) == []


def test_residual_bandwidth_prunes_and_symmetric_checks_the_reverse_arc(diamond):
    residual = {("A", "B"): 1 * G}  # only A→B is short of capacity
    assert nodes_of(diamond.paths("D", "A", bandwidth_bps=2 * G, residual=residual)) == ["DCA"]
    [one_way] = diamond.paths("D", "A", bandwidth_bps=2 * G, residual=residual, symmetric=False)
    assert one_way.nodes == ("D", "B", "A") and one_way.bottleneck_bps == 10 * G
    [wide] = diamond.paths("A", "D", bandwidth_bps=15 * G)
    assert wide.nodes == ("A", "E", "D") and wide.bottleneck_bps == 40 * G
    assert diamond.paths("A", "D", bandwidth_bps=50 * G) == []


def test_bottleneck_is_the_smallest_residual_in_either_direction(diamond):
    [path] = diamond.paths("A", "D", residual={("D", "B"): 3 * G, ("A", "B"): 7 * G})
    assert path.nodes == ("A", "B", "D") and path.bottleneck_bps == 3 * G
    [path] = diamond.paths("A", "D", residual={("D", "B"): 3 * G}, symmetric=False)
    assert path.bottleneck_bps == 10 * G


def test_trust_zones_apply_to_nodes_and_links(diamond):
    excluded = {"exclude_nodes": ["B", "C"]}
    assert nodes_of(diamond.paths("A", "D", **excluded)) == ["AED"]
    assert diamond.paths("A", "D", allowed_zones={"default"}, **excluded) == []
    zoned = make_finder({"A": "z", "B": "z", "C": "z"},
                        [("A", "B", 1 * MS, 1, G, "y"), ("B", "C", 1 * MS, 1, G, "z"), ("A", "C", 5 * MS, 1, G, "z")])
    assert nodes_of(zoned.paths("A", "C")) == ["ABC"]
    assert nodes_of(zoned.paths("A", "C", allowed_zones=["z"])) == ["AC"]
    assert zoned.paths("A", "C", allowed_zones=["y"]) == []  # endpoints are in zone z


def test_excluded_links_and_nodes(diamond):
    assert nodes_of(diamond.paths("A", "D", exclude_links=["A--B"])) == ["ACD"]
    assert nodes_of(diamond.paths("A", "D", exclude_nodes=["B"])) == ["ACD"]
    assert diamond.paths("A", "D", exclude_nodes=["D"]) == []


def test_k_alternatives_in_order_and_within_the_bound(diamond):
    assert nodes_of(diamond.paths("A", "D", k=3)) == ["ABD", "ACD", "AED"]
    assert nodes_of(diamond.paths("A", "D", k=5)) == ["ABD", "ACD", "AED"]
    assert nodes_of(diamond.paths("A", "D", k=3, max_latency_s=5 * MS)) == ["ABD", "ACD"]
    assert nodes_of(diamond.paths("A", "D", k=3, metric="cost")) == ["ACD", "AED", "ABD"]
    assert nodes_of(diamond.paths("A", "D", k=2, metric="cost", max_latency_s=4 * MS)) == ["ACD", "ABD"]


def test_same_source_and_destination_is_a_zero_length_path(diamond):
    [path] = diamond.paths("B", "B", bandwidth_bps=5 * G)
    assert path.nodes == ("B",) and path.links == () and path.latency_s == 0 and math.isinf(path.bottleneck_bps)


def test_unknown_names_and_bad_arguments(diamond):
    with pytest.raises(NotFound, match="unknown node 'XYZ'"):
        diamond.paths("A", "XYZ")
    with pytest.raises(NotFound, match="'Q'"):
        diamond.paths("A", "D", exclude_nodes=["Q"])
    with pytest.raises(NotFound, match="unknown link 'A--Z'"):
        diamond.paths("A", "D", exclude_links=["A--Z"])
    with pytest.raises(InvalidInput, match="metric"):
        diamond.paths("A", "D", metric="hops")
    with pytest.raises(InvalidInput, match="bandwidth_bps"):
        diamond.paths("A", "D", bandwidth_bps=-1)
    with pytest.raises(InvalidInput, match="k"):
        diamond.paths("A", "D", k=0)
    with pytest.raises(InvalidInput, match="second link"):
        make_finder({"A": "d", "B": "d"}, [("A", "B", MS, 1, G, "d"), ("B", "A", MS, 1, G, "d")])


def test_availability_feasible(diamond):
    answer = diamond.availability("A", "D", bandwidth_bps=2 * G, max_latency_s=30 * MS)
    assert answer.feasible and answer.path.nodes == ("A", "B", "D") and answer.reason == ""
    assert answer.best_latency_s == pytest.approx(2 * MS)
    assert answer.best_bandwidth_bps == 40 * G  # A-E-D within 30 ms


def test_availability_names_the_bottleneck(diamond):
    residual = {("B", "D"): 1.2 * G, ("A", "C"): 0.5 * G}
    answer = diamond.availability("A", "D", bandwidth_bps=2 * G, max_latency_s=5 * MS, residual=residual)
    assert not answer.feasible and answer.path is None
    assert answer.best_bandwidth_bps == 1.2 * G
    assert answer.best_latency_s == pytest.approx(10 * MS)
    assert answer.reason == ("no path within 5 ms has 2 Gbps free: bottleneck B--D has 1.2 Gbps free; "
                             "with 2 Gbps free the lowest latency is 10 ms")


def test_availability_latency_and_reachability_reasons(diamond):
    answer = diamond.availability("A", "D", bandwidth_bps=1, max_latency_s=1 * MS)
    assert not answer.feasible and answer.best_bandwidth_bps == 0
    assert answer.reason.startswith("no path within 1 ms: the lowest latency is 2 ms")
    answer = diamond.availability("A", "D", bandwidth_bps=50 * G)
    assert answer.reason == "no path has 50 Gbps free: bottleneck A--E has 40 Gbps free"
    answer = diamond.availability("A", "D", bandwidth_bps=1, exclude_nodes=["D"])
    assert answer.reason == "node D is excluded"
    answer = diamond.availability("A", "D", bandwidth_bps=1, exclude_nodes=["B", "C", "E"])
    assert "no path between A and D" in answer.reason


# ---------------------------------------------------------------- property: agrees with brute force

@st.composite
def small_networks(draw):
    n = draw(st.integers(3, 6))
    names = [f"n{i}" for i in range(n)]
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    chosen = draw(st.lists(st.sampled_from(pairs), min_size=1, max_size=len(pairs), unique=True))
    links = [(a, b, draw(st.integers(0, 5)) * MS, draw(st.integers(0, 4)), 10 * G, draw(st.sampled_from("xy")))
             for a, b in chosen]
    zones = {name: draw(st.sampled_from("xy")) for name in names}
    residual = {}
    for a, b, *_ in links:
        for arc in ((a, b), (b, a)):
            if draw(st.booleans()):
                residual[arc] = draw(st.integers(0, 10)) * G
    query = {
        "src": draw(st.sampled_from(names)), "dst": draw(st.sampled_from(names)),
        "metric": draw(st.sampled_from(["latency", "cost"])),
        "bandwidth_bps": draw(st.integers(0, 10)) * G,
        "symmetric": draw(st.booleans()),
        "max_latency_s": draw(st.one_of(st.none(), st.integers(0, 12).map(lambda v: v * MS))),
        "allowed_zones": draw(st.one_of(st.none(), st.just({"x"}), st.just({"x", "y"}))),
        "exclude_nodes": draw(st.lists(st.sampled_from(names), max_size=1)),
    }
    return zones, links, residual, query


def brute_force(zones, links, residual, query):
    """Every simple path with (latency, cost, bottleneck), and whether it meets all constraints."""
    info = {}
    graph = nx.Graph()
    graph.add_nodes_from(zones)
    for a, b, lat, cost, cap, zone in links:
        graph.add_edge(a, b)
        info[(a, b)] = info[(b, a)] = (lat, cost, zone)
    free = {arc: residual.get(arc, 10 * G) for arc in info}
    src, dst = query["src"], query["dst"]
    out = []
    for nodes in nx.all_simple_paths(graph, src, dst) if src != dst else [[src]]:
        arcs = list(zip(nodes, nodes[1:]))
        lat = sum(info[a][0] for a in arcs)
        cost = sum(info[a][1] for a in arcs)
        width = min((min(free[a], free[a[::-1]]) if query["symmetric"] else free[a] for a in arcs), default=math.inf)
        zones_ok = query["allowed_zones"] is None or (
            all(zones[v] in query["allowed_zones"] for v in nodes)
            and all(info[a][2] in query["allowed_zones"] for a in arcs))
        ok_nodes = not set(nodes) & set(query["exclude_nodes"])
        structural = zones_ok and ok_nodes
        within = query["max_latency_s"] is None or lat <= query["max_latency_s"] + 1e-12
        out.append((tuple(nodes), lat, cost, width, structural, within))
    return out


@settings(max_examples=300, deadline=None)
@given(small_networks())
def test_paths_meet_constraints_and_match_brute_force(case):
    zones, links, residual, query = case
    finder = make_finder(zones, links)
    options = {key: value for key, value in query.items() if key not in ("src", "dst")}
    candidates = brute_force(zones, links, residual, query)
    feasible = [c for c in candidates if c[4] and c[5] and c[3] >= query["bandwidth_bps"]]
    found = finder.paths(query["src"], query["dst"], residual=residual, **options)
    assert bool(found) == bool(feasible)
    if found:
        [path] = found
        match = next(c for c in feasible if c[0] == path.nodes)  # the returned path meets every constraint
        assert path.latency_s == pytest.approx(match[1]) and path.cost == pytest.approx(match[2])
        assert path.bottleneck_bps == match[3]
        key = 1 if query["metric"] == "latency" else 2
        assert match[key] == pytest.approx(min(c[key] for c in feasible))  # and it is the best one
    alternatives = finder.paths(query["src"], query["dst"], residual=residual, k=3, **options)
    assert len({p.nodes for p in alternatives}) == len(alternatives)
    assert {p.nodes for p in alternatives} <= {c[0] for c in feasible}
    if query["metric"] == "latency":
        assert len(alternatives) == min(3, len(feasible))
    answer = finder.availability(query["src"], query["dst"], residual=residual,
                                 **{k: v for k, v in options.items() if k != "metric"})
    assert answer.feasible == bool(feasible) and (answer.reason == "") == bool(feasible)
    structural = [c for c in candidates if c[4]]
    wide_enough = [c[1] for c in structural if c[3] >= query["bandwidth_bps"]]
    assert answer.best_latency_s == (pytest.approx(min(wide_enough)) if wide_enough else None)
    within = [c[3] for c in structural if c[5]]
    assert answer.best_bandwidth_bps == (max(within) if within else 0.0)
