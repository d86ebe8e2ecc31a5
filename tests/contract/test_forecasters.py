"""Every registered forecaster through one suite: shapes, quantiles, save/load, bad input, error table."""

from __future__ import annotations

import numpy as np
import pytest

from vnstitch.forecast import (ConformalForecaster, ForecastInputError, HistoryTooShortError, UnknownPairError,
                               available_forecasters, get_forecaster, load_bundled_abilene, load_forecaster)
from vnstitch.forecast.backtest import score

# small, fast, deterministic configurations (the benchmark uses the defaults)
FAST = {
    "lstm": {"epochs": 4, "samples_per_epoch": 12000, "hidden_size": 32, "head_size": 64, "window": 36,
             "num_threads": 2, "seed": 0},
    "gru": {"epochs": 4, "samples_per_epoch": 12000, "hidden_size": 32, "head_size": 64, "window": 36,
            "num_threads": 2, "seed": 0},
    "ets": {"fit_steps": 576, "warmup_steps": 144, "max_fit_origins": 200},
    "arima": {"fit_steps": 576, "warmup_steps": 144, "max_fit_origins": 200, "method": "hannan_rissanen"},
}
FAST["auto"] = {"pool": ["last_value", "seasonal_naive_day", "ets"], "member_options": {"ets": FAST["ets"]}}
# NMAE at 1 and 12 steps on the fixed slice below (measured, plus a small margin); lower is better
MAX_NMAE = {
    "last_value": (0.099, 0.160),          # measured 0.094, 0.153
    "seasonal_naive_day": (0.215, 0.215),  # measured 0.206, 0.207
    "seasonal_naive_week": (0.235, 0.235), # measured 0.227, 0.227
    "ets": (0.097, 0.168),                 # measured 0.092, 0.160
    "arima": (0.095, 0.157),               # measured 0.090, 0.150 (Hannan-Rissanen, 2-day fit window)
    "lstm": (0.093, 0.155),                # measured 0.089, 0.148
    "gru": (0.093, 0.155),                 # measured 0.089, 0.147
    "auto": (0.095, 0.156),                # measured 0.091, 0.149 (pool last_value, seasonal_naive_day, ets)
}
TRAIN_STOP, TEST_START, TEST_STOP = 2304, 2592, 2880   # days 1-8 fit, day 9 calibrate, day 10 test


@pytest.fixture(scope="module")
def abilene():
    series = load_bundled_abilene()
    top = np.argsort(-series.values_mbps[:TRAIN_STOP].mean(axis=0))[:40]
    return series.select([series.pairs[i] for i in sorted(top)]).slice(0, TEST_STOP)


@pytest.fixture(scope="module")
def fitted(abilene):
    models = {}
    for name in available_forecasters():
        train = abilene.slice(0, TRAIN_STOP)
        if name == "seasonal_naive_week":
            train = abilene.slice(0, TEST_START)  # needs more than a week of history
        models[name] = get_forecaster(name, **FAST.get(name, {})).fit(train)
    return models


def test_registry_lists_all_models_and_rejects_unknown():
    assert {"last_value", "seasonal_naive_day", "seasonal_naive_week", "ets", "lstm", "gru"} <= set(available_forecasters())
    with pytest.raises(ValueError, match="valid: .*last_value"):
        get_forecaster("prophet")


@pytest.mark.parametrize("name", available_forecasters())
def test_forecast_shapes_quantiles_and_flags(fitted, abilene, name):
    model = fitted[name]
    fc = model.predict(abilene.slice(0, TEST_START), horizon=12)
    assert fc.mean.shape == (abilene.n_pairs, 12)
    assert fc.pairs == abilene.pairs
    assert fc.quantile_values.shape == (5, abilene.n_pairs, 12)
    assert {0.05, 0.1, 0.5, 0.9, 0.95} <= set(fc.quantile_levels)
    assert np.all(np.diff(fc.quantile_values, axis=0) >= 0) and np.all(fc.quantile_values >= 0)
    assert np.isfinite(fc.mean).all()
    assert fc.timestamps[0] == abilene.timestamps[TEST_START - 1] + np.timedelta64(300, "s")
    flags = model.capabilities()
    assert {"supports_probabilistic", "supports_exogenous", "supports_variable_length"} <= set(flags)
    assert all(isinstance(v, bool) for v in flags.values())


@pytest.mark.parametrize("name", available_forecasters())
def test_save_load_round_trip_is_identical(fitted, abilene, tmp_path, name):
    model = ConformalForecaster(fitted[name]).calibrate(abilene, TRAIN_STOP + 288 * 0, TRAIN_STOP + 96, horizon=3)
    history = abilene.slice(0, TEST_START)
    before = model.predict(history, horizon=6)
    loaded = load_forecaster(model.save(tmp_path / f"{name}.npz"))
    after = loaded.predict(history, horizon=6)
    np.testing.assert_array_equal(before.mean, after.mean)
    np.testing.assert_array_equal(before.quantile_values, after.quantile_values)
    assert loaded.name == model.name and loaded.pairs == model.pairs


@pytest.mark.parametrize("name", available_forecasters())
def test_bad_input_is_rejected_with_a_clear_error(fitted, abilene, name):
    model = fitted[name]
    history = abilene.slice(0, TEST_START).values_mbps.copy()
    stamps = abilene.timestamps[:TEST_START]
    bad = history.copy()
    bad[-1, 3] = np.nan
    with pytest.raises(ForecastInputError, match="NaN"):
        model.predict(bad, 3, timestamps=stamps)
    bad = history.copy()
    bad[-2, 0] = -1.0
    with pytest.raises(ForecastInputError, match="negative"):
        model.predict(bad, 3, timestamps=stamps)
    with pytest.raises(ForecastInputError, match="shape"):
        model.predict(history[:, :-1], 3, timestamps=stamps)
    renamed = list(abilene.pairs)
    renamed[0] = ("NOWHERE", "ELSEWHERE")
    with pytest.raises(UnknownPairError, match="NOWHERE->ELSEWHERE"):
        model.predict(history, 3, timestamps=stamps, pairs=renamed)
    short = model.min_history_steps - 1
    if short > 0:
        with pytest.raises(HistoryTooShortError, match="at least"):
            model.predict(history[-short:], 3, timestamps=stamps[-short:])
    with pytest.raises(ForecastInputError, match="horizon"):
        model.predict(history, 0, timestamps=stamps)


def test_max_error_table_and_neural_beats_last_value(fitted, abilene):
    origins = np.arange(TEST_START - 1, TEST_STOP - 1)
    mask = np.ones(abilene.n_pairs, bool)
    measured = {}
    for name, model in fitted.items():
        mean, quant = model.predict_origins(abilene, origins, 12)
        measured[name] = tuple(score(abilene, origins, mean, quant, model.quantile_levels, h, mask)["nmae"]
                               for h in (1, 12))
    print("NMAE (1, 12 steps):", {k: tuple(round(x, 4) for x in v) for k, v in measured.items()})
    for name, (h1, h12) in measured.items():
        assert h1 <= MAX_NMAE[name][0] and h12 <= MAX_NMAE[name][1], (name, h1, h12)
    for name in ("lstm", "gru"):
        assert measured[name][0] < measured["last_value"][0]
        assert measured[name][1] < measured["last_value"][1]


def test_auto_is_as_good_as_the_best_model_of_its_pool(fitted, abilene):
    """`auto` picks per pair and step by validation error: within 1% of its pool's best in each cell."""
    origins = np.arange(TEST_START - 1, TEST_STOP - 1)
    mask = np.ones(abilene.n_pairs, bool)
    nmae = {}
    for name in ("auto", *FAST["auto"]["pool"]):
        mean, quant = fitted[name].predict_origins(abilene, origins, 12)
        nmae[name] = [score(abilene, origins, mean, quant, fitted[name].quantile_levels, h, mask)["nmae"] for h in (1, 12)]
    for i, h in enumerate((1, 12)):
        best = min(nmae[name][i] for name in FAST["auto"]["pool"])
        assert nmae["auto"][i] <= 1.01 * best, (h, nmae)
    assert set(fitted["auto"].chosen()) <= set(FAST["auto"]["pool"])


def test_auto_rejects_an_unknown_pool_model_and_a_mismatched_file(tmp_path):
    with pytest.raises(ForecastInputError, match="unknown pool model.*valid: .*last_value"):
        get_forecaster("auto", pool=["prophet"])
