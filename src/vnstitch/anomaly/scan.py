"""Multi-scale window scan for the residual detector: each pair's mean over the last w intervals against
the mean of the hour before that window, after removing the pair's time-of-day profile, in units of the
same statistic's own tail on the pair's history.

Why: the injected (and real) sustained anomalies — outages, ramps, level shifts — last 6 to 24 intervals.
One interval's residual cannot see a 2× shift through Abilene's heavy-tailed one-step changes; the mean
over the event's length can (noise shrinks with √w), and comparing it with the hour *before* the window
means the anomaly never leaks into its own reference. Each pair is scaled by a high quantile of its own
history statistic, so a pair that is always bursty needs a larger excursion than a smooth one.
"""

from __future__ import annotations

import numpy as np

SCALE_FLOOR = 1e-3   # log1p units


def time_of_day(timestamps: np.ndarray, interval_seconds: float, steps_per_day: int) -> np.ndarray:
    """Index of each timestamp's interval within its UTC day."""
    secs = np.asarray(timestamps).astype("datetime64[s]").astype(np.int64)
    return ((secs % 86400) // int(interval_seconds)).astype(int) % steps_per_day


def window_means(values: np.ndarray, end: np.ndarray, width: int) -> np.ndarray:
    """NaN-aware mean of rows (end − width, end] of `values` for each end index (NaN where none observed)."""
    seen = np.isfinite(values)
    csum = np.concatenate([np.zeros((1, values.shape[1])), np.cumsum(np.where(seen, values, 0.0), axis=0)])
    ccount = np.concatenate([np.zeros((1, values.shape[1])), np.cumsum(seen, axis=0)])
    with np.errstate(all="ignore"):
        return (csum[end + 1] - csum[end + 1 - width]) / (ccount[end + 1] - ccount[end + 1 - width])


class WindowScan:
    """Scan statistics over `windows` (intervals) against the `reference_steps` before each window."""

    def __init__(self, windows=(6, 12, 24), reference_steps: int = 12, quantile: float = 0.999,
                 seasonal: bool = True, steps_per_day: int = 288):
        self.windows = tuple(int(w) for w in windows)
        self.reference_steps, self.quantile = int(reference_steps), float(quantile)
        self.seasonal, self.steps_per_day = bool(seasonal), int(steps_per_day)
        self.span = max(self.windows) + self.reference_steps

    def _adjust(self, log_values: np.ndarray, tod: np.ndarray) -> np.ndarray:
        return log_values - self.profile[tod] if self.seasonal else log_values

    def _statistics(self, adjusted: np.ndarray, end: np.ndarray) -> np.ndarray:
        """(windows, ends, pairs): mean of the window minus the mean of the reference hour before it."""
        out = []
        for w in self.windows:
            win = window_means(adjusted, end, w)
            ref = window_means(adjusted, end - w, self.reference_steps)
            out.append(win - ref)
        return np.stack(out)

    def fit(self, log_values: np.ndarray, tod: np.ndarray) -> "WindowScan":
        """log1p rates (steps, pairs) with NaN at gaps and each step's time-of-day index."""
        n = log_values.shape[1]
        if self.seasonal:   # per pair and time of day: median over the history days, smoothed over ±2 intervals
            prof = np.full((self.steps_per_day, n), np.nan)
            for slot in np.unique(tod):
                rows = log_values[tod == slot]
                if np.isfinite(rows).any():
                    with np.errstate(all="ignore"):
                        prof[slot] = np.nanmedian(rows, axis=0) if rows.shape[0] > 1 else rows[0]
            with np.errstate(all="ignore"):
                fill = np.nanmedian(log_values, axis=0)
            prof = np.where(np.isfinite(prof), prof, np.nan_to_num(fill))
            kernel = np.ones(5) / 5
            padded = np.concatenate([prof[-2:], prof, prof[:2]])
            self.profile = np.stack([np.convolve(padded[:, j], kernel, "valid") for j in range(n)], axis=1)
        adjusted = self._adjust(log_values, tod)
        end = np.arange(self.span, log_values.shape[0])
        stats = np.abs(self._statistics(adjusted, end))
        with np.errstate(all="ignore"):
            tail = np.nanquantile(stats, self.quantile, axis=1) if end.size else np.full((len(self.windows), n), np.nan)
        self.scale = np.maximum(np.nan_to_num(tail, nan=SCALE_FLOOR), SCALE_FLOOR)   # (windows, pairs)
        self.buffer = adjusted[-self.span:].copy()
        return self

    def score(self, log_row: np.ndarray, tod: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For this interval (not yet pushed): per pair the largest |statistic| / scale over the windows,
        which window it came from, and the statistic's sign. NaN in log_row: 0 for that pair."""
        adjusted = self._adjust(log_row, tod) if self.seasonal else log_row
        block = np.concatenate([self.buffer[1:], adjusted[None]])[::-1]   # newest first
        seen = np.isfinite(block)
        sums, counts = np.cumsum(np.where(seen, block, 0.0), axis=0), np.cumsum(seen, axis=0)
        stats = np.empty((len(self.windows), block.shape[1]))
        with np.errstate(all="ignore"):
            for i, w in enumerate(self.windows):   # tail sums: rows [0, w) are the window, [w, w + R) its reference
                far = w + self.reference_steps - 1
                stats[i] = sums[w - 1] / counts[w - 1] - (sums[far] - sums[w - 1]) / (counts[far] - counts[w - 1])
        norm = np.nan_to_num(np.abs(stats) / self.scale)
        norm[:, ~np.isfinite(log_row)] = 0.0
        best = np.argmax(norm, axis=0)
        cols = np.arange(norm.shape[1])
        return norm[best, cols], best, np.sign(stats[best, cols])

    def push(self, log_row: np.ndarray, tod: int) -> None:
        """Append an interval to the window (a gap stays NaN)."""
        adjusted = self._adjust(log_row, tod) if self.seasonal else log_row
        self.buffer = np.roll(self.buffer, -1, axis=0)
        self.buffer[-1] = adjusted
