"""Topology importers: bundled Abilene copies, every shared file, capacity strings, bad input."""

from __future__ import annotations

import os
import re
from importlib import resources
from pathlib import Path

import networkx as nx
import pytest

from vnstitch.domain.resources import NAME_PATTERN
from vnstitch.errors import InvalidInput, NotFound
from vnstitch.topology.importers import (
    ABILENE_NODE_ORDER, great_circle_km, load_topology, parse_capacity_label, propagation_latency_s,
)

DATA = resources.files("vnstitch.data")
SHARED = Path(os.environ.get("VNSTITCH_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared data folder {SHARED} not present")


def _links(topology):
    return {link.name: link.spec for link in topology.links}


def test_sndlib_abilene_capacities_and_geographic_latency():
    topo = load_topology(DATA / "abilene.xml")
    assert [n.name for n in topo.nodes] == list(ABILENE_NODE_ORDER)
    links = _links(topo)
    assert len(links) == 15
    assert links["ATLAng--IPLSng"].capacity == 2480e6
    assert {s.capacity for name, s in links.items() if name != "ATLAng--IPLSng"} == {9920e6}
    # New York – Washington is ~335 km along the great circle: ~1.68 ms at 2/3 c (5 µs/km).
    assert 1.6e-3 < links["NYCMng--WASHng"].latency < 1.75e-3
    assert topo.source.startswith("sndlib:")


def test_cfr_rl_abilene_pairs_directions_and_keeps_ospf_as_cost():
    topo = load_topology(DATA / "Abilene")
    links = _links(topo)
    assert [n.name for n in topo.nodes] == list(ABILENE_NODE_ORDER)
    assert len(links) == 15
    assert links["ATLAng--IPLSng"].capacity == 2480e6
    assert sorted({s.capacity for s in links.values()}) == [2480e6, 9920e6]
    assert links["ATLAM5--ATLAng"].cost == 1
    assert links["ATLAng--HSTNng"].cost == 1176
    assert all(s.latency == 0.001 for s in links.values())
    assert any("latency" in note for note in topo.notes)


def test_cfr_rl_custom_node_names(tmp_path):
    path = tmp_path / "tiny"
    path.write_text("Node_num: 3\tEdge_num: 2\nLink_index\tSource\tDestination\tOSPF\tCapacity(kbps)\n"
                    "0\t0\t2\t7\t1000\n1\t2\t0\t7\t1000\n")
    topo = load_topology(path, node_names=["x", "y", "z"])
    assert [link.name for link in topo.links] == ["x--z"]
    assert topo.links[0].spec.capacity == 1e6 and topo.links[0].spec.cost == 7
    assert not any("one direction" in n for n in topo.notes)


def test_zoo_abilene_reads_oc192_and_default_latency():
    topo = load_topology(DATA / "Abilene.graphml")
    assert len(topo.nodes) == 11 and len(topo.links) == 14
    assert {link.spec.capacity for link in topo.links} == {192 * 51.84e6}
    assert "Kansas_City" in {n.name for n in topo.nodes}
    assert any("default latency 1 ms" in note for note in topo.notes)


@pytest.mark.parametrize("label,bps", [
    ("OC-192c", 192 * 51.84e6), ("10 Gbit/s", 10e9), ("2.5 Gbps", 2.5e9), ("622 Mbit/s", 622e6),
    ("45/34 Mbit/s", 45e6), ("155 Mbps", 155e6), ("STM-16", 16 * 155.52e6), ("Lit Fibre", None), ("", None),
])
def test_capacity_labels(label, bps):
    assert parse_capacity_label(label) == (pytest.approx(bps) if bps else None)


def test_graphml_names_multi_edges_and_coordinates(tmp_path):
    graph = nx.MultiGraph()
    graph.add_node("a", label="St. Louis", Latitude=38.63, Longitude=-90.2)
    graph.add_node("b", label="St. Louis", Latitude=41.88, Longitude=-87.63)
    graph.add_node("c", label="Zürich (HQ)")
    graph.add_node("d")
    graph.add_edge("a", "b", label="10 Gbps")
    graph.add_edge("a", "b", label="2.5 Gbps")
    graph.add_edge("b", "c", LinkLabel="bogus")
    graph.add_edge("c", "d")
    path = tmp_path / "t.graphml"
    nx.write_graphml(graph, path)
    topo = load_topology(path, default_capacity_bps=1e9, default_latency_s=0.004)
    names = [n.name for n in topo.nodes]
    assert names == ["St._Louis", "St._Louis-2", "Zurich_HQ", "d"]
    assert all(re.match(NAME_PATTERN, n) for n in names)
    links = _links(topo)
    assert links["St._Louis--St._Louis-2"].capacity == 12.5e9
    expected = propagation_latency_s(great_circle_km(38.63, -90.2, 41.88, -87.63))
    assert links["St._Louis--St._Louis-2"].latency == pytest.approx(expected)
    assert 1.9e-3 < expected < 2.2e-3  # ~420 km
    assert links["St._Louis-2--Zurich_HQ"].capacity == 1e9 and links["St._Louis-2--Zurich_HQ"].latency == 0.004
    assert "2 links had no capacity: default 1 Gbps" in topo.notes


def test_capacity_override_applies_to_every_link():
    topo = load_topology(DATA / "abilene.xml", capacity_bps_override=1e9)
    assert {link.spec.capacity for link in topo.links} == {1e9}
    assert any("overridden" in note for note in topo.notes)


@pytest.mark.parametrize("content,fragment", [
    ("<network xmlns='http://sndlib.zib.de/network'><broken", "not a valid sndlib topology"),
    ("Node_num: 2 Edge_num: 3\nh\n0\t0\t1\t1\t10\n", "header says 3 links, file has 1"),
    ("Node_num: 2 Edge_num: 1\nh\n0\t0\t5\t1\t10\n", "node id out of range"),
    ("Node_num: 2 Edge_num: 1\nh\n0\t0\t1\t1\n", "expected 5 fields"),
    ("Node_num: x\n", "first line must be"),
    ("hello world", "cannot tell the topology format"),
    ("<?xml version='1.0'?><network xmlns='http://sndlib.zib.de/network'><networkStructure><nodes>"
     "<node id='A'/></nodes><links><link id='L'><source>A</source><target>B</target></link></links>"
     "</networkStructure></network>", "unknown node 'B'"),
])
def test_bad_files_give_one_line_invalid_input_naming_the_file(tmp_path, content, fragment):
    path = tmp_path / "bad.topo"
    path.write_text(content)
    with pytest.raises(InvalidInput) as info:
        load_topology(path)
    message = str(info.value)
    assert fragment in message and str(path) in message and "\n" not in message


def test_bad_graphml_and_unknown_format_and_missing_file(tmp_path):
    path = tmp_path / "x.graphml"
    path.write_text("<graphml><graph><node/></graph>")
    with pytest.raises(InvalidInput, match="x.graphml"):
        load_topology(path)
    with pytest.raises(InvalidInput, match="valid: sndlib, graphml, cfr-rl"):
        load_topology(DATA / "abilene.xml", format="csv")
    with pytest.raises(NotFound, match="nope.xml"):
        load_topology(tmp_path / "nope.xml")


SHARED_EXPECTED = {  # file: (nodes, links) — README tables; Zoo links = simple undirected edges
    "topologies/sndlib_xml/abilene.xml": (12, 15), "topologies/sndlib_xml/atlanta.xml": (15, 22),
    "topologies/sndlib_xml/cost266.xml": (37, 57), "topologies/sndlib_xml/germany50.xml": (50, 88),
    "topologies/sndlib_xml/janos-us.xml": (26, 42), "topologies/sndlib_xml/nobel-eu.xml": (28, 41),
    "topologies/sndlib_xml/nobel-us.xml": (14, 21), "topologies/sndlib_xml/polska.xml": (12, 18),
    "topologies/topology_zoo/Abilene.graphml": (11, 14), "topologies/topology_zoo/Geant2001.graphml": (27, 38),
    "topologies/topology_zoo/Geant2012.graphml": (40, 61), "topologies/topology_zoo/Cogentco.graphml": (197, 243),
    "topologies/topology_zoo/Kdl.graphml": (754, 895), "topologies/topology_zoo/UsCarrier.graphml": (158, 189),
    "abilene/cfr_rl/Abilene": (12, 15),
}


@needs_shared
@pytest.mark.parametrize("relative", sorted(SHARED_EXPECTED))
def test_every_shared_topology_loads(relative):
    topo = load_topology(SHARED / relative)
    assert (len(topo.nodes), len(topo.links)) == SHARED_EXPECTED[relative]
    names = [n.name for n in topo.nodes]
    assert len(set(names)) == len(names) and all(re.match(NAME_PATTERN, n) for n in names)


@needs_shared
def test_shared_geant2001_capacities_from_labels():
    topo = load_topology(SHARED / "topologies/topology_zoo/Geant2001.graphml")
    assert sorted({link.spec.capacity for link in topo.links}) == [34e6, 45e6, 155e6, 622e6, 2.5e9, 10e9]
    assert not any("no capacity" in note for note in topo.notes)


@needs_shared
def test_every_shared_directory_file_is_covered():
    found = {str(p.relative_to(SHARED)) for p in (SHARED / "topologies").rglob("*")
             if p.suffix in (".xml", ".graphml")}
    assert found <= set(SHARED_EXPECTED)
