"""Substrate: physical/underlay nodes and full-duplex links with capacity, latency, trust zone."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from vnstitch.domain.resources import (
    NAME_PATTERN, BandwidthBps, DurationSeconds, Resource, SizeBytes, Strict,
)

DEFAULT_TRUST_ZONE = "default"


class NodeSpec(Strict):
    site: str | None = None
    trust_zone: str = Field(default=DEFAULT_TRUST_ZONE, alias="trustZone")
    compute_cores: float = Field(default=0.0, ge=0, alias="computeCores")
    memory: SizeBytes = 0
    storage: SizeBytes = 0
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)


class Node(Resource):
    KIND = "Node"
    PLURAL = "nodes"
    NAMESPACED = False
    kind: Literal["Node"] = "Node"
    spec: NodeSpec = Field(default_factory=NodeSpec)


class LinkSpec(Strict):
    """A full-duplex link: `capacity` is available in each direction."""

    endpoints: tuple[str, str]
    capacity: BandwidthBps = Field(gt=0)
    latency: DurationSeconds = Field(default=0.001, ge=0, le=10)
    trust_zone: str = Field(default=DEFAULT_TRUST_ZONE, alias="trustZone")
    cost: float = Field(default=1.0, ge=0)
    # up: in use; maintenance: drained (stitches move off it, none is placed on it); down: out of service
    state: Literal["up", "maintenance", "down"] = "up"

    @model_validator(mode="after")
    def _endpoints_differ(self) -> "LinkSpec":
        a, b = self.endpoints
        if a == b:
            raise ValueError(f"a link needs two different endpoints, got '{a}' twice")
        for end in (a, b):
            if not end or len(end) > 255:
                raise ValueError(f"bad endpoint name '{end}'")
        return self


class Link(Resource):
    KIND = "Link"
    PLURAL = "links"
    NAMESPACED = False
    kind: Literal["Link"] = "Link"
    spec: LinkSpec


def link_name(a: str, b: str) -> str:
    """Canonical name for the link between two nodes (order-independent)."""
    x, y = sorted((a, b))
    return f"{x}--{y}"


__all__ = ["Node", "NodeSpec", "Link", "LinkSpec", "link_name", "DEFAULT_TRUST_ZONE", "NAME_PATTERN"]
