"""The Detector contract shared by every anomaly detector: fit on history, score each interval, name pairs."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

import numpy as np

from vnstitch.forecast.series import Pair, TrafficSeries, pair_label

from .errors import AnomalyInputError, DetectorHistoryTooShortError

KINDS = ("spike", "ramp", "drop", "outage", "level_shift")  # what a detector reports
STEPS_PER_DAY = 288  # 5-minute intervals


@dataclass(frozen=True)
class AnomalyEvent:
    """One detected (or injected) anomaly: steps [start, end] inclusive, what kind, which pairs."""

    start: int
    end: int
    kind: str
    pairs: tuple[Pair, ...]
    score: float
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "kind": self.kind,
                "pairs": [pair_label(p) for p in self.pairs], "score": self.score, "evidence": self.evidence}


@dataclass(frozen=True)
class IntervalScore:
    """A detector's verdict on one interval. `ready` False means it could not judge (and never alarms)."""

    ready: bool
    alarm: bool = False
    score: float = 0.0
    pairs: tuple[int, ...] = ()        # column indices of the pairs held responsible, most responsible first
    kind: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def not_ready(cls, reason: str) -> "IntervalScore":
        return cls(False, evidence={"reason": reason})


class Detector(ABC):
    """Base of all detectors; subclasses implement _fit and _score (values with NaN where unobserved)."""

    name: ClassVar[str] = ""
    needs_forecast: ClassVar[bool] = False   # scores against a forecast of each pair
    names_pairs: ClassVar[bool] = True       # says which pairs are responsible
    online: ClassVar[bool] = False           # keeps learning from the intervals it scores

    def __init__(self, min_history_steps: int = STEPS_PER_DAY):
        if int(min_history_steps) < 2:
            raise AnomalyInputError(f"min_history_steps must be >= 2; got {min_history_steps}")
        self.min_history_steps = int(min_history_steps)
        self.pairs: tuple[Pair, ...] = ()
        self.fitted = False

    @abstractmethod
    def _fit(self, values: np.ndarray, timestamps: np.ndarray) -> None:
        """Fit on (steps, pairs) Mbit/s with NaN where unobserved."""

    @abstractmethod
    def _score(self, values: np.ndarray, timestamp) -> IntervalScore:
        """Score one interval (pairs,) with NaN where unobserved; update any running state."""

    def fit(self, history, timestamps=None, pairs: Sequence[Pair] | None = None) -> "Detector":
        """Fit on a TrafficSeries or a (steps, pairs) array in Mbit/s (NaN = telemetry gap)."""
        values, stamps, names = as_matrix(history, timestamps, pairs)
        if values.shape[0] < self.min_history_steps:
            raise DetectorHistoryTooShortError(
                f"{self.name} needs at least {self.min_history_steps} history steps to fit; got {values.shape[0]}")
        self.pairs = names
        self._fit(values, stamps)
        self.fitted = True
        return self

    def score(self, values, timestamp=None, observed=None) -> IntervalScore:
        """Judge one interval: rates (pairs,) in Mbit/s; NaN or observed=False marks a gap (never an outage)."""
        if not self.fitted:
            return IntervalScore.not_ready(f"{self.name}: not fitted")
        vals = np.asarray(values, dtype=float).reshape(-1)
        if vals.shape[0] != len(self.pairs):
            raise AnomalyInputError(f"interval has {vals.shape[0]} values; {self.name} was fitted on {len(self.pairs)} pairs")
        if observed is not None:
            vals = np.where(np.asarray(observed, bool).reshape(-1), vals, np.nan)
        if np.isnan(vals).all():
            return IntervalScore.not_ready("no pair observed in this interval")
        return self._score(vals, timestamp)

    def score_block(self, values, timestamps=None) -> list[IntervalScore]:
        """score() over the rows of a (steps, pairs) block, in order."""
        block, stamps, _ = as_matrix(values, timestamps, self.pairs or None)
        return [self.score(row, stamp) for row, stamp in zip(block, stamps)]

    def detect(self, values, timestamps=None, start_step: int = 0, merge_gap: int = 2) -> list[AnomalyEvent]:
        """Score a block and merge alarming intervals into events (steps counted from start_step)."""
        return merge_events(self.score_block(values, timestamps), self.pairs, start_step, merge_gap)

    def capabilities(self) -> dict[str, bool]:
        return {"needs_forecast": self.needs_forecast, "names_pairs": self.names_pairs, "online": self.online}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name}, {'fitted' if self.fitted else 'unfitted'}, pairs={len(self.pairs)})"


def as_matrix(data, timestamps=None, pairs=None) -> tuple[np.ndarray, np.ndarray, tuple[Pair, ...]]:
    """(values with NaN at gaps, datetime64 timestamps, pairs) from a TrafficSeries or an array."""
    if isinstance(data, TrafficSeries):
        return np.where(data.observed, data.values_mbps, np.nan), data.timestamps, data.pairs
    vals = np.asarray(data, dtype=float)
    if vals.ndim == 1:
        vals = vals[None]
    if vals.ndim != 2 or vals.shape[0] == 0 or vals.shape[1] == 0:
        raise AnomalyInputError(f"values must have shape (steps, pairs); got {vals.shape}")
    if np.isinf(vals).any() or (vals < 0).any():
        raise AnomalyInputError("values must be finite rates >= 0 Mbit/s (NaN marks a gap)")
    if timestamps is None:
        stamps = np.datetime64("2000-01-01T00:00", "s") + np.arange(vals.shape[0]) * np.timedelta64(300, "s")
    else:
        stamps = np.asarray(timestamps).astype("datetime64[s]").reshape(-1)
        if stamps.shape[0] != vals.shape[0]:
            raise AnomalyInputError(f"{stamps.shape[0]} timestamps for {vals.shape[0]} steps")
    if pairs is None:
        names = tuple((f"s{i}", f"d{i}") for i in range(vals.shape[1]))
    else:
        names = tuple((str(a), str(b)) for a, b in pairs)
        if len(names) != vals.shape[1]:
            raise AnomalyInputError(f"{len(names)} pair names for {vals.shape[1]} value columns")
    return vals, stamps, names


def merge_events(scores: Sequence[IntervalScore], pairs: Sequence[Pair], start_step: int = 0,
                 merge_gap: int = 2) -> list[AnomalyEvent]:
    """Alarming intervals no more than merge_gap apart that share a pair (or name none) become one event."""
    events: list[dict[str, Any]] = []
    for offset, s in enumerate(scores):
        if not s.alarm:
            continue
        step = start_step + offset
        named = set(s.pairs)
        last = events[-1] if events else None
        if last and step - last["end"] <= merge_gap and (not named or not last["pairs"] or named & last["pairs"]):
            last["end"] = step
            last["pairs"] |= named
            last["order"] += [p for p in s.pairs if p not in last["order"]]
            if s.score > last["score"]:
                last.update(score=s.score, kind=s.kind or last["kind"], evidence=s.evidence)
        else:
            events.append({"start": step, "end": step, "pairs": named, "order": list(s.pairs), "score": s.score,
                           "kind": s.kind, "evidence": s.evidence})
    return [AnomalyEvent(e["start"], e["end"], e["kind"] or "spike", tuple(pairs[i] for i in e["order"]),
                         float(e["score"]), dict(e["evidence"])) for e in events]


def robust_scale(x: np.ndarray, axis: int = 0, floor: float = 1e-9) -> np.ndarray:
    """1.4826 × median absolute deviation (σ for Gaussian data), ignoring NaN, at least `floor`."""
    med = np.nanmedian(x, axis=axis, keepdims=True)
    mad = np.nanmedian(np.abs(x - med), axis=axis)
    return np.maximum(np.nan_to_num(1.4826 * mad), floor)
