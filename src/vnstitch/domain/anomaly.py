"""AnomalyPolicy (per tenant: which detector scores its pairs, and whether remediation acts on its own)
and Anomaly (one detected event, what was done about it; only the anomaly engine writes one)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from vnstitch.domain.resources import BandwidthBps, DurationSeconds, Resource, Strict, Timestamp

ANOMALY_KINDS = ("spike", "surge", "drop", "outage", "level_shift", "forbidden_flow", "fan_out", "link_degraded")
ACTION_TYPES = ("block", "rateLimit", "resize", "establish", "reroute")
ACTION_STATES = ("suggested", "applied", "failed", "undone", "kept", "declined")


class AnomalyPolicySpec(Strict):
    # Which networks' pairs are scored: their names, or (None) every network of the tenant.
    networks: list[str] | None = None
    detector: str = "residual"
    mode: Literal["auto", "suggest", "off"] = "suggest"
    interval: DurationSeconds = Field(default=300.0, ge=1.0, le=86_400.0)
    min_history: int = Field(default=60, alias="minHistory", ge=2)      # intervals before the detector fits
    history: int = Field(default=288, ge=2, le=8_640)                   # intervals it fits on
    end_after: int = Field(default=2, alias="endAfter", ge=1)           # quiet intervals that end an anomaly
    # Pairs whose history never reaches this (90th percentile) are too small to score (probes, replies).
    min_rate: BandwidthBps = Field(default=1e6, alias="minRate", ge=0)
    # A pair no stitch joins, carrying more than this, is a forbidden flow (and so are denied packets).
    forbidden_rate: BandwidthBps = Field(default=1e6, alias="forbiddenRate", ge=0)
    denied_packets: int = Field(default=100, alias="deniedPackets", ge=1)  # per interval, on one stitch
    forbidden_action: Literal["block", "rateLimit"] = Field(default="block", alias="forbiddenAction")
    rate_limit: BandwidthBps = Field(default=1e6, alias="rateLimit", gt=0)  # what rateLimit lets through
    fan_out: int = Field(default=4, alias="fanOut", ge=2)               # new destinations of one member at once
    # A surge gets capacity when the pair offers more than this fraction of its stitches' bandwidth.
    congestion_threshold: float = Field(default=0.8, alias="congestionThreshold", gt=0, le=1.0)
    headroom: float = Field(default=1.25, ge=1.0, le=10.0)            # capacity given: observed × headroom
    max_loss: float = Field(default=0.05, alias="maxLoss", gt=0, le=1.0)  # a stitch's link degrades above
    latency_factor: float = Field(default=3.0, alias="latencyFactor", gt=1.0)  # … or above × its path's latency
    parameters: dict[str, Any] = Field(default_factory=dict)           # the detector's own keyword arguments

    @field_validator("detector")
    @classmethod
    def _known_detector(cls, value: str) -> str:
        from vnstitch.anomaly.registry import available_detectors

        if value not in available_detectors():
            raise ValueError(f"unknown detector '{value}' (valid: {', '.join(available_detectors())})")
        return value


class AnomalyPolicyStatus(Strict):
    last_end: Timestamp | None = Field(default=None, alias="lastEnd")   # the last interval scored ended then
    ready: bool = False
    message: str = ""               # "not ready: …" while history is short; the detector's reason
    pairs: int = 0
    open: int = 0                   # anomalies open now
    denied: dict[str, int] = Field(default_factory=dict)   # each stitch's denied packets at lastEnd
    observed_generation: int = Field(default=0, alias="observedGeneration")


class AnomalyPolicy(Resource):
    KIND = "AnomalyPolicy"
    PLURAL = "anomalypolicies"
    kind: Literal["AnomalyPolicy"] = "AnomalyPolicy"
    spec: AnomalyPolicySpec = Field(default_factory=AnomalyPolicySpec)
    status: AnomalyPolicyStatus = Field(default_factory=AnomalyPolicyStatus)


class AnomalyAction(Strict):
    """One remediation: what, on what, and where it stands (each step stamped)."""

    type: Literal["block", "rateLimit", "resize", "establish", "reroute"]
    target: str                        # a stitch 'tenant/name', or the filter's 'src>dst'
    state: Literal["suggested", "applied", "failed", "undone", "kept", "declined"] = "suggested"
    detail: dict[str, Any] = Field(default_factory=dict)   # rate, previous bandwidth, addresses, node
    reason: str = ""
    suggested_at: Timestamp | None = Field(default=None, alias="suggestedAt")
    applied_at: Timestamp | None = Field(default=None, alias="appliedAt")
    undone_at: Timestamp | None = Field(default=None, alias="undoneAt")
    message: str = ""


class AnomalySpec(Strict):
    """What was detected (written by the engine) and the operator's two answers (approve, keep)."""

    policy: str
    detector: str
    kind: Literal["spike", "surge", "drop", "outage", "level_shift", "forbidden_flow", "fan_out", "link_degraded"]
    pairs: list[str] = Field(default_factory=list)       # 'src>dst', most responsible first
    links: list[str] = Field(default_factory=list)       # substrate links of the pairs' stitches
    start: Timestamp
    score: float = 0.0
    evidence: dict[str, Any] = Field(default_factory=dict)
    approved: bool = False     # suggest mode: an operator approved the suggested actions
    keep: bool = False         # an operator keeps the actions after the anomaly ends


class AnomalyStatus(Strict):
    state: Literal["Open", "Ended", "Kept"] = "Open"
    end: Timestamp | None = None
    last_seen: Timestamp | None = Field(default=None, alias="lastSeen")   # the last interval it was seen in
    intervals: int = 1                                                      # intervals it was seen in
    detected_at: Timestamp | None = Field(default=None, alias="detectedAt")  # wall time the engine opened it
    actions: list[AnomalyAction] = Field(default_factory=list)
    message: str = ""


class Anomaly(Resource):
    """Lives in the tenant's namespace; only the anomaly engine creates one, an operator approves or keeps."""

    KIND = "Anomaly"
    PLURAL = "anomalies"
    kind: Literal["Anomaly"] = "Anomaly"
    spec: AnomalySpec
    status: AnomalyStatus = Field(default_factory=AnomalyStatus)


__all__ = ["Anomaly", "AnomalyAction", "AnomalyPolicy", "AnomalyPolicySpec", "AnomalyPolicyStatus", "AnomalySpec",
           "AnomalyStatus", "ANOMALY_KINDS", "ACTION_TYPES", "ACTION_STATES"]
