"""Intents: what the network must achieve, and proposals: how another tenant's consent is asked.

The shape follows what operators already meet:
- TM Forum TMF921 (Intent Management): an intent with a handling state (Received, Compliant, Degraded,
  Finalizing) and numbered intent reports; a feasibility-only question is a ProbeIntent (the API's
  `POST /v1/probeintents`, which changes nothing).
- 3GPP TS 28.312: expectations, each with an object, targets (name, condition, value) and contexts;
  fulfilment FULFILLED / NOT_FULFILLED with a not-fulfilled state.
- RFC 9315: the fulfilment loop (compile, enforce) and the assurance loop (assess, report, remediate).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import (
    Field, SerializationInfo, TypeAdapter, ValidationError, ValidationInfo, field_serializer, field_validator,
    model_validator,
)

from vnstitch.domain.resources import BandwidthBps, DurationSeconds, NAME_PATTERN, Resource, Strict, Timestamp
from vnstitch.domain.stitch import QosClass, ServicePort
from vnstitch.units import bandwidth_text, duration_text, parse_bandwidth, parse_duration

ID_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$"
TYPE_PATTERN = r"^[a-z][a-zA-Z0-9-]{0,40}$"
CONDITIONS = ("lessThan", "atMost", "greaterThan", "atLeast", "equals")
# Targets the built-in translators understand; a plugin may accept others (it validates them itself).
QUANTITY_TARGETS = {"latency": "duration", "bandwidth": "bandwidth", "loss": "fraction", "jitter": "duration"}
_TIME_WINDOW = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def window_minutes(text: str) -> tuple[int, int]:
    """'08:00-20:00' → (480, 1200), minutes after midnight; an end before the start wraps past midnight."""
    match = _TIME_WINDOW.match(text.strip())
    if not match:
        raise ValueError(f"'{text}' is not a time window HH:MM-HH:MM (e.g. 08:00-20:00)")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if end > 24 * 60 or start == end:
        raise ValueError(f"'{text}' is an empty or impossible time window")
    return start, end


def parse_days(text: str) -> tuple[int, ...]:
    """'mon-fri' or 'sat,sun' → weekday numbers (Monday 0)."""
    out: list[int] = []
    for part in text.lower().replace(" ", "").split(","):
        first, _, last = part.partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise ValueError(f"'{text}' is not a list of days (e.g. mon-fri or sat,sun)")
        a, b = DAYS.index(first), DAYS.index(last or first)
        out.extend(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return tuple(dict.fromkeys(out))


class ExpectationObject(Strict):
    """What the expectation is about: a group of workloads (a virtual network, 'tenant/name' or a name of
    the intent's tenant), or the networks whose labels match `selector` (none: the engine makes one)."""

    group: str | None = None
    selector: dict[str, str] | None = None

    @model_validator(mode="after")
    def _one(self) -> "ExpectationObject":
        if (self.group is None) == (self.selector is None):
            raise ValueError("group: name the group, or give a selector (one of the two)")
        return self


class ExpectationTarget(Strict):
    """One measurable target: latency lessThan 20ms, bandwidth atLeast 200Mbps (at a quantile), loss
    lessThan 0.001, encryption equals required."""

    name: str = Field(pattern=TYPE_PATTERN)
    condition: Literal["lessThan", "atMost", "greaterThan", "atLeast", "equals"]
    value: float | str | bool
    quantile: float | None = Field(default=None, gt=0.5, lt=1.0)  # bandwidth: the share of intervals it holds

    @field_validator("value")
    @classmethod
    def _value(cls, value: Any, info: ValidationInfo) -> Any:
        what = QUANTITY_TARGETS.get(info.data.get("name", ""))
        user = isinstance(info.context, dict) and bool(info.context.get("user_input"))
        if what == "duration":
            return parse_duration(value, require_unit=user)
        if what == "bandwidth":
            return parse_bandwidth(value, require_unit=user)
        if what == "fraction":
            if isinstance(value, str) and value.strip().endswith("%"):
                value = float(value.strip()[:-1]) / 100
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= float(value) <= 1:
                raise ValueError(f"'{value}' is not a fraction between 0 and 1 (or a percentage like 0.1%)")
            return float(value)
        if info.data.get("name") == "encryption" and value not in ("required", "none"):
            raise ValueError("encryption: must be 'required' or 'none'")
        return value

    @field_serializer("value")
    def _value_out(self, value: Any, info: SerializationInfo) -> Any:
        """With units where the dump asks for them (`get -o yaml` output applies again)."""
        what = QUANTITY_TARGETS.get(self.name)
        if isinstance(info.context, dict) and info.context.get("units") and isinstance(value, float):
            if what == "duration":
                return duration_text(value)
            if what == "bandwidth":
                return bandwidth_text(value)
        return value


class ExpectationContext(Strict):
    """When or where the expectation holds: timeWindow '08:00-20:00', days 'mon-fri', timeZone 'UTC'."""

    attribute: Literal["timeWindow", "days", "timeZone"]
    value: str

    @model_validator(mode="after")
    def _value(self) -> "ExpectationContext":
        if self.attribute == "timeWindow":
            window_minutes(self.value)
        elif self.attribute == "days":
            parse_days(self.value)
        else:
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

            try:
                ZoneInfo(self.value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"value: unknown time zone '{self.value}' (e.g. UTC, Europe/Berlin)") from None
        return self


class Expectation(Strict):
    """One thing the intent expects, handled by the translator registered for its `type` (isolation,
    reachability, qos, or a plugin's)."""

    id: str = Field(pattern=ID_PATTERN)
    type: str = Field(pattern=TYPE_PATTERN)
    object: ExpectationObject
    # reachability, qos: the service reached, 'tenant/network:port[/protocol]' or 'tenant/network/service'
    service: str | None = None
    targets: list[ExpectationTarget] = Field(default_factory=list)
    contexts: list[ExpectationContext] = Field(default_factory=list)
    classes: list[QosClass] | None = None                   # qos: ranked classes
    parameters: dict[str, str | float | int | bool] = Field(default_factory=dict)  # a plugin's own knobs

    def target(self, name: str) -> ExpectationTarget | None:
        return next((t for t in self.targets if t.name == name), None)

    def context(self, attribute: str) -> str | None:
        return next((c.value for c in self.contexts if c.attribute == attribute), None)


class Validity(Strict):
    start: Timestamp | None = None
    end: Timestamp | None = None

    @model_validator(mode="after")
    def _order(self) -> "Validity":
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise ValueError("end: the validity ends before it starts")
        return self


class IntentSpec(Strict):
    # The intent language (vnstitch.intent.language); when given, the expectations are compiled from it.
    text: str | None = Field(default=None, max_length=20_000)
    expectations: list[Expectation] = Field(default_factory=list, max_length=64)
    priority: int = Field(default=100, ge=0, le=1000)
    validity: Validity | None = None
    assurance_interval: DurationSeconds = Field(default=10.0, alias="assuranceInterval", ge=1.0, le=3600.0)

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data: Any, info: ValidationInfo) -> Any:
        """The text compiles into the expectations (and priority, validity unless given). Both given (as
        `get -o yaml` prints them): they must agree, so an edit of one alone is never silently ignored."""
        if not isinstance(data, dict) or not data.get("text"):
            return data
        from vnstitch.errors import InvalidInput
        from vnstitch.intent.language import parse_intent_text

        try:
            parsed = parse_intent_text(str(data["text"]))
        except InvalidInput as exc:
            raise ValueError(f"text: {exc.message}") from None
        if data.get("expectations"):
            adapter = TypeAdapter(list[Expectation])
            try:
                given = adapter.validate_python(data["expectations"], context=info.context)
            except ValidationError:
                return data  # the field's own validation reports what is wrong with them
            if given != adapter.validate_python(parsed["expectations"], context={"user_input": True}):
                raise ValueError("expectations: differ from what spec.text says; give the text alone (or the "
                                 "expectations alone) when you change one of them")
            return data
        return {**parsed, **{k: v for k, v in data.items() if k != "expectations"}}

    @model_validator(mode="after")
    def _expectations(self) -> "IntentSpec":
        if not self.expectations:
            raise ValueError("expectations: an intent needs at least one expectation (or a text)")
        ids = [e.id for e in self.expectations]
        for index, name in enumerate(ids):
            if ids.index(name) != index:
                raise ValueError(f"expectations[{index}].id: duplicate id '{name}'")
        return self


HANDLING_STATES = ("Received", "Compliant", "Degraded", "Finalizing", "Finalized")
NOT_FULFILLED_STATES = ("ACKNOWLEDGED", "COMPLIANT", "DEGRADED", "SUSPENDED", "TERMINATED", "FULFILMENTFAILED")


class Condition(Strict):
    type: Literal["Ready", "Reconciling", "Stalled"]
    status: Literal["True", "False", "Unknown"]
    reason: str = ""
    message: str = ""
    last_transition_time: Timestamp | None = Field(default=None, alias="lastTransitionTime")


class Fulfilment(Strict):
    """28.312 fulfilment of one expectation."""

    expectation: str
    status: Literal["FULFILLED", "NOT_FULFILLED"]
    not_fulfilled_state: Literal["ACKNOWLEDGED", "COMPLIANT", "DEGRADED", "SUSPENDED", "TERMINATED",
                                 "FULFILMENTFAILED"] | None = Field(default=None, alias="notFulfilledState")
    reason: str = ""
    measured: dict[str, float | str | int | None] = Field(default_factory=dict)


class Compiled(Strict):
    """What the intent was compiled into (and the engine owns)."""

    stitches: list[str] = Field(default_factory=list)       # 'tenant/name'
    networks: list[str] = Field(default_factory=list)       # networks it created
    policies: list[str] = Field(default_factory=list)       # 'tenant/network: allows X' / 'isolated'
    proposals: list[str] = Field(default_factory=list)      # 'tenant/name: Pending'
    rules: list[str] = Field(default_factory=list)          # service rules and QoS classes in force
    routes: list[str] = Field(default_factory=list)         # 'tenant/stitch: A→B→C', the paths its stitches take


class ExpectationReport(Strict):
    id: str
    verdict: Literal["FULFILLED", "NOT_FULFILLED"]
    reason: str = ""
    measured: dict[str, float | str | int | None] = Field(default_factory=dict)


class IntentReport(Strict):
    """One assessment (TMF921 IntentReport): numbered, with the time, the measured values, the verdict
    and what the engine did about it."""

    number: int
    time: Timestamp
    verdict: Literal["Received", "Compliant", "Degraded", "Finalizing"]
    expectations: list[ExpectationReport] = Field(default_factory=list)
    actions: list[str] = Field(default_factory=list)


REPORTS_KEPT = 20


class IntentStatus(Strict):
    handling_state: Literal["Received", "Compliant", "Degraded", "Finalizing", "Finalized"] = \
        Field(default="Received", alias="handlingState")
    observed_generation: int = Field(default=0, alias="observedGeneration")
    conditions: list[Condition] = Field(default_factory=list)
    fulfilment: list[Fulfilment] = Field(default_factory=list)
    compiled: Compiled = Field(default_factory=Compiled)
    reports: list[IntentReport] = Field(default_factory=list)   # the last REPORTS_KEPT
    report_count: int = Field(default=0, alias="reportCount")
    last_assessed: Timestamp | None = Field(default=None, alias="lastAssessed")
    message: str = ""


class Intent(Resource):
    KIND = "Intent"
    PLURAL = "intents"
    kind: Literal["Intent"] = "Intent"
    spec: IntentSpec
    status: IntentStatus = Field(default_factory=IntentStatus)


class ProposalSpec(Strict):
    """What another tenant is asked to let cross into one of its networks, why, and until when."""

    requester: str = Field(pattern=NAME_PATTERN)             # the asking tenant
    intent: str = Field(pattern=NAME_PATTERN)                # the asking intent
    expectation: str
    from_network: str = Field(alias="fromNetwork")           # 'tenant/name', the requester's group
    network: str = Field(pattern=NAME_PATTERN)               # the asked tenant's network
    services: list[ServicePort] = Field(default_factory=list)
    bandwidth: BandwidthBps = 0.0
    max_latency: DurationSeconds | None = Field(default=None, alias="maxLatency")
    reason: str = ""
    expires: Timestamp | None = None


class ProposalEvent(Strict):
    time: Timestamp
    state: str
    by: str = ""
    note: str = ""


class ProposalStatus(Strict):
    state: Literal["Pending", "Accepted", "Rejected", "Expired", "Withdrawn"] = "Pending"
    answered_by: str | None = Field(default=None, alias="answeredBy")
    answered_at: Timestamp | None = Field(default=None, alias="answeredAt")
    granted: str | None = None  # the allowStitchTo entry an acceptance added to the network's policy
    history: list[ProposalEvent] = Field(default_factory=list)


class Proposal(Resource):
    """Lives in the asked tenant's namespace (only it and admins see it); only the intent engine creates
    one, only the asked tenant answers it."""

    KIND = "Proposal"
    PLURAL = "proposals"
    kind: Literal["Proposal"] = "Proposal"
    spec: ProposalSpec
    status: ProposalStatus = Field(default_factory=ProposalStatus)


__all__ = ["Intent", "IntentSpec", "IntentStatus", "Expectation", "ExpectationObject", "ExpectationTarget",
           "ExpectationContext", "Proposal", "ProposalSpec", "ProposalStatus", "window_minutes", "parse_days"]
