"""Stitches: spec (what was asked), status (what is), and the lifecycle state machine."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, PlainSerializer, WithJsonSchema, field_validator, model_validator

from vnstitch.domain.resources import BandwidthBps, DurationSeconds, Resource, Strict, Timestamp
from vnstitch.errors import IllegalTransition
from vnstitch.units import format_period, parse_period


class StitchType(str, Enum):
    DIRECT = "direct"        # VM-to-VM tunnel bypassing intermediate bridges
    SEGMENT = "segment"      # joins parts of two virtual networks into one logical segment
    BANDWIDTH = "bandwidth"  # reserves substrate capacity for traffic between two networks


class State(str, Enum):
    PENDING = "PENDING"
    ESTABLISHING = "ESTABLISHING"
    ACTIVE = "ACTIVE"
    ADJUSTING = "ADJUSTING"
    DEGRADED = "DEGRADED"
    FAILED = "FAILED"
    TERMINATING = "TERMINATING"
    TERMINATED = "TERMINATED"


ALLOWED_TRANSITIONS: dict[State, frozenset[State]] = {
    State.PENDING: frozenset({State.ESTABLISHING, State.FAILED, State.TERMINATING}),
    State.ESTABLISHING: frozenset({State.ACTIVE, State.FAILED, State.TERMINATING}),
    State.ACTIVE: frozenset({State.ADJUSTING, State.DEGRADED, State.FAILED, State.TERMINATING}),
    State.ADJUSTING: frozenset({State.ACTIVE, State.DEGRADED, State.FAILED, State.TERMINATING}),
    State.DEGRADED: frozenset({State.ACTIVE, State.ADJUSTING, State.FAILED, State.TERMINATING}),
    State.FAILED: frozenset({State.PENDING, State.ESTABLISHING, State.TERMINATING}),
    State.TERMINATING: frozenset({State.TERMINATED}),
    State.TERMINATED: frozenset(),
}



class Endpoint(Strict):
    network: str
    tenant: str | None = None   # another tenant's network; default: the stitch's tenant
    member: str | None = None   # a VM of that network (direct stitches)
    subnet: str | None = None   # part of the network (segment stitches)


class ServicePort(Strict):
    """A flow the stitch lets cross from `from` to `to` (replies come back); `port` None: every port
    of the protocol (icmp has none)."""

    protocol: Literal["tcp", "udp", "icmp"] = "tcp"
    port: int | None = Field(default=None, ge=1, le=65535)

    @model_validator(mode="after")
    def _icmp_has_no_port(self) -> "ServicePort":
        if self.protocol == "icmp" and self.port is not None:
            raise ValueError("port: icmp has no ports")
        return self


class QosClass(Strict):
    """One ranked class of a stitch's traffic: `rank` 1 is the highest; under saturation a class keeps
    `share` of the stitch's bandwidth and may borrow what the others leave. Traffic is matched by DSCP
    or by destination port; traffic no class matches goes to the lowest-ranked class."""

    name: str = Field(pattern=r"^[a-z][a-z0-9-]{0,30}$")
    rank: int = Field(ge=1, le=8)
    share: float = Field(gt=0, le=1)
    dscp: int | None = Field(default=None, ge=0, le=63)
    ports: list[int] | None = Field(default=None, min_length=1)

    @field_validator("ports")
    @classmethod
    def _ports(cls, value: list[int] | None) -> list[int] | None:
        for port in value or ():
            if not 1 <= port <= 65535:
                raise ValueError(f"{port} is not a port (1-65535)")
        return value


class StitchSpec(Strict):
    type: StitchType
    from_: Endpoint = Field(alias="from")
    to: Endpoint
    bandwidth: BandwidthBps = 0.0
    max_latency: DurationSeconds | None = Field(default=None, alias="maxLatency")
    max_loss: float | None = Field(default=None, ge=0, le=1, alias="maxLoss")
    encryption: Literal["required", "none"] = "required"
    priority: int = Field(default=100, ge=0, le=1000)
    origin: Literal["user", "forecast", "intent"] = "user"
    symmetric: bool = True  # reserve in both directions of each link
    path: list[str] | None = None  # explicit substrate route (as the allocator pins); default: computed
    # Replace the tunnel's WireGuard keys this often ('24h'; a unit is required); None: only on request.
    key_rotation: Annotated[float, BeforeValidator(parse_period), PlainSerializer(format_period),
                            WithJsonSchema({"type": "string", "examples": ["24h"]})] | None = \
        Field(default=None, alias="keyRotation")
    # Only these flows cross (from → to, and their replies); None: all traffic between the ends.
    services: list[ServicePort] | None = Field(default=None, min_length=1)
    # Ranked classes sharing the stitch's bandwidth (HTB child classes on the data plane).
    qos: list[QosClass] | None = Field(default=None, min_length=1, max_length=8)

    @model_validator(mode="after")
    def _shape(self) -> "StitchSpec":
        if self.type is StitchType.DIRECT:
            for side, end in (("from", self.from_), ("to", self.to)):
                if not end.member:
                    raise ValueError(f"{side}.member: a direct stitch joins two VMs; name the member")
        if self.type is StitchType.BANDWIDTH:
            if self.bandwidth <= 0:
                raise ValueError("bandwidth: a bandwidth stitch needs a bandwidth above 0")
            for side, end in (("from", self.from_), ("to", self.to)):
                if end.member:
                    raise ValueError(f"{side}.member: a bandwidth stitch joins networks, not members")
        if self.key_rotation is not None and not self.encrypted:
            raise ValueError("keyRotation: an unencrypted stitch (encryption: none) has no keys to rotate")
        if self.qos is not None:
            if self.bandwidth <= 0:
                raise ValueError("qos: ranked classes share a bandwidth; give the stitch one above 0")
            names = [c.name for c in self.qos]
            if len(set(names)) != len(names):
                raise ValueError("qos: class names must differ")
            if sum(c.share for c in self.qos) > 1 + 1e-9:
                raise ValueError("qos: the classes' shares add up to more than 1")
        if self.key_rotation is not None and self.key_rotation < 60:
            raise ValueError("keyRotation: at least 1min (each rotation re-keys both ends)")
        return self

    @property
    def encrypted(self) -> bool:
        return self.encryption == "required"


class Transition(Strict):
    time: Timestamp
    from_state: State | None = Field(alias="from")
    to_state: State = Field(alias="to")
    reason: str


class Measured(Strict):
    latency: float | None = None      # seconds
    throughput: float | None = None   # bit/s
    loss: float | None = None         # fraction
    denied: int | None = None         # packets the stitch's rules dropped (flows its services do not allow)


class StitchStatus(Strict):
    state: State = State.PENDING
    path: list[str] = Field(default_factory=list)
    reserved_bandwidth: float = Field(default=0.0, alias="reservedBandwidth")
    measured: Measured = Field(default_factory=Measured)
    observed_generation: int = Field(default=0, alias="observedGeneration")
    message: str = ""
    history: list[Transition] = Field(default_factory=list)
    keys_rotated_at: Timestamp | None = Field(default=None, alias="keysRotatedAt")  # the tunnel's keys made then


HISTORY_LIMIT = 50


class Stitch(Resource):
    KIND = "Stitch"
    PLURAL = "stitches"
    kind: Literal["Stitch"] = "Stitch"
    spec: StitchSpec
    status: StitchStatus = Field(default_factory=StitchStatus)


def transition(status: StitchStatus, to: State, now: float, reason: str) -> StitchStatus:
    """New status moved to `to`, with the move recorded; rejects illegal moves."""
    if to == status.state:
        return status
    if to not in ALLOWED_TRANSITIONS[status.state]:
        raise IllegalTransition(f"{status.state.value} → {to.value} is not a legal stitch transition",
                                field="status.state")
    entry = Transition(time=now, from_state=status.state, to_state=to, reason=reason)
    history = (status.history + [entry])[-HISTORY_LIMIT:]
    return status.model_copy(update={"state": to, "history": history, "message": reason})


def initial_status(now: float, reason: str = "accepted") -> StitchStatus:
    return StitchStatus(history=[Transition(time=now, from_state=None, to_state=State.PENDING, reason=reason)],
                        message=reason)
