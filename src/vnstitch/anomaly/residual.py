"""Forecast-residual detector: per-pair conformal p-values against a project forecaster, Bonferroni
verdict across pairs, Benjamini–Hochberg to name them, and a per-pair CUSUM for level shifts.

Why these choices: the injected (and operationally interesting) anomalies are sparse — one pair or a
few — so the minimum p-value with a Bonferroni bound is the most powerful verdict for them and stays
valid however the pairs are correlated (Fisher's combination assumes independence, which traffic
pairs sharing links violate, and rewards many small deviations rather than one large one).
Once the verdict fires, Benjamini–Hochberg at the same level names the set of responsible pairs.
p-values are split-conformal: each pair's residual (log1p space, like every forecaster here) is
divided by that pair's robust scale and ranked against the pooled normalised calibration residuals,
so a p-value as small as 1/(pairs × calibration steps) is reachable.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from vnstitch.forecast.registry import get_forecaster
from vnstitch.forecast.series import TrafficSeries

from .base import Detector, IntervalScore, robust_scale
from .errors import AnomalyInputError

SCALE_FLOOR_LOG = 1e-3   # log1p units: pairs that never carry traffic
OUTAGE_FRACTION = 0.05   # observed ≤ 5 % of the forecast counts as an outage, not a drop


class ResidualDetector(Detector):
    """Observation vs calibrated one-step forecast per pair, plus CUSUM on the deviation from the last hour."""

    name = "residual"
    needs_forecast = True
    names_pairs = True
    online = True   # its state (clean history, CUSUM sums) follows the intervals it scores

    def __init__(self, forecaster: str = "last_value", alpha: float = 0.002, cusum_k: float = 1.0,
                 cusum_h: float = 160.0, cusum_window: int = 12, cusum_clip: float = 4.0, accept_after: int = 6,
                 calibration_steps: int | None = None, scale_quantile: float = 0.99,
                 min_history_steps: int | None = None):
        if not 0 < alpha < 1:
            raise AnomalyInputError(f"alpha must lie in (0, 1); got {alpha}")
        if cusum_h <= 0 or cusum_k < 0 or int(cusum_window) < 2 or int(accept_after) < 1:
            raise AnomalyInputError("cusum_h > 0, cusum_k >= 0, cusum_window >= 2 and accept_after >= 1 are required")
        self.forecaster_name = forecaster
        self.model = get_forecaster(forecaster, max_horizon=1, max_fit_origins=50)
        self.alpha, self.cusum_k, self.cusum_h = float(alpha), float(cusum_k), float(cusum_h)
        self.cusum_window, self.cusum_clip, self.accept_after = int(cusum_window), float(cusum_clip), int(accept_after)
        self.calibration_steps = calibration_steps
        self.scale_quantile = float(scale_quantile)
        context = max(self._model_context(), self.cusum_window)
        super().__init__(min_history_steps or max(2 * context + 2, 288))
        self.context = context

    def _model_context(self) -> int:
        self.model.interval_seconds = self.model.interval_seconds or 300.0
        return max(self.model.context_steps, self.model.min_history_steps)

    def get_config(self) -> dict[str, Any]:
        return {"forecaster": self.forecaster_name, "alpha": self.alpha, "cusum_k": self.cusum_k,
                "cusum_h": self.cusum_h, "cusum_window": self.cusum_window, "accept_after": self.accept_after}

    # ----------------------------------------------------------------- fit
    def _fit(self, values, timestamps):
        observed = ~np.isnan(values)
        series = TrafficSeries(np.nan_to_num(values), timestamps, self.pairs, observed, 300.0)
        steps = values.shape[0]
        interval = float(np.diff(timestamps[:2]).astype("timedelta64[s]").astype(int)[0]) if steps > 1 else 300.0
        series = TrafficSeries(series.values_mbps, series.timestamps, series.pairs, series.observed, interval)
        self.interval_seconds = interval
        cal = self.calibration_steps or steps - self.context - 1
        cal = int(min(cal, steps - self.context - 1))
        if cal < 20:
            raise AnomalyInputError(f"{self.name}: history of {steps} steps leaves {cal} for calibration")
        self.model.fit(series.slice(0, steps - cal))
        origins = np.arange(steps - cal - 1, steps - 1)
        mean, _ = self.model.predict_origins(series, origins, 1)
        log_y = np.log1p(np.nan_to_num(values[origins + 1]))
        ok = observed[origins + 1]
        resid = np.where(ok, log_y - np.log1p(mean[:, :, 0]), np.nan)
        # per-pair scale from a high quantile of |residual|, so that heavy-tailed and intermittent pairs
        # (some flap to 0 for hours) do not dominate the pooled tail that small p-values are read from
        with np.errstate(all="ignore"):
            tail = np.nanquantile(np.abs(resid), self.scale_quantile, axis=0)
        self.scale = np.maximum(np.nan_to_num(tail), SCALE_FLOOR_LOG)
        norm = np.abs(resid) / self.scale
        self.calibration_scores = np.sort(norm[np.isfinite(norm)])
        # CUSUM input: deviation of log1p value from the mean of the previous `cusum_window` steps
        log_all = np.where(observed, np.log1p(np.nan_to_num(values)), np.nan)
        dev = self._deviation_matrix(log_all)[steps - cal:]
        self.dev_center = np.nan_to_num(np.nanmedian(dev, axis=0))
        self.dev_scale = robust_scale(dev, floor=SCALE_FLOOR_LOG)
        # running state: the clean history tail (Mbit/s, observed mask, stamps), CUSUM sums, alarm runs
        self.buf_values = np.nan_to_num(values[-self.context:]).copy()
        self.buf_observed = observed[-self.context:].copy()
        self.buf_stamps = timestamps[-self.context:].copy()
        self.buf_log = log_all[-self.context:].copy()
        n = values.shape[1]
        self.cusum_pos, self.cusum_neg = np.zeros(n), np.zeros(n)
        self.run_length = np.zeros(n, int)
        self.recent_dev = np.zeros((6, n))

    def _deviation_matrix(self, log_all):
        w = self.cusum_window
        out = np.full(log_all.shape, np.nan)
        seen = np.isfinite(log_all)
        csum = np.concatenate([np.zeros((1, log_all.shape[1])), np.cumsum(np.nan_to_num(log_all), axis=0)])
        ccount = np.concatenate([np.zeros((1, log_all.shape[1])), np.cumsum(seen, axis=0)])
        with np.errstate(all="ignore"):
            mean = (csum[w:-1] - csum[:-w - 1]) / (ccount[w:-1] - ccount[:-w - 1])
        out[w:] = log_all[w:] - mean
        return out

    # ----------------------------------------------------------------- score
    def p_values(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Conformal p-value per pair (1 where unobserved), signed log residual and forecast in Mbit/s."""
        ctx = self.model.context_steps
        mean, _ = self.model._predict_arrays(self.buf_values[-ctx:], self.buf_observed[-ctx:], self.buf_stamps[-ctx:], 1)
        forecast = np.maximum(mean[:, 0], 0.0)
        observed = ~np.isnan(values)
        resid = np.where(observed, np.log1p(np.nan_to_num(values)) - np.log1p(forecast), 0.0)
        norm = np.abs(resid) / self.scale
        n = self.calibration_scores.size
        exceed = n - np.searchsorted(self.calibration_scores, norm, side="left")
        p = np.where(observed, (1.0 + exceed) / (n + 1.0), 1.0)
        return p, resid, forecast

    def _score(self, values, timestamp):
        observed = ~np.isnan(values)
        p, resid, forecast = self.p_values(values)
        m = int(observed.sum())
        order = np.argsort(p, kind="stable")
        p_adj = min(1.0, float(p[order[0]]) * m)
        pv_alarm = p_adj <= self.alpha
        named: list[int] = []
        if pv_alarm:   # Benjamini–Hochberg at level alpha over the observed pairs
            ranked = p[order][:m]
            passed = np.flatnonzero(ranked <= self.alpha * np.arange(1, m + 1) / m)
            named = [int(i) for i in order[:passed[-1] + 1]] if passed.size else [int(order[0])]
        # CUSUM on the clipped, standardised deviation from the clean last hour
        log_y = np.log1p(np.nan_to_num(values))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)   # a pair unobserved all hour: no reference
            ref = np.nanmean(self.buf_log[-self.cusum_window:], axis=0)
        u = np.clip((log_y - ref - self.dev_center) / self.dev_scale, -self.cusum_clip, self.cusum_clip)
        live = observed & np.isfinite(u)
        u = np.where(live, u, 0.0)
        self.cusum_pos = np.where(live, np.maximum(0.0, self.cusum_pos + u - self.cusum_k), self.cusum_pos)
        self.cusum_neg = np.where(live, np.maximum(0.0, self.cusum_neg - u - self.cusum_k), self.cusum_neg)
        self.recent_dev = np.roll(self.recent_dev, -1, axis=0)
        self.recent_dev[-1] = u
        cusum = np.maximum(self.cusum_pos, self.cusum_neg)
        shifted = np.flatnonzero(cusum > self.cusum_h)
        shifted = shifted[np.argsort(-cusum[shifted])]
        kind = ""
        if pv_alarm:
            top = named[0]
            if resid[top] < 0 and values[top] <= OUTAGE_FRACTION * forecast[top]:
                kind = "outage"
            else:
                kind = "drop" if resid[top] < 0 else "spike"
        elif shifted.size:
            top = int(shifted[0])
            rising = np.polyfit(np.arange(6), self.recent_dev[:, top], 1)[0] > 0.3
            kind = "ramp" if (self.cusum_pos[top] > self.cusum_neg[top] and rising) else "level_shift"
        pairs = tuple(named) + tuple(int(i) for i in shifted if int(i) not in named)
        self.cusum_pos[shifted] = 0.0
        self.cusum_neg[shifted] = 0.0
        # while a pair's CUSUM is building up, its reference hour is frozen (a shift is not absorbed)
        building = np.maximum(self.cusum_pos, self.cusum_neg) > self.cusum_h / 4
        self._update_state(values, observed, forecast, set(named), timestamp, np.where(building, ref, np.nan))
        score = max(np.log10(1.0 / max(p_adj, 1e-300)) / np.log10(1.0 / self.alpha),
                    float(cusum.max(initial=0.0)) / self.cusum_h)
        evidence = {"p_adjusted": p_adj, "p_min_pair": int(order[0]), "cusum_max": float(cusum.max(initial=0.0)),
                    "cusum_pairs": [int(i) for i in shifted], "pvalue_pairs": named,
                    "observed_pairs": m}
        if pairs:
            evidence["forecast_mbps"] = float(forecast[pairs[0]])
            evidence["observed_mbps"] = float(values[pairs[0]])
        return IntervalScore(True, bool(pairs), float(score), pairs, kind, evidence)

    def _update_state(self, values, observed, forecast, flagged: set[int], timestamp, frozen_ref):
        """Append this interval to the clean history: flagged pairs keep their forecast, unless the new
        level has lasted accept_after intervals (then it is the new normal; an outage never is)."""
        clean = np.where(observed, np.nan_to_num(values), 0.0)
        runs = self.run_length
        is_flagged = np.zeros(len(values), bool)
        if flagged:
            is_flagged[list(flagged)] = True
        runs[:] = np.where(is_flagged, runs + 1, 0)
        outage = np.nan_to_num(values) <= OUTAGE_FRACTION * forecast
        replace = is_flagged & ((runs <= self.accept_after) | outage)
        clean = np.where(replace, forecast, clean)
        self.buf_values = np.roll(self.buf_values, -1, axis=0)
        self.buf_observed = np.roll(self.buf_observed, -1, axis=0)
        self.buf_stamps = np.roll(self.buf_stamps, -1)
        self.buf_log = np.roll(self.buf_log, -1, axis=0)
        self.buf_values[-1] = clean
        self.buf_observed[-1] = observed
        stamp = timestamp if timestamp is not None else self.buf_stamps[-2] + np.timedelta64(int(self.interval_seconds), "s")
        self.buf_stamps[-1] = np.datetime64(stamp, "s")
        self.buf_log[-1] = np.where(np.isfinite(frozen_ref), frozen_ref, np.where(observed, np.log1p(clean), np.nan))
