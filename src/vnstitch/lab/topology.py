"""Read a lab file (Node, Link, VirtualNetwork documents; Stitch documents are skipped)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import networkx as nx
import yaml
from pydantic import ValidationError

from vnstitch.domain.registry import load_yaml_documents
from vnstitch.domain.resources import USER_INPUT, invalid_from_pydantic
from vnstitch.domain.stitch import Stitch
from vnstitch.domain.substrate import Link, Node
from vnstitch.domain.vnet import VirtualNetwork
from vnstitch.errors import InvalidInput

KINDS = {"Node": Node, "Link": Link, "VirtualNetwork": VirtualNetwork, "Stitch": Stitch}
LAB_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,15}$")
MAX_NODES = 250


@dataclass
class LabTopology:
    nodes: list[Node] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    networks: list[VirtualNetwork] = field(default_factory=list)
    stitches: list[Stitch] = field(default_factory=list)

    def graph(self) -> nx.Graph:
        graph = nx.Graph()
        graph.add_nodes_from(n.name for n in self.nodes)
        for link in self.links:
            a, b = link.spec.endpoints
            graph.add_edge(a, b, latency=link.spec.latency)
        return graph

    def network(self, name: str, tenant: str | None = None) -> VirtualNetwork:
        for net in self.networks:
            if net.name == name and (tenant is None or net.metadata.tenant == tenant):
                return net
        raise InvalidInput(f"unknown network '{name}'", field="network")


def load_documents(path: str) -> list[dict]:
    try:
        with open(path) as handle:
            return load_yaml_documents(handle)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{path}: malformed YAML ({exc})") from None
    except OSError as exc:
        raise InvalidInput(f"{path}: {exc.strerror}") from None


def parse(path: str) -> LabTopology:
    """Strictly parse and cross-check a lab file: links and members on known nodes, unique VM names."""
    topo = LabTopology()
    for number, doc in enumerate(load_documents(path)):
        kind = doc.get("kind") if isinstance(doc, dict) else None
        model = KINDS.get(kind)
        if model is None:
            raise InvalidInput(f"document {number}: unknown kind '{kind}' (valid: {', '.join(sorted(KINDS))})",
                               field="kind")
        try:
            resource = model.model_validate(doc, context=USER_INPUT)
        except ValidationError as exc:
            raise invalid_from_pydantic(exc, prefix=f"{kind}[{number}]") from None
        {"Node": topo.nodes, "Link": topo.links, "VirtualNetwork": topo.networks,
         "Stitch": topo.stitches}[kind].append(resource)
    names = {n.name for n in topo.nodes}
    if len(names) > MAX_NODES:
        raise InvalidInput(f"a lab holds at most {MAX_NODES} nodes", field="Node")
    seen_pairs = set()
    for link in topo.links:
        for end in link.spec.endpoints:
            if end not in names:
                raise InvalidInput(f"unknown node '{end}'", field=f"Link {link.name}.spec.endpoints")
        pair = frozenset(link.spec.endpoints)
        if pair in seen_pairs:
            raise InvalidInput("the lab supports one link per node pair", field=f"Link {link.name}")
        seen_pairs.add(pair)
    vms, vnids = set(), set()
    for net in topo.networks:
        if net.spec.vnid in vnids:
            raise InvalidInput(f"duplicate VNID {net.spec.vnid}", field=f"VirtualNetwork {net.name}.spec.vnid")
        vnids.add(net.spec.vnid)
        for index, member in enumerate(net.spec.members):
            if member.node not in names:
                raise InvalidInput(f"unknown node '{member.node}'",
                                   field=f"VirtualNetwork {net.name}.spec.members[{index}].node")
            if member.name in vms:
                raise InvalidInput(f"VM name '{member.name}' is used twice in the lab",
                                   field=f"VirtualNetwork {net.name}.spec.members[{index}].name")
            vms.add(member.name)
    if topo.nodes and not nx.is_connected(topo.graph()):
        raise InvalidInput("the substrate is not connected", field="Link")
    return topo
