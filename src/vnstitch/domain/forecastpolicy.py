"""ForecastPolicy: which pairs of a tenant's networks the proactive loop forecasts and stitches, with
which model, horizon, quantile and control interval, and whether its decisions apply on their own."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from vnstitch.domain.resources import DurationSeconds, Resource, Strict, Timestamp


class PairSelector(Strict):
    """One directed pair: two networks of the tenant, or VMs ('network/member')."""

    from_: str = Field(alias="from")
    to: str


class Refinement(Strict):
    """How the loop measures its forecast against what happened, corrects at once and retrains."""

    adjust: bool = True              # resize a pair's stitch from its observed rate when the forecast misses
    retrain: bool = True             # retrain when the discrepancy persists
    correct: bool = True             # scale a pair's forecast by its recent actual / forecast when off by > 10%
    correction_window: int = Field(default=6, alias="correctionWindow", ge=2, le=288)  # intervals it looks at
    window: int = Field(default=24, ge=2, le=288)       # intervals the rolling figures cover
    min_samples: int = Field(default=6, alias="minSamples", ge=1)   # scored intervals before a figure counts
    margin: float = Field(default=0.2, ge=0.0, le=5.0)  # observed rate × (1 + margin) when adjusting
    coverage_threshold: float = Field(default=0.7, alias="coverageThreshold", gt=0, lt=1)  # per pair, 90% band
    min_coverage: float = Field(default=0.8, alias="minCoverage", gt=0, lt=1)  # overall 90% coverage bound
    max_nmae: float = Field(default=0.35, alias="maxNmae", gt=0)                # overall 1-step NMAE bound
    retrain_after: int = Field(default=6, alias="retrainAfter", ge=1)  # intervals outside the bounds
    held_back: int = Field(default=24, alias="heldBack", ge=2)  # intervals the challenger is judged on
    # online calibration: the published 80/90% bands widen or narrow after each interval so that their
    # misses stay at 20%/10% under drift; the gains are in band widths per unit of miss rate. The sizing
    # quantile is left to the model, the level correction and `adjust` (moving it with the two-sided band
    # cost overloads in the replay: docs/BENCHMARKS.md)
    calibrate: bool = True
    calibration_gain: float = Field(default=0.5, alias="calibrationGain", ge=0.0, le=10.0)      # all pairs
    pair_calibration_gain: float = Field(default=0.02, alias="pairCalibrationGain", ge=0.0, le=1.0)  # each


class ForecastPolicySpec(Strict):
    # Which networks: their names, or a label selector, or (neither) every network of the tenant.
    networks: list[str] | None = None
    selector: dict[str, str] | None = None
    pairs: list[PairSelector] | None = None      # None: every ordered pair of the selected networks
    model: str = "last_value"
    horizon: int = Field(default=2, ge=1, le=288)         # intervals ahead
    quantile: float = Field(default=0.9, gt=0.5, lt=1.0)  # sizes the stitches
    interval: DurationSeconds = Field(default=300.0, ge=1.0, le=86_400.0)
    training_window: DurationSeconds = Field(default=7 * 86_400.0, alias="trainingWindow", gt=0)
    min_history: int = Field(default=12, alias="minHistory", ge=2)    # intervals before training
    retrain_every: DurationSeconds | None = Field(default=None, alias="retrainEvery", gt=0)
    mode: Literal["auto", "suggest", "off"] = "auto"
    congestion_threshold: float = Field(default=0.8, alias="congestionThreshold", gt=0, le=1.0)
    terminate_after: int = Field(default=3, alias="terminateAfter", ge=1)
    priority: int = Field(default=10, ge=0, le=1000)
    # A pair's stitches stay within factor × its default route's latency + slack (None: no bound).
    latency_factor: float | None = Field(default=None, alias="latencyFactor", ge=1.0)
    latency_slack: DurationSeconds = Field(default=0.0, alias="latencySlack", ge=0)
    refinement: Refinement = Field(default_factory=Refinement)

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        from vnstitch.forecast.registry import available_forecasters

        if value not in available_forecasters():
            raise ValueError(f"unknown model '{value}' (valid: {', '.join(available_forecasters())})")
        return value

    @model_validator(mode="after")
    def _one_way_of_choosing(self) -> "ForecastPolicySpec":
        if self.networks is not None and self.selector is not None:
            raise ValueError("networks: name the networks or give a selector, not both")
        return self


class ModelStatus(Strict):
    name: str = ""
    state: Literal["baseline", "training", "trained", "failed", "waiting"] = "waiting"
    version: int = 0
    checksum: str = ""               # sha256 of the artifact
    artifact: str = ""               # where it lies
    trained_at: Timestamp | None = Field(default=None, alias="trainedAt")
    trained_on: int = Field(default=0, alias="trainedOn")     # intervals of history
    failed_at: Timestamp | None = Field(default=None, alias="failedAt")
    requested_at: Timestamp | None = Field(default=None, alias="requestedAt")  # training asked for (interval end)
    message: str = ""


class PairDiscrepancy(Strict):
    """Rolling figures of one pair (what `forecast status` and the status' worst pairs show)."""

    from_: str = Field(alias="from")
    to: str
    samples: int = 0
    nmae: float | None = None
    bias: float | None = None
    coverage80: float | None = None
    coverage90: float | None = None
    model_coverage90: float | None = Field(default=None, alias="modelCoverage90")  # of the model's own band


class Discrepancy(Strict):
    """The forecast against what happened, over the last `window` intervals (all pairs together)."""

    window: int = 0
    intervals: int = 0               # scored intervals in the window
    samples: int = 0                 # scored (pair, interval)s
    nmae: float | None = None        # Σ|forecast − actual| / Σ actual, one step ahead
    bias: float | None = None        # Σ(forecast − actual) / Σ actual (> 0: over-forecast)
    coverage80: float | None = None  # share of actuals inside the 80% interval
    coverage90: float | None = None
    # the model's own 90% band (before the level correction, stand-ins and calibration): the retrain bound
    model_coverage90: float | None = Field(default=None, alias="modelCoverage90")
    breach_intervals: int = Field(default=0, alias="breachIntervals")  # in a row outside the bounds
    adjusted: list[str] = Field(default_factory=list)  # pairs resized from the observed rate this interval
    corrected: dict[str, float] = Field(default_factory=dict)  # pair → the factor its forecast was scaled by
    # pairs the model forecasts nothing for, or with a band of no width, while they carry traffic: forecast
    # (or banded) from their recent actuals
    unseen: list[str] = Field(default_factory=list)
    # online calibration: {"global": {"80": θ, "90": θ}}, the offset (in band widths) every pair's band has
    # moved by; each pair's own offset is in the interval's predicted graph
    calibration: dict[str, dict[str, float]] = Field(default_factory=dict)
    worst: list[PairDiscrepancy] = Field(default_factory=list)


class ModelVersion(Strict):
    version: int
    name: str
    artifact: str
    checksum: str
    trained_at: Timestamp | None = Field(default=None, alias="trainedAt")
    trained_on: int = Field(default=0, alias="trainedOn")


class RetrainRecord(Strict):
    """One retrain: why, on what, the champion and challenger on the held-back window, the outcome."""

    version: int
    name: str = ""
    reason: str = ""
    requested_at: Timestamp | None = Field(default=None, alias="requestedAt")
    window: dict[str, float] = Field(default_factory=dict)   # start, end (unix s), intervals, heldBack
    before: dict[str, float | None] = Field(default_factory=dict)  # champion: nmae, coverage80, coverage90
    after: dict[str, float | None] = Field(default_factory=dict)   # challenger
    decision: Literal["promoted", "kept", "failed", "rolled back"] = "failed"
    message: str = ""


class ForecastPolicyStatus(Strict):
    model: ModelStatus = Field(default_factory=ModelStatus)
    last_step: int | None = Field(default=None, alias="lastStep")   # the last control interval run
    last_end: Timestamp | None = Field(default=None, alias="lastEnd")    # when it ended (unix s): what is compared
    last_run: Timestamp | None = Field(default=None, alias="lastRun")
    safe_intervals: dict[str, int] = Field(default_factory=dict, alias="safeIntervals")  # "a>b" → n
    pairs: int = 0
    stitches: int = 0
    telemetry: str = ""             # "ok" or why it degrades
    message: str = ""
    observed_generation: int = Field(default=0, alias="observedGeneration")
    discrepancy: Discrepancy = Field(default_factory=Discrepancy)
    retrains: list[RetrainRecord] = Field(default_factory=list)   # the latest last (bounded)
    versions: list[ModelVersion] = Field(default_factory=list)    # promoted models kept for rollback
    handled: dict[str, str] = Field(default_factory=dict)  # request annotation → the value acted on


class ForecastPolicy(Resource):
    KIND = "ForecastPolicy"
    PLURAL = "forecastpolicies"
    kind: Literal["ForecastPolicy"] = "ForecastPolicy"
    spec: ForecastPolicySpec = Field(default_factory=ForecastPolicySpec)
    status: ForecastPolicyStatus = Field(default_factory=ForecastPolicyStatus)


__all__ = ["Discrepancy", "ForecastPolicy", "ForecastPolicySpec", "ForecastPolicyStatus", "ModelStatus", "ModelVersion",
           "PairDiscrepancy", "PairSelector", "Refinement", "RetrainRecord"]
