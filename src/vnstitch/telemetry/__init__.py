"""Telemetry in: samples of rate (and latency, loss) between virtual networks or VMs, one
`TelemetrySource` contract for the sources (driver counters, push, Prometheus), and the store
the forecaster reads them back from."""

from vnstitch.telemetry.base import (
    CAPABILITIES, Sample, TelemetryError, TelemetrySource, TelemetryUnavailable,
)
from vnstitch.telemetry.validate import MAX_FUTURE_S, MAX_RATE_BPS, validate_batch

__all__ = ["CAPABILITIES", "MAX_FUTURE_S", "MAX_RATE_BPS", "Sample", "TelemetryError", "TelemetrySource",
           "TelemetryUnavailable", "validate_batch"]
