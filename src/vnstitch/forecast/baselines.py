"""Baselines: last value and seasonal naive, with intervals from their own past errors."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from .base import Forecaster, last_observed, log_values
from .errors import ForecastInputError
from .series import TrafficSeries

_PERIOD_SECONDS = {"day": 86400, "week": 7 * 86400}


class ResidualQuantileModel(Forecaster):
    """A point model in log1p space whose quantiles are empirical error quantiles per pair and step."""

    def __init__(self, quantile_levels=None, max_horizon: int = 12, max_fit_origins: int = 800, **kw):
        super().__init__(**({"quantile_levels": quantile_levels} if quantile_levels else {}), **kw)
        if int(max_horizon) < 1:
            raise ForecastInputError("max_horizon must be >= 1")
        self.max_horizon = int(max_horizon)
        self.max_fit_origins = int(max_fit_origins)
        self.residual_quantiles = np.zeros((0, 0, 0))  # (steps, levels, pairs), log1p space

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "max_horizon": self.max_horizon, "max_fit_origins": self.max_fit_origins}

    def _point_log(self, log_vals: np.ndarray, observed: np.ndarray, timestamps: np.ndarray, horizon: int) -> np.ndarray:
        """Point forecast in log1p space, (pairs, horizon)."""
        raise NotImplementedError

    def _fit_point(self, series: TrafficSeries) -> None:
        """Fit the point model's parameters (none for naive models)."""

    def _fit(self, series: TrafficSeries) -> None:
        self._fit_point(series)
        self.residual_quantiles = self._residual_quantiles(series)

    def _residual_quantiles(self, series: TrafficSeries) -> np.ndarray:
        """Quantiles of (actual − point) in log1p space over origins spread through the fit data."""
        log_vals = log_values(series.values_mbps)
        first = self.min_history_steps - 1
        last = series.n_steps - 1 - self.max_horizon
        if last < first:
            last = series.n_steps - 2
        origins = np.unique(np.linspace(first, last, min(self.max_fit_origins, last - first + 1)).astype(int))
        residuals = np.full((len(origins), self.max_horizon, series.n_pairs), np.nan)
        for i, origin in enumerate(origins):
            lo = max(0, origin + 1 - self.context_steps)
            point = self._point_log(log_vals[lo:origin + 1], series.observed[lo:origin + 1],
                                    series.timestamps[lo:origin + 1], self.max_horizon)
            stop = min(series.n_steps, origin + 1 + self.max_horizon)
            actual = log_vals[origin + 1:stop]
            # only forecasts predict() would make: a context without an observed value (a gap) has a point
            # of 0, and its "error" (the whole rate) would widen every pair's band by orders of magnitude
            ok = series.observed[origin + 1:stop] & series.observed[lo:origin + 1].any(axis=0)
            residuals[i, :stop - origin - 1] = np.where(ok, actual - point.T[:stop - origin - 1], np.nan)
        flat = residuals.transpose(1, 0, 2).reshape(self.max_horizon, -1)
        pooled = np.nan_to_num(nan_quantiles(flat, self.quantile_levels, axis=1).T)  # (steps, levels)
        counts = np.isfinite(residuals).sum(axis=0)  # (steps, pairs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns fall back to pooled below
            per_pair = nan_quantiles(residuals, self.quantile_levels, axis=0)  # (levels, steps, pairs)
        per_pair = per_pair.transpose(1, 0, 2)
        few = (counts < 30)[:, None, :]
        return np.where(few | ~np.isfinite(per_pair), pooled[:, :, None], per_pair)

    def _quantiles_log(self, point: np.ndarray, horizon: int) -> np.ndarray:
        """(levels, pairs, horizon) quantiles; steps past max_horizon grow like sqrt(step)."""
        rq = self.residual_quantiles
        steps = np.arange(horizon)
        base = rq[np.minimum(steps, self.max_horizon - 1)]  # (horizon, levels, pairs)
        grow = np.sqrt(np.maximum(steps + 1, self.max_horizon) / self.max_horizon)
        return point[None] + (base * grow[:, None, None]).transpose(1, 2, 0)

    def _predict_arrays(self, values_mbps, observed, timestamps, horizon):
        point = self._point_log(log_values(values_mbps), observed, timestamps, horizon)
        return np.expm1(point), np.expm1(self._quantiles_log(point, horizon))

    def _state(self):
        return {}, {"residual_quantiles": self.residual_quantiles}

    def _restore(self, params, arrays):
        self.residual_quantiles = np.asarray(arrays["residual_quantiles"], float)


class LastValueForecaster(ResidualQuantileModel):
    """Persistence: every future step equals the last observed value."""

    name = "last_value"

    def _point_log(self, log_vals, observed, timestamps, horizon):
        return np.repeat(last_observed(log_vals, observed)[:, None], horizon, axis=1)


class SeasonalNaiveForecaster(ResidualQuantileModel):
    """Each future step equals the value one period (day or week) earlier."""

    def __init__(self, period: str = "day", **kw):
        if period not in _PERIOD_SECONDS:
            raise ForecastInputError(f"period '{period}' is not one of {sorted(_PERIOD_SECONDS)}")
        super().__init__(**kw)
        self.period = period
        self.name = f"seasonal_naive_{period}"

    def get_config(self):
        return {**super().get_config(), "period": self.period}

    @property
    def period_steps(self) -> int:
        interval = self.interval_seconds or 300.0
        return max(1, int(round(_PERIOD_SECONDS[self.period] / interval)))

    @property
    def min_history_steps(self) -> int:
        return self.period_steps

    def _point_log(self, log_vals, observed, timestamps, horizon):
        n = log_vals.shape[0]
        steps = np.arange(1, horizon + 1)
        back = n - 1 + steps - self.period_steps * np.ceil(steps / self.period_steps).astype(int)
        fallback = last_observed(log_vals, observed)
        seasonal = log_vals[back].T  # (pairs, horizon)
        return np.where(observed[back].T, seasonal, fallback[:, None])


def nan_quantiles(values: np.ndarray, levels, axis: int) -> np.ndarray:
    """np.nanquantile (linear interpolation) over one axis, vectorised: numpy's own loops over every
    other index in Python, which takes seconds for thousands of pairs. Levels come first in the result."""
    data = np.moveaxis(np.asarray(values, float), axis, 0)
    ordered = np.sort(data, axis=0)                       # NaN sort last
    count = np.isfinite(data).sum(axis=0)
    out = np.full((len(levels),) + data.shape[1:], np.nan)
    valid = count > 0
    for i, q in enumerate(levels):
        position = q * np.maximum(count - 1, 0)
        lo = np.floor(position).astype(int)
        hi = np.minimum(lo + 1, np.maximum(count - 1, 0))
        low = np.take_along_axis(ordered, lo[None], axis=0)[0]
        high = np.take_along_axis(ordered, hi[None], axis=0)[0]
        out[i] = np.where(valid, low + (high - low) * (position - lo), np.nan)
    return out
