"""Turn Stitch resources into ops against a running lab (for `lab stitch`, tests and benchmarks;
the controller's reconciler does the same from its store)."""

from __future__ import annotations

from vnstitch.domain.stitch import Stitch
from vnstitch.domain.substrate import Link, Node, link_name
from vnstitch.drivers.linux.layout import LabLayout
from vnstitch.errors import InvalidInput
from vnstitch.pathing.paths import PathFinder
from vnstitch.planning.ops import EnsureStitch, StitchEnd


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


def _end(networks: dict[str, dict], tenant: str, endpoint, field: str) -> StitchEnd:
    key = f"{endpoint.tenant or tenant}/{endpoint.network}"
    record = networks.get(key)
    if record is None:
        raise InvalidInput(f"unknown network '{key}' in the lab", field=f"{field}.network")
    if endpoint.member:
        member = next((m for m in record["members"] if m["name"] == endpoint.member), None)
        if member is None:
            raise InvalidInput(f"network {key} has no member '{endpoint.member}'", field=f"{field}.member")
        return StitchEnd(key, record["vnid"], record["cidr"], member["node"], member["name"], member["address"])
    if not record["members"]:
        raise InvalidInput(f"network {key} has no members to attach to", field=field)
    return StitchEnd(key, record["vnid"], endpoint.subnet or record["cidr"], record["members"][0]["node"])


def stitch_op(layout: LabLayout, networks: dict[str, dict], stitch: Stitch,
              path: tuple[str, ...] | None = None) -> EnsureStitch:
    """EnsureStitch for a Stitch resource: ends resolved from the lab's networks, shortest path."""
    tenant = stitch.metadata.tenant
    a = _end(networks, tenant, stitch.spec.from_, "spec.from")
    b = _end(networks, tenant, stitch.spec.to, "spec.to")
    return EnsureStitch(stitch=f"{tenant}/{stitch.name}", type=stitch.spec.type.value, a=a, b=b,
                        path=path or lab_path(layout, a.node, b.node), rate_bps=stitch.spec.bandwidth,
                        encrypted=stitch.spec.encrypted, symmetric=stitch.spec.symmetric,
                        reason="lab stitch")
