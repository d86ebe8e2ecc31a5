"""Kubernetes-shaped resource envelope shared by every kind, and strict parsing."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from vnstitch.errors import InvalidInput
from vnstitch.units import parse_bandwidth, parse_bytes, parse_duration

API_VERSION = "vnstitch.io/v1"
NAME_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$"
DEFAULT_TENANT = "default"

BandwidthBps = Annotated[float, BeforeValidator(parse_bandwidth)]
DurationSeconds = Annotated[float, BeforeValidator(parse_duration)]
SizeBytes = Annotated[int, BeforeValidator(parse_bytes)]


class Strict(BaseModel):
    """Base for every model: unknown keys are errors, camelCase on the wire."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_assignment=False)


class Metadata(Strict):
    name: str = Field(pattern=NAME_PATTERN)
    tenant: str = Field(default=DEFAULT_TENANT, pattern=NAME_PATTERN)
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)  # free-form notes, e.g. why a stitch exists
    # Server-set; accepted on input so that `get -o yaml | apply -f -` round-trips.
    generation: int = 0
    resource_version: int | None = Field(default=None, alias="resourceVersion")
    creation_timestamp: float | None = Field(default=None, alias="creationTimestamp")
    deletion_timestamp: float | None = Field(default=None, alias="deletionTimestamp")


class Resource(Strict):
    """apiVersion/kind/metadata/spec/status envelope."""

    KIND: ClassVar[str] = ""
    PLURAL: ClassVar[str] = ""
    NAMESPACED: ClassVar[bool] = True

    api_version: str = Field(default=API_VERSION, alias="apiVersion")
    kind: str
    metadata: Metadata

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        """Store namespace: the tenant for tenant-owned kinds, '' for cluster-scoped ones."""
        return self.metadata.tenant if self.NAMESPACED else ""

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, mode="json", exclude_none=True)


def format_loc(loc: tuple) -> str:
    """('spec', 'members', 0, 'node') → 'spec.members[0].node'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).startswith("function-") or part in ("str", "int", "float"):
            continue  # union/validator branch names are noise for the user
        else:
            out += ("." if out else "") + str(part)
    return out


def invalid_from_pydantic(exc: ValidationError, prefix: str = "") -> InvalidInput:
    """First pydantic error as one line naming the field."""
    err = exc.errors()[0]
    field = format_loc(err["loc"])
    if prefix:
        field = f"{prefix}.{field}" if field else prefix
    message = err["msg"]
    if err["type"] == "extra_forbidden":
        message = "unknown key"
    elif message.startswith("Value error, "):
        message = message[len("Value error, "):]
    return InvalidInput(message, field=field or None)

