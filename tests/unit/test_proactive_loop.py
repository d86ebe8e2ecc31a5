"""The proactive loop in the controller: telemetry in, forecast, allocate, admit; its held state comes
from the store, so a restart (or a new leader) continues without duplicated or orphaned stitches."""

import numpy as np
import pytest

from tests.helpers import stitch, vnet
from vnstitch.controller.proactive import ModelStore, ProactiveLoop, POLICY_LABEL, stitch_name
from vnstitch.controller.reconciler import Reconciler
from vnstitch.domain.registry import parse_resource
from vnstitch.drivers.sim import SimDriver
from vnstitch.errors import InvalidInput

INTERVAL = 300.0
BLUE = vnet("blue", 1001, "10.1.0.0/24", [("blue-1", "NYCMng", "10.1.0.11")])
RED = vnet("red", 1002, "10.2.0.0/24", [("red-1", "LOSAng", "10.2.0.11")])
GREEN = vnet("green", 1003, "10.3.0.0/24", [("green-1", "CHINng", "10.3.0.11")])


class Telemetry:
    """Samples per (tenant, src, dst, interval start), read back as the loop reads a telemetry store."""

    def __init__(self):
        self.samples = {}

    def insert(self, samples):
        for s in samples:
            self.samples[(s.tenant, s.src, s.dst, s.time)] = s.rate_bps
        return len(samples)

    def rates(self, tenant, pairs, end, steps, interval_s):
        out = np.full((steps, len(pairs)), np.nan)
        for j, (src, dst) in enumerate(pairs):
            for i in range(steps):
                start = end - (steps - i) * interval_s
                value = self.samples.get((tenant, src, dst, start))
                if value is not None:
                    out[i, j] = value
        return out

    def push(self, tenant, src, dst, start, bps):
        self.samples[(tenant, src, dst, start)] = bps


def policy(name="fc", mode="auto", **spec):
    return parse_resource({"kind": "ForecastPolicy", "metadata": {"name": name, "tenant": "acme"},
                           "spec": {"networks": ["blue", "red", "green"], "interval": "5m", "horizon": 1,
                                    "mode": mode, "minHistory": 1000, **spec}})


@pytest.fixture
def world(controller, store, clock, abilene):
    controller.apply([BLUE, RED, GREEN])
    telemetry = Telemetry()
    reconciler = Reconciler(controller, SimDriver(topology=abilene.links))
    clock.now = 1000 * INTERVAL
    return controller, telemetry, reconciler, clock


def run(loop, reconciler, clock, telemetry, rates):
    """Advance one interval: push the last interval's measured rate for each pair, step, reconcile."""
    start = clock.now - INTERVAL
    for (src, dst), bps in rates.items():
        telemetry.push("acme", src, dst, start, bps)
    runs = loop.step(clock.now)
    reconciler.reconcile_once(clock.now)
    clock.now += INTERVAL
    return runs


def forecast_stitches(controller):
    controller.refresh()
    return {r.name: r.value for r in controller.cache.list("Stitch", "acme")
            if r.value["metadata"].get("labels", {}).get(POLICY_LABEL) == "fc"
            and r.value["status"]["state"] != "TERMINATED"}


def test_rising_demand_gets_a_stitch_before_the_link_saturates_and_a_restart_continues(world, tmp_path):
    controller, telemetry, reconciler, clock = world
    user = stitch("mine", "green", "red", "100Mbps")
    controller.apply([user, policy()])
    loop = ProactiveLoop(controller, telemetry, ModelStore(str(tmp_path / "models")), train=False)
    # blue→red ramps by 0.6 Gbit/s an interval on ~9.9 Gbit/s links: it passes 80% long before 100%
    ramp = [1e9 + 0.6e9 * i for i in range(14)]
    first_stitch_at = None
    for i, bps in enumerate(ramp):
        run(loop, reconciler, clock, telemetry, {("blue", "red"): bps, ("green", "red"): 50e6})
        if first_stitch_at is None and forecast_stitches(controller):
            first_stitch_at = i
    assert first_stitch_at is not None, "rising demand must get a stitch"
    assert ramp[first_stitch_at] < 9.92e9, "established before the offered load passed the link's capacity"
    held = forecast_stitches(controller)
    assert {v["metadata"]["annotations"]["vnstitch.io/pair"] for v in held.values()} == {"blue>red"}
    assert sorted(held)[0] == stitch_name("fc", ("blue", "red")), "the main part; more parts (-p1…) when TE splits"
    assert set(held) <= {stitch_name("fc", ("blue", "red"), part) for part in range(len(held))}
    for value in held.values():
        assert value["status"]["state"] == "ACTIVE"
        assert value["spec"]["origin"] == "forecast"
        assert "forecast" in value["metadata"]["annotations"]["vnstitch.io/reason"]
    assert sum(v["spec"]["bandwidth"] for v in held.values()) >= ramp[-1]
    status = controller.store.get("ForecastPolicy", "acme", "fc").value["status"]
    assert status["model"]["state"] == "baseline"
    assert "forecasting with the baseline (last_value) until last_value is trained" in status["message"]
    assert controller.store.get("PredictedGraph", "acme", f"fc.{status['lastStep']}") is not None

    # a restart: a new loop over the same store, the same interval → nothing; the next → one stitch still
    revision = controller.store.revision()
    clock.now -= INTERVAL
    assert ProactiveLoop(controller, telemetry, train=False).step(clock.now) == []
    assert controller.store.revision() == revision, "an interval already run is not run again"
    clock.now += INTERVAL
    restarted = ProactiveLoop(controller, telemetry, train=False)
    run(restarted, reconciler, clock, telemetry, {("blue", "red"): ramp[-1], ("green", "red"): 50e6})
    assert sorted(forecast_stitches(controller)) == sorted(held), "no duplicated or orphaned forecast stitch"

    # demand falls: after terminateAfter safe intervals the stitch goes; the user's stitch never moves
    for _ in range(6):
        run(restarted, reconciler, clock, telemetry, {("blue", "red"): 1e8, ("green", "red"): 50e6})
    assert forecast_stitches(controller) == {}
    mine = controller.get("stitch", "mine", "acme")
    assert mine.status.state.value == "ACTIVE" and mine.spec.bandwidth == 100e6 and mine.metadata.generation == 1


def test_suggest_mode_records_decisions_and_applies_only_what_is_approved(world):
    controller, telemetry, reconciler, clock = world
    controller.apply([policy(mode="suggest")])
    loop = ProactiveLoop(controller, telemetry, train=False)
    for i in range(8):
        run(loop, reconciler, clock, telemetry, {("blue", "red"): 7e9 + 0.5e9 * i})
    assert forecast_stitches(controller) == {}, "suggest mode changes nothing on its own"
    pending = [r for r in controller.store.list("Suggestion", "acme") if r.value["action"] == "establish"]
    assert pending and "forecast" in pending[0].value["reason"]
    loop.approve("acme", pending[0].name)
    reconciler.reconcile_once(clock.now)
    approved = forecast_stitches(controller)
    assert approved and all(v["status"]["state"] == "ACTIVE" for v in approved.values())
    assert sum(v["spec"]["bandwidth"] for v in approved.values()) == pytest.approx(pending[0].value["bandwidthBps"], rel=1e-6)
    assert controller.store.get("Suggestion", "acme", pending[0].name).value["state"] == "approved"


def test_mode_off_and_too_little_history_say_why(world):
    controller, telemetry, reconciler, clock = world
    controller.apply([policy(name="quiet", mode="off"), policy()])
    loop = ProactiveLoop(controller, telemetry, train=False)
    run(loop, reconciler, clock, telemetry, {})
    assert "mode off" in controller.store.get("ForecastPolicy", "acme", "quiet").value["status"]["message"]
    assert "waiting for telemetry: 0 of 2" in controller.store.get("ForecastPolicy", "acme", "fc").value["status"]["message"]
    assert forecast_stitches(controller) == {}


def test_a_policy_naming_an_unknown_model_lists_the_valid_ones(controller):
    with pytest.raises(InvalidInput, match=r"unknown model 'prophet' \(valid: .*gru.*last_value"):
        controller.apply([policy(model="prophet")])
    with pytest.raises(InvalidInput, match="unknown network 'nope'"):
        controller.apply([parse_resource({"kind": "ForecastPolicy", "metadata": {"name": "x", "tenant": "acme"},
                                          "spec": {"networks": ["nope"]}})])


def test_training_runs_in_the_background_and_the_loop_uses_the_trained_model(world, tmp_path):
    import time

    controller, telemetry, reconciler, clock = world
    controller.apply([policy(minHistory=6, model="last_value")])
    loop = ProactiveLoop(controller, telemetry, ModelStore(str(tmp_path / "models")))
    try:
        for i in range(6):
            run(loop, reconciler, clock, telemetry, {("blue", "red"): 1e9 + 1e7 * i, ("red", "blue"): 5e8})
        deadline = time.monotonic() + 30
        while controller.store.get("ForecastPolicy", "acme", "fc").value["status"]["model"]["state"] != "trained":
            assert time.monotonic() < deadline, "training did not finish"
            time.sleep(0.05)
        model = controller.store.get("ForecastPolicy", "acme", "fc").value["status"]["model"]
        assert model["version"] == 1 and len(model["checksum"]) == 64 and model["artifact"].endswith(".npz")
        (result,) = run(loop, reconciler, clock, telemetry, {("blue", "red"): 1.1e9, ("red", "blue"): 5e8})
        assert result.model == "last_value v1"
    finally:
        loop.close()


def test_cli_shows_the_predicted_graph_at_a_time_and_approves_a_suggestion(world, tmp_path, capsys):
    from vnstitch.cli.main import main

    controller, telemetry, reconciler, clock = world
    controller.apply([policy(mode="suggest")])
    loop = ProactiveLoop(controller, telemetry, train=False)
    steps = []
    for i in range(6):
        steps.append(clock.now)
        run(loop, reconciler, clock, telemetry, {("blue", "red"): 7e9 + 0.5e9 * i})
    url = f"sqlite://{controller.store.path}"
    assert main(["--store", url, "plan", "--predicted", "--tenant", "acme", "--at", str(steps[2] + 1),
                 "-o", "json"]) == 0
    import json

    graph = json.loads(capsys.readouterr().out)
    assert graph["time"] == steps[2] and graph["policy"] == "fc"
    assert main(["--store", url, "get", "forecastpolicies", "--tenant", "acme"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:4] == ["TENANT", "NAME", "MODE", "MODEL"] and table[1].split()[:3] == ["acme", "fc", "suggest"]
    assert main(["--store", url, "plan", "--predicted", "--at", "not-a-time"]) == 1
    assert "--at" in capsys.readouterr().err
    pending = sorted(r.name for r in controller.store.list("Suggestion", "acme") if r.value["action"] == "establish")
    assert main(["--store", url, "approve", pending[-1], "--tenant", "acme"]) == 0
    out = capsys.readouterr().out
    assert "applied" in out and not out.split(":")[1].strip().startswith("0 "), out
    assert main(["--store", url, "approve", pending[-1], "--tenant", "acme"]) == 1
    assert "is approved" in capsys.readouterr().err


def test_a_deposed_leaders_loop_writes_nothing(world):
    from vnstitch.store import Compare

    controller, telemetry, reconciler, clock = world
    controller.apply([policy()])
    for i in range(3):
        telemetry.push("acme", "blue", "red", clock.now - (3 - i) * INTERVAL, 9e9)
    controller.fence = [Compare("Lease", "", "leader", 987654)]  # a leader key that is no longer ours
    revision = controller.store.revision()
    ProactiveLoop(controller, telemetry, train=False).step(clock.now)
    assert controller.store.revision() == revision, "no stitch, no status, no graph lands"
    controller.fence = []
    ProactiveLoop(controller, telemetry, train=False).step(clock.now)
    assert forecast_stitches(controller), "the leader's loop does write"


def test_changing_the_interval_does_not_freeze_the_policy(world):
    controller, telemetry, reconciler, clock = world
    controller.apply([policy()])
    loop = ProactiveLoop(controller, telemetry, train=False)
    run(loop, reconciler, clock, telemetry, {("blue", "red"): 1e9})
    controller.apply([policy(interval="10m")])  # step numbers halve
    clock.now += 2 * INTERVAL
    runs = loop.step(clock.now)
    assert runs and runs[0].step == int(clock.now // 600)


def test_ending_a_policy_or_turning_it_off_ends_its_stitches(world):
    controller, telemetry, reconciler, clock = world
    controller.apply([policy()])
    loop = ProactiveLoop(controller, telemetry, train=False)
    for i in range(4):
        run(loop, reconciler, clock, telemetry, {("blue", "red"): 9e9})
    assert forecast_stitches(controller)
    controller.apply([policy(mode="off")])
    run(loop, reconciler, clock, telemetry, {("blue", "red"): 9e9})
    assert forecast_stitches(controller) == {}, "off: the loop's stitches end"
    controller.apply([policy()])
    for i in range(3):
        run(loop, reconciler, clock, telemetry, {("blue", "red"): 9e9})
    assert forecast_stitches(controller)
    controller.delete("forecastpolicy", "fc", "acme")
    run(loop, reconciler, clock, telemetry, {("blue", "red"): 9e9})
    assert forecast_stitches(controller) == {}, "a policy that is gone leaves no stitch behind"


def test_a_failing_interval_is_recorded_and_the_others_go_on(world):
    controller, telemetry, reconciler, clock = world
    controller.apply([policy()])

    def broken(*args):
        raise ValueError("model exploded")
    loop = ProactiveLoop(controller, telemetry, train=False, predictor=broken)
    telemetry.push("acme", "blue", "red", clock.now - INTERVAL, 1e9)
    telemetry.push("acme", "blue", "red", clock.now - 2 * INTERVAL, 1e9)
    (result,) = loop.step(clock.now)
    status = controller.store.get("ForecastPolicy", "acme", "fc").value["status"]
    assert "interval failed: ValueError: model exploded" in status["message"]
    assert loop.seconds_until_due(clock.now) > 0, "the failed interval counts as run: no busy retry"


def test_a_training_left_by_another_leader_is_done_again(world, tmp_path):
    import time

    controller, telemetry, reconciler, clock = world
    controller.apply([policy(minHistory=4)])
    record = controller.store.get("ForecastPolicy", "acme", "fc")
    controller.store.put("ForecastPolicy", "acme", "fc", {**record.value, "status": {
        "model": {"state": "training", "name": "last_value", "message": "training on the old leader"}}})
    loop = ProactiveLoop(controller, telemetry, ModelStore(str(tmp_path / "models")))
    try:
        for i in range(5):
            run(loop, reconciler, clock, telemetry, {("blue", "red"): 1e9 + 1e7 * i})
        deadline = time.monotonic() + 30
        while controller.store.get("ForecastPolicy", "acme", "fc").value["status"]["model"]["state"] != "trained":
            assert time.monotonic() < deadline, "the orphaned training was never redone"
            time.sleep(0.05)
    finally:
        loop.close()


def test_pairs_whose_names_contain_dashes_get_distinct_stitches():
    assert stitch_name("p", ("eu-web", "db")) != stitch_name("p", ("eu", "web-db"))
    assert stitch_name("p-a", ("b", "c")) != stitch_name("p", ("a-b", "c"))
    assert len(stitch_name("x" * 60, ("y" * 60, "z" * 60), 3)) <= 63


def test_a_pull_source_with_a_bad_sample_degrades_the_status_and_stores_nothing(world):
    from vnstitch.telemetry.base import Sample
    from vnstitch.telemetry.store import MemoryTelemetryStore

    controller, _, reconciler, clock = world
    controller.apply([policy()])

    class Broken:
        name = "broken"
        capabilities = frozenset({"pull"})

        def collect(self, now):
            return [Sample("acme", "blue", "red", now, 1e9), Sample("acme", "red", "blue", now, float("nan"))]

    store = MemoryTelemetryStore()
    ProactiveLoop(controller, store, sources=[Broken()], train=False).step(clock.now)
    status = controller.store.get("ForecastPolicy", "acme", "fc").value["status"]
    assert status["telemetry"].startswith("broken: ") and "broken[1]" in status["telemetry"]
    assert np.isnan(store.rates("acme", [("blue", "red")], clock.now, 1, INTERVAL)).all(), "nothing stored"
