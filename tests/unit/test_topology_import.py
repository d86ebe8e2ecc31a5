"""Topology importers: bundled Abilene copies, node-link JSON, every shared file, capacity strings,
no invented capacities, where each value came from, bad input."""

from __future__ import annotations

import json
import os
import re
from importlib import resources
from pathlib import Path

import networkx as nx
import pytest

from vnstitch.domain.resources import NAME_PATTERN
from vnstitch.errors import InvalidInput, NotFound
from vnstitch.cli.main import main
from vnstitch.topology.importers import (
    ABILENE_NODE_ORDER, CAPACITY_BY_DIRECTION, CAPACITY_SOURCE, LATENCY_SOURCE, great_circle_km, load_topology,
    parse_capacity_label, propagation_latency_s,
)

DATA = resources.files("vnstitch.data")
SHARED = Path(os.environ.get("VNSTITCH_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared data folder {SHARED} not present")


def _links(topology):
    return {link.name: link.spec for link in topology.links}


def _sources(topology, key):
    return {link.metadata.annotations[key] for link in topology.links}


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
    assert _sources(topo, CAPACITY_SOURCE) == {"file"}
    assert _sources(topo, LATENCY_SOURCE) == {"great-circle distance"}


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
    assert _sources(topo, CAPACITY_SOURCE) == {"file"} and _sources(topo, LATENCY_SOURCE) == {"default"}
    assert not any(CAPACITY_BY_DIRECTION in link.metadata.annotations for link in topo.links)  # symmetric file


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
    assert _sources(topo, CAPACITY_SOURCE) == {"file"} and _sources(topo, LATENCY_SOURCE) == {"default"}


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
    sources = {link.name: (link.metadata.annotations[CAPACITY_SOURCE], link.metadata.annotations[LATENCY_SOURCE])
               for link in topo.links}
    assert sources == {"St._Louis--St._Louis-2": ("file", "great-circle distance"),
                       "St._Louis-2--Zurich_HQ": ("default-capacity flag", "default"),
                       "Zurich_HQ--d": ("default-capacity flag", "default")}
    with pytest.raises(InvalidInput) as info:  # the same file without the flag: nothing is invented
        load_topology(path)
    assert "2 of 3 links have no capacity in the file: pass --default-capacity" in str(info.value)


def test_capacity_override_applies_to_every_link():
    topo = load_topology(DATA / "abilene.xml", capacity_bps_override=1e9)
    assert {link.spec.capacity for link in topo.links} == {1e9}
    assert any("overridden" in note for note in topo.notes)
    assert _sources(topo, CAPACITY_SOURCE) == {"capacity override"}


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


SHARED_EXPECTED = {  # file: (nodes, links, links without a capacity) — README tables; Zoo links = simple edges
    "topologies/sndlib_xml/abilene.xml": (12, 15, 0), "topologies/sndlib_xml/atlanta.xml": (15, 22, 3),
    "topologies/sndlib_xml/cost266.xml": (37, 57, 57), "topologies/sndlib_xml/germany50.xml": (50, 88, 88),
    "topologies/sndlib_xml/janos-us.xml": (26, 42, 42), "topologies/sndlib_xml/nobel-eu.xml": (28, 41, 41),
    "topologies/sndlib_xml/nobel-us.xml": (14, 21, 21), "topologies/sndlib_xml/polska.xml": (12, 18, 18),
    "topologies/topology_zoo/Abilene.graphml": (11, 14, 0), "topologies/topology_zoo/Geant2001.graphml": (27, 38, 0),
    "topologies/topology_zoo/Geant2012.graphml": (40, 61, 22),
    "topologies/topology_zoo/Cogentco.graphml": (197, 243, 243),
    "topologies/topology_zoo/Kdl.graphml": (754, 895, 895),
    "topologies/topology_zoo/UsCarrier.graphml": (158, 189, 189),
    "abilene/cfr_rl/Abilene": (12, 15, 0),
}


@needs_shared
@pytest.mark.parametrize("relative", sorted(SHARED_EXPECTED))
def test_every_shared_topology_loads(relative):
    nodes, links, without_capacity = SHARED_EXPECTED[relative]
    if without_capacity:
        with pytest.raises(InvalidInput, match=f"{without_capacity} of {links} links have no capacity in the file"):
            load_topology(SHARED / relative)
    topo = load_topology(SHARED / relative, default_capacity_bps=10e9)
    assert (len(topo.nodes), len(topo.links)) == (nodes, links)
    defaulted = [link for link in topo.links if link.metadata.annotations[CAPACITY_SOURCE] == "default-capacity flag"]
    assert len(defaulted) == without_capacity and all(link.spec.capacity == 10e9 for link in defaulted)
    names = [n.name for n in topo.nodes]
    assert len(set(names)) == len(names) and all(re.match(NAME_PATTERN, n) for n in names)


@needs_shared
def test_shared_geant2001_capacities_from_labels():
    topo = load_topology(SHARED / "topologies/topology_zoo/Geant2001.graphml")  # every label has a speed
    assert sorted({link.spec.capacity for link in topo.links}) == [34e6, 45e6, 155e6, 622e6, 2.5e9, 10e9]
    assert not any("no capacity" in note for note in topo.notes)


@needs_shared
def test_every_shared_directory_file_is_covered():
    found = {str(p.relative_to(SHARED)) for p in (SHARED / "topologies").rglob("*")
             if p.suffix in (".xml", ".graphml")}
    assert found <= set(SHARED_EXPECTED)


# ---------------------------------------------------------------- networkx node-link JSON (DOTE, FIGRET, Teal)

# The shape those repositories publish (e.g. FIGRET Data/GEANT/GEANT.json, Teal topologies/B4.json):
# a directed graph, integer node ids, one entry per arc with its capacity in bit/s.
NODE_LINK = {
    "directed": True, "multigraph": False, "graph": {},
    "nodes": [{"id": 0}, {"id": 1}, {"id": 2}, {"id": 3}],
    "links": [
        {"capacity": 10e9, "source": 0, "target": 1}, {"capacity": 10e9, "source": 1, "target": 0},
        {"capacity": 2.4e9, "source": 1, "target": 2}, {"capacity": 155e6, "source": 2, "target": 1},
        {"capacity": 2.4e9, "source": 2, "target": 3},  # listed one way only
        {"capacity": 10e9, "source": 3, "target": 0}, {"capacity": 10e9, "source": 0, "target": 3},
    ],
}


def _write(tmp_path, data, name="topo.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_node_link_pairs_arcs_into_full_duplex_links_and_keeps_both_capacities(tmp_path):
    topo = load_topology(_write(tmp_path, NODE_LINK))
    assert topo.source.startswith("node-link:")
    assert [n.name for n in topo.nodes] == ["n0", "n1", "n2", "n3"]
    links = {link.name: link for link in topo.links}
    assert {name: link.spec.capacity for name, link in links.items()} == {
        "n0--n1": 10e9, "n1--n2": 155e6, "n2--n3": 2.4e9, "n0--n3": 10e9}
    # the two directions of n1--n2 differ: the smaller is the link's, both are on record
    assert links["n1--n2"].metadata.annotations[CAPACITY_BY_DIRECTION] == "n1->n2=2400000000bps n2->n1=155000000bps"
    assert CAPACITY_BY_DIRECTION not in links["n0--n1"].metadata.annotations
    assert _sources(topo, CAPACITY_SOURCE) == {"file"} and _sources(topo, LATENCY_SOURCE) == {"default"}
    assert all(link.spec.latency == 0.001 for link in topo.links)
    assert "1 links were listed in one direction only: used as full-duplex" in topo.notes
    assert any("1 links differ in capacity by direction: the smaller used" in note for note in topo.notes)


@pytest.mark.parametrize("edges_key", ["links", "edges"])
def test_node_link_reads_either_edge_key_networkx_writes(tmp_path, edges_key):
    graph = nx.DiGraph()
    graph.add_node("nyc", name="New York", Latitude=40.71, Longitude=-74.01)
    graph.add_node("wash", name="Washington", Latitude=38.91, Longitude=-77.04)
    graph.add_node("chi", name="Chicago")
    for u, v in (("nyc", "wash"), ("wash", "nyc")):
        graph.add_edge(u, v, capacity=10e9)
    for u, v in (("nyc", "chi"), ("chi", "nyc")):
        graph.add_edge(u, v, capacity=10e9, latency=0.0042 if u == "nyc" else 0.0045)
    data = nx.node_link_data(graph, edges=edges_key)
    assert edges_key in data
    topo = load_topology(_write(tmp_path, data, "t.data"), format="node-link")
    links = {link.name: link for link in topo.links}
    assert [n.name for n in topo.nodes] == ["New_York", "Washington", "Chicago"]
    assert links["New_York--Washington"].metadata.annotations[LATENCY_SOURCE] == "great-circle distance"
    assert 1.6e-3 < links["New_York--Washington"].spec.latency < 1.75e-3
    assert links["Chicago--New_York"].metadata.annotations[LATENCY_SOURCE] == "file"
    assert links["Chicago--New_York"].spec.latency == 0.0045  # the slower direction


def test_node_link_undirected_multigraph_sums_parallel_edges(tmp_path):
    graph = nx.MultiGraph()
    graph.add_edge("a", "b", capacity=1e9)
    graph.add_edge("a", "b", capacity=2e9)
    graph.add_edge("b", "c", capacity=1e9)
    topo = load_topology(_write(tmp_path, nx.node_link_data(graph, edges="links")))
    assert _links(topo)["a--b"].capacity == 3e9 and _links(topo)["b--c"].capacity == 1e9


def test_node_link_without_a_directed_key_reads_arcs_not_parallel_edges(tmp_path):
    data = {"nodes": NODE_LINK["nodes"], "links": NODE_LINK["links"]}
    topo = load_topology(_write(tmp_path, data))
    assert _links(topo)["n0--n1"].capacity == 10e9  # not 20e9: the two directions of one link
    assert any("does not say 'directed'" in note for note in topo.notes)


def test_node_link_without_capacities_needs_the_flag(tmp_path):
    data = {**NODE_LINK, "links": [{k: v for k, v in arc.items() if k != "capacity"} for arc in NODE_LINK["links"]]}
    path = _write(tmp_path, data)
    with pytest.raises(InvalidInput) as info:
        load_topology(path)
    message = str(info.value)
    assert message == (f"{path}: 4 of 4 links have no capacity in the file: pass --default-capacity RATE "
                       "(default_capacity_bps=) to give them one")
    topo = load_topology(path, default_capacity_bps=1e9)
    assert {link.spec.capacity for link in topo.links} == {1e9}
    assert _sources(topo, CAPACITY_SOURCE) == {"default-capacity flag"}


def test_node_link_warns_when_capacities_look_like_another_unit(tmp_path):
    data = {**NODE_LINK, "links": [{**arc, "capacity": 5000.0} for arc in NODE_LINK["links"]]}  # Teal's B4
    topo = load_topology(_write(tmp_path, data))
    assert {link.spec.capacity for link in topo.links} == {5000.0}
    assert any("read as bit/s" in note for note in topo.notes)


@pytest.mark.parametrize("data,fragment", [
    ({"nodes": [{"id": 0}]}, "'links' (or 'edges') list"),
    ({"links": []}, "a 'nodes' list"),
    ({"nodes": [{"name": "x"}], "links": []}, "nodes[0] needs an 'id'"),
    ({"nodes": [{"id": 0}], "links": [{"source": 0}]}, "links[0] needs a 'source' and a 'target'"),
    ({"nodes": [{"id": 0}], "links": [{"source": 0, "target": 7, "capacity": 1}]}, "links[0]: unknown node 7"),
    ({"nodes": [{"id": 0}, {"id": 1}], "links": [{"source": 0, "target": 1, "capacity": "fast"}]},
     "link n0->n1: capacity is 'fast', expected a number above 0"),
    ({"nodes": [{"id": 0}, {"id": 1}], "links": [{"source": 0, "target": 1, "capacity": 0}]},
     "capacity is 0, expected a number above 0"),
    ({"nodes": [{"id": 0}, {"id": 1}], "links": [{"source": 0, "target": 1, "capacity": 1, "latency": -1}]},
     "latency is -1, expected a number ≥ 0"),
])
def test_bad_node_link_files_give_one_line_invalid_input(tmp_path, data, fragment):
    path = _write(tmp_path, data)
    with pytest.raises(InvalidInput) as info:
        load_topology(path, format="node-link")
    message = str(info.value)
    assert fragment in message and str(path) in message and "\n" not in message


def test_broken_json_is_detected_by_extension_and_reported(tmp_path):
    path = tmp_path / "t.json"
    path.write_text("{not json")
    with pytest.raises(InvalidInput, match="not a valid node-link topology"):
        load_topology(path)


def test_sndlib_without_modules_needs_the_flag(tmp_path):
    path = tmp_path / "n.xml"
    path.write_text("<?xml version='1.0'?><network xmlns='http://sndlib.zib.de/network'><networkStructure>"
                    "<nodes coordinatesType='geographical'><node id='A'><coordinates><x>0</x><y>0</y></coordinates>"
                    "</node><node id='B'><coordinates><x>1</x><y>0</y></coordinates></node></nodes><links>"
                    "<link id='L'><source>A</source><target>B</target></link></links></networkStructure></network>")
    with pytest.raises(InvalidInput, match="1 of 1 links have no capacity in the file: pass --default-capacity"):
        load_topology(path)
    link = load_topology(path, default_capacity_bps=40e9).links[0]
    assert link.spec.capacity == 40e9
    assert link.metadata.annotations == {CAPACITY_SOURCE: "default-capacity flag",
                                         LATENCY_SOURCE: "great-circle distance"}


def test_cli_import_refuses_missing_capacities_then_takes_the_flag(tmp_path, capsys):
    path = _write(tmp_path, {**NODE_LINK, "links": [{k: v for k, v in arc.items() if k != "capacity"}
                                                    for arc in NODE_LINK["links"]]})
    store = ["--store", f"sqlite://{tmp_path}/state.db", "--create"]
    assert main([*store, "substrate", "import", str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "4 of 4 links have no capacity" in err and "--default-capacity" in err
    assert "\n" not in err
    assert main([*store, "substrate", "import", str(path), "--default-capacity", "fast"]) == 1
    assert "--default-capacity:" in capsys.readouterr().err
    assert main([*store, "substrate", "import", str(path), "--default-capacity", "1Gbps"]) == 0
    captured = capsys.readouterr()
    assert "imported 4 nodes and 4 links" in captured.out and "4 links had no capacity: default 1 Gbps" in captured.err
    assert main([*store, "get", "links", "-o", "json"]) == 0
    stored = json.loads(capsys.readouterr().out)
    assert {link["metadata"]["annotations"][CAPACITY_SOURCE] for link in stored} == {"default-capacity flag"}
