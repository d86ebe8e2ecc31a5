"""TrafficSeries: one rate series per (source, destination) pair on a regular time grid."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from .errors import ForecastInputError, UnknownPairError

Pair = tuple[str, str]
DEFAULT_INTERVAL_SECONDS = 300.0


def pair_label(pair: Pair) -> str:
    """'SRC->DST' form of a pair, used in tables and files."""
    return f"{pair[0]}->{pair[1]}"


def parse_pair(text: str) -> Pair:
    """'SRC->DST' → (SRC, DST)."""
    if "->" not in text:
        raise ForecastInputError(f"pair '{text}' is not of the form SRC->DST")
    src, dst = text.split("->", 1)
    return (src.strip(), dst.strip())


def pairs_from_nodes(nodes: Sequence[str]) -> tuple[Pair, ...]:
    """All ordered pairs of a node list, row-major (same order as a flattened matrix)."""
    return tuple((str(a), str(b)) for a in nodes for b in nodes)


def _default_pairs(n_pairs: int) -> tuple[Pair, ...]:
    side = int(round(np.sqrt(n_pairs)))
    if side * side == n_pairs:
        return pairs_from_nodes([str(i) for i in range(side)])
    return tuple((f"s{i}", f"d{i}") for i in range(n_pairs))


def to_datetime64(timestamps: Iterable) -> np.ndarray:
    """Timestamps (datetime64, pandas, ISO strings or 'YYYYMMDD-HHMM') → datetime64[s]."""
    arr = np.asarray(timestamps)
    if np.issubdtype(arr.dtype, np.datetime64):
        return arr.astype("datetime64[s]")
    if arr.dtype.kind in "US" and arr.size and len(str(arr.flat[0])) == 13 and str(arr.flat[0])[8] == "-":
        return _compact_to_datetime64(arr.astype(str))  # the bundled data's form: no pandas needed
    from vnstitch.optional import require

    pd = require("pandas", "parsing timestamps other than datetime64 and 'YYYYMMDD-HHMM'")
    try:
        parsed = pd.to_datetime(arr)
    except (ValueError, TypeError) as exc:
        raise ForecastInputError(f"timestamps could not be parsed: {exc}") from None
    return np.asarray(parsed.tz_localize(None) if getattr(parsed, "tz", None) else parsed).astype("datetime64[s]")


def _compact_to_datetime64(stamps: np.ndarray) -> np.ndarray:
    """'YYYYMMDD-HHMM' strings → datetime64[s], through numpy's ISO 8601 parser."""
    iso = []
    for stamp in stamps.ravel():
        if len(stamp) != 13 or stamp[8] != "-" or not (stamp[:8].isdigit() and stamp[9:].isdigit()):
            raise ForecastInputError(f"timestamps could not be parsed: '{stamp}' is not YYYYMMDD-HHMM")
        iso.append(f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[9:11]}:{stamp[11:]}")
    try:
        return np.array(iso, dtype="datetime64[s]").reshape(stamps.shape)
    except ValueError as exc:
        raise ForecastInputError(f"timestamps could not be parsed: {exc}") from None


def check_values(values_mbps: np.ndarray, observed: np.ndarray | None, pairs: Sequence[Pair] | None = None) -> None:
    """Raise ForecastInputError for NaN/inf or negative values at observed positions."""
    vals = np.asarray(values_mbps, dtype=float)
    mask = np.ones(vals.shape, bool) if observed is None else np.asarray(observed, bool)
    bad = ~np.isfinite(vals) & mask
    if bad.any():
        t, p = np.argwhere(bad)[0]
        where = pair_label(pairs[p]) if pairs is not None else f"column {p}"
        hint = "" if observed is not None else "; mark gaps with an observed= mask instead of NaN"
        raise ForecastInputError(f"values contain NaN or inf ({int(bad.sum())} entries, first at step {t}, pair {where}){hint}")
    neg = (vals < 0) & mask & np.isfinite(vals)
    if neg.any():
        t, p = np.argwhere(neg)[0]
        where = pair_label(pairs[p]) if pairs is not None else f"column {p}"
        raise ForecastInputError(f"values must be rates >= 0 Mbit/s; {int(neg.sum())} negative, first {vals[t, p]:g} at step {t}, pair {where}")


@dataclass(frozen=True)
class TrafficSeries:
    """Rates in Mbit/s, shape (steps, pairs), on a regular grid; unobserved cells hold 0."""

    values_mbps: np.ndarray
    timestamps: np.ndarray
    pairs: tuple[Pair, ...]
    observed: np.ndarray
    interval_seconds: float

    @classmethod
    def from_array(
        cls,
        values_mbps,
        timestamps=None,
        pairs: Sequence[Pair] | Sequence[str] | None = None,
        observed=None,
        interval_seconds: float | None = None,
        start: str | np.datetime64 = "2000-01-01T00:00",
    ) -> "TrafficSeries":
        """Validate a (T, pairs) array; irregular timestamps are put on the grid with gaps unobserved."""
        vals = np.asarray(values_mbps, dtype=float)
        if vals.ndim == 3 and vals.shape[1] == vals.shape[2]:
            vals = vals.reshape(vals.shape[0], -1)
        if vals.ndim != 2:
            raise ForecastInputError(f"values must have shape (steps, pairs) or (steps, n, n); got {vals.shape}")
        if vals.shape[0] == 0 or vals.shape[1] == 0:
            raise ForecastInputError(f"values are empty: shape {vals.shape}")
        n_steps, n_pairs = vals.shape
        pair_tuple = _normalise_pairs(pairs, n_pairs)
        mask = np.ones(vals.shape, bool) if observed is None else np.asarray(observed, bool)
        if mask.shape != vals.shape:
            raise ForecastInputError(f"observed mask has shape {mask.shape}, values have {vals.shape}")
        check_values(vals, None if observed is None else mask, pair_tuple)
        if timestamps is None:
            step = float(interval_seconds or DEFAULT_INTERVAL_SECONDS)
            ts = np.datetime64(start, "s") + (np.arange(n_steps) * step).astype("timedelta64[s]")
        else:
            ts = to_datetime64(timestamps)
            if ts.shape != (n_steps,):
                raise ForecastInputError(f"{ts.shape[0] if ts.ndim else 0} timestamps for {n_steps} steps")
        step = _interval_seconds(ts, interval_seconds)
        vals = np.where(mask, vals, 0.0)
        series = cls(vals, ts, pair_tuple, mask, step)
        return series._regularised()

    @property
    def n_steps(self) -> int:
        return self.values_mbps.shape[0]

    @property
    def n_pairs(self) -> int:
        return self.values_mbps.shape[1]

    def pair_index(self, pair: Pair | str) -> int:
        """Column of a pair (tuple or 'SRC->DST')."""
        key = parse_pair(pair) if isinstance(pair, str) else tuple(pair)
        try:
            return self.pairs.index(key)
        except ValueError:
            raise UnknownPairError(f"unknown pair {pair_label(key)}; known: {', '.join(pair_label(p) for p in self.pairs[:6])}"
                                   f"{' ...' if self.n_pairs > 6 else ''}") from None

    def select(self, pairs: Sequence[Pair | str]) -> "TrafficSeries":
        """The same series restricted (and reordered) to the given pairs."""
        idx = [self.pair_index(p) for p in pairs]
        return TrafficSeries(self.values_mbps[:, idx], self.timestamps, tuple(self.pairs[i] for i in idx),
                             self.observed[:, idx], self.interval_seconds)

    def slice(self, start: int | None = None, stop: int | None = None) -> "TrafficSeries":
        """Steps [start, stop) of the series."""
        sl = slice(start, stop)
        if len(self.timestamps[sl]) == 0:
            raise ForecastInputError(f"slice [{start}, {stop}) of a {self.n_steps}-step series is empty")
        return TrafficSeries(self.values_mbps[sl], self.timestamps[sl], self.pairs, self.observed[sl], self.interval_seconds)

    def aggregate(self, factor: int) -> "TrafficSeries":
        """Every `factor` steps as one, at `factor` × the interval: the mean rate over its observed steps
        (a block without any is a gap); a trailing partial block is dropped."""
        factor = int(factor)
        if factor < 1:
            raise ForecastInputError(f"the aggregation factor must be >= 1; got {factor}")
        n = self.n_steps // factor
        if n == 0:
            raise ForecastInputError(f"{self.n_steps} steps do not fill one block of {factor}")
        shape = (n, factor, self.n_pairs)
        seen = self.observed[:n * factor].reshape(shape)
        total = np.where(seen, self.values_mbps[:n * factor].reshape(shape), 0.0).sum(axis=1)
        count = seen.sum(axis=1)
        values = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
        return TrafficSeries(values, self.timestamps[:n * factor:factor], self.pairs, count > 0,
                             self.interval_seconds * factor)

    def nodes(self) -> list[str]:
        """Sources and destinations in order of first appearance."""
        seen: dict[str, None] = {}
        for src, dst in self.pairs:
            seen.setdefault(src)
            seen.setdefault(dst)
        return list(seen)

    def to_frame(self):
        """Long pandas DataFrame: timestamp, source, destination, value_mbps (observed cells only)."""
        from vnstitch.optional import require

        pd = require("pandas", "a series as a table")
        t_idx, p_idx = np.nonzero(self.observed)
        return pd.DataFrame({
            "timestamp": self.timestamps[t_idx],
            "source": [self.pairs[p][0] for p in p_idx],
            "destination": [self.pairs[p][1] for p in p_idx],
            "value_mbps": self.values_mbps[t_idx, p_idx],
        })

    def _regularised(self) -> "TrafficSeries":
        step = np.timedelta64(int(round(self.interval_seconds)), "s")
        offsets = (self.timestamps - self.timestamps[0]) // step
        if offsets[-1] == self.n_steps - 1:
            return self
        rows = offsets.astype(int)
        n = rows[-1] + 1
        vals = np.zeros((n, self.n_pairs))
        mask = np.zeros((n, self.n_pairs), bool)
        vals[rows], mask[rows] = self.values_mbps, self.observed
        ts = self.timestamps[0] + np.arange(n) * step
        return TrafficSeries(vals, ts, self.pairs, mask, self.interval_seconds)


def _normalise_pairs(pairs, n_pairs: int) -> tuple[Pair, ...]:
    if pairs is None:
        return _default_pairs(n_pairs)
    out = tuple(parse_pair(p) if isinstance(p, str) else (str(p[0]), str(p[1])) for p in pairs)
    if len(out) != n_pairs:
        raise ForecastInputError(f"{len(out)} pair names for {n_pairs} value columns")
    if len(set(out)) != len(out):
        raise ForecastInputError("pair names repeat")
    return out


def _interval_seconds(ts: np.ndarray, given: float | None) -> float:
    if len(ts) < 2:
        return float(given or DEFAULT_INTERVAL_SECONDS)
    diffs = np.diff(ts).astype("timedelta64[s]").astype(np.int64)
    if (diffs <= 0).any():
        i = int(np.argmax(diffs <= 0))
        raise ForecastInputError(f"timestamps must increase strictly; step {i + 1} ({ts[i + 1]}) is not after {ts[i]}")
    step = float(given) if given else float(diffs.min())
    if step <= 0 or np.any(diffs % int(round(step))):
        raise ForecastInputError(f"timestamps are not on a {step:g}-second grid")
    return step
