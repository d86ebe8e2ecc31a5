"""Wire shapes that are not domain resources: lists, errors, policy view, availability."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, create_model

from vnstitch.domain.anomaly import AnomalyPolicy
from vnstitch.domain.forecastpolicy import ForecastPolicy
from vnstitch.domain.intent import Intent
from vnstitch.domain.resources import API_VERSION, NAME_PATTERN, BandwidthBps, DurationSeconds, Strict
from vnstitch.domain.site import Site, SiteStitch
from vnstitch.domain.stitch import Endpoint, Stitch, Transition
from vnstitch.domain.substrate import Link, Node
from vnstitch.domain.vnet import Policy, VirtualNetwork


class ErrorBody(BaseModel):
    """Every error: a stable code, a one-line message, and the field it is about."""

    code: str
    message: str
    field: str | None = None


class ListMeta(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    resource_version: int = Field(alias="resourceVersion")
    continue_: str | None = Field(default=None, alias="continue")


def list_model(cls: type) -> type[BaseModel]:
    return create_model(f"{cls.KIND}List", __config__=ConfigDict(populate_by_name=True),
                        api_version=(str, Field(default=API_VERSION, alias="apiVersion")),
                        kind=(Literal[f"{cls.KIND}List"], f"{cls.KIND}List"),
                        metadata=(ListMeta, ...), items=(list[cls], ...))


class DeleteResult(BaseModel):
    kind: str
    tenant: str | None = None
    name: str
    action: Literal["deleted", "deleting", "configured", "unchanged"]


class WatchEvent(BaseModel):
    """One line of a watch stream (NDJSON), or the data of one SSE event."""

    type: Literal["ADDED", "MODIFIED", "DELETED", "ERROR"]
    object: dict[str, Any]


class TransitionList(BaseModel):
    items: list[Transition]


# policies: a view over VirtualNetwork.spec.policy ---------------------------------------------
class PolicyMetadata(Strict):
    name: str = Field(pattern=NAME_PATTERN)
    tenant: str | None = Field(default=None, pattern=NAME_PATTERN)
    resource_version: int | None = Field(default=None, alias="resourceVersion")


class PolicyView(Strict):
    """The security policy of the virtual network of the same name."""

    api_version: str = Field(default=API_VERSION, alias="apiVersion")
    kind: Literal["Policy"] = "Policy"
    metadata: PolicyMetadata
    spec: Policy | None = None


PolicyList = create_model("PolicyList", __config__=ConfigDict(populate_by_name=True),
                          api_version=(str, Field(default=API_VERSION, alias="apiVersion")),
                          kind=(Literal["PolicyList"], "PolicyList"), metadata=(ListMeta, ...),
                          items=(list[PolicyView], ...))


# availability ----------------------------------------------------------------------------------
class AvailabilityRequest(Strict):
    """Could `bandwidth` at ≤ `maxLatency` be stitched between two endpoints now?"""

    from_: Endpoint = Field(alias="from")
    to: Endpoint
    bandwidth: BandwidthBps = Field(ge=0)
    max_latency: DurationSeconds | None = Field(default=None, ge=0, alias="maxLatency")
    symmetric: bool = True
    encryption: Literal["required", "none"] = "required"  # as the stitch would ask; both policies must accept it


class PathOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    nodes: list[str]
    links: list[str]
    latency: float = Field(description="seconds")
    cost: float
    bottleneck_bandwidth: float = Field(alias="bottleneckBandwidth", description="bit/s free on the narrowest arc")


class AvailabilityAnswer(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    feasible: bool
    path: PathOut | None = None
    best_bandwidth: float = Field(alias="bestBandwidth", description="bit/s within the latency bound")
    best_latency: float | None = Field(default=None, alias="bestLatency", description="seconds at that bandwidth")
    reason: str


# apply: several resources, all or nothing -------------------------------------------------------
AnyResource = Annotated[Union[Node, Link, Site, SiteStitch, VirtualNetwork, Stitch, ForecastPolicy, Intent,
                              AnomalyPolicy],
                        Field(discriminator="kind")]


class ApplyRequest(Strict):
    items: list[AnyResource] = Field(max_length=10_000)
    dry_run: bool = Field(default=False, alias="dryRun")


class ChangeOut(BaseModel):
    kind: str
    tenant: str | None = None
    name: str
    action: str


class ApplyResult(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    dry_run: bool = Field(alias="dryRun")
    changes: list[ChangeOut]
