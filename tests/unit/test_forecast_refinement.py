"""Adaptive refinement (issue 11): the live loop scores its forecast against what happened every interval,
resizes a stitch from the observed rate when the forecast misses, retrains when the discrepancy persists
(the challenger replaces the model in use only if it does better), and rolls back on request."""

import json
import time

import numpy as np
import pytest
from prometheus_client.core import CollectorRegistry
from prometheus_client import generate_latest

from tests.unit.test_proactive_loop import BLUE, GREEN, INTERVAL, RED, Telemetry, forecast_stitches, policy, run
from vnstitch.controller.proactive import ModelStore, ProactiveLoop
from vnstitch.controller.reconciler import Reconciler
from vnstitch.drivers.sim import SimDriver
from vnstitch.forecast.discrepancy import out_of_bounds, rolling, score_interval
from vnstitch.forecast.live_metrics import ForecastCollector
from vnstitch.forecast.refine import challenger_wins


@pytest.fixture
def world(controller, store, clock, abilene):
    controller.apply([BLUE, RED, GREEN])
    clock.now = 1000 * INTERVAL
    return controller, Telemetry(), Reconciler(controller, SimDriver(topology=abilene.links)), clock


def status_of(controller, name="fc"):
    return controller.store.get("ForecastPolicy", "acme", name).value["status"]


def test_scoring_one_interval_and_the_rolling_figures():
    expected = [{"from": "a", "to": "b", "pointBps": 100.0, "lo80Bps": 90.0, "hi80Bps": 110.0, "lo90Bps": 80.0,
                 "hi90Bps": 120.0},
                {"from": "b", "to": "a", "pointBps": 50.0}]
    rows = score_interval(expected, {("a", "b"): 115.0, ("b", "a"): 40.0, ("c", "d"): 7.0})
    assert [(r["from"], r["errorBps"], r["in80"], r["in90"]) for r in rows] == [("a", -15.0, False, True),
                                                                                 ("b", 10.0, None, None)]
    second = score_interval(expected, {("a", "b"): 100.0})
    overall, per_pair = rolling([rows, [], second])
    assert overall["intervals"] == 2 and overall["samples"] == 3
    assert overall["nmae"] == pytest.approx(25 / 255) and overall["bias"] == pytest.approx(-5 / 255)
    assert overall["coverage80"] == 0.5 and overall["coverage90"] == 1.0, "pairs without a band are not counted"
    assert per_pair[("a", "b")]["nmae"] == pytest.approx(15 / 215)
    assert out_of_bounds({"intervals": 1, "coverage90": 0.1}, 2, 0.8, 0.3) == "", "too few intervals to tell"
    assert "coverage 0.10 < 0.8" in out_of_bounds({"intervals": 5, "coverage90": 0.1}, 2, 0.8, 0.3)


def test_the_status_the_graph_and_metrics_say_how_the_forecast_did(world):
    controller, telemetry, reconciler, clock = world
    controller.apply([policy(refinement={"correct": False})])

    def predictor(policy, pairs, history, observed, end):  # forecasts 1 Gbit/s with a ±10% band, always
        bands = {p: {"pointBps": 1e9, "lo80Bps": 0.95e9, "hi80Bps": 1.05e9, "lo90Bps": 0.9e9, "hi90Bps": 1.1e9}
                 for p in pairs}
        return {p: 1e9 for p in pairs}, {p: 1.1e9 for p in pairs}, bands
    loop = ProactiveLoop(controller, telemetry, train=False, predictor=predictor)
    for i in range(8):  # blue→red matches the forecast; red→blue runs at twice it
        run(loop, reconciler, clock, telemetry, {("blue", "red"): 1e9, ("red", "blue"): 2e9})
    d = status_of(controller)["discrepancy"]
    assert d["intervals"] == 7, "every interval but the first is scored against the one before"
    assert d["coverage90"] == pytest.approx(0.5) and d["nmae"] == pytest.approx(7e9 / 21e9, abs=1e-4)
    assert d["worst"][0]["from"] == "red" and d["worst"][0]["coverage90"] == 0.0 and d["worst"][0]["bias"] == -0.5
    assert d["breachIntervals"] >= 1, "coverage 0.5 is outside the default bound 0.8"
    graph = controller.store.get("PredictedGraph", "acme", "fc.current").value
    rows = {(r["from"], r["to"]): r for r in graph["discrepancy"]["pairs"]}
    assert rows[("red", "blue")]["actualBps"] == 2e9 and rows[("red", "blue")]["in90"] is False
    assert rows[("blue", "red")]["in80"] is True

    registry = CollectorRegistry()
    registry.register(ForecastCollector(controller))
    text = generate_latest(registry).decode()
    assert 'vnstitch_forecast_coverage90{policy="fc",tenant="acme"} 0.5' in text
    assert 'vnstitch_forecast_pair_coverage90{dst="blue",policy="fc",src="red",tenant="acme"} 0.0' in text

    # a restart derives the window from the store: the figures go on where they were
    again = ProactiveLoop(controller, telemetry, train=False, predictor=predictor)
    run(again, reconciler, clock, telemetry, {("blue", "red"): 1e9, ("red", "blue"): 2e9})
    assert status_of(controller)["discrepancy"]["intervals"] == 8


def test_a_pair_the_model_keeps_missing_is_corrected_by_its_recent_level(world):
    controller, telemetry, reconciler, clock = world
    controller.apply([policy(refinement={"correctionWindow": 4})])

    def predictor(policy, pairs, history, observed, end):  # the model never learns that red→blue doubled
        bands = {p: {"pointBps": 1e9, "lo80Bps": 0.95e9, "hi80Bps": 1.05e9, "lo90Bps": 0.9e9, "hi90Bps": 1.1e9}
                 for p in pairs}
        return {p: 1e9 for p in pairs}, {p: 1.1e9 for p in pairs}, bands
    loop = ProactiveLoop(controller, telemetry, train=False, predictor=predictor)
    hits = []
    for i in range(12):
        run(loop, reconciler, clock, telemetry, {("blue", "red"): 1e9, ("red", "blue"): 2e9})
        graph = controller.store.get("PredictedGraph", "acme", "fc.current").value
        hits += [r["in90"] for r in graph["discrepancy"]["pairs"] if r["from"] == "red"]
    d = status_of(controller)["discrepancy"]
    assert d["corrected"] == {"red>blue": 2.0}, "Σ actual / Σ the model's own forecast, blue→red left alone"
    assert hits[:2] == [False, False] and all(hits[4:]), hits
    forecast = {(f["from"], f["to"]): f for f in graph["forecast"]}
    assert forecast[("red", "blue")]["pointBps"] == 2e9 and forecast[("red", "blue")]["rawPointBps"] == 1e9


def _fixed(bps):
    """Forecasts `bps` for blue→red (whatever happens) and 100 Mbit/s for every other pair."""
    def predictor(policy, pairs, history, observed, end):
        rates = {p: bps if p == ("blue", "red") else 1e8 for p in pairs}
        return rates, dict(rates)
    return predictor


@pytest.mark.parametrize("adjust", [True, False])
def test_a_stitch_the_traffic_outgrows_is_resized_from_the_observed_rate_in_the_same_interval(world, adjust):
    controller, telemetry, reconciler, clock = world
    controller.apply([policy(refinement={"adjust": adjust, "margin": 0.05})])
    loop = ProactiveLoop(controller, telemetry, train=False, predictor=_fixed(8.2e9))  # at risk: > 0.8 × 9.92
    for _ in range(3):
        run(loop, reconciler, clock, telemetry, {("blue", "red"): 8e9})
    held = forecast_stitches(controller)
    assert sum(v["spec"]["bandwidth"] for v in held.values()) == pytest.approx(8.2e9), \
        {k: (v["spec"]["bandwidth"], v["spec"]["path"]) for k, v in held.items()}
    (result,) = run(loop, reconciler, clock, telemetry, {("blue", "red"): 9e9})  # the forecast still says 8.2
    total = sum(v["spec"]["bandwidth"] for v in forecast_stitches(controller).values())
    if not adjust:
        assert total == pytest.approx(8.2e9), "without refinement the stitch trails the traffic"
        return
    assert total == pytest.approx(9.45e9, rel=1e-3), "observed 9 Gbit/s + 5%, in the interval that saw it"
    reasons = [v["metadata"]["annotations"]["vnstitch.io/reason"] for v in forecast_stitches(controller).values()]
    assert any("discrepancy: actual 9000 Mbit/s passed the reservation 8200 Mbit/s" in r for r in reasons), reasons
    status = status_of(controller)
    assert status["discrepancy"]["adjusted"] == ["blue>red"] and "resized from the observed rate" in status["message"]


def _wait_for(controller, predicate, what, timeout=60):
    deadline = time.monotonic() + timeout
    while not predicate(status_of(controller)):
        assert time.monotonic() < deadline, what
        time.sleep(0.05)
    return status_of(controller)


def test_a_persistent_discrepancy_retrains_the_challenger_wins_and_a_rollback_restores_v1(world, tmp_path, capsys):
    from vnstitch.cli.main import main

    controller, telemetry, reconciler, clock = world
    refinement = {"retrainAfter": 10, "minSamples": 3, "window": 10, "heldBack": 4, "adjust": False}
    controller.apply([policy(minHistory=4, model="last_value", refinement=refinement)])
    loop = ProactiveLoop(controller, telemetry, ModelStore(str(tmp_path / "models")))
    try:
        for i in range(4):  # steady traffic: v1 learns narrow bands
            run(loop, reconciler, clock, telemetry, {("blue", "red"): 1e9})
        v1 = _wait_for(controller, lambda s: s["model"]["state"] == "trained", "v1 was not trained")["model"]
        assert v1["version"] == 1 and status_of(controller)["retrains"][-1]["decision"] == "promoted"
        # the world changes: the traffic turns noisy (±30% in log terms); v1's zero-width bands miss it
        noise = np.random.default_rng(7).standard_normal(30)
        for i in range(30):
            run(loop, reconciler, clock, telemetry, {("blue", "red"): 1e9 * float(np.exp(0.3 * noise[i]))})
            records = status_of(controller)["retrains"]
            if len(records) >= 2:
                break
        status = _wait_for(controller, lambda s: len(s["retrains"]) >= 2 and s["model"]["state"] == "trained",
                           "the discrepancy did not lead to a retrain")
        record = status["retrains"][-1]
        assert record["reason"].startswith("discrepancy: rolling 90% coverage"), record
        assert record["decision"] == "promoted" and record["version"] == 2, json.dumps(record)
        assert record["after"]["coverage90"] > record["before"]["coverage90"]
        assert record["window"]["heldBack"] == 4 and record["window"]["intervals"] >= 10, json.dumps(status)
        assert status["model"]["version"] == 2 and [v["version"] for v in status["versions"]] == [1, 2]

        url = f"sqlite://{controller.store.path}"
        assert main(["--store", url, "forecast", "status", "fc", "--tenant", "acme"]) == 0
        out = capsys.readouterr().out
        assert "model last_value v2 (trained)" in out and "retrain v2 last_value: promoted (discrepancy" in out
        assert "online calibration: bands widened by " in out and "of their width (90%)" in out, out
        assert main(["--store", url, "forecast", "rollback", "fc", "--tenant", "acme", "--version", "7"]) == 2
        assert "version 7 is not kept for fc (kept: v1, v2)" in capsys.readouterr().err
        assert main(["--store", url, "forecast", "rollback", "fc", "--tenant", "acme", "--version", "1"]) == 0
        (result,) = run(loop, reconciler, clock, telemetry, {("blue", "red"): 1e9})
        status = status_of(controller)
        assert status["model"]["version"] == 1 and result.model == "last_value v1"
        assert status["retrains"][-1]["decision"] == "rolled back"

        # a corrupt artifact is refused, with the reason; the model in use stays
        with open(status["versions"][1]["artifact"], "wb") as handle:
            handle.write(b"not a model")
        assert main(["--store", url, "forecast", "rollback", "fc", "--tenant", "acme", "--version", "2"]) == 0
        (result,) = run(loop, reconciler, clock, telemetry, {("blue", "red"): 1e9})
        status = status_of(controller)
        assert status["model"]["version"] == 1 and result.model == "last_value v1"
        assert status["retrains"][-1]["decision"] == "failed"
        assert "rollback refused: model artifact" in status["retrains"][-1]["message"]
        assert "does not match its checksum" in status["retrains"][-1]["message"]
    finally:
        loop.close()


def test_a_retrain_that_fails_keeps_the_model_in_use_and_says_why(world, tmp_path, capsys):
    from vnstitch.cli.main import main

    controller, telemetry, reconciler, clock = world
    controller.apply([policy(minHistory=6, model="last_value")])
    loop = ProactiveLoop(controller, telemetry, ModelStore(str(tmp_path / "models")))
    try:
        for i in range(6):
            run(loop, reconciler, clock, telemetry, {("blue", "red"): 1e9 + 1e7 * i})
        _wait_for(controller, lambda s: s["model"]["state"] == "trained", "v1 was not trained")
        # a week-seasonal model needs a week of history: the fit fails
        controller.apply([policy(minHistory=6, model="seasonal_naive_week")])
        run(loop, reconciler, clock, telemetry, {("blue", "red"): 1e9})
        status = _wait_for(controller, lambda s: s["retrains"][-1]["decision"] == "failed",
                           "the failing retrain was not recorded")
        assert status["model"]["version"] == 1 and status["model"]["artifact"]
        assert "needs more than" in status["retrains"][-1]["message"]
        assert "still forecasting with v1" in status["model"]["message"]
        (result,) = run(loop, reconciler, clock, telemetry, {("blue", "red"): 1e9})
        assert result.model == "last_value v1"
        assert len(status_of(controller)["retrains"]) == 2, "not retried at every interval"

        # a retrain on request goes through the same champion/challenger gate
        controller.apply([policy(minHistory=6, model="last_value")])
        url = f"sqlite://{controller.store.path}"
        assert main(["--store", url, "forecast", "retrain", "fc", "--tenant", "acme"]) == 0
        assert "retrain of fc requested" in capsys.readouterr().out
        run(loop, reconciler, clock, telemetry, {("blue", "red"): 1e9})
        status = _wait_for(controller, lambda s: len(s["retrains"]) >= 3 and s["model"]["state"] == "trained",
                           "the requested retrain did not run")
        assert status["retrains"][-1]["reason"] == "requested (vnstitch forecast retrain)"
        assert status["retrains"][-1]["decision"] in ("promoted", "kept")
        assert main(["--store", url, "forecast", "status", "fc", "--tenant", "acme", "-o", "json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["retrains"][-1]["reason"].startswith("requested") and "coverage90" in out["discrepancy"]
    finally:
        loop.close()


def test_the_champion_stays_unless_the_challenger_does_better():
    champion = {"nmae": 0.10, "coverage90": 0.90}
    assert challenger_wins(champion, {"nmae": 0.09, "coverage90": 0.89})[0]
    assert not challenger_wins(champion, {"nmae": 0.11, "coverage90": 0.90})[0]
    assert not challenger_wins(champion, {"nmae": 0.09, "coverage90": 0.60})[0], "a narrower band is no better"
    assert not challenger_wins(champion, {"nmae": float("nan"), "coverage90": 0.9})[0]
    assert challenger_wins(None, {"nmae": 0.5, "coverage90": 0.5})[0], "nothing to beat"


def test_a_corrupt_artifact_in_use_is_refused_with_the_reason_and_never_loaded(world, tmp_path):
    controller, telemetry, reconciler, clock = world
    controller.apply([policy(minHistory=4, model="last_value")])
    models = str(tmp_path / "models")
    loop = ProactiveLoop(controller, telemetry, ModelStore(models))
    try:
        for i in range(4):
            run(loop, reconciler, clock, telemetry, {("blue", "red"): 1e9})
        artifact = _wait_for(controller, lambda s: s["model"]["state"] == "trained", "v1 was not trained")["model"]
    finally:
        loop.close()
    with open(artifact["artifact"], "ab") as handle:
        handle.write(b"tampered")
    restarted = ProactiveLoop(controller, telemetry, ModelStore(models), train=False)  # nothing cached
    (result,) = run(restarted, reconciler, clock, telemetry, {("blue", "red"): 1e9})
    assert result.model == "baseline", "the tampered model is not used"
    assert "refused: it does not match its checksum" in status_of(controller)["message"]


def test_the_level_correction_acts_only_on_a_miss_to_one_side_in_every_interval():
    from vnstitch.forecast.discrepancy import corrections

    def rows(pairs):
        return [[{"from": "a", "to": "b", "actualBps": actual, "pointBps": point}] for actual, point in pairs]
    doubled = rows([(2e9, 1e9)] * 4)
    assert corrections(doubled, 4) == {("a", "b"): 2.0}
    lagging = rows([(3e9, 1e9), (1e9, 3e9), (3e9, 1e9), (3e9, 3e9)])   # last value behind a swing: both sides
    assert corrections(lagging, 4) == {}, "a model that misses to both sides is not scaled"
    fell = rows([(0.5e9, 1e9)] * 3 + [(0.6e9, 1e9)])
    assert corrections(fell, 4) == {("a", "b"): pytest.approx(0.525)}
