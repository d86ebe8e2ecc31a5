"""The forecast against what happened: per pair the one-step error and whether the actual fell inside
the 80% and 90% intervals, and rolling figures (NMAE, bias, coverage) over a window, per pair and overall.

Pure functions over plain rows, so that the loop can keep each interval's scored rows in the store (in
that interval's predicted graph) and derive the rolling figures from them on any replica.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np

BANDS = {"80": (0.1, 0.9), "90": (0.05, 0.95)}   # coverage → (lower, upper) quantile levels

Pair = tuple[str, str]


def next_step_bands(forecast, pairs: Sequence[Pair]) -> dict[Pair, dict[str, float]]:
    """From a Forecast (Mbit/s): the first step's point and 80/90% bands per pair, in bit/s."""
    out: dict[Pair, dict[str, float]] = {}
    point = np.maximum(forecast.mean[:, 0], 0.0) * 1e6
    bands = {}
    for name, (lo, hi) in BANDS.items():
        try:
            bands[name] = (forecast.quantile(lo)[:, 0] * 1e6, forecast.quantile(hi)[:, 0] * 1e6)
        except Exception:  # noqa: BLE001 - a model without these levels is scored on its point only
            continue
    for i, pair in enumerate(pairs):
        entry = {"pointBps": float(point[i])}
        for name, (lo, hi) in bands.items():
            entry[f"lo{name}Bps"], entry[f"hi{name}Bps"] = float(max(lo[i], 0.0)), float(hi[i])
        out[pair] = entry
    return out


def score_interval(expected: Iterable[Mapping], actual_bps: Mapping[Pair, float]) -> list[dict]:
    """Rows of one interval: each forecast entry ({from, to, pointBps[, loNNBps, hiNNBps]}) whose pair has
    an actual rate, with its error (forecast − actual, bit/s) and the interval hits (None: no band)."""
    rows = []
    for entry in expected:
        pair = (entry["from"], entry["to"])
        actual = actual_bps.get(pair)
        point = entry.get("pointBps")
        if actual is None or point is None or not np.isfinite(actual):
            continue
        row = {"from": pair[0], "to": pair[1], "actualBps": round(float(actual), 1),
               "pointBps": round(float(point), 1), "errorBps": round(float(point) - float(actual), 1),
               "rawPointBps": round(float(entry.get("rawPointBps", point)), 1)}
        for name in BANDS:
            lo, hi = entry.get(f"lo{name}Bps"), entry.get(f"hi{name}Bps")
            row[f"in{name}"] = None if lo is None or hi is None else bool(lo <= actual <= hi)
            if lo is not None and hi is not None and hi <= lo:
                row[f"flat{name}"] = True   # no width: online calibration cannot widen it (not counted there)
        raw_lo, raw_hi = entry.get("rawLo90Bps"), entry.get("rawHi90Bps")
        if raw_lo is not None and raw_hi is not None:   # the model's own band, before any refinement
            row["rawIn90"] = bool(raw_lo <= actual <= raw_hi)
        rows.append(row)
    return rows


def _figures(rows: list[dict]) -> dict:
    actual = sum(r["actualBps"] for r in rows)
    error = [r["errorBps"] for r in rows]
    out = {"samples": len(rows),
           "nmae": sum(abs(e) for e in error) / actual if actual > 0 else None,
           "bias": sum(error) / actual if actual > 0 else None}
    for name in BANDS:
        hits = [r[f"in{name}"] for r in rows if r.get(f"in{name}") is not None]
        out[f"coverage{name}"] = sum(hits) / len(hits) if hits else None
    raw = [r["rawIn90"] for r in rows if r.get("rawIn90") is not None]
    if raw:   # the model's own 90% band (the published one may be refined: corrected, calibrated)
        out["modelCoverage90"] = sum(raw) / len(raw)
    return out


def rolling(intervals: Iterable[list[dict]]) -> tuple[dict, dict[Pair, dict]]:
    """Overall and per-pair figures over the scored rows of several intervals."""
    intervals = [rows for rows in intervals if rows]
    by_pair: dict[Pair, list[dict]] = {}
    for rows in intervals:
        for row in rows:
            by_pair.setdefault((row["from"], row["to"]), []).append(row)
    overall = {"intervals": len(intervals), **_figures([r for rows in intervals for r in rows])}
    return overall, {pair: _figures(rows) for pair, rows in sorted(by_pair.items())}


def out_of_bounds(overall: Mapping, min_samples: int, min_coverage: float, max_nmae: float) -> str:
    """Why the rolling figures are outside the bounds ('' when they are not, or too few to tell)."""
    if overall.get("intervals", 0) < min_samples:
        return ""
    coverage, nmae = overall.get("coverage90"), overall.get("nmae")
    model = overall.get("modelCoverage90")
    if model is not None and model < min_coverage:   # the model's own band: refinement must not hide it
        return f"rolling 90% coverage of the model's own band {model:.2f} < {min_coverage:g}"
    if coverage is not None and coverage < min_coverage:
        return f"rolling 90% coverage {coverage:.2f} < {min_coverage:g}"
    if nmae is not None and nmae > max_nmae:
        return f"rolling NMAE {nmae:.3f} > {max_nmae:g}"
    return ""


def worst_pairs(per_pair: Mapping[Pair, dict], count: int = 5, min_samples: int = 1) -> list[dict]:
    """The pairs with the lowest 90% coverage (then the highest NMAE), for a compact status."""
    ranked = sorted(((p, f) for p, f in per_pair.items() if f["samples"] >= min_samples),
                    key=lambda item: (item[1]["coverage90"] if item[1]["coverage90"] is not None else 1.0,
                                      -(item[1]["nmae"] or 0.0)))
    return [{"from": p[0], "to": p[1], **_rounded(f)} for p, f in ranked[:count]]


def _rounded(figures: Mapping) -> dict:
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in figures.items()}


def corrections(intervals: Iterable[list[dict]], min_samples: int, dead_band: float = 0.1,
                limits: tuple[float, float] = (0.25, 4.0)) -> dict[Pair, float]:
    """Per pair, Σ actual / Σ the model's own (uncorrected) point forecast over these intervals, where it
    is off by more than `dead_band` and to the same side in every one of them (online level correction: a
    pair whose traffic doubled gets ×2 until the model catches up; a model that follows the level with a lag,
    as last value does, misses to both sides and is left alone); clamped to `limits`."""
    actual: dict[Pair, float] = {}
    raw: dict[Pair, float] = {}
    count: dict[Pair, int] = {}
    above: dict[Pair, int] = {}
    for rows in intervals:
        for row in rows:
            pair = (row["from"], row["to"])
            point = row.get("rawPointBps", row["pointBps"])
            actual[pair] = actual.get(pair, 0.0) + row["actualBps"]
            raw[pair] = raw.get(pair, 0.0) + point
            count[pair] = count.get(pair, 0) + 1
            above[pair] = above.get(pair, 0) + (row["actualBps"] > point)
    out = {}
    for pair, n in count.items():
        if n < min_samples or raw[pair] <= 0 or actual[pair] <= 0:
            continue
        ratio = actual[pair] / raw[pair]
        persistent = above[pair] == n if ratio > 1 else above[pair] == 0
        if abs(ratio - 1.0) > dead_band and persistent:
            out[pair] = min(max(ratio, limits[0]), limits[1])
    return out


def recent_levels(intervals: Iterable[list[dict]], min_samples: int) -> dict[Pair, tuple]:
    """(mean, lowest, highest) of each pair's actuals (bit/s) over these intervals, for pairs with at least
    `min_samples` of them and some traffic: what stands in for a pair the model does not know (below), and
    the spread a band of no width borrows (a model fitted while the pair was idle has residual quantiles of
    0, and no calibration can widen a band of no width)."""
    seen: dict[Pair, list[float]] = {}
    for rows in intervals:
        for row in rows:
            seen.setdefault((row["from"], row["to"]), []).append(row["actualBps"])
    return {pair: (sum(v) / len(v), min(v), max(v)) for pair, v in seen.items() if len(v) >= min_samples and sum(v) > 0}


def unseen_levels(intervals: Iterable[list[dict]], levels: Mapping[Pair, tuple], floor: float = 0.01) -> dict[Pair, tuple]:
    """Of `levels` (recent_levels over the same intervals), the pairs the model forecasts (next to) nothing
    for while they carry traffic (Σ its own point forecast ≤ `floor` × Σ actual, e.g. a pair that appeared
    after the model was fitted): a level correction cannot scale a forecast of zero, so their recent level
    and range stand in until the model knows them."""
    raw: dict[Pair, float] = {}
    count: dict[Pair, int] = {}
    for rows in intervals:
        for row in rows:
            pair = (row["from"], row["to"])
            raw[pair] = raw.get(pair, 0.0) + row.get("rawPointBps", row["pointBps"])
            count[pair] = count.get(pair, 0) + 1
    return {pair: level for pair, level in levels.items() if raw.get(pair, 0.0) <= floor * level[0] * count[pair]}


def summary(overall: Mapping, per_pair: Mapping[Pair, dict], window: int, min_samples: int) -> dict:
    """What the policy's status keeps: the overall figures and the worst pairs (camelCase, rounded)."""
    return {"window": window, **_rounded(overall), "worst": worst_pairs(per_pair, min_samples=min_samples)}


__all__ = ["BANDS", "corrections", "recent_levels", "unseen_levels", "next_step_bands", "out_of_bounds", "rolling", "score_interval", "summary", "worst_pairs"]
