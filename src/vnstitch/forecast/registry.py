"""Explicit registry of forecasters by name; unknown names fail listing the valid ones."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ForecastInputError, UnknownForecasterError

# name -> ("module:Class", default keyword arguments); modules are imported only when used
_REGISTRY: dict[str, tuple[str, dict[str, Any]]] = {
    "last_value": ("vnstitch.forecast.baselines:LastValueForecaster", {}),
    "seasonal_naive_day": ("vnstitch.forecast.baselines:SeasonalNaiveForecaster", {"period": "day"}),
    "seasonal_naive_week": ("vnstitch.forecast.baselines:SeasonalNaiveForecaster", {"period": "week"}),
    "ets": ("vnstitch.forecast.statistical:ETSForecaster", {}),
    "arima": ("vnstitch.forecast.statistical:ARIMAForecaster", {}),
    "lstm": ("vnstitch.forecast.neural:RNNForecaster", {"cell": "lstm"}),
    "gru": ("vnstitch.forecast.neural:RNNForecaster", {"cell": "gru"}),
    "auto": ("vnstitch.forecast.auto:AutoForecaster", {}),  # per pair: the pool's best on recent validation
}
_WRAPPERS = {"vnstitch.forecast.calibration:ConformalForecaster"}


def available_forecasters() -> list[str]:
    """Registered model names."""
    return sorted(_REGISTRY)


def register_forecaster(name: str, target: str, **defaults: Any) -> None:
    """Add a model under `name`; `target` is 'module:Class'."""
    if name in _REGISTRY:
        raise ForecastInputError(f"forecaster '{name}' is already registered")
    _REGISTRY[name] = (target, dict(defaults))


def _import(target: str):
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def get_forecaster(name: str, **kwargs: Any):
    """A new, unfitted forecaster by registry name; kwargs override its defaults."""
    if name not in _REGISTRY:
        raise UnknownForecasterError(f"unknown forecaster '{name}'; valid: {', '.join(available_forecasters())}")
    target, defaults = _REGISTRY[name]
    return _import(target)(**{**defaults, **kwargs})


def forecaster_from_state(meta: dict[str, Any], arrays: dict[str, np.ndarray]):
    """Rebuild a fitted forecaster from to_state() output (only registered classes are imported)."""
    target = meta.get("class", "")
    allowed = {t for t, _ in _REGISTRY.values()} | _WRAPPERS
    if target not in allowed:
        raise ForecastInputError(f"model file names class '{target}', which is not a registered forecaster")
    cls = _import(target)
    if hasattr(cls, "from_saved"):
        return cls.from_saved(meta, arrays)
    return cls(**meta["config"]).from_state(meta, arrays)


def load_forecaster(path):
    """Read a model file written by Forecaster.save."""
    path = Path(path)
    if not path.exists():
        raise ForecastInputError(f"model file {path} does not exist")
    with np.load(path, allow_pickle=False) as data:
        try:
            meta = json.loads(str(data["__meta__"]))
        except KeyError:
            raise ForecastInputError(f"{path} is not a vnstitch model file (no __meta__)") from None
        arrays = {k: data[k] for k in data.files if k != "__meta__"}
    return forecaster_from_state(meta, arrays)
