"""Exogenous features: time of day, day of week and a user calendar of scheduled events."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from .errors import ForecastInputError
from .series import to_datetime64

_REPEATS = {"none": 0, "daily": 86400, "weekly": 7 * 86400}
_EVENT_KEYS = {"name", "start", "duration_seconds", "repeat"}


@dataclass(frozen=True)
class ScheduledEvent:
    """A known event (backup, software update) that may change traffic while it runs."""

    name: str
    start: np.datetime64
    duration_seconds: float
    repeat: str = "none"

    def active(self, timestamps: np.ndarray) -> np.ndarray:
        """1.0 where a timestamp falls inside an occurrence of the event, else 0.0."""
        since = (timestamps - self.start).astype("timedelta64[s]").astype(np.int64)
        period = _REPEATS[self.repeat]
        if period:
            since = np.where(since >= 0, since % period, since)
        return ((since >= 0) & (since < self.duration_seconds)).astype(float)


class EventCalendar:
    """Scheduled events grouped by name; each name is one 0/1 feature column."""

    def __init__(self, events: Iterable[ScheduledEvent] = ()):
        self.events = tuple(events)

    @classmethod
    def from_dicts(cls, items: Iterable[dict]) -> "EventCalendar":
        """Events from dicts with name, start, duration_seconds and optional repeat (none|daily|weekly)."""
        events = []
        for i, item in enumerate(items):
            unknown = set(item) - _EVENT_KEYS
            if unknown:
                raise ForecastInputError(f"calendar event {i}: unknown keys {sorted(unknown)}; allowed {sorted(_EVENT_KEYS)}")
            missing = {"name", "start", "duration_seconds"} - set(item)
            if missing:
                raise ForecastInputError(f"calendar event {i}: missing {sorted(missing)}")
            repeat = str(item.get("repeat", "none"))
            if repeat not in _REPEATS:
                raise ForecastInputError(f"calendar event {i}: repeat '{repeat}' is not one of {sorted(_REPEATS)}")
            duration = float(item["duration_seconds"])
            if not duration > 0:
                raise ForecastInputError(f"calendar event {i}: duration_seconds must be > 0")
            start = to_datetime64([item["start"]])[0]
            events.append(ScheduledEvent(str(item["name"]), start, duration, repeat))
        return cls(events)

    @classmethod
    def from_yaml(cls, path) -> "EventCalendar":
        """Read a YAML file holding a list of events (or {'events': [...]})."""
        import yaml

        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or []
        if isinstance(data, dict):
            data = data.get("events", [])
        return cls.from_dicts(data)

    def to_dicts(self) -> list[dict]:
        return [{"name": e.name, "start": str(e.start), "duration_seconds": e.duration_seconds, "repeat": e.repeat}
                for e in self.events]

    @property
    def names(self) -> list[str]:
        return sorted({e.name for e in self.events})

    def features(self, timestamps: np.ndarray) -> np.ndarray:
        """(steps, len(names)) 0/1 matrix: is an event of that name running."""
        ts = np.asarray(timestamps).astype("datetime64[s]")
        out = np.zeros((len(ts), len(self.names)))
        for event in self.events:
            col = self.names.index(event.name)
            out[:, col] = np.maximum(out[:, col], event.active(ts))
        return out


def time_features(timestamps: np.ndarray, calendar: EventCalendar | None = None) -> np.ndarray:
    """(steps, 4 + events): sin/cos of time of day and of day of week, then calendar flags."""
    seconds = np.asarray(timestamps).astype("datetime64[s]").astype(np.int64)
    day = 2 * np.pi * (seconds % 86400) / 86400.0
    # 1970-01-01 was a Thursday; shift so that Monday = 0
    week = 2 * np.pi * ((seconds + 3 * 86400) % (7 * 86400)) / (7 * 86400.0)
    cols = [np.sin(day), np.cos(day), np.sin(week), np.cos(week)]
    base = np.stack(cols, axis=1)
    if calendar is None or not calendar.events:
        return base
    return np.concatenate([base, calendar.features(timestamps)], axis=1)
