"""Sites: a substrate segment with its own route manager and BGP speaker (issue 14, docs/SITES.md)."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import Field, field_validator, model_validator

from vnstitch.domain.resources import NAME_PATTERN, BandwidthBps, DurationSeconds, Resource, Strict

AS_TRANS = 23456          # RFC 6793: stands for a 4-byte AS on 2-byte speakers, never a real AS
AS_MAX = 2**32 - 1


def _ipv4(value: str, what: str) -> str:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"'{value}' is not an IP address") from None
    if address.version != 4:
        raise ValueError(f"{value} is IPv6: sites run over an IPv4 substrate only (docs/SITES.md)")
    if address.is_unspecified or address.is_multicast or address.is_loopback:
        raise ValueError(f"{value} cannot be a {what} (unspecified, multicast or loopback)")
    return str(address)


class SiteSpec(Strict):
    """Where the site is (its nodes, the border node its VTEP and speaker run on) and how it peers."""

    nodes: list[str] = Field(min_length=1)
    border_node: str = Field(alias="borderNode")
    as_number: int = Field(alias="asNumber", ge=1, le=AS_MAX)
    route_manager_address: str = Field(alias="routeManagerAddress")   # the speaker listens here (TCP 179)
    tunnel_address: str | None = Field(default=None, alias="tunnelAddress")   # the VTEP; default: the above
    trust_level: Literal["trusted", "partner", "untrusted"] = Field(default="trusted", alias="trustLevel")
    offered_bandwidth: BandwidthBps = Field(default=1e9, ge=0, alias="offeredBandwidth")  # per VNID, advertised

    @field_validator("nodes")
    @classmethod
    def _nodes(cls, value: list[str]) -> list[str]:
        import re

        seen: set[str] = set()
        for index, node in enumerate(value):
            if not re.match(NAME_PATTERN, node):
                raise ValueError(f"[{index}]: '{node}' is not a node name")
            if node in seen:
                raise ValueError(f"[{index}]: node '{node}' is listed twice")
            seen.add(node)
        return value

    @field_validator("as_number")
    @classmethod
    def _as_number(cls, value: int) -> int:
        if value == AS_TRANS:
            raise ValueError("23456 is AS_TRANS (RFC 6793), not an AS a site can use")
        return value

    @field_validator("route_manager_address")
    @classmethod
    def _rm_address(cls, value: str) -> str:
        return _ipv4(value, "route-manager address")

    @field_validator("tunnel_address")
    @classmethod
    def _tunnel_address(cls, value: str | None) -> str | None:
        return None if value is None else _ipv4(value, "tunnel address")

    @model_validator(mode="after")
    def _border_inside(self) -> "SiteSpec":
        if self.border_node not in self.nodes:
            raise ValueError(f"borderNode: '{self.border_node}' is not one of the site's nodes "
                             f"({', '.join(self.nodes)})")
        return self

    @property
    def vtep(self) -> str:
        """The address VXLAN tunnels to this site end on."""
        return self.tunnel_address or self.route_manager_address


class Site(Resource):
    KIND = "Site"
    PLURAL = "sites"
    NAMESPACED = False
    kind: Literal["Site"] = "Site"
    spec: SiteSpec


class SiteStitchEnd(Strict):
    network: str = Field(pattern=NAME_PATTERN)
    tenant: str | None = Field(default=None, pattern=NAME_PATTERN)   # default: the stitch's tenant


class SiteStitchSpec(Strict):
    """A stitch from a network this site serves to one only other sites serve (docs/SITES.md, "Stitches
    across sites"): the site to use is negotiated from the learned adverts, the owning site asked for
    consent, and the traffic carried by an encrypted tunnel between the two border nodes."""

    from_: SiteStitchEnd = Field(alias="from")
    to: SiteStitchEnd
    bandwidth: BandwidthBps = Field(gt=0)
    max_latency: DurationSeconds | None = Field(default=None, gt=0, alias="maxLatency")   # between the sites
    tunnel: Literal["wireguard"] = "wireguard"   # the only kind across sites for now (docs/SITES.md)


class SiteStitch(Resource):
    KIND = "SiteStitch"
    PLURAL = "sitestitches"
    kind: Literal["SiteStitch"] = "SiteStitch"
    spec: SiteStitchSpec

    @model_validator(mode="after")
    def _own_from(self) -> "SiteStitch":
        tenant = self.metadata.tenant
        if self.spec.from_.tenant not in (None, tenant):
            raise ValueError(f"spec.from.tenant: a site stitch starts at a network of its own tenant ('{tenant}')")
        if (self.spec.to.tenant or tenant) == tenant and self.spec.to.network == self.spec.from_.network:
            raise ValueError("spec.to: a network cannot be stitched to itself")
        return self

    @property
    def key(self) -> str:
        return f"{self.metadata.tenant}/{self.metadata.name}"

    @property
    def from_key(self) -> str:
        return f"{self.metadata.tenant}/{self.spec.from_.network}"

    @property
    def to_key(self) -> str:
        return f"{self.spec.to.tenant or self.metadata.tenant}/{self.spec.to.network}"
