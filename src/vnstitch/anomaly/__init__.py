"""Anomaly detection on per-pair traffic: one Detector contract (fit on history, score each interval,
name the pairs), a registry (residual, pca, hst), labelled injection for honest evaluation.

    from vnstitch.anomaly import get_detector
    det = get_detector("residual").fit(history_mbps, timestamps, pairs)   # (T, P), NaN = gap
    verdict = det.score(interval_mbps)          # IntervalScore: ready, alarm, score, pairs, kind
    events = det.detect(block_mbps)             # AnomalyEvent(start, end, kind, pairs, score, evidence)
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "AnomalyEvent": "base", "IntervalScore": "base", "Detector": "base", "KINDS": "base", "merge_events": "base",
    "get_detector": "registry", "available_detectors": "registry", "register_detector": "registry",
    "detector_class": "registry",
    "AnomalyInputError": "errors", "DetectorHistoryTooShortError": "errors", "UnknownDetectorError": "errors",
    "InjectedEvent": "inject", "inject_anomalies": "inject", "pair_spread": "inject",
    "make_events": "inject", "apply_events": "inject",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    """Import submodules on first use (river only for 'hst')."""
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
