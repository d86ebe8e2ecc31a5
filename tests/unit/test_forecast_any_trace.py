"""Issue 11, item 7 and 8: any real trace at any interval through `forecast eval` (.hist with --nodes and
--interval, 15-minute tables), seasonal periods from the data's interval, a failing model reported beside
the scored ones, empty SNDlib files as gaps, ARIMA in the pool, and --device refusing an absent GPU."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vnstitch.cli import forecast_cmd
from vnstitch.forecast import ForecastInputError, get_forecaster, load_dataset, load_sndlib_xml
from vnstitch.forecast.series import TrafficSeries

from tests.unit.test_forecast_data import SNDLIB

NODES = ["a", "b", "c"]


def _daily(steps: int, interval_s: float, seed: int = 0) -> np.ndarray:
    """(steps, 9) Mbit/s with a daily cycle at this interval, a little noise, the diagonal zero."""
    rng = np.random.default_rng(seed)
    t = np.arange(steps) * interval_s
    base = 50 + 30 * np.sin(2 * np.pi * t / 86400.0)
    values = base[:, None] * rng.uniform(0.5, 2.0, 9)[None, :] * np.exp(0.05 * rng.standard_normal((steps, 9)))
    values[:, [0, 4, 8]] = 0.0
    return values


def _hist(path, values_mbps: np.ndarray) -> None:
    path.write_text("".join(" ".join(f"{v * 1e6:.0f}" for v in row) + "\n" for row in values_mbps))


def _table(path, values_mbps: np.ndarray, interval_s: float) -> None:
    start = np.datetime64("2026-01-05T00:00", "s")
    lines = ["timestamp,source,destination,value"]
    pairs = [(a, b) for a in NODES for b in NODES]
    for i, row in enumerate(values_mbps):
        stamp = start + np.timedelta64(int(i * interval_s), "s")
        lines += [f"{stamp},{a},{b},{v:.4f}" for (a, b), v in zip(pairs, row)]
    path.write_text("\n".join(lines) + "\n")


def test_seasonal_periods_follow_the_data_interval():
    """15-minute data: a day is 96 steps (it was taken as 288 and 8 days of 15-minute data were refused)."""
    stamps = np.datetime64("2026-01-05T00:00", "s") + np.timedelta64(900, "s") * np.arange(8 * 96)
    series = TrafficSeries.from_array(_daily(8 * 96, 900), stamps, [(a, b) for a in NODES for b in NODES],
                                      None, 900)
    day = get_forecaster("seasonal_naive_day").fit(series)
    week = get_forecaster("seasonal_naive_week").fit(series)   # 672 steps of history are enough
    assert (day.period_steps, week.period_steps) == (96, 672)
    ets = get_forecaster("ets", max_fit_origins=20).fit(series)
    assert (ets.fit_steps, ets.warmup_steps) == (672, 96)
    # the day-periodic model repeats yesterday: its forecast is the value 96 steps back
    forecast = day.predict(series, 3)
    np.testing.assert_allclose(forecast.mean[:, 0], series.values_mbps[-96], rtol=1e-6)


def test_eval_reads_a_hist_file_with_nodes_and_interval(tmp_path, capsys):
    trace = tmp_path / "trace.hist"
    _hist(trace, _daily(4 * 96, 900))
    assert forecast_cmd.main(["eval", "--dataset", str(trace), "--models", "last_value", "--quiet"]) == 2
    assert "needs --nodes (its node order) and --interval" in capsys.readouterr().err
    out_json = tmp_path / "r.json"
    code = forecast_cmd.main(["eval", "--dataset", str(trace), "--nodes", ",".join(NODES), "--interval", "15m",
                              "--horizon", "1,4", "--models", "last_value,seasonal_naive_day", "--quiet",
                              "--json", str(out_json)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "384 steps x 9 pairs, interval 900 s" in out
    rows = json.loads(out_json.read_text())["results"]
    assert {(r["model"], r["horizon"]) for r in rows} == {(m, h) for m in ("last_value", "seasonal_naive_day")
                                                         for h in (1, 4)}
    assert all(0 < r["nmae"] < 1 for r in rows)
    # a node order that does not fit the matrices is an error naming the line
    assert forecast_cmd.main(["eval", "--dataset", str(trace), "--nodes", "a,b", "--interval", "15m",
                              "--models", "last_value", "--quiet"]) == 2
    assert "expected 2×2 = 4 for the given node order" in capsys.readouterr().err


def test_a_failing_model_is_reported_and_the_others_are_scored(tmp_path, capsys):
    """Three days of 15-minute data: a week-periodic model cannot fit, last value and ETS still score."""
    table = tmp_path / "three-days.csv"
    _table(table, _daily(3 * 96, 900), 900)
    out_json = tmp_path / "r.json"
    code = forecast_cmd.main(["eval", "--dataset", str(table), "--horizon", "1,4", "--quiet", "--json",
                              str(out_json), "--models", "last_value,seasonal_naive_week,ets",
                              "--option", "ets.max_fit_origins=20"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "seasonal_naive_week failed: SeasonalNaiveForecaster needs more than 672 steps" in captured.out
    assert "error: seasonal_naive_week failed" in captured.err
    rows = json.loads(out_json.read_text())["results"]
    failed = [r for r in rows if r.get("error")]
    assert {r["model"] for r in failed} == {"seasonal_naive_week"} and len(failed) == 2
    assert {r["model"] for r in rows if "nmae" in r} == {"last_value", "ets"}
    # every model failing is a failure of the command
    assert forecast_cmd.main(["eval", "--dataset", str(table), "--models", "seasonal_naive_week", "--quiet"]) == 1


def test_an_interval_that_contradicts_the_format_is_refused():
    with pytest.raises(ForecastInputError, match="5-minute matrices; --interval 900 s"):
        load_dataset("abilene", interval_seconds=900)
    with pytest.raises(ForecastInputError, match="applies to .hist, AbileneTM and SNDlib XML"):
        load_dataset("some.csv", nodes=["a"])


def test_an_empty_sndlib_file_is_a_gap_not_zero_traffic(tmp_path):
    empty = SNDLIB.split("<demands>")[0] + "<demands>\n </demands>\n</network>\n"
    for time, ab in (("20040301-0000", 1.0), ("20040301-0010", 4.0)):
        (tmp_path / f"d-{time}.xml").write_text(SNDLIB.format(time=time, ab=ab, dst="A"))
    (tmp_path / "d-20040301-0005.xml").write_text(empty.format(time="20040301-0005"))
    series = load_sndlib_xml(tmp_path)
    assert series.observed[:, 1].tolist() == [True, False, True]
    assert series.values_mbps[[0, 2], 1].tolist() == [1.0, 4.0]
    for name in ("d-20040301-0000.xml", "d-20040301-0010.xml"):
        (tmp_path / name).write_text(empty.format(time=name[2:-4]))
    with pytest.raises(ForecastInputError, match="every interval is a gap"):
        load_sndlib_xml(tmp_path)


def test_arima_recursion_matches_statsmodels_forecast():
    """The point forecast our recursion runs at each origin equals statsmodels' own forecast with the
    fitted coefficients on the same window (after the warm-up the start-up of the two has died out)."""
    from statsmodels.tsa.arima.model import ARIMA

    values = _daily(4 * 288, 300, seed=3)
    stamps = np.datetime64("2026-01-05T00:00", "s") + np.timedelta64(300, "s") * np.arange(len(values))
    series = TrafficSeries.from_array(values, stamps, [(a, b) for a in NODES for b in NODES], None, 300)
    model = get_forecaster("arima", p=2, q=1, max_fit_origins=20).fit(series)
    pair = 1
    assert np.any(model.ar[pair] != 0) and np.any(model.ma[pair] != 0)
    window = np.log1p(values[-model.context_steps:, pair])
    ours = model._point_log(np.log1p(values[-model.context_steps:]), np.ones((model.context_steps, 9), bool),
                            stamps[-model.context_steps:], 6)[pair]
    params = np.r_[model.ar[pair], model.ma[pair], 0.01]
    theirs = ARIMA(window, order=(2, 1, 1), trend="n").filter(params).forecast(6)
    np.testing.assert_allclose(ours, theirs, atol=1e-6)
    # a gap carries the last value (no change, no innovation): what the gap's cell holds does not matter
    observed = np.ones((model.context_steps, 9), bool)
    observed[-2] = False
    logs = np.log1p(values[-model.context_steps:])
    garbage = logs.copy()
    garbage[-2] = 99.0
    kept = model._point_log(logs, observed, stamps[-model.context_steps:], 3)
    np.testing.assert_array_equal(kept, model._point_log(garbage, observed, stamps[-model.context_steps:], 3))
    assert not np.allclose(kept, model._point_log(garbage, np.ones_like(observed), stamps[-model.context_steps:], 3))


def test_device_cuda_is_refused_clearly_without_a_gpu_and_used_with_one(tmp_path, capsys):
    import torch

    with pytest.raises(ForecastInputError, match="device must be 'cpu', 'cuda' or 'cuda:N'"):
        get_forecaster("gru", device="tpu")
    out = tmp_path / "gru.npz"
    code = forecast_cmd.main(["train", "--model", "gru", "--out", str(out), "--device", "cuda",
                              "--option", "epochs=1", "--option", "samples_per_epoch=512", "--option", "window=24"])
    err = capsys.readouterr().err
    if not torch.cuda.is_available():
        assert code == 2 and not out.exists()
        assert "device 'cuda' asked for, but" in err and "use device 'cpu' (the default)" in err
    else:   # trained on the GPU, saved, and predicting on the CPU
        assert code == 0, err
        assert forecast_cmd.main(["predict", "--model-file", str(out), "--horizon", "2"]) == 0


def test_aggregate_averages_observed_steps_and_keeps_empty_blocks_as_gaps():
    stamps = np.datetime64("2026-01-05T00:00", "s") + np.timedelta64(300, "s") * np.arange(7)
    values = np.array([[1.0], [2.0], [6.0], [4.0], [0.0], [0.0], [9.0]])
    observed = np.array([[True], [True], [False], [False], [False], [False], [True]])
    series = TrafficSeries.from_array(values, stamps, [("a", "b")], observed, 300).aggregate(2)
    assert series.interval_seconds == 600 and series.n_steps == 3   # the seventh step is a partial block
    assert series.values_mbps[:, 0].tolist() == [1.5, 0.0, 0.0]
    assert series.observed[:, 0].tolist() == [True, False, False]
    assert str(series.timestamps[1]) == "2026-01-05T00:10:00"
