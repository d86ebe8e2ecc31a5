"""The Forecaster contract shared by every model: fit, predict, save, load, capability flags."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from .errors import ForecastInputError, HistoryTooShortError, NotFittedError, UnknownPairError
from .features import EventCalendar
from .result import QUANTILE_LEVELS, Forecast, tidy_quantiles
from .series import Pair, TrafficSeries, pair_label

FORMAT_VERSION = 1


class Forecaster(ABC):
    """Base of all models; subclasses implement _fit, _predict_arrays, _state and _restore."""

    name: ClassVar[str] = ""
    supports_probabilistic: ClassVar[bool] = True
    supports_exogenous: ClassVar[bool] = False
    supports_calendar: ClassVar[bool] = False
    supports_missing: ClassVar[bool] = True
    supports_multiple_series: ClassVar[bool] = True
    supports_variable_length: ClassVar[bool] = False
    supports_save: ClassVar[bool] = True

    def __init__(self, quantile_levels: Sequence[float] = QUANTILE_LEVELS):
        levels = tuple(sorted(float(q) for q in quantile_levels))
        if not levels or levels[0] <= 0 or levels[-1] >= 1:
            raise ForecastInputError(f"quantile levels must lie in (0, 1); got {quantile_levels}")
        self.quantile_levels = levels
        self.pairs: tuple[Pair, ...] = ()
        self.interval_seconds: float = 0.0
        self.calendar: EventCalendar | None = None
        self.fitted = False

    # ----------------------------------------------------------------- contract
    @property
    def min_history_steps(self) -> int:
        """Fewest history steps predict accepts."""
        return 1

    @property
    def context_steps(self) -> int:
        """How many of the most recent history steps predict actually reads."""
        return self.min_history_steps

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments (JSON-ready) that rebuild an unfitted copy."""
        return {"quantile_levels": list(self.quantile_levels)}

    @abstractmethod
    def _fit(self, series: TrafficSeries) -> None:
        """Fit on a validated series."""

    @abstractmethod
    def _predict_arrays(self, values_mbps: np.ndarray, observed: np.ndarray, timestamps: np.ndarray,
                        horizon: int) -> tuple[np.ndarray, np.ndarray]:
        """History tail (steps, pairs) → mean (pairs, horizon), quantiles (levels, pairs, horizon)."""

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Fitted parameters: a JSON part and named arrays."""
        return {}, {}

    def _restore(self, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        """Inverse of _state."""

    # ----------------------------------------------------------------- public API
    def fit(self, data, timestamps=None, pairs: Sequence[Pair] | None = None, observed=None,
            calendar: EventCalendar | None = None, interval_seconds: float | None = None) -> "Forecaster":
        """Fit on a TrafficSeries or a (steps, pairs) array in Mbit/s with datetime64 timestamps."""
        series = data if isinstance(data, TrafficSeries) else TrafficSeries.from_array(
            data, timestamps, pairs, observed, interval_seconds)
        self.interval_seconds = series.interval_seconds   # first: periods in steps follow the data's interval
        if series.n_steps < self.min_history_steps + 1:
            raise HistoryTooShortError(
                f"{type(self).__name__} needs more than {self.min_history_steps} steps to fit; got {series.n_steps}")
        self.pairs = series.pairs
        self.calendar = calendar
        self._fit(series)
        self.fitted = True
        return self

    def predict(self, history, horizon: int, timestamps=None, observed=None,
                pairs: Sequence[Pair] | None = None) -> Forecast:
        """Forecast `horizon` steps after the end of `history` (rolling origin, no refit)."""
        series = self.as_history(history, timestamps, observed, pairs)
        horizon = _check_horizon(horizon)
        tail = series.slice(max(0, series.n_steps - self.context_steps))
        mean, qv = self._predict_arrays(tail.values_mbps, tail.observed, tail.timestamps, horizon)
        step = np.timedelta64(int(round(self.interval_seconds)), "s")
        future = series.timestamps[-1] + step * np.arange(1, horizon + 1)
        return Forecast.build(self.pairs, future, mean, self.quantile_levels, qv, self.name)

    def predict_origins(self, series: TrafficSeries, origins: Sequence[int], horizon: int,
                        progress=None) -> tuple[np.ndarray, np.ndarray]:
        """Backtest helper: for each origin index (last history step), mean (N, P, H) and quantiles (N, Q, P, H)."""
        self._check_fitted()
        series = self._align(series)
        means, quants = [], []
        for origin in origins:
            lo = max(0, origin + 1 - self.context_steps)
            mean, qv = self._predict_arrays(series.values_mbps[lo:origin + 1], series.observed[lo:origin + 1],
                                            series.timestamps[lo:origin + 1], horizon)
            means.append(mean)
            quants.append(qv)
            if progress is not None:
                progress.update(1)
        return np.maximum(np.stack(means), 0.0), tidy_quantiles(np.stack(quants), axis=1)

    def as_history(self, history, timestamps=None, observed=None, pairs=None) -> TrafficSeries:
        """Validate a history (series or array) against the fitted pairs and window."""
        self._check_fitted()
        if isinstance(history, TrafficSeries):
            series = history
        else:
            arr = np.asarray(history, dtype=float)
            if arr.ndim != 2 or (pairs is None and arr.shape[1] != len(self.pairs)):
                raise ForecastInputError(
                    f"history must have shape (steps, {len(self.pairs)}) for the fitted pairs; got {arr.shape}")
            if timestamps is None and self.supports_exogenous:
                raise ForecastInputError(f"{self.name} uses time features: pass the history's timestamps")
            series = TrafficSeries.from_array(arr, timestamps, pairs or self.pairs, observed, self.interval_seconds)
        series = self._align(series)
        if series.n_steps < self.min_history_steps:
            raise HistoryTooShortError(
                f"history has {series.n_steps} steps; {self.name} needs at least {self.min_history_steps}")
        tail = series.observed[-self.context_steps:]
        empty = np.flatnonzero(~tail.any(axis=0))
        if empty.size:
            raise HistoryTooShortError(
                f"no observed value in the last {self.context_steps} steps for pair {pair_label(self.pairs[empty[0]])}")
        return series

    def save(self, path) -> Path:
        """Write the fitted model to one .npz file (JSON metadata plus arrays; no pickle)."""
        self._check_fitted()
        meta, arrays = self.to_state()
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(path.suffix + ".npz") if path.suffix else path.with_suffix(".npz")
        np.savez_compressed(path, __meta__=np.array(json.dumps(meta)), **arrays)
        return path

    @classmethod
    def load(cls, path) -> "Forecaster":
        """Read a model written by save; the class comes from the file's metadata."""
        from .registry import load_forecaster

        return load_forecaster(path)

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Metadata (class, config, pairs, fitted params) and arrays for save."""
        params, arrays = self._state()
        meta = {
            "format_version": FORMAT_VERSION,
            "class": f"{type(self).__module__}:{type(self).__qualname__}",
            "name": self.name,
            "config": self.get_config(),
            "pairs": [list(p) for p in self.pairs],
            "interval_seconds": self.interval_seconds,
            "calendar": self.calendar.to_dicts() if self.calendar else None,
            "params": params,
        }
        return meta, arrays

    def from_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> "Forecaster":
        """Restore the fitted state written by to_state into this (fresh) instance."""
        self.pairs = tuple((str(a), str(b)) for a, b in meta["pairs"])
        self.interval_seconds = float(meta["interval_seconds"])
        self.calendar = EventCalendar.from_dicts(meta["calendar"]) if meta.get("calendar") else None
        self._restore(meta["params"], arrays)
        self.fitted = True
        return self

    def capabilities(self) -> dict[str, bool]:
        """All supports_* flags by name."""
        return {k: bool(getattr(self, k)) for k in dir(type(self)) if k.startswith("supports_")}

    def __repr__(self) -> str:
        state = "fitted" if self.fitted else "unfitted"
        return f"{type(self).__name__}({self.name}, {state}, pairs={len(self.pairs)})"

    # ----------------------------------------------------------------- helpers
    def _check_fitted(self) -> None:
        if not self.fitted:
            raise NotFittedError(f"{self.name}: call fit() or load() before predict/save")

    def _align(self, series: TrafficSeries) -> TrafficSeries:
        if series.pairs == self.pairs:
            return series
        extra = [p for p in series.pairs if p not in set(self.pairs)]
        if extra:
            raise UnknownPairError(f"pair {pair_label(extra[0])} was not in the data the model was fitted on")
        missing = [p for p in self.pairs if p not in set(series.pairs)]
        if missing:
            raise UnknownPairError(f"history lacks pair {pair_label(missing[0])} the model was fitted on")
        return series.select(self.pairs)


def _check_horizon(horizon) -> int:
    if isinstance(horizon, bool) or int(horizon) != horizon or int(horizon) < 1:
        raise ForecastInputError(f"horizon must be a positive whole number of steps; got {horizon!r}")
    return int(horizon)


def log_values(values_mbps: np.ndarray) -> np.ndarray:
    """log1p transform used by every model (rates are heavy-tailed and multiplicative)."""
    return np.log1p(np.maximum(values_mbps, 0.0))


def last_observed(values: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Per column, the most recent observed value (0 if none)."""
    idx = observed.shape[0] - 1 - np.argmax(observed[::-1], axis=0)
    out = values[idx, np.arange(values.shape[1])]
    return np.where(observed.any(axis=0), out, 0.0)
