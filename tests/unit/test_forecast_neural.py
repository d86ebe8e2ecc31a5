"""LSTM/GRU specifics: short and gappy histories, calendar events learned, deterministic training."""

from __future__ import annotations

import numpy as np
import pytest

from vnstitch.forecast import EventCalendar, get_forecaster
from tests.tiers import import_or_require

torch = import_or_require("torch", "torch", "pip install torch (the CPU build; `make` installs it)")
torch.set_num_threads(2)

TINY = {"epochs": 3, "samples_per_epoch": 6000, "hidden_size": 16, "head_size": 32, "window": 24,
        "min_window": 6, "max_horizon": 4, "num_threads": 2, "seed": 0}
STAMPS = np.datetime64("2024-01-01T00:00", "s") + np.arange(3000) * np.timedelta64(300, "s")


def _events_series():
    """4 pairs, noisy level; traffic triples during one-off scheduled events."""
    rng = np.random.default_rng(0)
    starts = np.sort(rng.choice(np.arange(50, 2900, 16), 120, replace=False))
    values = 20 * np.exp(rng.normal(0, 0.05, (3000, 4))) * np.array([1, 2, 3, 4])
    events = []
    for start in starts:
        values[start:start + 6] *= 3.0
        events.append({"name": "backup", "start": str(STAMPS[start]), "duration_seconds": 1800})
    return values, EventCalendar.from_dicts(events), starts


def test_calendar_events_are_learned():
    values, calendar, starts = _events_series()
    config = {**TINY, "batch_size": 128, "samples_per_epoch": 10000, "epochs": 4}
    model = get_forecaster("gru", **config).fit(values[:2600], STAMPS[:2600], calendar=calendar)
    active = calendar.features(STAMPS)[:, 0] > 0
    upcoming = [s for s in starts if s > 2650][0]
    calm = [o for o in range(2650, 2990) if not active[o - 8:o + 6].any()][0]
    fc = model.predict(values[:upcoming], 4, timestamps=STAMPS[:upcoming])
    quiet = model.predict(values[:calm + 1], 4, timestamps=STAMPS[:calm + 1])
    assert (fc.mean[:, 1] > 1.5 * values[upcoming - 1]).all()                      # event starts: rate jumps
    assert (np.abs(quiet.mean[:, 1] / values[calm] - 1) < 0.3).all()               # no event: rate stays


def test_short_and_gappy_histories_are_masked_not_refused():
    values, _, _ = _events_series()
    model = get_forecaster("lstm", **{**TINY, "epochs": 1, "samples_per_epoch": 3000}).fit(values[:1500], STAMPS[:1500])
    short = model.predict(values[1000:1008], 4, timestamps=STAMPS[1000:1008])   # shorter than the window
    assert np.isfinite(short.mean).all()
    observed = np.ones((300, 4), bool)
    observed[250:290:3, :2] = False
    gappy = values[1000:1300].copy()
    gappy[~observed] = np.nan
    fc = model.predict(gappy, 4, timestamps=STAMPS[1000:1300], observed=observed)
    assert np.isfinite(fc.mean).all() and (fc.mean > 0).all()


def test_training_is_deterministic():
    values, _, _ = _events_series()
    config = {**TINY, "epochs": 1, "samples_per_epoch": 2000}
    a = get_forecaster("gru", **config).fit(values[:800], STAMPS[:800]).predict(values[:900], 4, timestamps=STAMPS[:900])
    b = get_forecaster("gru", **config).fit(values[:800], STAMPS[:800]).predict(values[:900], 4, timestamps=STAMPS[:900])
    np.testing.assert_array_equal(a.quantile_values, b.quantile_values)


def test_a_model_file_from_another_layout_fails_at_load(tmp_path):
    import json

    from vnstitch.forecast import load_forecaster

    values, _, _ = _events_series()
    config = {**TINY, "epochs": 1, "samples_per_epoch": 1000}
    path = get_forecaster("gru", **config).fit(values[:400], STAMPS[:400]).save(tmp_path / "g.npz")
    data = dict(np.load(path))
    meta = json.loads(str(data["__meta__"]))
    meta["config"]["node_totals"] = False
    data["__meta__"] = np.array(json.dumps(meta))
    np.savez(tmp_path / "old.npz", **data)
    with pytest.raises(ValueError, match="layout"):
        load_forecaster(tmp_path / "old.npz")


def test_negative_median_weight_is_refused():
    from vnstitch.forecast.errors import ForecastInputError

    with pytest.raises(ForecastInputError, match="median_weight"):
        get_forecaster("gru", median_weight=-1)
