"""Min-max-utilisation TE: a hand-checkable split, never worse than single shortest path, bad input."""

from __future__ import annotations

from importlib import resources

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vnstitch.domain.substrate import Link, Node, link_name
from vnstitch.errors import InvalidInput, NotFound
from vnstitch.pathing import PathFinder, single_path_routing, solve_min_max_utilisation
from vnstitch.pathing.te import HighsPathLP
from vnstitch.topology.importers import ABILENE_NODE_ORDER, load_topology

G, MS = 1e9, 1e-3


def make_finder(names, links):
    """links: [(a, b, latency_s, capacity_bps)]."""
    return PathFinder([Node(metadata={"name": n}) for n in names],
                      [Link(metadata={"name": link_name(a, b)}, spec={"endpoints": (a, b), "latency": lat, "capacity": cap})
                       for a, b, lat, cap in links])


@pytest.fixture
def square():
    """A→D via B (2 ms) or via C (3 ms), every link 10 Gbit/s."""
    return make_finder("ABCD", [("A", "B", MS, 10 * G), ("B", "D", MS, 10 * G),
                                ("A", "C", 1.5 * MS, 10 * G), ("C", "D", 1.5 * MS, 10 * G)])


@pytest.fixture(scope="module")
def abilene():
    topo = load_topology(resources.files("vnstitch.data") / "Abilene")
    return PathFinder(topo.nodes, topo.links)


def test_one_demand_splits_evenly_over_two_equal_paths(square):
    solution = solve_min_max_utilisation({("A", "D"): 10 * G}, square, k=2)
    split = solution.splits[("A", "D")]
    assert [p.nodes for p in split.paths] == [("A", "B", "D"), ("A", "C", "D")]
    assert split.fractions == pytest.approx((0.5, 0.5))
    assert solution.max_utilisation == pytest.approx(0.5)
    assert solution.arc_load_bps[("A", "B")] == pytest.approx(5 * G)
    assert single_path_routing({("A", "D"): 10 * G}, square).max_utilisation == pytest.approx(1.0)


def test_existing_reservations_count_as_background_load(square):
    # A→B already carries 5 G: x on ABD, 1-x on ACD; (5 + 10x)/10 = 10(1-x)/10 → x = 0.25, U = 0.75.
    solution = solve_min_max_utilisation({("A", "D"): 10 * G}, square, k=2, residual={("A", "B"): 5 * G})
    assert solution.splits[("A", "D")].fractions == pytest.approx((0.25, 0.75))
    assert solution.max_utilisation == pytest.approx(0.75)
    assert solution.arc_utilisation[("A", "B")] == pytest.approx(0.75)


def test_when_the_maximum_is_set_elsewhere_demands_keep_their_fastest_path():
    # The leaf link B–E (1 G) carries 0.9 G whatever we do, so U = 0.9; A→D then has no reason to split.
    finder = make_finder("ABCDE", [("A", "B", MS, 10 * G), ("B", "D", MS, 10 * G), ("A", "C", 1.5 * MS, 10 * G),
                                   ("C", "D", 1.5 * MS, 10 * G), ("B", "E", MS, 1 * G)])
    solution = solve_min_max_utilisation({("A", "D"): 1 * G, ("B", "E"): 0.9 * G}, finder, k=2)
    assert solution.max_utilisation == pytest.approx(0.9)
    assert solution.splits[("A", "D")].fractions == pytest.approx((1.0, 0.0))


def test_zero_and_self_demands_route_trivially(square):
    solution = solve_min_max_utilisation({("A", "A"): 5 * G, ("A", "D"): 0.0}, square)
    assert solution.max_utilisation == 0.0
    assert solution.splits[("A", "A")].paths[0].nodes == ("A",)
    assert solution.splits[("A", "D")].fractions[0] == 1.0


def test_bad_demands(square):
    with pytest.raises(InvalidInput, match="finite number"):
        solve_min_max_utilisation({("A", "D"): -1.0}, square)
    with pytest.raises(NotFound, match="'Z'"):
        solve_min_max_utilisation({("A", "Z"): 1.0}, square)


def test_real_abilene_matrix_is_no_worse_than_shortest_path(abilene):
    data = resources.files("vnstitch.data") / "abilene_tm_14d.npz"
    if not data.is_file():
        pytest.skip("bundled Abilene traffic slice not present")
    archive = np.load(data)
    if "tm" not in archive or archive["tm"].shape[1:] != (12, 12):
        pytest.skip("bundled Abilene slice has an unexpected layout")
    matrix = archive["tm"][0] * 1e6 * 50  # Mbit/s → bit/s, scaled up so that links get busy
    demands = {(a, b): float(matrix[i, j]) for i, a in enumerate(ABILENE_NODE_ORDER)
               for j, b in enumerate(ABILENE_NODE_ORDER) if i != j and matrix[i, j] > 0}
    te = solve_min_max_utilisation(demands, abilene, k=4)
    baseline = single_path_routing(demands, abilene)
    assert te.max_utilisation <= baseline.max_utilisation + 1e-9
    assert te.solver == HighsPathLP.name
    for split in te.splits.values():
        assert sum(split.fractions) == pytest.approx(1.0) and min(split.fractions) >= 0


@settings(max_examples=25, deadline=None)
@given(st.dictionaries(st.tuples(st.sampled_from(ABILENE_NODE_ORDER), st.sampled_from(ABILENE_NODE_ORDER)),
                       st.floats(0, 20e9), min_size=1, max_size=15),
       st.integers(1, 4))
def test_never_worse_than_single_shortest_path(abilene, demands, k):
    te = solve_min_max_utilisation(demands, abilene, k=k)
    baseline = single_path_routing(demands, abilene)
    assert te.max_utilisation <= baseline.max_utilisation * (1 + 1e-6) + 1e-9
