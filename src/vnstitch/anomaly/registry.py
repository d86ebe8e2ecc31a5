"""Explicit registry of anomaly detectors by name; unknown names fail listing the valid ones."""

from __future__ import annotations

import importlib
from typing import Any

from .errors import AnomalyInputError, UnknownDetectorError

# name -> ("module:Class", default keyword arguments); modules are imported only when used
_REGISTRY: dict[str, tuple[str, dict[str, Any]]] = {
    "residual": ("vnstitch.anomaly.residual:ResidualDetector", {}),
    "pca": ("vnstitch.anomaly.pca:PCADetector", {}),
    "hst": ("vnstitch.anomaly.library:HalfSpaceTreesDetector", {}),   # needs the `anomaly` extra (river)
}


def available_detectors() -> list[str]:
    """Registered detector names."""
    return sorted(_REGISTRY)


def register_detector(name: str, target: str, **defaults: Any) -> None:
    """Add a detector under `name`; `target` is 'module:Class'."""
    if name in _REGISTRY:
        raise AnomalyInputError(f"detector '{name}' is already registered")
    _REGISTRY[name] = (target, dict(defaults))


def detector_class(name: str):
    """The class registered under `name` (its capability flags are class attributes)."""
    if name not in _REGISTRY:
        raise UnknownDetectorError(f"unknown detector '{name}'; valid: {', '.join(available_detectors())}")
    module, _, attr = _REGISTRY[name][0].partition(":")
    return getattr(importlib.import_module(module), attr)


def get_detector(name: str, **kwargs: Any):
    """A new, unfitted detector by registry name; kwargs override its defaults."""
    cls = detector_class(name)
    return cls(**{**_REGISTRY[name][1], **kwargs})
