"""Read real topologies (SNDlib XML, Topology Zoo GraphML, CFR-RL text, networkx node-link JSON)
into substrate nodes and links.

Capacities come from the file; a link the file gives none gets `default_capacity_bps` only
when the caller passes one (`--default-capacity`), otherwise the import fails: a capacity is
never invented. Latency comes from the file where it has one (node-link `latency`, seconds),
else from geographic coordinates (great-circle distance at 2/3 of the speed of light, see
`propagation_latency_s`), else `default_latency_s`. Each link records where both came from in
its annotations (`CAPACITY_SOURCE`, `LATENCY_SOURCE`); every default applied is listed in
`Topology.notes`.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from vnstitch.domain.substrate import Link, Node, link_name
from vnstitch.errors import InvalidInput, NotFound
from vnstitch.units import format_bandwidth

FORMATS = ("sndlib", "graphml", "cfr-rl", "node-link")

CAPACITY_SOURCE = "vnstitch.io/capacity-source"    # "file", "default-capacity flag" or "capacity override"
LATENCY_SOURCE = "vnstitch.io/latency-source"      # "file", "great-circle distance" or "default"
CAPACITY_BY_DIRECTION = "vnstitch.io/capacity-by-direction"  # both directions, where the file's differ

EARTH_RADIUS_KM = 6371.0088  # mean Earth radius (IUGG)
FIBRE_SPEED_KM_PER_S = 299_792.458 * 2 / 3  # light in fibre: ~2/3 c, i.e. ~5.0 µs per km

ABILENE_NODE_ORDER = (
    "ATLAM5", "ATLAng", "CHINng", "DNVRng", "HSTNng", "IPLSng",
    "KSCYng", "LOSAng", "NYCMng", "SNVAng", "STTLng", "WASHng",
)

_SNDLIB_NS = {"s": "http://sndlib.zib.de/network"}
_NAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$")


@dataclass
class Topology:
    """Nodes and links read from one file, with notes on every default applied."""

    nodes: list[Node]
    links: list[Link]
    source: str
    notes: list[str] = field(default_factory=list)


@dataclass
class _RawLink:
    """One undirected link while parsing, before defaults and collapsing."""

    a: str
    b: str
    capacity_bps: float | None = None
    cost: float | None = None
    latency_s: float | None = None  # from the file itself, when it has one
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass
class _RawNode:
    name: str
    site: str | None = None
    latitude: float | None = None
    longitude: float | None = None


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Haversine distance on a spherical Earth of radius 6371 km."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi, dlmb = phi2 - phi1, math.radians(lon2 - lon1)
    h = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def propagation_latency_s(distance_km: float) -> float:
    """One-way propagation delay over fibre laid along the great circle (a lower bound)."""
    return distance_km / FIBRE_SPEED_KM_PER_S


def sanitize_name(label: str, fallback: str) -> str:
    """Turn a free-text label into a valid resource name ('São Paulo' → 'Sao_Paulo')."""
    ascii_label = unicodedata.normalize("NFKD", label or "").encode("ascii", "ignore").decode()
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", ascii_label.strip())
    name = re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", name)[:63]
    name = re.sub(r"[^A-Za-z0-9]+$", "", name)
    if not name:
        name = re.sub(r"[^A-Za-z0-9]+", "", fallback)[:63] or "node"
    return name



def _named_nodes(graph, ids: list, labels: list[tuple[str, str]], notes: list[str], site_of):
    """Node names made unique from their labels (with a note when some changed), and the raw nodes with
    their site and coordinates (`Latitude`/`Longitude`, either case)."""
    names = dict(zip(ids, _unique_names(labels)))
    renamed = sum(1 for (label, _), n in zip(labels, ids) if label != names[n])
    if renamed:
        notes.append(f"{renamed} node labels were sanitised or disambiguated into names")
    raw_nodes = []
    for n in ids:
        attrs = graph.nodes[n]
        lat, lon = attrs.get("Latitude", attrs.get("latitude")), attrs.get("Longitude", attrs.get("longitude"))
        geo = lat is not None and lon is not None
        raw_nodes.append(_RawNode(name=names[n], site=str(site_of(attrs) or n),
                                  latitude=float(lat) if geo else None, longitude=float(lon) if geo else None))
    return names, raw_nodes

def _unique_names(labels: Sequence[tuple[str, str]]) -> list[str]:
    """Sanitised, unique names for (label, fallback) pairs; later duplicates get '-2', '-3', …."""
    names = [sanitize_name(label, fallback) for label, fallback in labels]
    reserved, taken, out = set(names), set(), []
    for name in names:
        candidate, counter = name, 1
        while candidate in taken or (counter > 1 and candidate in reserved):
            counter += 1
            suffix = f"-{counter}"
            candidate = name[: 63 - len(suffix)].rstrip("_.-") + suffix
        taken.add(candidate)
        out.append(candidate)
    return out


# ---------------------------------------------------------------- capacity strings

_OC_RE = re.compile(r"\b(OC|STM)-?(\d+)c?\b", re.IGNORECASE)
_RATE_RE = re.compile(
    r"(\d+(?:[.,]\d+)?)(?:\s*/\s*\d+(?:[.,]\d+)?)*\s*([kmgt])\s*(?:bit/s|bits/s|bps|b/s|bit|b)?(?![a-z])",
    re.IGNORECASE,
)
_NAMED_RATES_BPS = {"T1": 1.544e6, "DS1": 1.544e6, "E1": 2.048e6, "T3": 44.736e6, "DS3": 44.736e6, "E3": 34.368e6}
_PREFIX = {"k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}


def parse_capacity_label(text: str | None) -> float | None:
    """Link speed from a Zoo label: 'OC-192c', '10 Gbit/s', '2.5 Gbps', '45/34 Mbit/s' (first number); else None."""
    if not text:
        return None
    match = _RATE_RE.search(text)
    if match:
        return float(match.group(1).replace(",", ".")) * _PREFIX[match.group(2).lower()]
    match = _OC_RE.search(text)
    if match:  # SONET OC-n line rate is n × 51.84 Mbit/s, SDH STM-n is n × 155.52 Mbit/s
        unit = 51.84e6 if match.group(1).upper() == "OC" else 155.52e6
        return int(match.group(2)) * unit
    for word, bps in _NAMED_RATES_BPS.items():
        if re.search(rf"\b{word}\b", text, re.IGNORECASE):
            return bps
    return None


# ---------------------------------------------------------------- entry point

def load_topology(
    path: str | Path,
    format: str | None = None,
    *,
    default_capacity_bps: float | None = None,
    default_latency_s: float = 0.001,
    capacity_bps_override: float | None = None,
    node_names: Sequence[str] | None = None,
) -> Topology:
    """Read a topology file; `format` is one of FORMATS, detected when None.

    A link without a capacity in the file needs `default_capacity_bps` (or `capacity_bps_override`);
    without one the import fails, naming how many links lack a capacity.
    """
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"no such topology file '{path}'")
    try:
        head = path.read_bytes()[:4096].decode("utf-8", "replace")
    except OSError as exc:
        raise InvalidInput(f"cannot read: {exc.strerror}", field=str(path)) from None
    fmt = format or _detect_format(path, head)
    if fmt not in FORMATS:
        raise InvalidInput(f"unknown topology format '{fmt}' (valid: {', '.join(FORMATS)})", field=str(path))
    notes: list[str] = []
    try:
        if fmt == "cfr-rl":
            raw_nodes, raw_links = _read_cfr_rl(path, notes, node_names)
        elif fmt == "node-link":
            raw_nodes, raw_links = _read_node_link(path, notes)
        else:
            raw_nodes, raw_links = (_read_sndlib if fmt == "sndlib" else _read_graphml)(path, notes)
    except InvalidInput:
        raise
    except (ET.ParseError, ValueError, KeyError, IndexError, TypeError, UnicodeDecodeError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InvalidInput(f"not a valid {fmt} topology: {message}", field=str(path)) from None
    if not raw_nodes:
        raise InvalidInput(f"not a valid {fmt} topology: no nodes", field=str(path))
    return _build(path, fmt, raw_nodes, raw_links, notes,
                  default_capacity_bps=default_capacity_bps, default_latency_s=default_latency_s,
                  capacity_bps_override=capacity_bps_override)


def _detect_format(path: Path, head: str) -> str:
    """Guess the format from the first bytes, then from the extension."""
    if "<graphml" in head:
        return "graphml"
    if "sndlib.zib.de/network" in head or re.search(r"<network[\s>]", head):
        return "sndlib"
    if head.lstrip().startswith("Node_num:"):
        return "cfr-rl"
    if head.lstrip().startswith("{") and re.search(r'"(nodes|links|edges)"\s*:', head):
        return "node-link"
    suffix = path.suffix.lower()
    if suffix == ".graphml":
        return "graphml"
    if suffix == ".json":
        return "node-link"
    if suffix == ".xml":
        return "sndlib"
    raise InvalidInput(f"cannot tell the topology format (valid: {', '.join(FORMATS)}); pass format=",
                       field=str(path))


# ---------------------------------------------------------------- SNDlib XML

def _read_sndlib(path: Path, notes: list[str]) -> tuple[list[_RawNode], list[_RawLink]]:
    """SNDlib network XML: <nodes> with coordinates, undirected <links> with pre-installed capacity in Mbit/s."""
    root = ET.parse(path).getroot()
    if root.tag != "{http://sndlib.zib.de/network}network":
        raise InvalidInput(f"root element is <{root.tag}>, expected SNDlib <network>", field=str(path))
    nodes_el = root.find(".//s:networkStructure/s:nodes", _SNDLIB_NS)
    if nodes_el is None:
        raise InvalidInput("no <networkStructure><nodes> element", field=str(path))
    geographical = nodes_el.get("coordinatesType", "geographical") == "geographical"
    if not geographical:
        notes.append(f"coordinates are '{nodes_el.get('coordinatesType')}', not geographical: default latency")
    raw_nodes = []
    for node_el in nodes_el.findall("s:node", _SNDLIB_NS):
        node_id = node_el.get("id")
        if not node_id:
            raise InvalidInput("a <node> has no id", field=str(path))
        lat = lon = None
        x, y = node_el.find("s:coordinates/s:x", _SNDLIB_NS), node_el.find("s:coordinates/s:y", _SNDLIB_NS)
        if geographical and x is not None and y is not None:
            lon, lat = float(x.text), float(y.text)
        raw_nodes.append(_RawNode(name=node_id, latitude=lat, longitude=lon))
    raw_links = []
    for link_el in root.findall(".//s:networkStructure/s:links/s:link", _SNDLIB_NS):
        source, target = link_el.findtext("s:source", None, _SNDLIB_NS), link_el.findtext("s:target", None, _SNDLIB_NS)
        if not source or not target:
            raise InvalidInput(f"link '{link_el.get('id')}' has no source or target", field=str(path))
        modules = [float(c.text) for c in link_el.findall("s:preInstalledModule/s:capacity", _SNDLIB_NS)]
        routing_cost = link_el.findtext("s:routingCost", None, _SNDLIB_NS)
        raw_links.append(_RawLink(source.strip(), target.strip(),
                                  capacity_bps=sum(modules) * 1e6 if modules else None,
                                  cost=float(routing_cost) if routing_cost else None))
    return raw_nodes, raw_links


# ---------------------------------------------------------------- Topology Zoo GraphML

def _read_graphml(path: Path, notes: list[str]) -> tuple[list[_RawNode], list[_RawLink]]:
    """Topology Zoo GraphML: node `label` (and Latitude/Longitude when present), edge speed in label/description."""
    import networkx as nx

    try:
        graph = nx.read_graphml(path)
    except nx.NetworkXError as exc:
        raise InvalidInput(f"not a valid graphml topology: {str(exc).splitlines()[0]}", field=str(path)) from None
    ids = list(graph.nodes)
    labels = [(str(graph.nodes[n].get("label") or ""), str(n)) for n in ids]
    names, raw_nodes = _named_nodes(graph, ids, labels, notes, lambda attrs: attrs.get("label"))
    raw_links = []
    self_loops = 0
    for u, v, attrs in graph.edges(data=True):
        if u == v:
            self_loops += 1
            continue
        capacity = None
        for key in ("LinkLabel", "label", "description", "LinkSpeed"):
            capacity = parse_capacity_label(str(attrs.get(key) or ""))
            if capacity:
                break
        raw_links.append(_RawLink(names[u], names[v], capacity_bps=capacity))
    if self_loops:
        notes.append(f"{self_loops} self-loop edges skipped")
    return raw_nodes, raw_links


# ---------------------------------------------------------------- CFR-RL text

def _read_cfr_rl(path: Path, notes: list[str], node_names: Sequence[str] | None
                 ) -> tuple[list[_RawNode], list[_RawLink]]:
    """CFR-RL topology: `Node_num: N Edge_num: E`, a header, then E directed links with OSPF weight and kbit/s."""
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    match = re.match(r"\s*Node_num:\s*(\d+)\s+Edge_num:\s*(\d+)\s*$", lines[0] if lines else "")
    if not match:
        raise InvalidInput("first line must be 'Node_num: N Edge_num: E'", field=str(path))
    node_count, edge_count = int(match.group(1)), int(match.group(2))
    if node_names is None:
        node_names = ABILENE_NODE_ORDER if node_count == len(ABILENE_NODE_ORDER) else [f"n{i}" for i in range(node_count)]
        if node_count == len(ABILENE_NODE_ORDER):
            notes.append("node ids 0..11 named in the Abilene order (ATLAM5 … WASHng)")
    if len(node_names) != node_count:
        raise InvalidInput(f"{len(node_names)} node names given for {node_count} nodes", field=str(path))
    rows = lines[2:]
    if len(rows) != edge_count:
        raise InvalidInput(f"header says {edge_count} links, file has {len(rows)}", field=str(path))
    arcs: dict[tuple[int, int], tuple[float, float]] = {}
    for number, row in enumerate(rows, start=3):
        fields = row.split()
        if len(fields) != 5:
            raise InvalidInput(f"line {number}: expected 5 fields, got {len(fields)}", field=str(path))
        _, src, dst, ospf, kbps = fields
        src_i, dst_i = int(src), int(dst)
        if not (0 <= src_i < node_count and 0 <= dst_i < node_count):
            raise InvalidInput(f"line {number}: node id out of range 0..{node_count - 1}", field=str(path))
        arcs[(src_i, dst_i)] = (float(ospf), float(kbps) * 1e3)
    raw_links = []
    one_way = asymmetric = 0
    for (a, b), (ospf, capacity) in sorted(arcs.items()):
        reverse = arcs.get((b, a))
        if reverse is not None and (b, a) < (a, b):
            continue  # handled with its reverse
        if reverse is None:
            one_way += 1
        annotations = {}
        if reverse is not None and reverse != (ospf, capacity):
            asymmetric += 1
            if reverse[1] != capacity:
                annotations[CAPACITY_BY_DIRECTION] = _by_direction(node_names[a], node_names[b], capacity, reverse[1])
            ospf, capacity = min(ospf, reverse[0]), min(capacity, reverse[1])
        raw_links.append(_RawLink(node_names[a], node_names[b], capacity_bps=capacity, cost=ospf,
                                  annotations=annotations))
    if one_way:
        notes.append(f"{one_way} links were listed in one direction only: used as full-duplex")
    if asymmetric:
        notes.append(f"{asymmetric} links differ by direction: lower capacity and OSPF weight used")
    return [_RawNode(name=n) for n in node_names], raw_links


# ---------------------------------------------------------------- networkx node-link JSON

def _node_link_graph(data: dict, edges_key: str):
    """`networkx.node_link_graph` across versions: the edge-list keyword is `edges` from 3.4, `link` before.

    A file that does not say whether it is directed is read as arcs (networkx would read it as
    undirected and sum the two directions of a link as parallel edges).
    """
    import networkx as nx

    try:
        return nx.node_link_graph(data, directed=True, multigraph=True, edges=edges_key)
    except TypeError:
        return nx.node_link_graph(data, directed=True, multigraph=True, link=edges_key)


def _number(value, what: str, path: Path, minimum_exclusive: bool) -> float | None:
    """A finite number from the file (None when absent); InvalidInput naming the link otherwise."""
    if value is None:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (minimum_exclusive and value == 0):
        bound = "above 0" if minimum_exclusive else "≥ 0"
        raise InvalidInput(f"{what} is {value!r}, expected a number {bound}", field=str(path))
    return float(value)


def _read_node_link(path: Path, notes: list[str]) -> tuple[list[_RawNode], list[_RawLink]]:
    """networkx node-link JSON, as DOTE, FIGRET and Teal publish: arcs with `capacity` in bit/s.

    In a directed graph the two arcs of a node pair become one full-duplex link; where their
    capacities differ the smaller is used and both are kept in CAPACITY_BY_DIRECTION (a Link has
    one capacity per direction, the same both ways). Parallel arcs add up. An arc's `latency`
    (seconds) is used when present (the larger of the two directions); node `Latitude`/`Longitude`
    (or lower case) give great-circle latency otherwise.
    """
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), list):
        raise InvalidInput("expected a networkx node-link object with a 'nodes' list", field=str(path))
    edges_key = next((k for k in ("links", "edges") if isinstance(data.get(k), list)), None)
    if edges_key is None:
        raise InvalidInput("expected a 'links' (or 'edges') list of {source, target, capacity}", field=str(path))
    declared = set()
    for number, node in enumerate(data["nodes"]):
        node_id = node.get("id") if isinstance(node, dict) else None
        if not isinstance(node_id, (str, int)) or isinstance(node_id, bool):
            raise InvalidInput(f"nodes[{number}] needs an 'id' (a string or an integer)", field=str(path))
        declared.add(node_id)
    for number, edge in enumerate(data[edges_key]):
        if not isinstance(edge, dict) or "source" not in edge or "target" not in edge:
            raise InvalidInput(f"{edges_key}[{number}] needs a 'source' and a 'target'", field=str(path))
        for end in (edge["source"], edge["target"]):
            if isinstance(end, (list, dict)) or end not in declared:
                raise InvalidInput(f"{edges_key}[{number}]: unknown node {end!r}", field=str(path))
    graph = _node_link_graph(data, edges_key)
    if "directed" not in data:
        notes.append("the file does not say 'directed': each entry read as one direction of a link")

    ids = list(graph.nodes)
    labels = [(str(graph.nodes[n].get("name") or graph.nodes[n].get("label")
                   or (f"n{n}" if isinstance(n, int) else n)), f"n{i}") for i, n in enumerate(ids)]
    if any(isinstance(n, int) and not (graph.nodes[n].get("name") or graph.nodes[n].get("label")) for n in ids):
        notes.append("integer node ids named n<id> (n0, n1, …)")
    names, raw_nodes = _named_nodes(graph, ids, labels, notes, lambda attrs: attrs.get("label") or attrs.get("name"))

    arcs: dict[tuple[str, str], tuple[list[float], list[float]]] = {}  # (a, b) → (capacities, latencies)
    raw_links: list[_RawLink] = []
    self_loops = 0
    for u, v, attrs in graph.edges(data=True):
        if u == v:
            self_loops += 1
            continue
        a, b = names[u], names[v]
        capacity = _number(attrs.get("capacity"), f"link {a}->{b}: capacity", path, minimum_exclusive=True)
        latency = _number(attrs.get("latency"), f"link {a}->{b}: latency", path, minimum_exclusive=False)
        if not graph.is_directed():  # one edge, one full-duplex link; parallel edges are summed later
            raw_links.append(_RawLink(a, b, capacity_bps=capacity, latency_s=latency))
            continue
        capacities, latencies = arcs.setdefault((a, b), ([], []))
        capacities.extend([capacity] if capacity is not None else [])
        latencies.extend([latency] if latency is not None else [])
    one_way = one_sided = asymmetric = 0
    paired: set[tuple[str, str]] = set()
    for (a, b), (capacities, latencies) in arcs.items():
        if (a, b) in paired:
            continue  # handled with its reverse
        paired.add((b, a))
        reverse = arcs.get((b, a))
        forward_bps = sum(capacities) if capacities else None
        reverse_bps = (sum(reverse[0]) if reverse[0] else None) if reverse is not None else None
        annotations = {}
        if reverse is None:
            one_way += 1
            capacity = forward_bps
        else:
            known = [c for c in (forward_bps, reverse_bps) if c is not None]
            capacity = min(known) if known else None
            one_sided += len(known) == 1
            if len(known) == 2 and forward_bps != reverse_bps:
                asymmetric += 1
                annotations[CAPACITY_BY_DIRECTION] = _by_direction(a, b, forward_bps, reverse_bps)
        both_latencies = latencies + (reverse[1] if reverse is not None else [])
        raw_links.append(_RawLink(a, b, capacity_bps=capacity, latency_s=max(both_latencies, default=None),
                                  annotations=annotations))
    if self_loops:
        notes.append(f"{self_loops} self-loop links skipped")
    if one_way:
        notes.append(f"{one_way} links were listed in one direction only: used as full-duplex")
    if one_sided:
        notes.append(f"{one_sided} links have a capacity in one direction only: used for both")
    if asymmetric:
        notes.append(f"{asymmetric} links differ in capacity by direction: the smaller used, "
                     f"both kept in annotation {CAPACITY_BY_DIRECTION}")
    known_bps = [r.capacity_bps for r in raw_links if r.capacity_bps]
    if known_bps and max(known_bps) < 1e6:
        notes.append(f"the largest capacity is {max(known_bps):g} bit/s: node-link capacities are read as bit/s; "
                     "check the unit of this file")
    return raw_nodes, raw_links


def _bps_text(bps: float) -> str:
    return f"{bps:.0f}" if float(bps).is_integer() else repr(float(bps))


def _by_direction(a: str, b: str, forward_bps: float, reverse_bps: float) -> str:
    """'A->B=22000000000bps B->A=21500000000bps': a link's two capacities where the file's differ."""
    return f"{a}->{b}={_bps_text(forward_bps)}bps {b}->{a}={_bps_text(reverse_bps)}bps"


# ---------------------------------------------------------------- common

def _build(path: Path, fmt: str, raw_nodes: list[_RawNode], raw_links: list[_RawLink], notes: list[str], *,
           default_capacity_bps: float | None, default_latency_s: float,
           capacity_bps_override: float | None) -> Topology:
    """Apply defaults, collapse parallel links and validate into domain objects."""
    by_name = {n.name: n for n in raw_nodes}
    if len(by_name) != len(raw_nodes):
        raise InvalidInput("duplicate node names", field=str(path))
    grouped: dict[tuple[str, str], list[_RawLink]] = {}
    for raw in raw_links:
        for end in (raw.a, raw.b):
            if end not in by_name:
                raise InvalidInput(f"link {raw.a}--{raw.b}: unknown node '{end}'", field=str(path))
        if raw.a == raw.b:
            continue
        grouped.setdefault(tuple(sorted((raw.a, raw.b))), []).append(raw)
    no_capacity = sum(1 for group in grouped.values() if not any(r.capacity_bps for r in group))
    if no_capacity and default_capacity_bps is None and capacity_bps_override is None:
        raise InvalidInput(f"{no_capacity} of {len(grouped)} links have no capacity in the file: pass "
                           "--default-capacity RATE (default_capacity_bps=) to give them one", field=str(path))
    from_file = great_circle = collapsed = 0
    links = []
    try:
        nodes = [Node(metadata={"name": n.name},
                      spec={"site": n.site, "latitude": n.latitude, "longitude": n.longitude})
                 for n in raw_nodes]
        for (a, b), group in grouped.items():
            annotations: dict[str, str] = {}
            for raw in group:
                annotations.update(raw.annotations)
            known = [r.capacity_bps for r in group if r.capacity_bps]
            if len(group) > 1:
                collapsed += 1
            if capacity_bps_override is not None:
                capacity, annotations[CAPACITY_SOURCE] = capacity_bps_override, "capacity override"
            elif known:
                capacity, annotations[CAPACITY_SOURCE] = sum(known), "file"
            else:
                capacity, annotations[CAPACITY_SOURCE] = default_capacity_bps, "default-capacity flag"
            costs = [r.cost for r in group if r.cost is not None]
            file_latencies = [r.latency_s for r in group if r.latency_s is not None]
            na, nb = by_name[a], by_name[b]
            if file_latencies:
                from_file += 1
                latency, annotations[LATENCY_SOURCE] = max(file_latencies), "file"
            elif None not in (na.latitude, na.longitude, nb.latitude, nb.longitude):
                great_circle += 1
                latency = propagation_latency_s(great_circle_km(na.latitude, na.longitude, nb.latitude, nb.longitude))
                annotations[LATENCY_SOURCE] = "great-circle distance"
            else:
                latency, annotations[LATENCY_SOURCE] = default_latency_s, "default"
            links.append(Link(metadata={"name": link_name(a, b), "annotations": annotations},
                              spec={"endpoints": (a, b), "capacity": capacity, "latency": latency,
                                    "cost": min(costs) if costs else 1.0}))
    except ValidationError as exc:
        err = exc.errors()[0]
        raise InvalidInput(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}", field=str(path)) from None
    if collapsed:
        notes.append(f"{collapsed} node pairs had parallel links: collapsed into one link each, capacities summed")
    if capacity_bps_override is not None:
        notes.append(f"all {len(links)} link capacities overridden: {format_bandwidth(capacity_bps_override)}")
    elif no_capacity:
        notes.append(f"{no_capacity} links had no capacity: default {format_bandwidth(default_capacity_bps)}")
    defaulted = len(links) - from_file - great_circle
    if defaulted:
        notes.append(f"{defaulted} links lack endpoint coordinates: default latency {default_latency_s * 1e3:g} ms")
    if from_file:
        notes.append(f"latency of {from_file} links from the file")
    if great_circle:
        notes.append("latency from great-circle distance at 2/3 c (~5 µs per km)")
    return Topology(nodes=nodes, links=links, source=f"{fmt}:{path}", notes=notes)


__all__ = ["Topology", "load_topology", "parse_capacity_label", "sanitize_name", "great_circle_km",
           "propagation_latency_s", "FORMATS", "ABILENE_NODE_ORDER", "CAPACITY_SOURCE", "LATENCY_SOURCE",
           "CAPACITY_BY_DIRECTION"]
