"""The virtual network graph: every network a tenant knows (its own, the ones other tenants' policies let
it see, and every network that offers services), their services, capabilities, labels and trust level,
and the stitches between them. Intents select their groups and services from it."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from vnstitch.domain.intent import ExpectationObject, Intent
from vnstitch.domain.policy import _allows, visible_to
from vnstitch.domain.stitch import State, Stitch
from vnstitch.domain.vnet import VNID_MAX, VirtualNetwork
from vnstitch.errors import InvalidInput

SEGMENT_POOL = ipaddress.ip_network("10.250.0.0/16")  # where networks an intent creates get their /24


@dataclass(frozen=True)
class NetworkRef:
    tenant: str
    name: str
    vnet: VirtualNetwork | None = field(default=None, compare=False, hash=False)
    labels: tuple = ()   # a network still to be made: the labels it will carry

    @property
    def key(self) -> str:
        return f"{self.tenant}/{self.name}"


@dataclass(frozen=True)
class ServiceRef:
    network: NetworkRef
    name: str
    protocol: str
    port: int | None
    text: str


def _key(tenant: str, name: str) -> str:
    return f"{tenant}/{name}"


class VNGraph:
    """Built from every stored network, stitch and intent; answers for one viewing tenant at a time."""

    def __init__(self, networks: list[VirtualNetwork], stitches: list[Stitch] = (), intents: list[Intent] = ()):
        self.networks = {_key(n.metadata.tenant, n.metadata.name): n for n in networks}
        self.stitches = list(stitches)
        self.intents = list(intents)

    # --- visibility ---------------------------------------------------------------------------
    def visible(self, viewer: str, net: VirtualNetwork) -> bool:
        """Own networks; another tenant's when it offers services, or when its policy lets one of ours in."""
        if net.metadata.tenant == viewer or net.spec.services:
            return True
        return any(visible_to(net, own) for own in self.networks.values() if own.metadata.tenant == viewer)

    def ref(self, net: VirtualNetwork) -> NetworkRef:
        return NetworkRef(net.metadata.tenant, net.metadata.name, net)

    # --- resolving what intents name -----------------------------------------------------------
    def _network(self, viewer: str, text: str, where: str, what: str) -> NetworkRef:
        tenant, _, name = text.rpartition("/")
        tenant = tenant or viewer
        net = self.networks.get(_key(tenant, name))
        if net is None or not self.visible(viewer, net):
            known = sorted(k for k, n in self.networks.items() if self.visible(viewer, n))
            listed = ", ".join(known[:10]) + (f" and {len(known) - 10} more" if len(known) > 10 else "")
            raise InvalidInput(f"unknown {what} '{text}' (known networks: {listed or 'none'})", field=where)
        return self.ref(net)

    def resolve_group(self, tenant: str, obj: ExpectationObject, where: str, may_create: bool = True) -> NetworkRef:
        """The group's network. By name: it must exist and be the intent's tenant's. By selector: the one
        network of the tenant whose labels match; none: a NetworkRef without vnet (the engine makes it)."""
        if obj.group is not None:
            owner, _, name = obj.group.rpartition("/")
            if owner and owner != tenant:
                raise InvalidInput(f"group '{obj.group}' is tenant {owner}'s: an intent acts on its own tenant's "
                                   "groups (ask that tenant to write the intent)", field=f"{where}.group")
            return self._network(tenant, obj.group, f"{where}.group", "group")
        matches = [n for n in self.networks.values() if n.metadata.tenant == tenant
                   and all(n.metadata.labels.get(k) == v for k, v in obj.selector.items())]
        if len(matches) > 1:
            names = ", ".join(sorted(n.metadata.name for n in matches))
            raise InvalidInput(f"the selector matches {len(matches)} networks ({names}); a group is one network: "
                               "narrow the selector or name it", field=f"{where}.selector")
        if matches:
            return self.ref(matches[0])
        name = "grp-" + "-".join(re.sub(r"[^a-z0-9]+", "-", f"{k}-{v}".lower()) for k, v in sorted(obj.selector.items()))
        return NetworkRef(tenant, name[:63].rstrip("-"), None, tuple(sorted(obj.selector.items())))

    def resolve_service(self, tenant: str, text: str, where: str) -> ServiceRef:
        """'tenant/network:port[/udp]', 'network:port' or '[tenant/]network/service' → the service."""
        if ":" in text:
            network_text, _, rest = text.partition(":")
            port_text, _, protocol = rest.partition("/")
            if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
                raise InvalidInput(f"'{text}': the port must be a number 1-65535", field=where)
            protocol = protocol or "tcp"
            if protocol not in ("tcp", "udp"):
                raise InvalidInput(f"'{text}': the protocol must be tcp or udp", field=where)
            ref = self._network(tenant, network_text, where, "service network")
            port = int(port_text)
            declared = ref.vnet.spec.services
            match = next((s for s in declared if s.port == port and s.protocol == protocol), None)
            if declared and match is None:
                offered = ", ".join(f"{s.name} ({s.protocol}/{s.port})" for s in declared)
                raise InvalidInput(f"unknown service '{text}': {ref.key} offers {offered}", field=where)
            if not declared and ref.tenant != tenant:
                raise InvalidInput(f"unknown service '{text}': {ref.key} offers no services", field=where)
            return ServiceRef(ref, match.name if match else f"{protocol}-{port}", protocol, port, text)
        network_text, _, service_name = text.rpartition("/")
        if not network_text:
            raise InvalidInput(f"'{text}' names no service: write 'tenant/network:port' or 'tenant/network/service'",
                               field=where)
        ref = self._network(tenant, network_text, where, "service network")
        match = next((s for s in ref.vnet.spec.services if s.name == service_name), None)
        if match is None:
            offered = ", ".join(s.name for s in ref.vnet.spec.services) or "none"
            raise InvalidInput(f"unknown service '{service_name}' of {ref.key} (offered: {offered})", field=where)
        return ServiceRef(ref, match.name, match.protocol, match.port, text)

    # --- policy -----------------------------------------------------------------------------------
    def allows(self, network: NetworkRef, peer: NetworkRef) -> bool:
        """Does `network`'s own policy consent to a stitch from `peer`?"""
        if network.vnet is None:
            return False
        labels = dict(peer.vnet.metadata.labels) if peer.vnet is not None else dict(peer.labels)
        return _allows(network.vnet, peer.tenant, peer.name, labels)

    def allowed_peers(self, group: NetworkRef) -> set[str]:
        """Every network the tenant's intents let the group reach or be reached from."""
        out: set[str] = set()
        for intent in self.intents:
            if intent.metadata.tenant != group.tenant or intent.metadata.deletion_timestamp:
                continue
            for exp in intent.spec.expectations:
                if exp.type != "reachability" or not exp.service:
                    continue
                try:
                    mine = self.resolve_group(group.tenant, exp.object, "object")
                    service = self.resolve_service(group.tenant, exp.service, "service")
                except InvalidInput:
                    continue
                if mine.key == group.key:
                    out.add(service.network.key)
                elif service.network.key == group.key:
                    out.add(mine.key)
        return out

    @staticmethod
    def stitch_ends(stitch: Stitch) -> tuple[str, str]:
        tenant = stitch.metadata.tenant
        return (_key(stitch.spec.from_.tenant or tenant, stitch.spec.from_.network),
                _key(stitch.spec.to.tenant or tenant, stitch.spec.to.network))

    # --- making what an intent needs ------------------------------------------------------------------
    def new_segment(self, group: NetworkRef, intent: str) -> dict:
        """A VirtualNetwork document for a group no network matched: a free VNID, a free /24 of the pool."""
        used_vnids = {n.spec.vnid for n in self.networks.values()}
        vnid = next(v for v in range(VNID_MAX, 0, -1) if v not in used_vnids)
        taken = [ipaddress.ip_network(n.spec.cidr) for n in self.networks.values() if n.metadata.tenant == group.tenant]
        cidr = next(str(s) for s in SEGMENT_POOL.subnets(new_prefix=24) if not any(s.overlaps(t) for t in taken))
        return {"apiVersion": "vnstitch.io/v1", "kind": "VirtualNetwork",
                "metadata": {"name": group.name, "tenant": group.tenant,
                             "labels": {**dict(group.labels), "vnstitch.io/intent": intent},
                             "annotations": {"vnstitch.io/created-by": f"intent {intent}: no network matched its group"}},
                "spec": {"vnid": vnid, "cidr": cidr, "policy": {"allowStitchTo": []}}}

    # --- the API's view ------------------------------------------------------------------------------
    def view(self, viewer: str | None) -> dict:
        """Nodes (networks with services, capabilities, labels, trust level) and edges (stitches) as
        `viewer` may see them (None: an admin, everything). Another tenant's network shows no members
        or address space."""
        nodes, keys = [], set()
        for key, net in sorted(self.networks.items()):
            if viewer is not None and not self.visible(viewer, net):
                continue
            own = viewer is None or net.metadata.tenant == viewer
            keys.add(key)
            node = {"key": key, "tenant": net.metadata.tenant, "name": net.metadata.name,
                    "own": own, "external": net.spec.external, "trustLevel": net.spec.trust_level,
                    "labels": dict(net.metadata.labels), "capabilities": list(net.spec.capabilities),
                    "services": [s.model_dump(by_alias=True, exclude_none=True) for s in net.spec.services]}
            if own:
                node.update({"vnid": net.spec.vnid, "cidr": net.spec.cidr, "members": len(net.spec.members),
                             "isolated": bool(net.spec.policy and net.spec.policy.allow_stitch_to is not None
                                              and "*" not in net.spec.policy.allow_stitch_to)})
            nodes.append(node)
        edges = []
        for stitch in self.stitches:
            if stitch.status.state is State.TERMINATED:
                continue
            a, b = self.stitch_ends(stitch)
            if a not in keys or b not in keys:
                continue
            if viewer is not None and viewer not in (stitch.metadata.tenant, a.split("/")[0], b.split("/")[0]):
                continue
            edges.append({"stitch": f"{stitch.metadata.tenant}/{stitch.metadata.name}", "from": a, "to": b,
                          "state": stitch.status.state.value, "origin": stitch.spec.origin,
                          "intent": stitch.metadata.labels.get("vnstitch.io/intent")})
        return {"apiVersion": "vnstitch.io/v1", "kind": "VirtualNetworkGraph", "nodes": nodes, "edges": edges}
