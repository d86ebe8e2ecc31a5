"""Conformal calibration: shift a model's 80%/90% bands so they reach coverage on held-out data."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .base import Forecaster, log_values
from .result import tidy_quantiles
from .errors import ForecastInputError
from .series import TrafficSeries


class ConformalForecaster(Forecaster):
    """Conformalised quantile bands (CQR, width-scaled) in log1p space, per horizon step and coverage.

    For coverage c the band [lo, hi] = (q_(1-c)/2, q_(1+c)/2) of the wrapped model becomes
    [lo − Q·w, hi + Q·w], w = hi − lo, with Q the ceil((n+1)c)/n quantile of
    max(lo − y, y − hi) / w over a calibration split; scaling by w keeps small and large
    pairs comparable. Means and the median are left as the wrapped model made them.
    """

    def __init__(self, base: Forecaster, coverages: Sequence[float] = (0.8, 0.9)):
        super().__init__(base.quantile_levels)
        self.base = base
        self.coverages = tuple(float(c) for c in coverages)
        self.name = base.name
        self.offsets = np.zeros((0, len(self.coverages)))  # (steps, coverages), log1p units
        self._bands = [self._band(c) for c in self.coverages]
        for flag, value in base.capabilities().items():
            setattr(self, flag, value)
        if base.fitted:
            self.pairs, self.interval_seconds, self.calendar = base.pairs, base.interval_seconds, base.calendar

    def _band(self, coverage: float) -> tuple[int, int]:
        levels = np.asarray(self.quantile_levels)
        lo, hi = np.flatnonzero(np.isclose(levels, (1 - coverage) / 2)), np.flatnonzero(np.isclose(levels, (1 + coverage) / 2))
        if not (lo.size and hi.size):
            raise ForecastInputError(f"coverage {coverage} needs quantiles {(1 - coverage) / 2:g} and "
                                     f"{(1 + coverage) / 2:g}; model has {self.quantile_levels}")
        return int(lo[0]), int(hi[0])

    @property
    def min_history_steps(self) -> int:
        return self.base.min_history_steps

    @property
    def context_steps(self) -> int:
        return self.base.context_steps

    def get_config(self) -> dict[str, Any]:
        return {"coverages": list(self.coverages)}

    def _fit(self, series: TrafficSeries) -> None:
        raise ForecastInputError("fit the wrapped model, then call calibrate() on held-out data")

    def fit(self, *args, **kwargs):
        """Fit the wrapped model (calibrate afterwards on data it has not seen)."""
        self.base.fit(*args, **kwargs)
        self.pairs, self.interval_seconds, self.calendar = self.base.pairs, self.base.interval_seconds, self.base.calendar
        return self

    def calibrate(self, series: TrafficSeries, start: int, stop: int | None = None, horizon: int = 12,
                  pairs_mask: np.ndarray | None = None, progress=None) -> "ConformalForecaster":
        """Fit offsets on targets in steps [start, stop) of `series`, histories from the steps before."""
        self.base._check_fitted()
        stop = series.n_steps if stop is None else stop
        origins = np.arange(max(start - 1, self.base.min_history_steps - 1), stop - 1)
        if len(origins) < 2:
            raise ForecastInputError(f"calibration split [{start}, {stop}) is too short")
        _, quant = self.base.predict_origins(series, origins, horizon, progress=progress)
        self.offsets = conformal_offsets(series, origins, quant, self._bands, self.coverages, pairs_mask, stop)
        self.pairs, self.interval_seconds, self.calendar = self.base.pairs, self.base.interval_seconds, self.base.calendar
        self.fitted = True
        return self

    def adjust(self, quant: np.ndarray) -> np.ndarray:
        """Apply the offsets to quantiles shaped (..., levels, pairs, horizon)."""
        logq = np.log1p(np.maximum(quant, 0.0))
        out = logq.copy()
        horizon = quant.shape[-1]
        steps = np.minimum(np.arange(horizon), len(self.offsets) - 1)
        for (lo, hi), offset in zip(self._bands, self.offsets[steps].T):
            low = logq[..., lo, :, :]
            width = np.maximum(logq[..., hi, :, :] - low, 0.0)
            out[..., lo, :, :] = np.where(low > 0, np.maximum(low - offset * width, 0.0), 0.0)  # 0 is a floor
            out[..., hi, :, :] = logq[..., hi, :, :] + offset * width
        return tidy_quantiles(np.expm1(out), axis=-3)

    def _predict_arrays(self, values_mbps, observed, timestamps, horizon):
        mean, quant = self.base._predict_arrays(values_mbps, observed, timestamps, horizon)
        return mean, self.adjust(quant)

    def predict_origins(self, series, origins, horizon, progress=None):
        mean, quant = self.base.predict_origins(series, origins, horizon, progress=progress)
        return mean, self.adjust(quant)

    def to_state(self):
        meta, arrays = super().to_state()
        base_meta, base_arrays = self.base.to_state()
        meta["base"] = base_meta
        arrays = {**arrays, **{f"base/{k}": v for k, v in base_arrays.items()}}
        return meta, arrays

    def _state(self):
        return {}, {"conformal_offsets": self.offsets}

    def _restore(self, params, arrays):
        self.offsets = np.asarray(arrays["conformal_offsets"], float)

    @classmethod
    def from_saved(cls, meta, arrays) -> "ConformalForecaster":
        """Rebuild wrapper and wrapped model from one saved file."""
        from .registry import forecaster_from_state

        base = forecaster_from_state(meta["base"], {k[5:]: v for k, v in arrays.items() if k.startswith("base/")})
        return cls(base, **meta["config"]).from_state(meta, arrays)


def conformal_offsets(series: TrafficSeries, origins: np.ndarray, quant: np.ndarray, bands, coverages,
                      pairs_mask: np.ndarray | None = None, stop: int | None = None) -> np.ndarray:
    """(steps, coverages) width-scaled offsets from quantiles (N, Q, P, H) at origins; targets before stop."""
    horizon = quant.shape[-1]
    log_vals = log_values(series.values_mbps)
    offsets = np.zeros((horizon, len(coverages)))
    use = np.ones(series.n_pairs, bool) if pairs_mask is None else np.asarray(pairs_mask, bool)
    for h in range(horizon):
        keep = origins + h + 1 < (series.n_steps if stop is None else stop)
        rows = origins[keep] + h + 1
        y = log_vals[rows][:, use]
        ok = series.observed[rows][:, use]
        for c, ((lo, hi), coverage) in enumerate(zip(bands, coverages)):
            lo_q = np.log1p(quant[keep, lo][:, use, h])
            hi_q = np.log1p(quant[keep, hi][:, use, h])
            width = np.maximum(hi_q - lo_q, 1e-9)
            live = ok & (hi_q - lo_q > 1e-9)
            below = np.where(lo_q > 0, lo_q - y, -np.inf)  # a band starting at 0 cannot be missed from below
            scores = (np.maximum(below, y - hi_q) / width)[live]
            n = scores.size
            level = min(1.0, np.ceil((n + 1) * coverage) / n)
            offsets[h, c] = np.quantile(scores, level, method="higher")
    return offsets


# --- online calibration -----------------------------------------------------------------------
# Adaptive conformal inference in the score space above (Gibbs & Candès, NeurIPS 2021; the quantile
# tracker of Angelopoulos, Candès & Tibshirani, "Conformal PID control", 2023): after each interval, a
# band's offset θ (in widths of the model's own band, log1p space) moves by gain × (miss − α), α = 1 −
# coverage. A band that misses more often than α widens, one that misses less narrows, so the long-run
# miss rate is α whatever the drift (|mean miss − α| ≤ (θ range) / (gain × intervals)). One offset is
# shared by every pair (the pooled miss rate: fast, little noise) and each pair adds its own (slower:
# one indicator an interval), so a pair the model misses often widens on its own.

ONLINE_BANDS = {"80": 0.8, "90": 0.9}
GLOBAL_LIMITS = (-0.45, 10.0)  # a band narrowed by more than about half its width would invert
PAIR_LIMITS = (-1.0, 10.0)


def online_offsets(state: dict | None, pair: str) -> dict[str, float]:
    """The band → θ (widths) a pair's band is moved by: the shared offset plus the pair's own."""
    state = state or {}
    shared, own = state.get("global") or {}, (state.get("pairs") or {}).get(pair) or {}
    return {b: max(GLOBAL_LIMITS[0], float(shared.get(b, 0.0)) + float(own.get(b, 0.0))) for b in ONLINE_BANDS}


def online_update(state: dict | None, rows, gain: float, pair_gain: float, pairs=None) -> dict:
    """The state after one interval's scored rows (each with `from`, `to`, `in80`/`in90` for the band the
    loop published). Pairs not in `pairs` (when given) are dropped; pairs without a row keep their offset."""
    state = state or {}
    shared = {b: float((state.get("global") or {}).get(b, 0.0)) for b in ONLINE_BANDS}
    own = {p: {b: float(v.get(b, 0.0)) for b in ONLINE_BANDS} for p, v in (state.get("pairs") or {}).items()
           if pairs is None or p in pairs}
    for band, coverage in ONLINE_BANDS.items():
        alpha = 1.0 - coverage
        hits = [(f"{r['from']}>{r['to']}", bool(r[f"in{band}"])) for r in rows   # a band of no width cannot
                if r.get(f"in{band}") is not None and not r.get(f"flat{band}")      # be widened: left out
                and (pairs is None or f"{r['from']}>{r['to']}" in pairs)]
        if not hits:
            continue
        missed = sum(1 for _, hit in hits if not hit) / len(hits)
        shared[band] = float(np.clip(shared[band] + gain * (missed - alpha), *GLOBAL_LIMITS))
        for pair, hit in hits:
            entry = own.setdefault(pair, {b: 0.0 for b in ONLINE_BANDS})
            entry[band] = float(np.clip(entry[band] + pair_gain * ((0.0 if hit else 1.0) - alpha), *PAIR_LIMITS))
    return {"global": {b: round(v, 5) for b, v in shared.items()},
            "pairs": {p: {b: round(v, 5) for b, v in entry.items()} for p, entry in sorted(own.items())}}


def widen_band(lo_bps: float, hi_bps: float, theta: float) -> tuple[float, float]:
    """[lo, hi] (bit/s) moved outwards by θ of its own log1p(Mbit/s) width (inwards for θ < 0)."""
    lo_l, hi_l = np.log1p(max(lo_bps, 0.0) / 1e6), np.log1p(max(hi_bps, 0.0) / 1e6)
    width = max(hi_l - lo_l, 0.0)
    new_lo = 0.0 if lo_bps <= 0 else float(np.expm1(max(lo_l - theta * width, 0.0)) * 1e6)  # 0 is a floor
    return new_lo, float(np.expm1(hi_l + theta * width) * 1e6)


def calibrate_bands(bands: dict, state: dict | None) -> tuple[dict, dict[str, dict[str, float]]]:
    """Each pair's next-interval bands ({pointBps, lo80Bps, …}) moved by its online offsets, and the
    offsets used (pair key → band → θ)."""
    out, used = {}, {}
    for pair, entry in bands.items():
        key = f"{pair[0]}>{pair[1]}"
        theta = online_offsets(state, key)
        new = dict(entry)
        for band, t in theta.items():
            lo, hi = entry.get(f"lo{band}Bps"), entry.get(f"hi{band}Bps")
            if lo is None or hi is None or t == 0.0:
                continue
            new[f"lo{band}Bps"], new[f"hi{band}Bps"] = widen_band(lo, hi, t)
        if all(k in new for k in ("lo80Bps", "hi80Bps", "lo90Bps", "hi90Bps")):   # the 90% band holds the 80%
            new["lo90Bps"], new["hi90Bps"] = min(new["lo90Bps"], new["lo80Bps"]), max(new["hi90Bps"], new["hi80Bps"])
        out[pair] = new
        used[key] = theta
    return out, used

