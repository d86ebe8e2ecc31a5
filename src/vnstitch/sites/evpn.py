"""EVPN adverts of VNIDs (pure): what a site advertises, and what it accepts from the RIB.

Encoding (RFC 7432 §7.3, RFC 8365 §5.1.3, RFC 9136; documented in docs/SITES.md):
- type 3 (inclusive multicast) per VNID served: RD `<VTEP>:<VNI mod 65536>`, Ethernet tag = VNI,
  originator IP = VTEP; PMSI tunnel attribute: ingress replication, label = VNI, tunnel endpoint = VTEP;
- type 5 (IP prefix) per VNID served: the network's prefix, same RD, Ethernet tag 0, label = VNI,
  gateway IP = VTEP (the subnet that can be reached through this site);
- extended communities: encapsulation VXLAN, route target `<AS>:<VNI>` (2-byte AS only);
- large communities (RFC 8092): `<AS>:1:<Mbit/s offered>` (also marks the route manager's own
  routes) and `<AS>:2:<CRC-32 of the tenant's name>`.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass

from vnstitch.domain.site import Site
from vnstitch.domain.vnet import VNID_MAX
from vnstitch.sites.config import SiteView, tenant_tag

BANDWIDTH_TAG, TENANT_TAG = 1, 2   # LocalData1 of our large communities


@dataclass(frozen=True, order=True)
class Advert:
    """One VNID a site serves, as one type-3 route, or (`prefix` given) its subnet as one type-5 route."""

    vni: int
    vtep: str
    as_number: int
    bandwidth_mbps: int
    tenant_tag: int
    prefix: str = ""

    @property
    def rd(self) -> str:
        return f"{self.vtep}:{self.vni % 65536}"

    def add_args(self) -> list[str]:
        """gobgp global rib -a evpn add …"""
        args = self.del_args()
        if self.as_number <= 65535:
            args += ["rt", f"{self.as_number}:{self.vni}"]
        large = ",".join(f"{self.as_number}:{tag}:{value}" for tag, value in self.large_communities())
        pmsi = [] if self.prefix else ["pmsi", "ingress-repl", str(self.vni), self.vtep]
        return args + ["encap", "vxlan", *pmsi, "large-community", large]

    def large_communities(self) -> list[tuple[int, int]]:
        """(LocalData1, LocalData2) of the large communities `<AS>:1:<Mbit/s>` and `<AS>:2:<tenant tag>`."""
        return [(BANDWIDTH_TAG, self.bandwidth_mbps), (TENANT_TAG, self.tenant_tag)]

    def del_args(self) -> list[str]:
        """gobgp global rib -a evpn del …"""
        if self.prefix:
            return ["prefix", self.prefix, "gw", self.vtep, "etag", "0", "label", str(self.vni), "rd", self.rd]
        return ["multicast", self.vtep, "etag", str(self.vni), "rd", self.rd]


@dataclass(frozen=True)
class Route:
    """A type-3 or type-5 path from the RIB, decoded but not yet trusted. For a type 5, `etag` is the VNI
    (its label), `originator` and `pmsi_endpoint` its gateway IP, `pmsi_label` its label: so it is judged as a
    type 3 is, plus its prefix."""

    key: str                 # the RIB's name for the destination
    etag: int
    originator: str
    local: bool              # originated by this speaker (next hop 0.0.0.0)
    as_path: tuple[int, ...]
    pmsi_label: int | None
    pmsi_endpoint: str | None
    large: tuple[tuple[int, int, int], ...]
    prefix: str | None = None      # type 5: the subnet


@dataclass(frozen=True, order=True)
class Learned:
    vni: int
    vtep: str
    site: str
    bandwidth_mbps: int


@dataclass(frozen=True, order=True)
class LearnedPrefix:
    """A subnet another site reaches (type 5), accepted."""

    vni: int
    prefix: str
    site: str
    bandwidth_mbps: int


def adverts(view: SiteView, site: Site, prefixes: bool = True) -> set[Advert]:
    """Every VNID `site` serves (a member on one of its nodes) as a type-3 Advert and (`prefixes`) its
    network's subnet as a type-5 one."""
    mbps = min(int(math.ceil(site.spec.offered_bandwidth / 1e6)) if site.spec.offered_bandwidth else 0, 2**32 - 1)
    found = set()
    for vnid, net in view.served_by(site.name).items():
        tag = tenant_tag(net.tenant)
        found.add(Advert(vnid, site.spec.vtep, site.spec.as_number, mbps, tag))
        vnet = view.vnets.get(f"{net.tenant}/{net.name}")
        if prefixes and vnet is not None:
            found.add(Advert(vnid, site.spec.vtep, site.spec.as_number, mbps, tag, vnet.spec.cidr))
    return found


def stale(present: set[Advert], wanted: set[Advert]) -> list[Advert]:
    """Own routes to withdraw: those whose destination (VNI and VTEP: the RD, tag and originator) no wanted
    advert has. One whose attributes changed (bandwidth, tenant) is replaced by adding it again; withdrawing the
    old one after that would remove the new."""
    keys = {(w.vni, w.vtep, w.prefix) for w in wanted}
    return sorted(a for a in present - wanted if (a.vni, a.vtep, a.prefix) not in keys)


def decode_rib(rib: dict | None) -> tuple[list[Route], list[tuple[str, str]]]:
    """The best type-3 and type-5 paths of a RIB dump, and (key, reason) for destinations of other types."""
    routes, other = [], []
    for key, paths in (rib or {}).items():
        for path in paths or ():
            if not path.get("best", True):   # the others decode to the same destination, a longer AS path
                continue
            nlri = path.get("nlri", {})
            if nlri.get("type") not in (3, 5):
                other.append((key, f"EVPN route type {nlri.get('type')} is not used (only types 3 and 5)"))
                continue
            value = nlri.get("value", {})
            as_path: list[int] = []
            label = endpoint = None
            large: list[tuple[int, int, int]] = []
            nexthop = None
            for attr in path.get("attrs", ()):
                kind = attr.get("type")
                if kind == 2:
                    for segment in attr.get("as_paths") or ():
                        as_path.extend(segment.get("asns") or ())
                elif kind == 22:
                    label, endpoint = attr.get("label"), attr.get("tunnel-id")
                elif kind == 32:
                    large.extend((c["ASN"], c["LocalData1"], c["LocalData2"]) for c in attr.get("value") or ())
                elif kind == 14:
                    nexthop = attr.get("nexthop")
            if nlri.get("type") == 5:   # the VNI is its label, the VTEP its gateway (see Route)
                label = int(value.get("label", -1))
                routes.append(Route(key, label, str(value.get("gateway")), nexthop == "0.0.0.0", tuple(as_path),
                                    label, str(value.get("gateway")), tuple(large), str(value.get("prefix"))))
                continue
            routes.append(Route(key, int(value.get("etag", -1)), str(value.get("ip")), nexthop == "0.0.0.0",
                                tuple(as_path), label, endpoint, tuple(large)))
    return routes, other


def own_adverts(routes: list[Route], site: Site) -> set[Advert]:
    """The routes this route manager put in its speaker (local, with its bandwidth tag)."""
    found = set()
    for route in routes:
        tags = {(data1): data2 for asn, data1, data2 in route.large if asn == site.spec.as_number}
        if route.local and BANDWIDTH_TAG in tags:
            found.add(Advert(route.etag, route.originator, site.spec.as_number, tags[BANDWIDTH_TAG],
                             tags.get(TENANT_TAG, -1), route.prefix or ""))
    return found


def judge(route: Route, view: SiteView, local: Site) -> Learned | LearnedPrefix | str | None:
    """A remote route → what it says (Learned), or why it is rejected (str); None: our own."""
    if route.local:
        return None
    if not route.as_path:
        return "no AS path on a route from a peer"
    origin_as = route.as_path[-1]
    site = view.site_of_as(origin_as)
    if site is None:
        return f"unknown site: origin AS {origin_as} is no Site's asNumber"
    if site.name == local.name:
        return None
    vni = route.etag
    if not 1 <= vni <= VNID_MAX:
        return f"VNI {vni} out of range 1..{VNID_MAX} (site {site.name})"
    if route.pmsi_label is not None and route.pmsi_label != vni:
        return f"PMSI label {route.pmsi_label} differs from the Ethernet tag {vni} (site {site.name})"
    if route.originator != site.spec.vtep or (route.pmsi_endpoint not in (None, site.spec.vtep)):
        return (f"VTEP {route.pmsi_endpoint or route.originator} is not site {site.name}'s tunnel address "
                f"{site.spec.vtep}")
    tags = {data1: data2 for asn, data1, data2 in route.large if asn == origin_as}
    if TENANT_TAG not in tags:
        return f"VNI {vni} from site {site.name} carries no tenant tag ({origin_as}:{TENANT_TAG}:…)"
    known = view.networks.get(vni)
    if known is not None and tenant_tag(known.tenant) != tags[TENANT_TAG]:
        return (f"VNID {vni} belongs to tenant '{known.tenant}' ({known.tenant}/{known.name}); site {site.name} "
                "advertises it for another tenant")
    if route.prefix is not None:
        try:
            prefix = str(ipaddress.ip_network(route.prefix, strict=True))
        except ValueError:
            return f"prefix {route.prefix!r} for VNI {vni} is not a network address (site {site.name})"
        vnet = view.vnets.get(f"{known.tenant}/{known.name}") if known is not None else None
        if vnet is not None and prefix != vnet.spec.cidr:
            return (f"site {site.name} advertises {prefix} for VNI {vni}, but {known.tenant}/{known.name} is "
                    f"{vnet.spec.cidr}")
        return LearnedPrefix(vni, prefix, site.name, tags.get(BANDWIDTH_TAG, 0))
    return Learned(vni, site.spec.vtep, site.name, tags.get(BANDWIDTH_TAG, 0))


@dataclass(frozen=True)
class Decision:
    learned: tuple[Learned, ...]
    rejected: tuple[tuple[str, str], ...]        # (route key, reason), sorted
    fdb: dict[int, frozenset[str]]               # VNID served here → remote VTEPs to flood to
    prefixes: tuple[LearnedPrefix, ...] = ()     # subnets other sites reach (type 5)


def decide(routes: list[Route], others: list[tuple[str, str]], view: SiteView, local: Site) -> Decision:
    """What to forward to: for each VNID this site serves, the VTEPs of the other sites that advertise it."""
    learned, rejected, prefixes = set(), set(others), set()
    for route in routes:
        verdict = judge(route, view, local)
        if isinstance(verdict, Learned):
            learned.add(verdict)
        elif isinstance(verdict, LearnedPrefix):
            prefixes.add(verdict)
        elif isinstance(verdict, str):
            rejected.add((route.key, verdict))
    by_vni: dict[int, set[str]] = {}
    for item in learned:
        by_vni.setdefault(item.vni, set()).add(item.vtep)
    fdb = {vnid: frozenset(by_vni.get(vnid, ())) for vnid in view.served_by(local.name)}
    return Decision(tuple(sorted(learned)), tuple(sorted(rejected)), fdb, tuple(sorted(prefixes)))
