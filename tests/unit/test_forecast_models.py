"""Forecast type, baselines, ETS recursion, conformal coverage, calendar, destination shares."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from vnstitch.forecast import (ConformalForecaster, EventCalendar, Forecast, ForecastInputError, NotFittedError,
                               destination_shares, get_forecaster, time_features)
from vnstitch.forecast.backtest import Split, results_table

STAMPS = np.datetime64("2024-01-01T00:00", "s") + np.arange(2000) * np.timedelta64(300, "s")


def test_importing_forecast_does_not_import_torch():
    code = "import sys, vnstitch.forecast as f; f.get_forecaster('lstm'); f.Forecast; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_forecast_quantile_and_interval():
    qv = np.stack([np.full((2, 3), v) for v in (1.0, 2.0, 5.0, 8.0, 9.0)])
    fc = Forecast.build([("a", "b"), ("b", "a")], STAMPS[:3], np.full((2, 3), 5.0), (0.05, 0.1, 0.5, 0.9, 0.95), qv)
    assert fc.quantile(0.9)[0, 0] == 8.0 and fc.quantile(0.3)[0, 0] == pytest.approx(3.5)
    lo, hi = fc.interval(0.9)
    assert lo[0, 0] == 1.0 and hi[0, 0] == 9.0
    with pytest.raises(ForecastInputError):
        fc.quantile(0.99)
    assert fc.to_frame().shape == (6, 10)
    assert fc.select([("b", "a")]).mean.shape == (1, 3)


def test_last_value_and_seasonal_naive_points():
    rng = np.random.default_rng(1)
    day = 288
    base = 10 + 5 * np.sin(2 * np.pi * np.arange(2000) / day)
    values = np.stack([base, 2 * base], axis=1) * rng.uniform(0.95, 1.05, (2000, 2))
    last = get_forecaster("last_value").fit(values[:1500], STAMPS[:1500])
    fc = last.predict(values[:1600], 4)
    np.testing.assert_allclose(fc.mean, np.repeat(values[1599][:, None], 4, axis=1))
    assert (fc.quantile(0.05) <= fc.mean).all() and (fc.mean <= fc.quantile(0.95)).all()
    naive = get_forecaster("seasonal_naive_day").fit(values[:1500], STAMPS[:1500])
    fc = naive.predict(values[:1600], 3)
    np.testing.assert_allclose(fc.mean, values[1600 - day:1603 - day].T)
    with pytest.raises(NotFittedError):
        get_forecaster("last_value").predict(values, 1)


def test_ets_recursion_matches_statsmodels_fitted_values():
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    rng = np.random.default_rng(2)
    y = np.exp(3 + np.cumsum(rng.normal(0, 0.05, 600))) - 1
    model = get_forecaster("ets", fit_steps=600, warmup_steps=600, max_fit_origins=50).fit(y[:, None], STAMPS[:600])
    res = ETSModel(np.log1p(y), error="add", trend="add", damped_trend=True).fit(disp=False)
    np.testing.assert_allclose(model.params[0], [res.smoothing_level, res.smoothing_trend, res.damping_trend])
    point = model.predict(y[:, None], 1).mean[0, 0]
    assert np.log1p(point) == pytest.approx(res.forecast(1)[0], abs=0.05)


def test_conformal_intervals_reach_coverage_on_unseen_data():
    rng = np.random.default_rng(3)
    values = np.exp(2 + rng.normal(0, 0.3, (2000, 20)).cumsum(axis=0) * 0.05 + rng.normal(0, 0.4, (2000, 20)))
    model = get_forecaster("last_value", max_fit_origins=50).fit(values[:200], STAMPS[:200])  # too few → off
    calibrated = ConformalForecaster(model)
    series = model.as_history(values, STAMPS)
    calibrated.calibrate(series, 200, 1000, horizon=2)
    origins = np.arange(1000, 1998)
    mean, quant = calibrated.predict_origins(series, origins, 2)
    y = values[origins + 1]
    for coverage, (lo, hi) in ((0.8, (1, 3)), (0.9, (0, 4))):
        covered = ((y >= quant[:, lo, :, 0]) & (y <= quant[:, hi, :, 0])).mean()
        assert abs(covered - coverage) < 0.03, (coverage, covered)


def test_calendar_features_and_strict_keys():
    cal = EventCalendar.from_dicts([{"name": "backup", "start": "2024-01-01T00:10", "duration_seconds": 600,
                                     "repeat": "daily"}])
    feats = time_features(STAMPS[:300], cal)
    assert feats.shape == (300, 5)
    assert feats[:, 4].nonzero()[0].tolist() == [2, 3, 290, 291]
    with pytest.raises(ForecastInputError, match="unknown keys"):
        EventCalendar.from_dicts([{"name": "x", "start": "2024-01-01", "duration_seconds": 1, "every": "day"}])
    with pytest.raises(ForecastInputError, match="repeat"):
        EventCalendar.from_dicts([{"name": "x", "start": "2024-01-01", "duration_seconds": 1, "repeat": "hourly"}])


def test_destination_shares_sum_to_one_with_intervals():
    pairs = [("a", "a"), ("a", "b"), ("a", "c"), ("b", "a")]
    mean = np.array([[0.0], [30.0], [10.0], [5.0]])
    qv = np.stack([mean * f for f in (0.5, 0.7, 1.0, 1.3, 1.5)])
    fc = Forecast.build(pairs, STAMPS[:1], mean, (0.05, 0.1, 0.5, 0.9, 0.95), qv)
    shares = destination_shares(fc)
    a = shares["a"]
    assert a.destinations == ("b", "c")
    np.testing.assert_allclose(a.mean[:, 0], [0.75, 0.25])
    assert (a.quantile(0.05) <= a.mean + 1e-9).all() and (a.mean <= a.quantile(0.95) + 1e-9).all()
    assert shares["b"].mean[0, 0] == 1.0
    with pytest.raises(ForecastInputError, match="source 'z'"):
        destination_shares(fc, sources=["z"])


def test_split_and_table():
    split = Split.of(4032)
    assert (split.train_stop, split.calib_stop) == (2419, 3024)
    with pytest.raises(ForecastInputError):
        Split.of(100, (0.5, 0.5, 0.5))
    row = {"model": "m", "horizon": 1, "nmae": 0.1, "rmse": 1.0, "coverage80": 0.8, "coverage90": 0.9,
           "width90": 3.0, "fit_seconds": 1.0, "predict_seconds": 0.001}
    assert "NMAE" in results_table([row]) and "0.1000" in results_table([row])
