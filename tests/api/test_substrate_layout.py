"""/v1/substrate/layout: every node placed, geographic where the substrate has coordinates, else a graph layout
that keeps linked nodes close; the same substrate gives the same points; laid out once until the substrate changes;
every tenant's token reads it, no token does not."""

from __future__ import annotations

import itertools
import math

import pytest

from vnstitch.api.routes import layout as layout_routes
from vnstitch.topology.layout import HEIGHT, WIDTH, NodePlace, substrate_layout

RING = [f"r{i:02d}" for i in range(30)]


def add_ring(api) -> None:
    """30 nodes without coordinates (Abilene's 11 are then under 80 % of the nodes) in a ring with 5 chords."""
    for name in RING:
        assert add_node(api, name).status_code == 201
    pairs = [(RING[i], RING[(i + 1) % len(RING)]) for i in range(len(RING))] + \
        [(RING[i], RING[i + 15]) for i in range(0, 15, 3)]
    for a, b in pairs:
        answer = api.call("admin", "POST", "/v1/substrate/links", json={
            "kind": "Link", "metadata": {"name": f"{a}--{b}"}, "spec": {"endpoints": [a, b], "capacity": "1Gbps"}})
        assert answer.status_code == 201, answer.text


def add_node(api, name: str):
    return api.call("admin", "POST", "/v1/substrate/nodes", json={"kind": "Node", "metadata": {"name": name}})


def names_of(api, who="reader") -> set[str]:
    return {n["metadata"]["name"] for n in api.call(who, "GET", "/v1/substrate/nodes").json()["items"]}


def test_abilene_is_laid_out_geographically_every_node_in_the_box(api):
    answer = api.call("reader", "GET", "/v1/substrate/layout")
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert body["apiVersion"] == "vnstitch.io/v1" and body["kind"] == "SubstrateLayout"
    assert isinstance(body["metadata"]["resourceVersion"], int)
    assert body["method"] == "geographic" and (body["width"], body["height"]) == (WIDTH, HEIGHT)
    points = body["points"]
    assert set(points) == names_of(api)
    assert all(0 <= x <= WIDTH and 0 <= y <= HEIGHT for x, y in points.values())
    assert points["NYCMng"][0] > points["LOSAng"][0]  # east to the right
    assert points["STTLng"][1] < points["HSTNng"][1]  # north up


def test_a_substrate_without_coordinates_gets_a_graph_layout_keeping_linked_nodes_close(api):
    add_ring(api)
    body = api.call("member", "GET", "/v1/substrate/layout").json()
    points = body["points"]
    assert body["method"] == "graph" and set(points) == names_of(api)
    assert all(0 <= x <= WIDTH and 0 <= y <= HEIGHT for x, y in points.values())
    assert len(set(map(tuple, points.values()))) == len(points)  # no two nodes on one spot

    def far(a, b):
        return math.dist(points[a], points[b])
    linked = [far(RING[i], RING[(i + 1) % len(RING)]) for i in range(len(RING))]
    every_pair = [far(a, b) for a, b in itertools.combinations(RING, 2)]
    assert sum(linked) / len(linked) < 0.5 * sum(every_pair) / len(every_pair)


def test_the_same_substrate_gives_the_same_points_whatever_the_order(api, make_api):
    add_ring(api)
    first = api.call("reader", "GET", "/v1/substrate/layout").json()["points"]
    other = make_api()
    add_ring(other)
    assert other.call("admin", "GET", "/v1/substrate/layout").json()["points"] == first
    nodes = [NodePlace(n["metadata"]["name"], n["spec"].get("latitude"), n["spec"].get("longitude"))
             for n in api.call("reader", "GET", "/v1/substrate/nodes").json()["items"]]
    links = api.call("reader", "GET", "/v1/substrate/links").json()["items"]
    edges = [tuple(link["spec"]["endpoints"]) for link in links]
    reordered = substrate_layout(nodes[::-1], [(b, a) for a, b in edges[::-1]])
    assert {name: list(p) for name, p in reordered.points.items()} == first


@pytest.fixture
def computations(monkeypatch) -> list:
    """The substrates laid out (each test's app has a memo of its own): one entry per computation."""
    done = []

    def counted(nodes, edges):
        done.append(len(nodes))
        return substrate_layout(nodes, edges)
    monkeypatch.setattr(layout_routes, "substrate_layout", counted)
    return done


def test_laid_out_once_until_nodes_or_links_change(api, computations):
    add_ring(api)
    first = [api.call(who, "GET", "/v1/substrate/layout").json()["points"] for who in ("reader", "other", "admin")]
    assert first[0] == first[1] == first[2] and len(computations) == 1
    # a link's state changes, not the graph: the same points, not laid out again
    patched = api.call("admin", "PATCH", "/v1/substrate/links/r00--r01", json={"spec": {"state": "maintenance"}},
                       headers={"Content-Type": "application/merge-patch+json"})
    assert patched.status_code == 200, patched.text
    assert api.call("reader", "GET", "/v1/substrate/layout").json()["points"] == first[0]
    assert len(computations) == 1
    # a new node: laid out again, and placed
    assert add_node(api, "new").status_code == 201
    again = api.call("reader", "GET", "/v1/substrate/layout").json()["points"]
    assert "new" in again and set(again) == names_of(api) and len(computations) == 2
    # a new link between existing nodes changes the graph too
    link = {"kind": "Link", "metadata": {"name": "new--r07"}, "spec": {"endpoints": ["new", "r07"], "capacity": "1Gbps"}}
    assert api.call("admin", "POST", "/v1/substrate/links", json=link).status_code == 201
    linked = api.call("reader", "GET", "/v1/substrate/layout").json()["points"]
    assert len(computations) == 3 and linked != again


def test_every_token_reads_it_and_no_token_does_not(api):
    answers = {who: api.call(who, "GET", "/v1/substrate/layout") for who in ("none", "other", "reader", "member", "admin")}
    assert {who: a.status_code for who, a in answers.items()} == \
        {"none": 401, "other": 200, "reader": 200, "member": 200, "admin": 200}
    assert set(answers["none"].json()) == {"code", "message", "field"}
    shown = [a.json()["points"] for who, a in answers.items() if who != "none"]
    assert all(points == shown[0] for points in shown)


def test_small_and_linkless_substrates_are_placed_too():
    assert substrate_layout([], []).points == {}
    assert substrate_layout([NodePlace("a")], []).points == {"a": (WIDTH / 2, HEIGHT / 2)}
    apart = substrate_layout([NodePlace("a"), NodePlace("b")], []).points
    assert set(apart) == {"a", "b"} and apart["a"] != apart["b"]
    odd = substrate_layout([NodePlace(f"n{i}") for i in range(5)], [("n0", "elsewhere"), ("n1", "n1")]).points
    assert len(set(odd.values())) == 5  # a link to an unknown node and a loop are left out


def test_a_substrate_emptied_to_one_node_answers_with_that_node(api):
    for link in api.call("admin", "GET", "/v1/substrate/links").json()["items"]:
        assert api.call("admin", "DELETE", f"/v1/substrate/links/{link['metadata']['name']}").status_code == 200
    for name in sorted(names_of(api))[1:]:
        assert api.call("admin", "DELETE", f"/v1/substrate/nodes/{name}").status_code == 200
    body = api.call("reader", "GET", "/v1/substrate/layout").json()
    assert list(body["points"]) == list(names_of(api)) and len(body["points"]) == 1
