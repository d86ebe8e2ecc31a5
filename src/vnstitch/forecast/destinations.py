"""Destination distribution: per source, each destination's share of its future traffic, with intervals."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ForecastInputError
from .result import Forecast


@dataclass(frozen=True)
class DestinationShares:
    """Shares (0..1) of one source's traffic per destination and horizon step."""

    source: str
    destinations: tuple[str, ...]
    mean: np.ndarray               # (destinations, horizon), sums to 1 over destinations
    quantile_levels: tuple[float, ...]
    quantile_values: np.ndarray    # (levels, destinations, horizon)

    def quantile(self, level: float) -> np.ndarray:
        hit = np.flatnonzero(np.isclose(self.quantile_levels, level))
        if not hit.size:
            raise ForecastInputError(f"no share quantile {level}; have {self.quantile_levels}")
        return self.quantile_values[hit[0]]

    def to_dict(self) -> dict:
        return {"source": self.source, "destinations": list(self.destinations),
                "mean": self.mean.round(6).tolist(),
                "quantiles": {f"{q:g}": v.round(6).tolist() for q, v in zip(self.quantile_levels, self.quantile_values)}}


def destination_shares(forecast: Forecast, sources=None, samples: int = 2000, seed: int = 0,
                       include_self: bool = False) -> dict[str, DestinationShares]:
    """Monte Carlo over the forecast's per-pair quantile functions (pairs drawn independently).

    Each draw picks a rate per pair by interpolating its quantiles (clamped at the outer levels),
    then normalises per source; the shares' mean and quantiles come from the draws.
    """
    rng = np.random.default_rng(seed)
    levels = np.asarray(forecast.quantile_levels)
    by_source: dict[str, list[int]] = {}
    for i, (src, dst) in enumerate(forecast.pairs):
        if include_self or src != dst:
            by_source.setdefault(src, []).append(i)
    wanted = list(by_source) if sources is None else list(sources)
    out = {}
    for src in wanted:
        if src not in by_source:
            raise ForecastInputError(f"source '{src}' has no pairs in the forecast; sources: {sorted(by_source)}")
        idx = by_source[src]
        qv = forecast.quantile_values[:, idx, :]                      # (Q, D, H)
        u = rng.uniform(levels[0], levels[-1], size=(samples, len(idx), forecast.horizon))
        pos = np.clip(np.searchsorted(levels, u) - 1, 0, len(levels) - 2)
        frac = (u - levels[pos]) / (levels[pos + 1] - levels[pos])
        d_idx, h_idx = np.arange(len(idx))[None, :, None], np.arange(forecast.horizon)[None, None, :]
        draws = (1 - frac) * qv[pos, d_idx, h_idx] + frac * qv[pos + 1, d_idx, h_idx]
        total = draws.sum(axis=1, keepdims=True)
        shares = np.where(total > 0, draws / np.where(total > 0, total, 1.0), 1.0 / len(idx))
        point = forecast.mean[idx]
        point_total = point.sum(axis=0, keepdims=True)
        mean = np.where(point_total > 0, point / np.where(point_total > 0, point_total, 1.0), 1.0 / len(idx))
        out[src] = DestinationShares(src, tuple(forecast.pairs[i][1] for i in idx), mean, forecast.quantile_levels,
                                     np.quantile(shares, levels, axis=0))
    return out
