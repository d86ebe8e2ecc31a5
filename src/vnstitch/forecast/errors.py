"""Errors of the forecasting package: part of the project's error tree, and ValueErrors."""

from __future__ import annotations

from vnstitch.errors import InvalidInput


class ForecastInputError(InvalidInput, ValueError):
    """Bad data given to a loader or a forecaster; the message names the problem."""


class UnknownPairError(ForecastInputError):
    """A (source, destination) pair the model was not fitted on."""


class HistoryTooShortError(ForecastInputError):
    """Fewer observed history steps than the model needs."""


class UnknownForecasterError(ForecastInputError):
    """A registry name that is not registered; the message lists the valid ones."""


class NotFittedError(RuntimeError):
    """predict/save called before fit."""

    code = "not_fitted"
