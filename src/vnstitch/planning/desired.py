"""Desired state → ops: the one op compiler. The reconciler compiles the store's networks and
admitted stitches with it, and the namespace lab (`vnstitch lab up`, `lab stitch`) compiles its
YAML documents with it, so both ask the data plane for exactly the same thing.

Pure: typed resources in, ops out; no store, no driver."""

from __future__ import annotations

from typing import Mapping

from vnstitch.domain.stitch import Endpoint, Stitch
from vnstitch.domain.vnet import VirtualNetwork
from vnstitch.planning.ops import EnsureNetwork, EnsureStitch, MemberPlacement, QosRule, ServiceRule, StitchEnd


# Set by `vnstitch stitch rotate-keys` / POST /v1/stitches/{name}/rotate-keys: unix seconds of the request.
ROTATE_KEYS_ANNOTATION = "vnstitch.io/rotate-keys-requested"


def rotation_requested_at(stitch: Stitch) -> float:
    """When the stitch's keys were last asked to be replaced (its annotation), 0.0 when never (or unreadable)."""
    try:
        return max(0.0, float(stitch.metadata.annotations.get(ROTATE_KEYS_ANNOTATION, 0.0)))
    except ValueError:
        return 0.0


def network_key(tenant: str, name: str) -> str:
    return f"{tenant}/{name}"


def network_op(vnet: VirtualNetwork, reason: str = "") -> EnsureNetwork:
    """EnsureNetwork for a virtual network: its VNID, CIDR and where each member sits."""
    return EnsureNetwork(network_key(vnet.metadata.tenant, vnet.name), vnet.spec.vnid, vnet.spec.cidr,
                         tuple(MemberPlacement(m.name, m.node, m.address) for m in vnet.spec.members), reason=reason)


def end_key(tenant: str, end: Endpoint) -> str:
    """The network a stitch end names (another tenant's when the end says so)."""
    return network_key(end.tenant or tenant, end.network)


def attach_node(vnet: VirtualNetwork, end: Endpoint) -> str | None:
    """Where a stitch end attaches when no path says so: its member's node, else the network's first
    member's node; None when the member is unknown or the network has no member."""
    if end.member:
        member = vnet.member(end.member)
        return member.node if member else None
    return vnet.spec.members[0].node if vnet.spec.members else None


def stitch_op(key: str, tenant: str, stitch: Stitch, path: tuple[str, ...],
              vnets: Mapping[str, VirtualNetwork], rate_bps: float, reason: str = "",
              keys_after: float | None = None) -> EnsureStitch | None:
    """EnsureStitch for a stitch over `path` (its ends attach at path[0] and path[-1]) reserving
    `rate_bps`; None when an end's network is not among `vnets` or there is no path. (A member that
    is gone is the caller's to refuse: admission re-plans such a stitch, the lab says so.) Its keys
    must be newer than `keys_after` (default: the stitch's rotate-keys request); the spec's period
    travels along for the plan (compute_plan) to apply with its `now`."""
    if not path:
        return None
    ends = []
    for end, node in ((stitch.spec.from_, path[0]), (stitch.spec.to, path[-1])):
        vnet = vnets.get(end_key(tenant, end))
        if vnet is None:
            return None
        member = vnet.member(end.member) if end.member else None
        ends.append(StitchEnd(end_key(tenant, end), vnet.spec.vnid, end.subnet or vnet.spec.cidr, node,
                              member.name if member else None, member.address if member else None))
    return EnsureStitch(key, stitch.spec.type.value, ends[0], ends[1], tuple(path), rate_bps,
                        stitch.spec.encrypted, stitch.spec.symmetric, reason=reason,
                        keys_after=rotation_requested_at(stitch) if keys_after is None else keys_after,
                        key_rotation_s=stitch.spec.key_rotation, services=service_rules(stitch),
                        qos=qos_rules(stitch))


def service_rules(stitch: Stitch) -> tuple[ServiceRule, ...]:
    return tuple(ServiceRule(s.protocol, s.port) for s in stitch.spec.services or ())


def qos_rules(stitch: Stitch) -> tuple[QosRule, ...]:
    return tuple(QosRule(c.name, c.rank, c.share, c.dscp, tuple(c.ports or ()))
                 for c in sorted(stitch.spec.qos or (), key=lambda c: (c.rank, c.name)))
