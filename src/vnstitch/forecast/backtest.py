"""Rolling-origin backtest: fit on 60%, calibrate on 15%, score every origin of the last 25%."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .calibration import ConformalForecaster
from .errors import ForecastInputError
from .registry import get_forecaster
from .series import TrafficSeries

DEFAULT_MODELS = ("last_value", "seasonal_naive_day", "seasonal_naive_week", "ets", "arima", "lstm", "gru")


@dataclass(frozen=True)
class Split:
    """Step indices: train [0, train_stop), calibration [train_stop, calib_stop), test [calib_stop, n_steps)."""

    train_stop: int
    calib_stop: int
    n_steps: int

    @classmethod
    def of(cls, n_steps: int, fractions: Sequence[float] = (0.6, 0.15, 0.25)) -> "Split":
        if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1) > 1e-9:
            raise ForecastInputError(f"split fractions must be three positive numbers summing to 1; got {fractions}")
        train = int(n_steps * fractions[0])
        calib = int(n_steps * (fractions[0] + fractions[1]))
        return cls(train, calib, n_steps)


@dataclass
class ModelRun:
    """One model's test forecasts (origins × pairs × steps) plus its metric rows."""

    model: str
    origins: np.ndarray
    mean: np.ndarray
    quantiles: np.ndarray
    quantile_levels: tuple[float, ...]
    results: list[dict[str, Any]] = field(default_factory=list)
    fit_cpu_seconds: float = 0.0   # process CPU time of fit + calibration (all threads)
    error: str = ""                # why the model could not be scored (its rows say so too)


def score(series: TrafficSeries, origins, mean, quantiles, levels, horizon: int, pairs_mask) -> dict[str, float]:
    """NMAE, RMSE (Mbit/s), 80/90% coverage and mean 90% width (Mbit/s) at step `horizon`."""
    keep = origins + horizon < series.n_steps
    rows = origins[keep] + horizon
    y = series.values_mbps[rows][:, pairs_mask]
    ok = series.observed[rows][:, pairs_mask]
    point = mean[keep][:, pairs_mask, horizon - 1]
    band = {}
    for coverage in (0.8, 0.9):
        lo = quantiles[keep][:, _level(levels, (1 - coverage) / 2)][:, pairs_mask, horizon - 1]
        hi = quantiles[keep][:, _level(levels, (1 + coverage) / 2)][:, pairs_mask, horizon - 1]
        band[coverage] = (lo, hi)
    err = np.abs(y - point)[ok]
    lo90, hi90 = band[0.9]
    return {
        "nmae": float(err.sum() / np.abs(y[ok]).sum()),
        "rmse": float(np.sqrt(np.mean(err ** 2))),
        "coverage80": float(((y >= band[0.8][0]) & (y <= band[0.8][1]))[ok].mean()),
        "coverage90": float(((y >= lo90) & (y <= hi90))[ok].mean()),
        "width90": float((hi90 - lo90)[ok].mean()),
    }


def _level(levels, q: float) -> int:
    hit = np.flatnonzero(np.isclose(levels, q))
    if not hit.size:
        raise ForecastInputError(f"model has no {q:g} quantile (levels {levels})")
    return int(hit[0])


def run_backtest(series: TrafficSeries, models: Sequence[str] = DEFAULT_MODELS, horizons: Sequence[int] = (1, 12),
                 model_options: dict[str, dict] | None = None, fractions=(0.6, 0.15, 0.25), calibrate: bool = True,
                 timing_calls: int = 20, progress: bool = True) -> list[ModelRun]:
    """Fit, calibrate and score each model; metrics use pairs with traffic in the training split.

    A model that fails (too little history for its period, a fit that raises) is reported, in its run's
    `error` and in rows {"model", "horizon", "error"}; the other models are still scored."""
    horizons = sorted({int(h) for h in horizons})
    if not horizons or horizons[0] < 1:
        raise ForecastInputError(f"horizons must be positive step counts; got {horizons}")
    split = Split.of(series.n_steps, fractions)
    train = series.slice(0, split.train_stop)
    pairs_mask = (train.values_mbps * train.observed).sum(axis=0) > 0
    origins = np.arange(split.calib_stop - 1, series.n_steps - 1)
    runs = []
    for name in models:
        try:
            runs.append(_score_model(series, name, (model_options or {}).get(name, {}), split, train, pairs_mask,
                                     origins, horizons, calibrate, timing_calls, progress))
        except Exception as exc:  # noqa: BLE001 - reported in the table; the other models go on
            why = f"{type(exc).__name__}: {exc}" if not isinstance(exc, ForecastInputError) else str(exc)
            empty = np.zeros((0,))
            runs.append(ModelRun(name, origins, empty, empty, (), error=why,
                                 results=[{"model": name, "horizon": h, "error": why} for h in horizons]))
    return runs


def _score_model(series, name, options, split, train, pairs_mask, origins, horizons, calibrate, timing_calls,
                 progress) -> ModelRun:
    """Fit (and calibrate) one model on the training split; score it at every test origin."""
    from vnstitch.optional import progress_bar

    hmax = horizons[-1]
    model = get_forecaster(name, **options)
    if hasattr(model, "show_progress"):
        model.show_progress = progress
    started, cpu_started = time.perf_counter(), time.process_time()
    model.fit(train)
    if calibrate:
        bar = progress_bar(split.calib_stop - split.train_stop, desc=f"{name} calibrate", disable=not progress,
                           leave=False)
        model = ConformalForecaster(model).calibrate(series, split.train_stop, split.calib_stop, hmax,
                                                     pairs_mask, progress=bar)
        bar.close()
    fit_seconds = time.perf_counter() - started
    fit_cpu_seconds = time.process_time() - cpu_started
    bar = progress_bar(len(origins), desc=f"{name} test", disable=not progress, leave=False)
    mean, quant = model.predict_origins(series, origins, hmax, progress=bar)
    bar.close()
    run = ModelRun(name, origins, mean, quant, model.quantile_levels, fit_cpu_seconds=fit_cpu_seconds)
    for horizon in horizons:
        row = {"model": name, "horizon": horizon,
               **score(series, origins, mean, quant, model.quantile_levels, horizon, pairs_mask),
               "fit_seconds": round(fit_seconds, 3),
               "predict_seconds": _predict_latency(model, series, origins, horizon, timing_calls)}
        run.results.append(row)
    return run


def _predict_latency(model, series: TrafficSeries, origins, horizon: int, calls: int) -> float:
    """Median seconds of one predict() call (all pairs, `horizon` steps) at test origins."""
    picks = origins[np.linspace(0, len(origins) - 1, max(1, calls)).astype(int)]
    times = []
    for origin in picks:
        history = series.slice(max(0, origin + 1 - model.context_steps), origin + 1)
        started = time.perf_counter()
        model.predict(history, horizon)
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def results_table(rows: list[dict[str, Any]]) -> str:
    """Plain-text table of result rows."""
    cols = ["model", "horizon", "nmae", "rmse", "coverage80", "coverage90", "width90", "fit_seconds", "predict_seconds"]
    heads = ["model", "h", "NMAE", "RMSE Mb/s", "cov80", "cov90", "width90 Mb/s", "fit s", "predict ms"]
    lines, failed = [], []
    for row in rows:
        if row.get("error"):
            if row["model"] not in failed:
                failed.append(row["model"])
                lines.append([row["model"], str(row["horizon"]), "failed", "", "", "", "", "", ""])
            continue
        lines.append([row["model"], str(row["horizon"]), f"{row['nmae']:.4f}", f"{row['rmse']:.2f}",
                      f"{row['coverage80']:.3f}", f"{row['coverage90']:.3f}", f"{row['width90']:.2f}",
                      f"{row['fit_seconds']:.1f}", f"{row['predict_seconds'] * 1000:.2f}"])
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(heads)]
    fmt = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    errors = {row["model"]: row["error"] for row in rows if row.get("error")}
    notes = [f"{model} failed: {why}" for model, why in errors.items()]
    return "\n".join([fmt(heads), fmt(["-" * w for w in widths]), *(fmt(line) for line in lines), *notes])


def plot_runs(series: TrafficSeries, run: ModelRun, horizon: int, path, n_pairs: int = 4, steps: int = 576) -> None:
    """PNG: actual vs forecast at `horizon` steps ahead with 80/90% bands, for the largest pairs."""
    from vnstitch.optional import pyplot

    plt = pyplot()

    top = np.argsort(-series.values_mbps.mean(axis=0))[:n_pairs]
    origins = run.origins[:steps]
    origins = origins[origins + horizon < series.n_steps]
    rows = origins + horizon
    lv = np.asarray(run.quantile_levels)
    fig, axes = plt.subplots(len(top), 1, figsize=(11, 2.4 * len(top)), sharex=True)
    for ax, p in zip(np.atleast_1d(axes), top):
        t = series.timestamps[rows]
        for coverage, alpha in ((0.9, 0.18), (0.8, 0.3)):
            lo = run.quantiles[: len(origins), _level(lv, (1 - coverage) / 2), p, horizon - 1]
            hi = run.quantiles[: len(origins), _level(lv, (1 + coverage) / 2), p, horizon - 1]
            ax.fill_between(t, lo, hi, alpha=alpha, color="tab:blue", label=f"{int(coverage * 100)}% interval")
        ax.plot(t, series.values_mbps[rows, p], color="black", lw=0.8, label="actual")
        ax.plot(t, run.mean[: len(origins), p, horizon - 1], color="tab:red", lw=0.8, label="forecast")
        ax.set_ylabel("Mbit/s")
        ax.set_title(f"{series.pairs[p][0]} → {series.pairs[p][1]}  ({run.model}, {horizon} step(s) ahead)", fontsize=9)
    np.atleast_1d(axes)[0].legend(loc="upper right", fontsize=7, ncol=4)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
