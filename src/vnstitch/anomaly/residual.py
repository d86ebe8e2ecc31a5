"""Forecast-residual detector: per-pair conformal p-values against a project forecaster, Bonferroni
verdict across pairs, Benjamini–Hochberg to name them, and, for what one interval cannot show, a per-pair
outage test, a one-interval-late spike test, a multi-scale window scan (scan.py) and a CUSUM.

Why these choices: the injected (and operationally interesting) anomalies are sparse — one pair or a
few — so the minimum p-value with a Bonferroni bound is the most powerful verdict for them and stays
valid however the pairs are correlated (Fisher's combination assumes independence, which traffic
pairs sharing links violate, and rewards many small deviations rather than one large one).
Once the verdict fires, Benjamini–Hochberg at the same level names the set of responsible pairs.
p-values are split-conformal: each pair's residual (log1p space, like every forecaster here) is
divided by that pair's robust scale and ranked against the pooled normalised calibration residuals,
so a p-value as small as 1/(pairs × calibration steps) is reachable. The spike test does the same for
the previous interval against the mean of its two neighbours (half the noise of a forecast residual on
this data, one interval later). The outage test is calibrated per pair: a fall to ≤ 5 % of the last hour
alarms only on pairs that never did that in the history. On Abilene, sustained changes (level shifts,
ramps) are found mostly by the window scan; see docs/BENCHMARKS.md for what each part adds.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from vnstitch.forecast.registry import get_forecaster
from vnstitch.forecast.series import TrafficSeries

from .base import Detector, IntervalScore, robust_scale
from .errors import AnomalyInputError
from .scan import WindowScan, time_of_day

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
                 outage_test: bool = True, outage_min_mbps: float = 0.05, outage_max_history: int = 0,
                 scan_h: float | None = 2.0, scan_windows=(6, 12, 24), scan_quantile: float = 0.999,
                 scan_seasonal: bool = False, interp_test: bool = True, scan_space: str = "log1p", min_history_steps: int | None = None):
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
        self.outage_test, self.outage_min_mbps = bool(outage_test), float(outage_min_mbps)
        self.outage_max_history = int(outage_max_history)
        if scan_h is not None and (scan_h <= 0 or not scan_windows or min(scan_windows) < 1):
            raise AnomalyInputError("scan_h must be > 0 (or None to switch the window scan off), scan_windows >= 1")
        self.scan_h = None if scan_h is None else float(scan_h)
        self.scan_windows, self.scan_quantile = tuple(int(w) for w in scan_windows), float(scan_quantile)
        self.scan_seasonal = bool(scan_seasonal)
        if scan_space not in ("log1p", "mbps"):
            raise AnomalyInputError(f"scan_space must be 'log1p' or 'mbps'; got {scan_space!r}")
        self.scan_space = scan_space
        self.interp_test = bool(interp_test)
        context = max(self._model_context(), self.cusum_window,
                      max(self.scan_windows) + self.cusum_window if self.scan_h else 0)
        super().__init__(min_history_steps or max(2 * context + 2, 288))
        self.context = context

    def _model_context(self) -> int:
        self.model.interval_seconds = self.model.interval_seconds or 300.0
        return max(self.model.context_steps, self.model.min_history_steps)

    def get_config(self) -> dict[str, Any]:
        return {"forecaster": self.forecaster_name, "alpha": self.alpha, "cusum_k": self.cusum_k,
                "cusum_h": self.cusum_h, "cusum_window": self.cusum_window, "accept_after": self.accept_after,
                "outage_test": self.outage_test, "outage_min_mbps": self.outage_min_mbps,
                "outage_max_history": self.outage_max_history, "scan_h": self.scan_h,
                "scan_windows": list(self.scan_windows), "scan_quantile": self.scan_quantile,
                "scan_seasonal": self.scan_seasonal, "scan_space": self.scan_space,
                "interp_test": self.interp_test}

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
        # per-pair outage calibration: how often the pair fell to <= OUTAGE_FRACTION of its last hour's mean
        self.outage_history = self._outage_counts(np.nan_to_num(values), observed)
        self.steps_per_day = max(1, int(round(86400 / interval)))
        self.scan = None
        if self.scan_h:
            self.scan = WindowScan(self.scan_windows, self.cusum_window, self.scan_quantile, self.scan_seasonal,
                                   self.steps_per_day).fit(self._scan_input(values), time_of_day(timestamps, interval, self.steps_per_day))
        # one interval late: the previous interval against the mean of its two neighbours (a spike's own
        # statistic: a level shift moves it by half as much), pooled conformal like the forecast residual
        lag_dev = log_all[1:-1] - 0.5 * (log_all[:-2] + log_all[2:])
        with np.errstate(all="ignore"):
            tail = np.nanquantile(np.abs(lag_dev[-cal:]), self.scale_quantile, axis=0)
        self.interp_scale = np.maximum(np.nan_to_num(tail), SCALE_FLOOR_LOG)
        lag_norm = np.abs(lag_dev[-cal:]) / self.interp_scale
        self.interp_scores = np.sort(lag_norm[np.isfinite(lag_norm)])
        self.last_logs = log_all[-2:].copy()   # raw (not cleaned) log1p of the last two intervals
        # running state: the clean history tail (Mbit/s, observed mask, stamps), CUSUM sums, alarm runs
        self.buf_values = np.nan_to_num(values[-self.context:]).copy()
        self.buf_observed = observed[-self.context:].copy()
        self.buf_stamps = timestamps[-self.context:].copy()
        self.buf_log = log_all[-self.context:].copy()
        n = values.shape[1]
        self.cusum_pos, self.cusum_neg = np.zeros(n), np.zeros(n)
        self.run_length = np.zeros(n, int)
        self.recent_dev = np.zeros((6, n))

    def _scan_input(self, values: np.ndarray) -> np.ndarray:
        """What the window scan reads: log1p rates or Mbit/s (NaN stays NaN)."""
        return np.log1p(values) if self.scan_space == "log1p" else np.array(values, float)

    def _outage_counts(self, values, observed) -> np.ndarray:
        """Per pair, the history intervals that would have passed the outage test (its own false-alarm record)."""
        w = self.cusum_window
        csum = np.concatenate([np.zeros((1, values.shape[1])), np.cumsum(values * observed, axis=0)])
        ccount = np.concatenate([np.zeros((1, values.shape[1])), np.cumsum(observed, axis=0)])
        with np.errstate(all="ignore"):
            ref = (csum[w:-1] - csum[:-w - 1]) / (ccount[w:-1] - ccount[:-w - 1])
        now = values[w:]
        hit = observed[w:] & (ref >= self.outage_min_mbps) & (now <= OUTAGE_FRACTION * ref)
        return hit.sum(axis=0)

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
        interp_pairs: list[int] = []
        if self.interp_test:
            log_now = np.where(observed, np.log1p(np.nan_to_num(values)), np.nan)
            dev = self.last_logs[1] - 0.5 * (self.last_logs[0] + log_now)
            self.last_logs = np.stack([self.last_logs[1], log_now])
            live_dev = np.isfinite(dev)
            norm_dev = np.where(live_dev, np.abs(dev) / self.interp_scale, 0.0)
            n_cal = self.interp_scores.size
            p_lag = np.where(live_dev, (1.0 + n_cal - np.searchsorted(self.interp_scores, norm_dev, side="left"))
                             / (n_cal + 1.0), 1.0)
            m_lag = max(int(live_dev.sum()), 1)
            lag_order = np.argsort(p_lag, kind="stable")
            p_lag_adj = min(1.0, float(p_lag[lag_order[0]]) * m_lag)
            if p_lag_adj <= self.alpha:
                passed = np.flatnonzero(p_lag[lag_order][:m_lag] <= self.alpha * np.arange(1, m_lag + 1) / m_lag)
                interp_pairs = [int(i) for i in lag_order[:max(passed[-1] + 1 if passed.size else 1, 1)]
                                if int(i) not in named]
        # outage: a pair falls to <= 5 % of its clean last hour, which it never (or rarely) did in the history
        outages: list[int] = []
        if self.outage_test:
            ref_mbps = self.buf_values[-self.cusum_window:].mean(axis=0)
            hit = (observed & (ref_mbps >= self.outage_min_mbps) & (np.nan_to_num(values) <= OUTAGE_FRACTION * ref_mbps)
                   & (self.outage_history <= self.outage_max_history))
            outages = [int(i) for i in np.flatnonzero(hit) if int(i) not in named and int(i) not in interp_pairs]
        # window scan: the mean of the last 6/12/24 intervals against the hour before, in the pair's own tail units
        scanned: list[int] = []
        log_y = np.log1p(np.nan_to_num(values))
        if self.scan is not None:
            stamp = timestamp if timestamp is not None else self.buf_stamps[-1] + np.timedelta64(int(self.interval_seconds), "s")
            tod = int(time_of_day(np.array([stamp]), self.interval_seconds, self.steps_per_day)[0])
            log_obs = self._scan_input(values)
            scan_norm, _, scan_sign = self.scan.score(log_obs, tod)
            self.scan.push(log_obs, tod)
            hit = np.flatnonzero(scan_norm > self.scan_h)
            taken = set(named) | set(outages) | set(interp_pairs)
            scanned = [int(i) for i in hit[np.argsort(-scan_norm[hit])] if int(i) not in taken]
        # CUSUM on the clipped, standardised deviation from the clean last hour
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
        if outages and not pv_alarm:
            kind = "outage"
        elif interp_pairs and not pv_alarm:
            kind = "spike" if dev[interp_pairs[0]] > 0 else "drop"
        elif pv_alarm:
            top = named[0]
            if resid[top] < 0 and values[top] <= OUTAGE_FRACTION * forecast[top]:
                kind = "outage"
            else:
                kind = "drop" if resid[top] < 0 else "spike"
        elif scanned:   # a sustained change: the window scan does not see one-interval spikes first
            top = scanned[0]
            if scan_sign[top] < 0:
                kind = "outage" if values[top] <= OUTAGE_FRACTION * forecast[top] else "level_shift"
            else:
                rising = np.polyfit(np.arange(6), self.recent_dev[:, top], 1)[0] > 0.3
                kind = "ramp" if rising else "level_shift"
        elif shifted.size:
            top = int(shifted[0])
            rising = np.polyfit(np.arange(6), self.recent_dev[:, top], 1)[0] > 0.3
            kind = "ramp" if (self.cusum_pos[top] > self.cusum_neg[top] and rising) else "level_shift"
        pairs = list(named) + outages + interp_pairs + scanned
        pairs += [int(i) for i in shifted if int(i) not in pairs]
        # a pair in alarm for longer than accept_after (a lasting outage) is named after the new ones
        pairs = tuple(sorted(pairs, key=lambda i: self.run_length[i] > self.accept_after))
        self.cusum_pos[shifted] = 0.0
        self.cusum_neg[shifted] = 0.0
        # while a pair's CUSUM is building up, its reference hour is frozen (a shift is not absorbed)
        building = np.maximum(self.cusum_pos, self.cusum_neg) > self.cusum_h / 4
        self._update_state(values, observed, forecast, set(named) | set(outages), timestamp, np.where(building, ref, np.nan))
        score = max(np.log10(1.0 / max(p_adj, 1e-300)) / np.log10(1.0 / self.alpha),
                    float(cusum.max(initial=0.0)) / self.cusum_h, 1.0 if outages else 0.0,
                    float(scan_norm.max()) / self.scan_h if self.scan is not None else 0.0)
        evidence = {"p_adjusted": p_adj, "p_min_pair": int(order[0]), "cusum_max": float(cusum.max(initial=0.0)),
                    "cusum_pairs": [int(i) for i in shifted], "pvalue_pairs": named, "outage_pairs": outages, "scan_pairs": scanned, "interp_pairs": interp_pairs,
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
