"""`vnstitch demo` replays a day no default was tuned on and says so, compares proactive with reactive as
well as static, counts resizes, and logs one line per phase; the reactive strategy's reasons name what
it saw, not a forecast; `forecast predict` calls the median the median."""

import io
import json
import re
import sys

import pytest

from vnstitch.cli.main import main

STRATEGIES = ("static", "reactive", "proactive", "oracle")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("demo")
    capture = pytest.MonkeyPatch()
    out, err = io.StringIO(), io.StringIO()  # not terminals: what a CI log gets
    capture.setattr(sys, "stdout", out)
    capture.setattr(sys, "stderr", err)
    try:
        code = main(["demo", "--workdir", str(workdir), "--model", "last_value", "--steps", "12"])
    finally:
        capture.undo()
    return code, out.getvalue(), err.getvalue(), workdir


def test_the_demo_replays_a_day_not_used_for_tuning_and_says_so(demo):
    from vnstitch.experiments.demo import DEMO_DAY, TUNING_DAYS

    code, out, err, workdir = demo
    assert code == 0
    assert DEMO_DAY not in TUNING_DAYS
    assert "not used for tuning" in out and "not used for tuning" in err
    report = json.loads((workdir / "replay.json").read_text())
    assert report["window"]["start"].startswith("2004-03-11")  # day 10 of the bundled 14 (from 2004-03-01)
    assert report["window"]["start_step"] == DEMO_DAY * 288
    assert (workdir / f"last_value-abilene-before-day{DEMO_DAY}.npz").exists()  # the cache names its window


def test_the_demo_compares_proactive_with_reactive_and_static(demo):
    _, out, _, _ = demo
    assert re.search(r"^proactive vs static: \d+ → \d+ overloaded", out, re.M)
    assert re.search(r"^proactive vs reactive: \d+ → \d+ overloaded", out, re.M)


def test_the_table_counts_resizes_beside_churn(demo):
    _, out, _, workdir = demo
    head = next(line for line in out.splitlines() if line.startswith("strategy"))
    assert "churn/h" in head and "resized/h" in head
    strategies = json.loads((workdir / "replay.json").read_text())["strategies"]
    assert strategies["static"]["stitch_resizes_per_hour"] == 0
    assert strategies["reactive"]["stitch_resizes_per_hour"] > 0  # the night's hot pairs change size


def test_progress_in_a_log_is_one_line_per_strategy(demo):
    _, _, err, _ = demo
    assert "\r" not in err
    lines = [line for line in err.splitlines() if re.match(r"^\w+: \d+/\d+ intervals in ", line)]
    assert [line.split(":")[0] for line in lines] == list(STRATEGIES)
    assert all(line.split(": ")[1].startswith("12/12 ") for line in lines)


def test_reactive_reasons_do_not_say_forecast(demo):
    _, _, _, workdir = demo
    decisions = [json.loads(line) for line in (workdir / "decisions.jsonl").read_text().splitlines()]
    reactive = [d for d in decisions if d["strategy"] == "reactive"]
    proactive = [d for d in decisions if d["strategy"] == "proactive"]
    assert reactive and proactive
    assert not [d["reason"] for d in reactive if "forecast" in d["reason"]]
    assert all(d["reason"].startswith(("last interval's rate", "demand fell")) for d in reactive)
    assert any("forecast p90" in d["reason"] for d in proactive)


def test_forecast_predict_labels_the_median(tmp_path, capsys):
    model = tmp_path / "snd.npz"
    assert main(["forecast", "train", "--model", "seasonal_naive_day", "--out", str(model)]) == 0
    capsys.readouterr()
    assert main(["forecast", "predict", "--model-file", str(model), "--horizon", "1", "--pairs", "CHINng->LOSAng"]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.lstrip().startswith("source"))
    assert header.split() == ["source", "destination", "step", "timestamp", "mean", "p5", "p10", "median", "p90", "p95"]
    assert "median: the 50% quantile" in out
