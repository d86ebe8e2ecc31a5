"""Every registered anomaly detector through one suite: not ready on short history, gaps never alarm,
a large spike is found (and its pair named where the detector names pairs), scores are deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from vnstitch.anomaly import (DetectorHistoryTooShortError, UnknownDetectorError, available_detectors,
                              detector_class, get_detector)
from vnstitch.errors import MissingDependency
from tests.tiers import require_tier

DAY = 288
N_PAIRS = 16
FAST = {"hst": {"calibration_steps": 288}}  # defaults in bench/
_available: dict[str, str | None] = {}


def synthetic(days: int, seed: int = 0) -> np.ndarray:
    """Diurnal traffic (Mbit/s) on N_PAIRS pairs with 3 % multiplicative noise, gap-free."""
    rng = np.random.default_rng(seed)
    t = np.arange(days * DAY)
    level = rng.uniform(5, 200, N_PAIRS)
    phase = rng.uniform(0, 2 * np.pi, N_PAIRS)
    shape = 1.0 + 0.5 * np.sin(2 * np.pi * t[:, None] / DAY + phase)
    return level * shape * rng.lognormal(0, 0.03, (t.size, N_PAIRS))


def make(name: str):
    """A fresh detector; where its optional library is not installed, skipped with the reason (a developer
    machine) or failed (CI=true: `make test` installs the anomaly extra)."""
    if name not in _available:
        try:
            get_detector(name, **FAST.get(name, {})).fit(synthetic(1, seed=99)[:288])
            _available[name] = None
        except MissingDependency as exc:
            _available[name] = str(exc)
    require_tier(f"detector {name}", _available[name])
    return get_detector(name, **FAST.get(name, {}))


@pytest.fixture(scope="module")
def data():
    values = synthetic(4)
    return values[:3 * DAY], values[3 * DAY:]


@pytest.fixture(params=available_detectors())
def name(request):
    return request.param


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(UnknownDetectorError, match="valid: hst, pca, residual"):
        get_detector("isolation")


def test_capability_flags_are_declared(name):
    cls = detector_class(name)
    assert {type(getattr(cls, f)) for f in ("needs_forecast", "names_pairs", "online")} == {bool}


def test_short_history_raises_and_unfitted_is_not_ready(name, data):
    det = make(name)
    verdict = det.score(data[1][0])
    assert not verdict.ready and not verdict.alarm
    with pytest.raises(DetectorHistoryTooShortError, match="history steps"):
        det.fit(data[0][:det.min_history_steps - 1])
    assert not det.fitted
    assert not det.score(data[1][0]).ready


def test_gaps_never_alarm(name, data):
    history, test = data
    clean = make(name).fit(history).score_block(test)
    gapped_values = test.copy()
    gapped_values[100:130, 3] = np.nan          # one pair's telemetry missing for 2.5 hours
    gapped_values[200] = np.nan                 # a whole interval missing
    gapped = make(name).fit(history).score_block(gapped_values)
    assert not gapped[200].ready and not gapped[200].alarm
    for t in range(100, 130):
        assert 3 not in gapped[t].pairs, f"step {t}: a gap was blamed on the missing pair"
        if not clean[t].alarm:
            assert not gapped[t].alarm, f"step {t}: alarm only because of the gap ({gapped[t]})"


def test_large_spike_is_found_and_named(name, data):
    history, test = data
    values = test.copy()
    spread = 1.4826 * np.median(np.abs(np.diff(history[:, 5])))
    values[150, 5] += 50 * spread
    det = make(name).fit(history)
    scores = det.score_block(values)
    window = [s for s in scores[150:154] if s.alarm]
    assert window, f"{name} missed a 50x spike: {scores[150]}"
    if det.names_pairs:
        assert window[0].pairs[0] == 5
    events = make(name).fit(history).detect(values)
    assert any(e.start <= 153 and e.end >= 150 for e in events)


def test_scores_are_deterministic(name, data):
    history, test = data
    a = [s.score for s in make(name).fit(history).score_block(test[:96])]
    b = [s.score for s in make(name).fit(history).score_block(test[:96])]
    assert a == b
