"""Statistical models per pair via statsmodels: damped-trend exponential smoothing (ETS(A,Ad,N)) and
ARIMA(p,1,q), both on log1p rates, fitted once and run as recursions at each rolling origin."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from .base import log_values
from .errors import ForecastInputError
from .baselines import ResidualQuantileModel
from .series import TrafficSeries


DAY_S, WEEK_S = 86400.0, 7 * 86400.0


class _PerPairStatistical(ResidualQuantileModel):
    """Fit window and warm-up in steps: given, or a week and a day of the data's own interval."""

    def __init__(self, fit_steps: int | None = None, warmup_steps: int | None = None, **kw):
        super().__init__(**kw)
        for name, value in (("fit_steps", fit_steps), ("warmup_steps", warmup_steps)):
            if value is not None and int(value) < 2:
                raise ForecastInputError(f"{name} must be >= 2 (or left out: a week / a day of the data); got {value}")
        self._fit_steps = None if fit_steps is None else int(fit_steps)
        self._warmup_steps = None if warmup_steps is None else int(warmup_steps)

    def _steps(self, seconds: float) -> int:
        return max(12, int(round(seconds / (self.interval_seconds or 300.0))))

    @property
    def fit_steps(self) -> int:
        return self._fit_steps if self._fit_steps is not None else self._steps(WEEK_S)

    @property
    def warmup_steps(self) -> int:
        return self._warmup_steps if self._warmup_steps is not None else self._steps(DAY_S)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "fit_steps": self._fit_steps, "warmup_steps": self._warmup_steps}

    @property
    def min_history_steps(self) -> int:
        return 2

    @property
    def context_steps(self) -> int:
        return self.warmup_steps


class ETSForecaster(_PerPairStatistical):
    """ETS(A,Ad,N) on log1p rates, one model per pair; parameters fitted by statsmodels' ETSModel.

    Prediction reruns the fitted recursion over the recent history (no refit), so it is fast at
    every rolling origin; intervals are the model's own multi-step error quantiles on the fit data.
    """

    name = "ets"

    def __init__(self, **kw):
        super().__init__(**kw)
        self.params = np.zeros((0, 3))  # per pair: smoothing_level, smoothing_trend, damping_trend

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


class ARIMAForecaster(_PerPairStatistical):
    """ARIMA(p,1,q) without a constant on log1p rates, one model per pair; coefficients fitted by
    statsmodels' ARIMA on the fit window: exact maximum likelihood by the innovations algorithm (the same
    estimate as the state-space fit, about 3× faster), or `method: hannan_rissanen` (regression, ~10× faster
    again, approximate).

    Prediction runs the ARMA recursion of the differenced series over the recent history with those
    coefficients (innovations from the one-step errors, no refit), so it is fast at every rolling origin;
    a gap carries the last observed value (no change, no innovation). Intervals are the model's own
    multi-step error quantiles on the fit data, as for ETS.
    """

    name = "arima"

    METHODS = ("innovations_mle", "statespace", "hannan_rissanen")

    def __init__(self, p: int = 1, q: int = 1, method: str = "innovations_mle", **kw):
        super().__init__(**kw)
        if not (0 <= int(p) <= 3 and 0 <= int(q) <= 3):
            raise ForecastInputError(f"arima: p and q must lie in 0..3; got p={p}, q={q}")
        if method not in self.METHODS:
            raise ForecastInputError(f"arima: method must be one of {', '.join(self.METHODS)}; got {method!r}")
        self.p, self.q, self.method = int(p), int(q), method
        self.ar = np.zeros((0, self.p))
        self.ma = np.zeros((0, self.q))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "p": self.p, "q": self.q, "method": self.method}

    def _fit_point(self, series: TrafficSeries) -> None:
        from statsmodels.tsa.arima.model import ARIMA

        log_vals = log_values(series.values_mbps[-self.fit_steps:])
        observed = series.observed[-self.fit_steps:]
        ar, ma = np.zeros((series.n_pairs, self.p)), np.zeros((series.n_pairs, self.q))
        for pair in range(series.n_pairs):
            y = log_vals[observed[:, pair], pair]
            if len(y) < 10 + self.p + self.q or np.ptp(y) < 1e-9:
                continue   # too little or constant: a random walk (the coefficients stay 0)
            res = None
            # Hannan-Rissanen may land on a non-invertible MA part: that pair is fitted by likelihood instead
            for method in dict.fromkeys((self.method, "innovations_mle")):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    try:
                        res = ARIMA(y, order=(self.p, 1, self.q), trend="n").fit(method=method)
                        break
                    except (ValueError, np.linalg.LinAlgError):
                        continue
            if res is None:
                continue
            coefficients = np.asarray(res.params, float)
            names = list(res.model.param_names)
            ar[pair] = [coefficients[names.index(f"ar.L{i}")] for i in range(1, self.p + 1)]
            ma[pair] = [coefficients[names.index(f"ma.L{i}")] for i in range(1, self.q + 1)]
        self.ar, self.ma = np.nan_to_num(ar), np.nan_to_num(ma)

    def _point_log(self, log_vals, observed, timestamps, horizon):
        steps, pairs = log_vals.shape
        level = np.where(observed[0], log_vals[0], 0.0)
        seen = observed[0].copy()
        dx = np.zeros((self.p, pairs))     # last p changes, newest first
        err = np.zeros((self.q, pairs))    # last q innovations, newest first
        def arma(dx, err):   # the next change: AR over the last changes plus MA over the last innovations
            return (self.ar.T * dx).sum(axis=0) + (self.ma.T * err).sum(axis=0)

        for t in range(1, steps):
            ok = observed[t] & seen
            predicted = arma(dx, err)
            change = np.where(ok, log_vals[t] - level, 0.0)
            innovation = np.where(ok, change - predicted, 0.0)
            if self.p:
                dx = np.vstack([change[None], dx[:-1]])
            if self.q:
                err = np.vstack([innovation[None], err[:-1]])
            level = np.where(observed[t], log_vals[t], level)
            seen |= observed[t]
        out = np.empty((pairs, horizon))
        for k in range(horizon):
            change = arma(dx, err)
            level = level + change
            out[:, k] = level
            if self.p:
                dx = np.vstack([change[None], dx[:-1]])
            if self.q:
                err = np.vstack([np.zeros((1, pairs)), err[:-1]])
        return out

    def _state(self):
        params, arrays = super()._state()
        return params, {**arrays, "arima_ar": self.ar, "arima_ma": self.ma}

    def _restore(self, params, arrays):
        super()._restore(params, arrays)
        self.ar = np.asarray(arrays["arima_ar"], float).reshape(-1, self.p)
        self.ma = np.asarray(arrays["arima_ma"], float).reshape(-1, self.q)
