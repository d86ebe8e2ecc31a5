"""A route manager's view: the Sites and VirtualNetworks of one resource file, checked together."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from functools import cached_property
from typing import Iterable

from vnstitch.domain.registry import parse_documents
from vnstitch.domain.site import Site, SiteStitch
from vnstitch.domain.vnet import VirtualNetwork
from vnstitch.errors import InvalidInput


def tenant_tag(tenant: str) -> int:
    """The 32-bit tag a tenant's name is advertised as (CRC-32 of its UTF-8 name)."""
    return zlib.crc32(tenant.encode())


@dataclass(frozen=True)
class Served:
    """One virtual network as the sites see it: its VNID, owner and the sites with members."""

    vnid: int
    tenant: str
    name: str
    sites: frozenset[str]


@dataclass(frozen=True)
class SiteView:
    sites: dict[str, Site]
    networks: dict[int, Served]     # VNID → network
    vnets: dict[str, VirtualNetwork] = field(default_factory=dict)     # 'tenant/name' → the resource
    stitches: dict[str, SiteStitch] = field(default_factory=dict)      # 'tenant/name' → stitch across sites

    def site(self, name: str) -> Site:
        if name not in self.sites:
            raise InvalidInput(f"unknown site '{name}' (sites: {', '.join(sorted(self.sites)) or 'none'})",
                               field="--site")
        return self.sites[name]

    def site_of_as(self, as_number: int) -> Site | None:
        return self._by_as.get(as_number)

    @cached_property
    def _by_as(self) -> dict[int, Site]:   # asked once per route of each pass
        return {s.spec.as_number: s for s in self.sites.values()}

    def served_by(self, site: str) -> dict[int, Served]:
        return {vnid: n for vnid, n in self.networks.items() if site in n.sites}


def check_sites(sites: Iterable[Site], source: str | None = "input") -> dict[str, str]:
    """Sites side by side: each its own AS and addresses, a node in one site only (InvalidInput naming
    both sites otherwise, prefixed with `source` unless it is None); returns node → site."""
    where = "" if source is None else f"{source}: "
    node_site: dict[str, str] = {}
    seen_as: dict[int, str] = {}
    seen_addr: dict[str, str] = {}
    for site in sites:
        name, spec = site.name, site.spec
        if spec.as_number in seen_as:
            raise InvalidInput(f"{where}sites '{seen_as[spec.as_number]}' and '{name}' both have AS "
                               f"{spec.as_number} (each site is its own AS)", field="spec.asNumber")
        seen_as[spec.as_number] = name
        for address in {spec.route_manager_address, spec.vtep}:
            if address in seen_addr:
                raise InvalidInput(f"{where}sites '{seen_addr[address]}' and '{name}' both use {address}",
                                   field="spec.routeManagerAddress")
            seen_addr[address] = name
        for node in spec.nodes:
            if node in node_site:
                raise InvalidInput(f"{where}node '{node}' is in sites '{node_site[node]}' and '{name}'",
                                   field="spec.nodes")
            node_site[node] = name
    return node_site


def view_from_text(text: str, source: str = "input") -> SiteView:
    """Parse and cross-check; any problem is an InvalidInput naming the resource."""
    return view_from_resources(parse_documents(text, source=source), source)


def view_from_store(store, source: str = "the store") -> SiteView:
    """Every Site, VirtualNetwork and SiteStitch in a state store (all tenants), cross-checked as a file's would be."""
    from vnstitch.domain.registry import parse_resource

    records = [*store.list(Site.KIND), *store.list(VirtualNetwork.KIND), *store.list(SiteStitch.KIND)]
    return view_from_resources([parse_resource(r.value) for r in records], source)


def view_from_resources(resources: Iterable, source: str = "input") -> SiteView:
    """Sites, VirtualNetworks and SiteStitches, cross-checked; any problem is an InvalidInput naming the
    resource. (A stitch naming a network that is not there is not an error of the view: its status says so.)"""
    sites: dict[str, Site] = {}
    vnets: list[VirtualNetwork] = []
    stitches: dict[str, SiteStitch] = {}
    for res in resources:
        if isinstance(res, Site):
            if res.name in sites:
                raise InvalidInput(f"{source}: Site '{res.name}' is given twice", field="metadata.name")
            sites[res.name] = res
        elif isinstance(res, VirtualNetwork):
            vnets.append(res)
        elif isinstance(res, SiteStitch):
            if res.key in stitches:
                raise InvalidInput(f"{source}: SiteStitch '{res.key}' is given twice", field="metadata.name")
            stitches[res.key] = res
        else:
            raise InvalidInput(f"{source}: a route manager reads Site, VirtualNetwork and SiteStitch resources "
                               f"only (got {res.KIND} '{res.name}')", field="kind")
    node_site = check_sites(sites.values(), source)
    networks: dict[int, Served] = {}
    for vnet in vnets:
        vnid, key = vnet.spec.vnid, f"{vnet.metadata.tenant}/{vnet.name}"
        if vnid in networks:
            first = networks[vnid]
            raise InvalidInput(f"{source}: VNID {vnid} is claimed by {first.tenant}/{first.name} and {key} "
                               "(a VNID belongs to one network of one tenant)", field="spec.vnid")
        at: set[str] = set()
        for index, member in enumerate(vnet.spec.members):
            if member.node not in node_site:
                raise InvalidInput(f"{source}: {key}: member {member.name} is on node '{member.node}', which no "
                                   f"Site lists", field=f"spec.members[{index}].node")
            at.add(node_site[member.node])
        networks[vnid] = Served(vnid, vnet.metadata.tenant, vnet.name, frozenset(at))
    by_key = {f"{v.metadata.tenant}/{v.name}": v for v in vnets}
    return SiteView(sites, networks, by_key, stitches)
