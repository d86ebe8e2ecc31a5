"""Multi-scale window scan for the residual detector: each pair's mean over the last w intervals against
the mean of the hour before that window, after removing the pair's time-of-day profile, in units of the
same statistic's own tail on the pair's history.

Why: the injected (and real) sustained anomalies — outages, ramps, level shifts — last 6 to 24 intervals.
One interval's residual cannot see a 2× shift through Abilene's heavy-tailed one-step changes; the mean
over the event's length can (noise shrinks with √w), and comparing it with the hour *before* the window
means the anomaly never leaks into its own reference. Each pair is scaled by a high quantile of its own
history statistic, so a pair that is always bursty needs a larger excursion than a smooth one. A short
history has too few statistics for that tail (see MIN_TAIL_STATISTICS): there the scale is at least the
Gaussian tail the pair's one-interval noise implies.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np

SCALE_FLOOR = 1e-3   # log1p units
# Statistics per window and pair below which their own tail quantile is not trusted alone. Neighbouring
# statistics share most of their rows (a 24-interval window and its hour: 35 of 36), so a short history
# holds few independent ones: 60 intervals give 24 per window, whose 0.999 quantile is about their maximum,
# and a transient in the history makes, once it straddles a window's edge, a statistic none of them held
# (the anomaly lab's false level shifts: 16 of 315 re-orderings of its recorded calm intervals, none since).
# On simulated noise the false-alarm rate settles at its long-history value from about 250 statistics.
MIN_TAIL_STATISTICS = 300


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
        scale = np.nan_to_num(tail, nan=SCALE_FLOOR)   # (windows, pairs)
        few = np.isfinite(stats).sum(axis=1) < MIN_TAIL_STATISTICS
        if few.any():   # too few for the empirical tail: not below the Gaussian one of the same quantile
            scale = np.where(few, np.maximum(scale, self._noise_tail(adjusted)), scale)
        self.scale = np.maximum(scale, SCALE_FLOOR)
        self.buffer = adjusted[-self.span:].copy()
        return self

    def _noise_tail(self, adjusted: np.ndarray) -> np.ndarray:
        """(windows, pairs): the statistic's `quantile` of |value| were each interval's noise independent and
        Gaussian, with the variance of the pair's one-interval changes over the rows the statistics read.
        Not a robust spread on purpose: a short history's transients are its only evidence of the tail, and
        each one later straddles a window's edge, a large statistic the few computed may not yet hold."""
        step = np.diff(adjusted[1:], axis=0)   # row 0 is in no statistic (the first reference starts at 1)
        with np.errstate(all="ignore"):
            sigma = np.nan_to_num(np.sqrt(np.nanmean(step ** 2, axis=0) / 2.0))
        z = NormalDist().inv_cdf(0.5 + self.quantile / 2)
        spread = np.sqrt([1.0 / w + 1.0 / self.reference_steps for w in self.windows])
        return z * spread[:, None] * sigma[None, :]

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
