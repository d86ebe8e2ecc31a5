"""Virtual networks: VNID, tenant, address space, members, security policy."""

from __future__ import annotations

import ipaddress
from typing import Literal, Union

from pydantic import Field, field_validator, model_validator

from vnstitch.domain.resources import NAME_PATTERN, Resource, Strict

VNID_MAX = 2**24 - 1


class LabelSelector(Strict):
    match_labels: dict[str, str] = Field(alias="matchLabels")
    tenant: str | None = None


class Policy(Strict):
    """Which networks this one may be stitched to, and how."""

    allow_stitch_to: list[Union[str, LabelSelector]] | None = Field(default=None, alias="allowStitchTo")
    allow_unencrypted: bool = Field(default=False, alias="allowUnencrypted")
    allowed_trust_zones: list[str] | None = Field(default=None, alias="allowedTrustZones")


class Member(Strict):
    """A VM or container attached to the network on a substrate node."""

    name: str = Field(pattern=NAME_PATTERN)
    node: str
    address: str
    kind: Literal["vm", "container"] = "vm"

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            raise ValueError(f"'{value}' is not an IP address") from None


class Service(Strict):
    """A service the network offers (what intents name: 'tenant/network/name' or 'tenant/network:port')."""

    name: str = Field(pattern=NAME_PATTERN)
    port: int | None = Field(default=None, ge=1, le=65535)
    protocol: Literal["tcp", "udp", "icmp"] = "tcp"
    members: list[str] | None = None   # the members that serve it; None: every member


class VirtualNetworkSpec(Strict):
    vnid: int = Field(ge=1, le=VNID_MAX)
    cidr: str
    members: list[Member] = Field(default_factory=list)
    policy: Policy | None = None
    services: list[Service] = Field(default_factory=list)
    capabilities: list[str] = Field(default_factory=list)   # free words the virtual network graph shows
    trust_level: Literal["trusted", "partner", "untrusted"] = Field(default="trusted", alias="trustLevel")
    external: bool = False   # entered by an operator: a network vnstitch does not run (a peer's, a site's)

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        try:
            return str(ipaddress.ip_network(value, strict=True))
        except ValueError as exc:
            raise ValueError(f"'{value}' is not a network address ({exc})") from None

    @model_validator(mode="after")
    def _members_inside(self) -> "VirtualNetworkSpec":
        network = ipaddress.ip_network(self.cidr)
        seen_names: set[str] = set()
        seen_addresses: set[str] = set()
        for index, member in enumerate(self.members):
            if ipaddress.ip_address(member.address) not in network:
                raise ValueError(f"members[{index}].address: {member.address} is outside {self.cidr}")
            if member.name in seen_names:
                raise ValueError(f"members[{index}].name: duplicate member '{member.name}'")
            if member.address in seen_addresses:
                raise ValueError(f"members[{index}].address: duplicate address {member.address}")
            seen_names.add(member.name)
            seen_addresses.add(member.address)
        services: set[str] = set()
        for index, service in enumerate(self.services):
            if service.name in services:
                raise ValueError(f"services[{index}].name: duplicate service '{service.name}'")
            services.add(service.name)
            if service.protocol == "icmp" and service.port is not None:
                raise ValueError(f"services[{index}].port: icmp has no ports")
            for name in service.members or ():
                if name not in seen_names:
                    raise ValueError(f"services[{index}].members: '{name}' is not a member of the network")
        return self


class VirtualNetwork(Resource):
    KIND = "VirtualNetwork"
    PLURAL = "virtualnetworks"
    kind: Literal["VirtualNetwork"] = "VirtualNetwork"
    spec: VirtualNetworkSpec

    def member(self, name: str) -> Member | None:
        return next((m for m in self.spec.members if m.name == name), None)
