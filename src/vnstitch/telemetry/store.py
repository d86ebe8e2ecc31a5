"""Where samples land and where the forecaster reads them: SQLite by default, memory for tests.

One row per (tenant, src, dst, time in ms): re-sending a sample changes nothing, a corrected value
replaces the old one. `rates()` turns rows into the (steps, pairs) matrix of mean bit/s per interval
that forecasters read, NaN where nothing was measured (a gap is missing data, never zero).
Retention (`compact`): samples older than `raw_s` are folded into hourly means; nothing older than
`retention_s` is kept. Inserts trust their input: validate with `validate_batch` first.
"""

from __future__ import annotations

import math
import os
import sqlite3
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from vnstitch.store.sqlite_files import ThreadConnections
from vnstitch.errors import InvalidInput, StoreUnavailable
from vnstitch.telemetry.base import DOWNSAMPLE_S, RAW_S, RETENTION_S, Sample, TelemetryError, time_key

Pair = tuple[str, str]
_HOUR_MS = int(DOWNSAMPLE_S * 1000)


@dataclass(frozen=True)
class Compaction:
    """What one `compact` did: raw samples folded into hourly means, rows deleted as too old."""

    folded: int
    deleted: int


class TelemetryStore(ABC):
    """The telemetry table contract (one shared suite: tests/contract/test_telemetry_contract.py)."""

    @abstractmethod
    def insert(self, samples: Iterable[Sample]) -> int:
        """Store samples in one transaction; the number of rows that are new or changed value."""

    @abstractmethod
    def series(self, tenant: str, src: str, dst: str, since: float, until: float | None = None,
               limit: int = 10_000) -> list[Sample]:
        """Raw samples of one series with since <= time <= until, oldest first, at most `limit`."""

    @abstractmethod
    def latest(self, tenant: str) -> list[Sample]:
        """The newest raw sample of each of the tenant's series, sorted by (src, dst)."""

    @abstractmethod
    def export(self, since: float, after: tuple | None = None, limit: int = 10_000) -> list[Sample]:
        """Raw samples of every tenant with time >= since, ordered by (tenant, src, dst, time), at
        most `limit`, starting after the key `after` = (tenant, src, dst, time_ms) of the last one
        a previous page returned (a replica catching up pages through a peer's copy this way)."""

    @abstractmethod
    def compact(self, now: float, retention_s: float = RETENTION_S, raw_s: float = RAW_S) -> Compaction:
        """Fold whole hours older than now - raw_s into hourly means; drop what is older than retention."""

    @abstractmethod
    def _rows(self, tenant: str, pairs: Sequence[Pair], start_ms: int, end_ms: int):
        """(column, time_ms, rate) arrays of raw rows with start_ms < time_ms <= end_ms, and
        (column, hour_start_ms, mean rate) arrays of hourly rows overlapping that span."""

    def close(self) -> None:
        pass

    def rates(self, tenant: str, pairs: Sequence[Pair], end: float, steps: int, interval_s: float) -> np.ndarray:
        """Mean bit/s per interval, shape (steps, len(pairs)); row k covers
        (end - (steps - k) * interval_s, end - (steps - k - 1) * interval_s]. NaN where no sample.
        Intervals without raw samples take the hourly mean of the hours they overlap (older data)."""
        if steps < 0 or not interval_s > 0 or not math.isfinite(interval_s) or not math.isfinite(end):
            raise InvalidInput(f"rates() needs steps >= 0 and a finite interval > 0; got steps={steps}, "
                               f"interval_s={interval_s}, end={end}")
        if steps == 0 or not pairs:
            return np.full((steps, len(pairs)), np.nan)
        unique = list(dict.fromkeys((str(a), str(b)) for a, b in pairs))
        out = np.full((steps, len(unique)), np.nan)
        interval_ms = round(interval_s * 1000)
        end_ms = time_key(end)
        start_ms = end_ms - steps * interval_ms
        (col, t_ms, rate), (hcol, h_ms, hrate) = self._rows(tenant, unique, start_ms, end_ms)
        total = np.zeros(out.shape)
        count = np.zeros(out.shape)
        if len(col):
            step = (t_ms - start_ms - 1) // interval_ms
            np.add.at(total, (step, col), rate)
            np.add.at(count, (step, col), 1)
        raw = count > 0
        out[raw] = total[raw] / count[raw]
        if len(hcol):
            self._fill_hourly(out, raw, hcol, h_ms, hrate, start_ms, interval_ms)
        index = {pair: i for i, pair in enumerate(unique)}
        return out[:, [index[(str(a), str(b))] for a, b in pairs]]

    @staticmethod
    def _fill_hourly(out, raw, hcol, h_ms, hrate, start_ms: int, interval_ms: int) -> None:
        """Cells without raw samples get the overlap-weighted mean of the hourly buckets they touch."""
        steps = out.shape[0]
        first = np.maximum((h_ms - start_ms) // interval_ms, 0)
        last = np.minimum(-((start_ms - h_ms - _HOUR_MS) // interval_ms) - 1, steps - 1)
        length = np.maximum(last - first + 1, 0)
        keep = length > 0
        first, length, hcol, h_ms, hrate = first[keep], length[keep], hcol[keep], h_ms[keep], hrate[keep]
        if not len(first):
            return
        offsets = np.arange(length.sum()) - np.repeat(np.cumsum(length) - length, length)
        step = np.repeat(first, length) + offsets
        col = np.repeat(hcol, length)
        lo = np.maximum(start_ms + step * interval_ms, np.repeat(h_ms, length))
        hi = np.minimum(start_ms + (step + 1) * interval_ms, np.repeat(h_ms, length) + _HOUR_MS)
        weight = (hi - lo).astype(float)
        total = np.zeros(out.shape)
        weights = np.zeros(out.shape)
        np.add.at(total, (step, col), np.repeat(hrate, length) * weight)
        np.add.at(weights, (step, col), weight)
        fill = ~raw & (weights > 0)
        out[fill] = total[fill] / weights[fill]


# memory ----------------------------------------------------------------------------------------
class MemoryTelemetryStore(TelemetryStore):
    """Dicts under a lock, with the same contract as the SQLite store."""

    def __init__(self):
        self._raw: dict[tuple[str, str, str], dict[int, tuple[float, float | None, float | None]]] = {}
        self._hourly: dict[tuple[str, str, str], dict[int, list[float]]] = {}  # hour_ms → 6 sums/counts
        self._lock = threading.Lock()

    def insert(self, samples: Iterable[Sample]) -> int:
        rows = _rows_of(samples)  # all converted before anything is stored
        changed = 0
        with self._lock:
            for tenant, src, dst, t, *value in rows:
                series = self._raw.setdefault((tenant, src, dst), {})
                if series.get(t) != tuple(value):
                    series[t] = tuple(value)
                    changed += 1
        return changed

    def series(self, tenant, src, dst, since, until=None, limit=10_000):
        lo, hi = time_key(since), (time_key(until) if until is not None else None)
        with self._lock:
            rows = sorted((t, v) for t, v in self._raw.get((tenant, src, dst), {}).items()
                          if t >= lo and (hi is None or t <= hi))
        return [Sample(tenant, src, dst, t / 1000, *v) for t, v in rows[:limit]]

    def export(self, since, after=None, limit=10_000):
        lo, start = time_key(since), tuple(after) if after is not None else None
        with self._lock:
            rows = sorted((*key, t, v) for key, series in self._raw.items() for t, v in series.items() if t >= lo)
        if start is not None:
            rows = [r for r in rows if r[:4] > start]
        return [Sample(tenant, src, dst, t / 1000, *v) for tenant, src, dst, t, v in rows[:limit]]

    def latest(self, tenant):
        with self._lock:
            found = [(key, max(rows.items())) for key, rows in self._raw.items() if key[0] == tenant and rows]
        return [Sample(*key, t / 1000, *v) for key, (t, v) in sorted(found)]

    def compact(self, now, retention_s=RETENTION_S, raw_s=RAW_S):
        oldest_ms = time_key(now - retention_s)
        fold_before = _fold_before_ms(now, raw_s, retention_s)
        folded = deleted = 0
        with self._lock:
            for key, rows in self._raw.items():
                for t in [t for t in rows if t < max(fold_before, oldest_ms)]:
                    rate, latency, loss = rows.pop(t)
                    if t < oldest_ms:
                        deleted += 1
                        continue
                    sums = self._hourly.setdefault(key, {}).setdefault(t // _HOUR_MS * _HOUR_MS, [0.0] * 6)
                    sums[0] += rate
                    sums[1] += 1
                    if latency is not None:
                        sums[2] += latency
                        sums[3] += 1
                    if loss is not None:
                        sums[4] += loss
                        sums[5] += 1
                    folded += 1
            for hours in self._hourly.values():
                for hour in [h for h in hours if h + _HOUR_MS <= oldest_ms]:
                    del hours[hour]
                    deleted += 1
        return Compaction(folded, deleted)

    def _rows(self, tenant, pairs, start_ms, end_ms):
        raw, hourly = ([], [], []), ([], [], [])
        with self._lock:
            for col, (src, dst) in enumerate(pairs):
                for t, (rate, _, _) in self._raw.get((tenant, src, dst), {}).items():
                    if start_ms < t <= end_ms:
                        raw[0].append(col), raw[1].append(t), raw[2].append(rate)
                for hour, sums in self._hourly.get((tenant, src, dst), {}).items():
                    if hour < end_ms and hour + _HOUR_MS > start_ms and sums[1]:
                        hourly[0].append(col), hourly[1].append(hour), hourly[2].append(sums[0] / sums[1])
        return _arrays(raw), _arrays(hourly)


# sqlite ----------------------------------------------------------------------------------------
SCHEMA = """
CREATE TABLE IF NOT EXISTS telemetry_samples (
  tenant TEXT NOT NULL, src TEXT NOT NULL, dst TEXT NOT NULL, time_ms INTEGER NOT NULL,
  rate_bps REAL NOT NULL, latency_s REAL, loss REAL,
  PRIMARY KEY (tenant, src, dst, time_ms)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS telemetry_hourly (
  tenant TEXT NOT NULL, src TEXT NOT NULL, dst TEXT NOT NULL, hour_ms INTEGER NOT NULL,
  rate_sum REAL NOT NULL, rate_n INTEGER NOT NULL, latency_sum REAL NOT NULL, latency_n INTEGER NOT NULL,
  loss_sum REAL NOT NULL, loss_n INTEGER NOT NULL,
  PRIMARY KEY (tenant, src, dst, hour_ms)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS telemetry_series (
  tenant TEXT NOT NULL, src TEXT NOT NULL, dst TEXT NOT NULL, last_ms INTEGER NOT NULL,
  PRIMARY KEY (tenant, src, dst)
) WITHOUT ROWID;
"""
_UPSERT = ("INSERT INTO telemetry_samples VALUES (?,?,?,?,?,?,?) "
           "ON CONFLICT (tenant, src, dst, time_ms) DO UPDATE SET rate_bps=excluded.rate_bps, "
           "latency_s=excluded.latency_s, loss=excluded.loss WHERE rate_bps IS NOT excluded.rate_bps "
           "OR latency_s IS NOT excluded.latency_s OR loss IS NOT excluded.loss")
_UPSERT_SERIES = ("INSERT INTO telemetry_series VALUES (?,?,?,?) ON CONFLICT (tenant, src, dst) "
                  "DO UPDATE SET last_ms=excluded.last_ms WHERE excluded.last_ms > last_ms")
_PAIRS_PER_QUERY = 300  # 3 parameters each, well under SQLite's limit


class SQLiteTelemetryStore(TelemetryStore):
    """Tables telemetry_samples / telemetry_hourly / telemetry_series in a SQLite file (WAL).

    The file may be the state store's own (the tables do not collide) or a file of its own (the
    default of `open_telemetry_store`: telemetry batches then never wait for the state store's lock)."""

    def __init__(self, path: str, synchronous: str = "FULL"):
        self.path = str(path)
        self._files = ThreadConnections(self.path, synchronous, "telemetry store")
        self._write_lock = threading.Lock()
        try:
            self._db().executescript("BEGIN IMMEDIATE;" + SCHEMA + "COMMIT;")
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot initialise telemetry store {self.path}: {exc}") from None

    def _db(self) -> sqlite3.Connection:
        return self._files.get()

    def _write(self, work):
        """Run work(db) inside BEGIN IMMEDIATE … COMMIT (ROLLBACK on any error: all or nothing)."""
        db = self._db()
        with self._write_lock:
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    result = work(db)
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
                return result
            except sqlite3.OperationalError as exc:
                raise StoreUnavailable(f"telemetry store {self.path}: {exc}") from None

    def close(self) -> None:
        self._files.close()

    def insert(self, samples: Iterable[Sample]) -> int:
        rows = _rows_of(samples)
        if not rows:
            return 0
        last: dict[tuple[str, str, str], int] = {}
        for tenant, src, dst, t, *_ in rows:
            if last.get((tenant, src, dst), -1) < t:
                last[(tenant, src, dst)] = t

        def work(db):
            before = db.total_changes
            db.executemany(_UPSERT, rows)
            changed = db.total_changes - before
            db.executemany(_UPSERT_SERIES, [(*key, t) for key, t in last.items()])
            return changed
        return self._write(work)

    def series(self, tenant, src, dst, since, until=None, limit=10_000):
        hi = time_key(until) if until is not None else 2**62
        rows = self._db().execute(
            "SELECT time_ms, rate_bps, latency_s, loss FROM telemetry_samples WHERE tenant=? AND src=? AND dst=? "
            "AND time_ms >= ? AND time_ms <= ? ORDER BY time_ms LIMIT ?",
            (tenant, src, dst, time_key(since), hi, int(limit))).fetchall()
        return [Sample(tenant, src, dst, t / 1000, rate, latency, loss) for t, rate, latency, loss in rows]

    def export(self, since, after=None, limit=10_000):
        tenant, src, dst, t = after if after is not None else ("", "", "", -1)
        # row values walk the primary key in order: each page is one index range scan
        rows = self._db().execute(
            "SELECT tenant, src, dst, time_ms, rate_bps, latency_s, loss FROM telemetry_samples "
            "WHERE (tenant, src, dst, time_ms) > (?, ?, ?, ?) AND time_ms >= ? "
            "ORDER BY tenant, src, dst, time_ms LIMIT ?",
            (tenant, src, dst, int(t), time_key(since), int(limit))).fetchall()
        return [Sample(tenant, src, dst, t / 1000, rate, latency, loss)
                for tenant, src, dst, t, rate, latency, loss in rows]

    def latest(self, tenant):
        rows = self._db().execute(
            # CROSS JOIN keeps the series table outside: one primary-key seek per series
            "SELECT s.src, s.dst, s.time_ms, s.rate_bps, s.latency_s, s.loss FROM telemetry_series AS l "
            "CROSS JOIN telemetry_samples AS s ON s.tenant=l.tenant AND s.src=l.src AND s.dst=l.dst "
            "AND s.time_ms=l.last_ms WHERE l.tenant=? ORDER BY l.src, l.dst", (tenant,)).fetchall()
        return [Sample(tenant, src, dst, t / 1000, rate, latency, loss) for src, dst, t, rate, latency, loss in rows]

    def compact(self, now, retention_s=RETENTION_S, raw_s=RAW_S):
        oldest_ms = time_key(now - retention_s)
        fold_before = _fold_before_ms(now, raw_s, retention_s)

        def work(db):
            deleted = db.execute("DELETE FROM telemetry_samples WHERE time_ms < ?", (oldest_ms,)).rowcount
            db.execute(
                "INSERT INTO telemetry_hourly SELECT tenant, src, dst, (time_ms / ?) * ? AS hour, TOTAL(rate_bps), "
                "COUNT(*), TOTAL(latency_s), COUNT(latency_s), TOTAL(loss), COUNT(loss) FROM telemetry_samples "
                "WHERE time_ms < ? GROUP BY tenant, src, dst, hour "
                "ON CONFLICT (tenant, src, dst, hour_ms) DO UPDATE SET rate_sum=rate_sum+excluded.rate_sum, "
                "rate_n=rate_n+excluded.rate_n, latency_sum=latency_sum+excluded.latency_sum, "
                "latency_n=latency_n+excluded.latency_n, loss_sum=loss_sum+excluded.loss_sum, "
                "loss_n=loss_n+excluded.loss_n", (_HOUR_MS, _HOUR_MS, fold_before))
            folded = db.execute("DELETE FROM telemetry_samples WHERE time_ms < ?", (fold_before,)).rowcount
            deleted += db.execute("DELETE FROM telemetry_hourly WHERE hour_ms + ? <= ?",
                                  (_HOUR_MS, oldest_ms)).rowcount
            db.execute("DELETE FROM telemetry_series WHERE last_ms < ?", (fold_before,))
            return Compaction(folded, deleted)
        return self._write(work)

    def _rows(self, tenant, pairs, start_ms, end_ms):
        db = self._db()
        raw, hourly = [], []
        db.execute("BEGIN")  # one snapshot: a compaction cannot move rows between the two reads
        try:
            for first in range(0, len(pairs), _PAIRS_PER_QUERY):
                chunk = pairs[first:first + _PAIRS_PER_QUERY]
                values = ",".join("(?,?,?)" for _ in chunk)
                args = [x for col, (src, dst) in enumerate(chunk, first) for x in (src, dst, col)]
                cte = f"WITH p(src, dst, col) AS (VALUES {values}) "
                raw += db.execute(
                    cte + "SELECT p.col, s.time_ms, s.rate_bps FROM p CROSS JOIN telemetry_samples AS s "
                    "ON s.tenant=? AND s.src=p.src AND s.dst=p.dst AND s.time_ms > ? AND s.time_ms <= ?",
                    (*args, tenant, start_ms, end_ms)).fetchall()
                hourly += db.execute(
                    cte + "SELECT p.col, h.hour_ms, h.rate_sum / h.rate_n FROM p CROSS JOIN telemetry_hourly AS h "
                    "ON h.tenant=? AND h.src=p.src AND h.dst=p.dst AND h.hour_ms > ? AND h.hour_ms < ? "
                    "WHERE h.rate_n > 0", (*args, tenant, start_ms - _HOUR_MS, end_ms)).fetchall()
        finally:
            db.execute("COMMIT")
        return _columns(raw), _columns(hourly)

    def count(self) -> int:
        return self._db().execute("SELECT COUNT(*) FROM telemetry_samples").fetchone()[0]


def _rows_of(samples: Iterable[Sample]) -> list[tuple]:
    """Rows as both stores keep them; a sample that is not even numbers fails the whole batch."""
    try:
        return [(s.tenant, s.src, s.dst, time_key(s.time), float(s.rate_bps),
                 None if s.latency_s is None else float(s.latency_s), None if s.loss is None else float(s.loss))
                for s in samples]
    except (TypeError, ValueError, OverflowError) as exc:
        raise TelemetryError(f"a sample is not numeric ({exc}); validate batches with validate_batch first") from None


def _fold_before_ms(now: float, raw_s: float, retention_s: float) -> int:
    """Raw samples before this (a whole hour) are folded: whole hours only, so an hour is folded once."""
    cutoff = time_key(now - min(raw_s, retention_s))
    return cutoff // _HOUR_MS * _HOUR_MS


def _columns(rows: list[tuple]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """[(col, time_ms, value), ...] → three arrays (one float conversion: ms times fit a float64 exactly)."""
    if not rows:
        return _arrays(([], [], []))
    table = np.array(rows, dtype=float)
    return table[:, 0].astype(np.int64), table[:, 1].astype(np.int64), table[:, 2]


def _arrays(columns) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    col, t, value = columns
    return (np.asarray(col, dtype=np.int64), np.asarray(t, dtype=np.int64), np.asarray(value, dtype=float))


# the one place that picks a telemetry store ----------------------------------------------------
TELEMETRY_SCHEMES = ("sqlite", "memory")


def default_telemetry_url(state_store=None) -> str:
    """$VNSTITCH_TELEMETRY; else beside a SQLite state store ('state.db' → 'state.telemetry.db'), in
    memory beside a memory store, and a replica-local file under the user data dir otherwise (etcd)."""
    if os.environ.get("VNSTITCH_TELEMETRY"):
        return os.environ["VNSTITCH_TELEMETRY"]
    from vnstitch.store.memory import MemoryStore
    from vnstitch.store.sqlite import SQLiteStore

    if isinstance(state_store, SQLiteStore):
        stem, _ = os.path.splitext(state_store.path)
        return f"sqlite://{os.path.abspath(stem)}.telemetry.db"
    if isinstance(state_store, MemoryStore):
        return "memory://"
    from platformdirs import user_data_dir

    return f"sqlite://{os.path.join(user_data_dir('vnstitch'), 'telemetry.db')}"


def open_telemetry_store(url: str | None = None, state_store=None) -> TelemetryStore:
    """'sqlite:///abs/path.db' (may be the state store's own file), 'sqlite://rel/path.db' or 'memory://'."""
    url = url or default_telemetry_url(state_store)
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in TELEMETRY_SCHEMES:
        raise InvalidInput(f"unknown telemetry store '{url}' (use one of: "
                           + ", ".join(f"{s}://" for s in TELEMETRY_SCHEMES) + ")", field="telemetry")
    if scheme == "memory":
        return MemoryTelemetryStore()
    if not rest:
        raise InvalidInput("sqlite telemetry store needs a path: sqlite:///path/to/telemetry.db", field="telemetry")
    return SQLiteTelemetryStore(rest)
