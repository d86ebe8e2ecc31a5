"""Traffic forecasting per (source, destination) pair: baselines, ETS, LSTM/GRU, conformal intervals.

Typical use by the proactive stitching loop (rolling origin, no refit; torch loads only for lstm/gru)::

    from vnstitch.forecast import get_forecaster, load_forecaster
    model = get_forecaster("gru").fit(values_mbps, timestamps, pairs)   # (T, P) Mbit/s, datetime64[s]
    fc = model.predict(recent_mbps, horizon=12, timestamps=recent_ts)   # recent (W, P), same pair order
    fc.mean, fc.quantile(0.9), fc.pairs                                 # (P, 12) arrays in Mbit/s
    model.save("gru.npz"); model = load_forecaster("gru.npz")

Main names: TrafficSeries, Forecast, Forecaster, get_forecaster, available_forecasters,
load_forecaster, ConformalForecaster, EventCalendar, destination_shares, run_backtest, loaders
(load_bundled_abilene, load_abilene_npz, load_cfr_rl, load_long_table, load_sndlib_xml, load_hist).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "TrafficSeries": "series", "Pair": "series", "pair_label": "series",
    "Forecast": "result", "QUANTILE_LEVELS": "result",
    "Forecaster": "base",
    "get_forecaster": "registry", "available_forecasters": "registry", "register_forecaster": "registry",
    "load_forecaster": "registry",
    "ConformalForecaster": "calibration",
    "EventCalendar": "features", "ScheduledEvent": "features", "time_features": "features",
    "DestinationShares": "destinations", "destination_shares": "destinations",
    "run_backtest": "backtest", "results_table": "backtest", "Split": "backtest",
    "ForecastInputError": "errors", "UnknownPairError": "errors", "HistoryTooShortError": "errors",
    "UnknownForecasterError": "errors", "NotFittedError": "errors",
    "load_bundled_abilene": "datasets", "load_abilene_npz": "datasets", "load_cfr_rl": "datasets",
    "load_long_table": "datasets", "load_sndlib_xml": "datasets", "load_hist": "datasets",
    "load_dataset": "datasets", "series_from_frame": "datasets",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    """Import submodules on first use so `import vnstitch.forecast` stays light (no torch)."""
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
