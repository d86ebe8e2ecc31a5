"""Turn Stitch resources into ops against a running lab (for `lab stitch`, tests and benchmarks),
with the controller's op compiler (`planning.desired`): the lab only picks the ends' nodes and the
path, as admission does for the controller."""

from __future__ import annotations

from vnstitch.domain.stitch import Stitch
from vnstitch.domain.substrate import Link, Node, link_name
from vnstitch.drivers.linux.layout import LabLayout
from vnstitch.errors import InvalidInput
from vnstitch.pathing.paths import PathFinder
from vnstitch.domain.resources import API_VERSION
from vnstitch.domain.vnet import VirtualNetwork
from vnstitch.planning import desired
from vnstitch.planning.desired import attach_node, end_key
from vnstitch.planning.ops import EnsureStitch


def lab_path(layout: LabLayout, a: str, b: str) -> tuple[str, ...]:
    """Lowest-latency substrate path between two nodes, from the controller's path engine."""
    nodes = [Node(metadata={"name": name}) for name in layout.nodes]
    links = [Link(metadata={"name": link_name(link.a, link.b)},
                  spec={"endpoints": (link.a, link.b), "capacity": link.capacity_bps, "latency": link.latency_s})
             for link in layout.links]
    found = PathFinder(nodes, links).paths(a, b, metric="latency", k=1)
    if not found:
        raise InvalidInput(f"no substrate path joins {a} and {b} in lab '{layout.name}'", field="spec.path")
    return found[0].nodes


def _vnet(key: str, record: dict) -> VirtualNetwork:
    """A network the lab's driver state holds, as the resource the op compiler takes."""
    tenant, _, name = key.partition("/")
    return VirtualNetwork.model_validate({
        "apiVersion": API_VERSION, "kind": "VirtualNetwork", "metadata": {"name": name, "tenant": tenant},
        "spec": {"vnid": record["vnid"], "cidr": record["cidr"],
                 "members": [{"name": m["name"], "node": m["node"], "address": m["address"]}
                             for m in record["members"]]}})


def _end_node(vnets: dict[str, VirtualNetwork], tenant: str, endpoint, field: str) -> str:
    key = end_key(tenant, endpoint)
    vnet = vnets.get(key)
    if vnet is None:
        raise InvalidInput(f"unknown network '{key}' in the lab", field=f"{field}.network")
    if endpoint.member and vnet.member(endpoint.member) is None:
        raise InvalidInput(f"network {key} has no member '{endpoint.member}'", field=f"{field}.member")
    node = attach_node(vnet, endpoint)
    if node is None:
        raise InvalidInput(f"network {key} has no members to attach to", field=field)
    return node


def stitch_op(layout: LabLayout, networks: dict[str, dict], stitch: Stitch,
              path: tuple[str, ...] | None = None) -> EnsureStitch:
    """EnsureStitch for a Stitch resource, compiled as the controller compiles it
    (`planning.desired.stitch_op`): ends resolved from the lab's networks, lowest-latency path
    unless `path` is given, the spec's bandwidth reserved."""
    tenant = stitch.metadata.tenant
    vnets = {key: _vnet(key, record) for key, record in networks.items()}
    a = _end_node(vnets, tenant, stitch.spec.from_, "spec.from")
    b = _end_node(vnets, tenant, stitch.spec.to, "spec.to")
    op = desired.stitch_op(f"{tenant}/{stitch.name}", tenant, stitch, tuple(path or lab_path(layout, a, b)), vnets,
                           stitch.spec.bandwidth, reason="lab stitch")
    assert op is not None  # both ends resolved above
    return op
