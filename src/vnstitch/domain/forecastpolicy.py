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


class ForecastPolicy(Resource):
    KIND = "ForecastPolicy"
    PLURAL = "forecastpolicies"
    kind: Literal["ForecastPolicy"] = "ForecastPolicy"
    spec: ForecastPolicySpec = Field(default_factory=ForecastPolicySpec)
    status: ForecastPolicyStatus = Field(default_factory=ForecastPolicyStatus)


__all__ = ["ForecastPolicy", "ForecastPolicySpec", "ForecastPolicyStatus", "ModelStatus", "PairSelector"]
