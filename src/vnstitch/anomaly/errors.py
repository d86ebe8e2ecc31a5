"""Errors of the anomaly package: part of the project's error tree (InvalidInput, ValueError)."""

from __future__ import annotations

from vnstitch.forecast.errors import ForecastInputError, HistoryTooShortError


class AnomalyInputError(ForecastInputError):
    """Bad data or parameters given to a detector or the injector; the message names the problem."""


class DetectorHistoryTooShortError(AnomalyInputError, HistoryTooShortError):
    """fit() was given fewer steps than the detector needs."""


class UnknownDetectorError(AnomalyInputError):
    """A registry name that is not registered; the message lists the valid ones."""
