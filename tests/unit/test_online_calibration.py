"""Online calibration (issue 11, item 6): after each interval the live loop moves its published 80%/90%
bands by what they missed (adaptive conformal inference), so a model whose bands are too narrow or too
wide still gets about 90% of actuals inside its 90% band; the sizing quantile stays the model's."""

import numpy as np
import pytest

from tests.unit.test_forecast_refinement import world  # noqa: F401 - the fixture
from tests.unit.test_proactive_loop import policy, run
from vnstitch.controller.proactive import ProactiveLoop
from vnstitch.forecast.calibration import calibrate_bands, online_offsets, online_update, widen_band

PAIRS = [("blue", "red"), ("red", "blue"), ("blue", "green"), ("green", "blue"), ("red", "green"), ("green", "red")]


def _rows(hits: dict) -> list[dict]:
    return [{"from": a, "to": b, "in80": h80, "in90": h90} for (a, b), (h80, h90) in hits.items()]


def test_misses_widen_the_band_hits_narrow_it_and_each_pair_keeps_its_own_offset():
    state = online_update(None, _rows({("a", "b"): (False, False), ("b", "a"): (True, True)}), 0.5, 0.02)
    # pooled: half of the pairs missed → θ += 0.5 × (0.5 − α); a's own += 0.02 × (1 − α), b's −= 0.02 × α
    assert state["global"] == {"80": pytest.approx(0.15), "90": pytest.approx(0.2)}
    assert state["pairs"]["a>b"]["90"] == pytest.approx(0.018) and state["pairs"]["b>a"]["90"] == pytest.approx(-0.002)
    assert online_offsets(state, "a>b")["90"] == pytest.approx(0.218)
    assert online_offsets(state, "c>d") == {"80": pytest.approx(0.15), "90": pytest.approx(0.2)}, "a new pair: shared"
    hits = online_update(state, _rows({("a", "b"): (True, True), ("b", "a"): (True, True)}), 0.5, 0.02)
    assert hits["global"]["90"] == pytest.approx(0.2 - 0.05), "no miss: the band narrows by gain × α"
    for _ in range(500):
        hits = online_update(hits, _rows({("a", "b"): (True, True)}), 0.5, 0.02)
    assert online_offsets(hits, "a>b")["90"] == pytest.approx(-0.45), "never narrowed past about half its width"
    pruned = online_update(state, _rows({("a", "b"): (True, None)}), 0.5, 0.02, pairs={"a>b"})
    assert set(pruned["pairs"]) == {"a>b"} and pruned["global"]["90"] == state["global"]["90"], "no 90% row"


def test_a_band_moves_by_its_own_width_in_log_space_and_zero_stays_a_floor():
    lo, hi = widen_band(99e6, 199e6, 1.0)   # log1p: 100 → 200 Mbit/s, width ln 2
    assert (lo + 1e6, hi + 1e6) == (pytest.approx(50e6), pytest.approx(400e6))
    assert widen_band(0.0, 199e6, 1.0)[0] == 0.0
    narrowed = widen_band(99e6, 199e6, -0.25)
    assert 99e6 < narrowed[0] < narrowed[1] < 199e6
    bands, used = calibrate_bands({("a", "b"): {"pointBps": 150e6, "lo90Bps": 99e6, "hi90Bps": 199e6}},
                                  {"global": {"80": 0.0, "90": 1.0}})
    assert bands[("a", "b")]["hi90Bps"] == pytest.approx(399e6) and bands[("a", "b")]["pointBps"] == 150e6
    assert used["a>b"] == {"80": 0.0, "90": 1.0}


def _replay(world, calibrate: bool, half_width: float, sigma: float, intervals: int = 160, seed: int = 7):
    """The loop over a model whose bands are ±half_width (log) around the true level, traffic lognormal(σ)."""
    controller, telemetry, reconciler, clock = world
    controller.apply([policy(refinement={"calibrate": calibrate, "correct": False, "adjust": False})])
    level = {p: (1 + i) * 2e8 for i, p in enumerate(PAIRS)}

    def predictor(policy, pairs, history, observed, end):
        bands = {p: {"pointBps": level[p], "lo80Bps": level[p] * np.exp(-half_width * 0.78),
                     "hi80Bps": level[p] * np.exp(half_width * 0.78), "lo90Bps": level[p] * np.exp(-half_width),
                     "hi90Bps": level[p] * np.exp(half_width)} for p in pairs}
        return dict(level), {p: level[p] * np.exp(half_width * 0.78) for p in pairs}, bands
    loop = ProactiveLoop(controller, telemetry, train=False, predictor=predictor)
    rng = np.random.default_rng(seed)
    hits = []
    for i in range(intervals):
        run(loop, reconciler, clock, telemetry, {p: level[p] * float(np.exp(rng.normal(0, sigma))) for p in PAIRS})
        graph = controller.store.get("PredictedGraph", "acme", "fc.current").value
        hits.append([r["in90"] for r in graph["discrepancy"]["pairs"]])
    return loop, hits, graph


@pytest.mark.parametrize("half_width", [0.05, 0.5], ids=["too narrow", "too wide"])
def test_the_published_90_band_covers_about_90_percent_once_calibrated_and_not_without(world, half_width):
    _, off, _ = _replay(world, False, half_width, sigma=0.12)
    controller = world[0]
    controller.delete("ForecastPolicy", "fc", "acme")
    _, on, graph = _replay(world, True, half_width, sigma=0.12)
    late = lambda hits: float(np.mean([h for row in hits[60:] for h in row]))   # noqa: E731
    assert 0.85 <= late(on) <= 0.95, late(on)
    assert (late(off) <= 0.5) if half_width < 0.1 else (late(off) >= 0.99), late(off)   # ±0.05: ~0.3 inside
    state = graph["discrepancy"]["calibration"]
    assert set(state["pairs"]) == {f"{a}>{b}" for a, b in PAIRS}
    assert (state["global"]["90"] > 0) == (half_width < 0.1), "widened when too narrow, narrowed when too wide"


def test_the_state_lives_in_the_store_so_a_new_leader_goes_on_from_it(world):
    loop, _, graph = _replay(world, True, 0.05, sigma=0.12, intervals=40)
    controller, telemetry, reconciler, clock = world
    before = graph["discrepancy"]["calibration"]["global"]["90"]
    assert before > 0.5
    status = controller.store.get("ForecastPolicy", "acme", "fc").value["status"]["discrepancy"]
    assert status["calibration"]["global"]["90"] == before, "the policy's status shows the shared offset"
    from prometheus_client import generate_latest
    from prometheus_client.core import CollectorRegistry
    from vnstitch.forecast.live_metrics import ForecastCollector

    registry = CollectorRegistry()
    registry.register(ForecastCollector(controller))
    assert (f'vnstitch_forecast_calibration_offset{{band="90",policy="fc",tenant="acme"}} {before}'
            in generate_latest(registry).decode())
    forecast = {(f["from"], f["to"]): f for f in graph["forecast"]}
    blue_red = forecast[("blue", "red")]
    assert blue_red["hi90Bps"] > 2e8 * np.exp(0.05) * 1.05, "the published band widened"
    assert blue_red["upperBps"] == round(2e8 * np.exp(0.05 * 0.78)), "the sizing quantile is the model's"
    again = ProactiveLoop(controller, telemetry, train=False, predictor=loop.predictor)
    run(again, reconciler, clock, telemetry, {p: 2e8 * (1 + i) for i, p in enumerate(PAIRS)})
    after = controller.store.get("PredictedGraph", "acme", "fc.current").value["discrepancy"]["calibration"]
    assert after["global"]["90"] == pytest.approx(before - 0.5 * 0.1, abs=1e-4), "one step on from the stored state"


def test_a_pair_the_model_forecasts_nothing_for_is_forecast_from_its_recent_level(world):
    """A pair that appeared after the model was fitted: no factor scales a forecast of zero, so its recent
    level and range stand in (and the status says so) until the model knows it; the others are untouched."""
    controller, telemetry, reconciler, clock = world
    controller.apply([policy(refinement={"correctionWindow": 4, "adjust": False})])

    def predictor(policy, pairs, history, observed, end):   # knows blue→red; red→blue is new to it
        level = {p: (1e9 if p == ("blue", "red") else 0.0) for p in pairs}
        bands = {p: {"pointBps": v, "lo80Bps": v * 0.9, "hi80Bps": v * 1.1, "lo90Bps": v * 0.85, "hi90Bps": v * 1.15}
                 for p, v in level.items()}
        return dict(level), {p: v * 1.1 for p, v in level.items()}, bands
    loop = ProactiveLoop(controller, telemetry, train=False, predictor=predictor)
    rng = np.random.default_rng(3)
    hits = []
    for _ in range(20):
        run(loop, reconciler, clock, telemetry, {("blue", "red"): 1e9, ("red", "blue"): 5e8 * (1 + 0.05 * rng.normal())})
        graph = controller.store.get("PredictedGraph", "acme", "fc.current").value
        hits += [r["in90"] for r in graph["discrepancy"]["pairs"] if r["from"] == "red"]
    status = controller.store.get("ForecastPolicy", "acme", "fc").value["status"]["discrepancy"]
    assert status["unseen"] == ["red>blue"] and "red>blue" not in status["corrected"], status
    assert hits[:2] == [False, False] and np.mean(hits[6:]) >= 0.75, hits   # from none inside
    forecast = {(f["from"], f["to"]): f for f in graph["forecast"]}
    assert 4.5e8 < forecast[("red", "blue")]["pointBps"] < 5.5e8 and forecast[("red", "blue")]["rawPointBps"] == 0
    assert forecast[("blue", "red")]["pointBps"] == 1e9


def test_a_band_of_no_width_does_not_move_the_shared_offset_and_the_bands_stay_nested():
    from vnstitch.forecast.discrepancy import score_interval

    expected = [{"from": "a", "to": "b", "pointBps": 0.0, "lo80Bps": 0.0, "hi80Bps": 0.0, "lo90Bps": 0.0, "hi90Bps": 0.0},
                {"from": "b", "to": "a", "pointBps": 1e8, "lo80Bps": 0.9e8, "hi80Bps": 1.1e8, "lo90Bps": 0.8e8,
                 "hi90Bps": 1.2e8}]
    rows = score_interval(expected, {("a", "b"): 5e7, ("b", "a"): 1e8})
    assert rows[0]["in90"] is False and rows[0]["flat90"] is True, "a miss, for coverage; not for calibration"
    state = None
    for _ in range(50):
        state = online_update(state, rows, 0.5, 0.02)
    assert state["global"]["90"] < 0, "only b→a counts: it always hits, so the band narrows"
    assert "a>b" not in state["pairs"]
    bands, _ = calibrate_bands({("b", "a"): dict(expected[1])}, {"global": {"80": 3.0, "90": -0.4}})
    b = bands[("b", "a")]
    assert b["lo90Bps"] <= b["lo80Bps"] < b["hi80Bps"] <= b["hi90Bps"], b


def test_a_skipped_interval_keeps_the_calibration_state(world):
    loop, _, graph = _replay(world, True, 0.05, sigma=0.12, intervals=30)
    controller, telemetry, reconciler, clock = world
    before = graph["discrepancy"]["calibration"]["global"]["90"]
    clock.now += 2 * 300.0   # two intervals without a pass: no graph for the one before the next
    run(loop, reconciler, clock, telemetry, {p: 2e8 * (1 + i) for i, p in enumerate(PAIRS)})
    after = controller.store.get("PredictedGraph", "acme", "fc.current").value["discrepancy"]["calibration"]
    assert after["global"]["90"] == pytest.approx(before, abs=0.1), "went on from the latest state, not from 0"


def test_a_band_of_no_width_on_a_busy_pair_gets_the_spread_of_its_recent_actuals(world):
    """A model fitted while red→blue was idle follows its level but has no spread for it (band [x, x]): the
    band takes the recent actuals' relative spread around the model's point, and the calibration goes on."""
    controller, telemetry, reconciler, clock = world
    controller.apply([policy(refinement={"correctionWindow": 6, "adjust": False})])
    seen = {}

    def predictor(policy, pairs, history, observed, end):   # last value, no spread for red→blue
        last = {p: float(np.nan_to_num(history[-1, j])) if history.shape[0] else 0.0 for j, p in enumerate(pairs)}
        bands = {p: {"pointBps": v, "lo80Bps": v, "hi80Bps": v, "lo90Bps": v, "hi90Bps": v} for p, v in last.items()}
        return dict(last), dict(last), bands
    loop = ProactiveLoop(controller, telemetry, train=False, predictor=predictor)
    rng = np.random.default_rng(5)
    hits = []
    for _ in range(40):
        run(loop, reconciler, clock, telemetry, {("red", "blue"): 5e8 * float(np.exp(rng.normal(0, 0.1)))})
        graph = controller.store.get("PredictedGraph", "acme", "fc.current").value
        hits += [r["in90"] for r in graph["discrepancy"]["pairs"] if r["from"] == "red"]
        seen = controller.store.get("ForecastPolicy", "acme", "fc").value["status"]["discrepancy"]
    assert "red>blue" in seen["unseen"], seen
    assert not any(hits[:3]) and np.mean(hits[15:]) >= 0.75, hits
    band = {(f["from"], f["to"]): f for f in graph["forecast"]}[("red", "blue")]
    assert band["lo90Bps"] < band["pointBps"] < band["hi90Bps"], band
