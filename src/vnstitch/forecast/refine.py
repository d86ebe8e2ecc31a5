"""Champion and challenger: fit a new model on recent history minus a held-back window, score it and the
model in use on that window (one step ahead, rolling origin, no refit), and keep the better one."""

from __future__ import annotations

import hashlib
import math

import numpy as np

from .errors import ForecastInputError
from .series import TrafficSeries

COVERAGE_TARGET = 0.9
COVERAGE_SLACK = 0.03    # a 90% coverage within 0.87–0.93 costs nothing
COVERAGE_WEIGHT = 0.5    # NMAE-equivalents per unit of coverage outside that band


def holdout_scores(model, series: TrafficSeries, start: int) -> dict[str, float | None]:
    """NMAE, bias and 80/90% coverage of one-step forecasts for the targets in [start, n_steps)."""
    first = max(start - 1, model.min_history_steps - 1)
    origins = np.arange(first, series.n_steps - 1)
    if origins.size < 1:
        raise ForecastInputError(f"held-back window [{start}, {series.n_steps}) leaves no origin to score")
    mean, quant = model.predict_origins(series, origins, 1)
    y = series.values_mbps[origins + 1]
    ok = series.observed[origins + 1]
    point = mean[:, :, 0]
    actual = float(y[ok].sum())
    out: dict[str, float | None] = {
        "nmae": float(np.abs(point - y)[ok].sum() / actual) if actual > 0 else None,
        "bias": float((point - y)[ok].sum() / actual) if actual > 0 else None,
        "origins": float(origins.size)}
    levels = list(model.quantile_levels)
    for name, (lo, hi) in (("coverage80", (0.1, 0.9)), ("coverage90", (0.05, 0.95))):
        if lo in levels and hi in levels:
            low, high = quant[:, levels.index(lo), :, 0], quant[:, levels.index(hi), :, 0]
            out[name] = float(((y >= low) & (y <= high))[ok].mean()) if ok.any() else None
    return out


def holdout_score(figures: dict) -> float:
    """One number to compare models by: NMAE, plus a penalty for 90% coverage away from 0.9 (lower is
    better; inf when the forecasts were not finite)."""
    nmae, coverage = figures.get("nmae"), figures.get("coverage90")
    if nmae is None or not math.isfinite(nmae):
        return math.inf
    penalty = 0.0 if coverage is None else max(0.0, abs(coverage - COVERAGE_TARGET) - COVERAGE_SLACK)
    return nmae + COVERAGE_WEIGHT * penalty


def challenger_wins(before: dict | None, after: dict) -> tuple[bool, str]:
    """Whether the challenger replaces the champion, and why (in words for the status)."""
    if holdout_score(after) == math.inf:
        return False, "the challenger's forecasts on the held-back window are not finite"
    if before is None:
        return True, "no model in use to compare with"
    b, a = holdout_score(before), holdout_score(after)
    if a < b:
        return True, f"challenger scores {a:.4f} < champion {b:.4f} on the held-back window"
    return False, f"challenger scores {a:.4f} ≥ champion {b:.4f} on the held-back window"


def fit_challenger(model_name: str, values, observed, stamps, pairs, interval_s: float, path: str,
                   champion_path: str = "", champion_checksum: str = "", held_back: int = 0) -> dict:
    """Fit `model_name` on all but the last `held_back` intervals, score it and the champion (its artifact
    checked against its checksum) there, and save it to `path`. Returns the figures and the verdict."""
    from .registry import get_forecaster, load_forecaster

    series = TrafficSeries.from_array(values, stamps, [tuple(p) for p in pairs], observed, interval_s)
    model = get_forecaster(model_name)
    held_back = int(held_back)
    fit_stop = series.n_steps - held_back
    if held_back < 2 or fit_stop < model.min_history_steps + 2:
        held_back, fit_stop = 0, series.n_steps   # too little history to hold any back: judge nothing
    model.fit(series.slice(0, fit_stop))
    after = holdout_scores(model, series, fit_stop) if held_back else {}
    before = None
    note = ""
    if held_back and champion_path:
        try:
            with open(champion_path, "rb") as handle:
                if hashlib.sha256(handle.read()).hexdigest() != champion_checksum:
                    raise ForecastInputError("its artifact does not match its checksum")
            champion = load_forecaster(champion_path)
            if tuple(tuple(p) for p in champion.pairs) != series.pairs:
                raise ForecastInputError("it was trained for other pairs")
            before = holdout_scores(champion, series, fit_stop)
        except Exception as exc:  # noqa: BLE001 - an unusable champion cannot win: said in the record
            note = f"champion not comparable ({exc}); "
    if held_back:
        wins, why = challenger_wins(before, after)
    else:
        wins, why = True, "too little history to hold a window back"
    if wins:
        model.save(path)
    return {"path": path if wins else "", "promoted": wins, "why": note + why, "before": before or {},
            "after": after, "fitSteps": fit_stop, "heldBack": held_back}


__all__ = ["challenger_wins", "fit_challenger", "holdout_score", "holdout_scores"]
