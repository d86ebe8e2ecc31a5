"""Forecast: point forecast and quantiles per pair and horizon step, in Mbit/s."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .errors import ForecastInputError
from .series import Pair, pair_label

QUANTILE_LEVELS: tuple[float, ...] = (0.05, 0.1, 0.5, 0.9, 0.95)


def tidy_quantiles(quantile_values, axis: int) -> np.ndarray:
    """Sort quantiles along the level axis (no crossing) and clip them at 0 Mbit/s."""
    return np.sort(np.maximum(np.asarray(quantile_values, float), 0.0), axis=axis)


@dataclass(frozen=True)
class Forecast:
    """mean (pairs, horizon) and quantile_values (levels, pairs, horizon), same units as the input."""

    pairs: tuple[Pair, ...]
    timestamps: np.ndarray
    mean: np.ndarray
    quantile_levels: tuple[float, ...]
    quantile_values: np.ndarray
    model: str = ""

    @classmethod
    def build(cls, pairs, timestamps, mean, quantile_levels, quantile_values, model="") -> "Forecast":
        """Sort quantiles (no crossing), clip at 0 and freeze the arrays."""
        qv = tidy_quantiles(quantile_values, axis=0)
        mean = np.maximum(np.asarray(mean, float), 0.0)
        for arr in (qv, mean):
            arr.setflags(write=False)
        return cls(tuple(pairs), np.asarray(timestamps), mean, tuple(float(q) for q in quantile_levels), qv, model)

    @property
    def horizon(self) -> int:
        return self.mean.shape[1]

    def quantile(self, level: float) -> np.ndarray:
        """Quantile at `level` (pairs, horizon); linear between stored levels, exact at them."""
        levels = np.asarray(self.quantile_levels)
        level = float(round(level, 9))
        if not levels[0] <= level <= levels[-1]:
            raise ForecastInputError(f"quantile {level} outside the forecast's levels {self.quantile_levels}")
        hit = np.flatnonzero(np.isclose(levels, level))
        if hit.size:
            return self.quantile_values[hit[0]]
        hi = int(np.searchsorted(levels, level))
        w = (level - levels[hi - 1]) / (levels[hi] - levels[hi - 1])
        return (1 - w) * self.quantile_values[hi - 1] + w * self.quantile_values[hi]

    def interval(self, coverage: float) -> tuple[np.ndarray, np.ndarray]:
        """Central interval (low, high) with nominal `coverage`, e.g. 0.9 → (q0.05, q0.95)."""
        alpha = (1.0 - coverage) / 2.0
        return self.quantile(alpha), self.quantile(1.0 - alpha)

    def select(self, pairs: Sequence[Pair]) -> "Forecast":
        """The forecast for a subset of pairs."""
        idx = [self.pairs.index(tuple(p)) for p in pairs]
        return Forecast.build([self.pairs[i] for i in idx], self.timestamps, self.mean[idx],
                              self.quantile_levels, self.quantile_values[:, idx], self.model)

    def to_frame(self):
        """Long DataFrame: pair, step, timestamp, mean_mbps, q0.05_mbps, ..."""
        from vnstitch.optional import require

        pd = require("pandas", "a forecast as a table")
        n_pairs, horizon = self.mean.shape
        frame = pd.DataFrame({
            "source": np.repeat([p[0] for p in self.pairs], horizon),
            "destination": np.repeat([p[1] for p in self.pairs], horizon),
            "step": np.tile(np.arange(1, horizon + 1), n_pairs),
            "timestamp": np.tile(self.timestamps, n_pairs),
            "mean_mbps": self.mean.reshape(-1),
        })
        for level, values in zip(self.quantile_levels, self.quantile_values):
            frame[f"q{level:g}_mbps"] = values.reshape(-1)
        return frame

    def to_dict(self) -> dict:
        """JSON-ready form: timestamps as ISO strings, arrays as nested lists."""
        return {
            "model": self.model,
            "pairs": [pair_label(p) for p in self.pairs],
            "timestamps": [str(t) for t in self.timestamps],
            "mean_mbps": self.mean.round(6).tolist(),
            "quantiles_mbps": {f"{q:g}": v.round(6).tolist() for q, v in zip(self.quantile_levels, self.quantile_values)},
        }
