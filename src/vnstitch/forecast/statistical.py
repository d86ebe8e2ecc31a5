"""Statistical baseline: damped-trend exponential smoothing (ETS(A,Ad,N)) per pair via statsmodels."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from .base import log_values
from .baselines import ResidualQuantileModel
from .series import TrafficSeries


class ETSForecaster(ResidualQuantileModel):
    """ETS(A,Ad,N) on log1p rates, one model per pair; parameters fitted by statsmodels' ETSModel.

    Prediction reruns the fitted recursion over the recent history (no refit), so it is fast at
    every rolling origin; intervals are the model's own multi-step error quantiles on the fit data.
    """

    name = "ets"

    def __init__(self, fit_steps: int = 2016, warmup_steps: int = 288, **kw):
        super().__init__(**kw)
        self.fit_steps, self.warmup_steps = int(fit_steps), int(warmup_steps)
        self.params = np.zeros((0, 3))  # per pair: smoothing_level, smoothing_trend, damping_trend

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "fit_steps": self.fit_steps, "warmup_steps": self.warmup_steps}

    @property
    def min_history_steps(self) -> int:
        return 2

    @property
    def context_steps(self) -> int:
        return self.warmup_steps

    def _fit_point(self, series: TrafficSeries) -> None:
        from statsmodels.tsa.exponential_smoothing.ets import ETSModel

        log_vals = log_values(series.values_mbps[-self.fit_steps:])
        observed = series.observed[-self.fit_steps:]
        params = np.tile([0.9, 0.0, 0.9], (series.n_pairs, 1))
        for p in range(series.n_pairs):
            y = log_vals[observed[:, p], p]
            if len(y) < 10 or np.ptp(y) < 1e-9:
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    res = ETSModel(y, error="add", trend="add", damped_trend=True).fit(disp=False)
                    params[p] = [res.smoothing_level, res.smoothing_trend, res.damping_trend]
                except (ValueError, np.linalg.LinAlgError):
                    pass
        self.params = params

    def _point_log(self, log_vals, observed, timestamps, horizon):
        alpha, beta, phi = self.params.T
        first = np.argmax(observed, axis=0)
        level = log_vals[first, np.arange(log_vals.shape[1])]
        trend = np.zeros_like(level)
        for t in range(log_vals.shape[0]):
            predicted = level + phi * trend
            err = np.where(observed[t] & (t > first), log_vals[t] - predicted, 0.0)
            started = t >= first
            level = np.where(started & (t > first), predicted + alpha * err, level)
            trend = np.where(started & (t > first), phi * trend + beta * err, trend)
        damp = np.cumsum(phi[:, None] ** np.arange(1, horizon + 1)[None, :], axis=1)
        return level[:, None] + damp * trend[:, None]

    def _state(self):
        params, arrays = super()._state()
        return params, {**arrays, "ets_params": self.params}

    def _restore(self, params, arrays):
        super()._restore(params, arrays)
        self.params = np.asarray(arrays["ets_params"], float)
