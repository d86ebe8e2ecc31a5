"""Replay real Abilene traffic through controller + simulator: strategies, JSON, plots, bad input."""

import json

import pytest

from vnstitch.cli.main import main
from vnstitch.planning.allocator import AllocatorConfig
from vnstitch.experiments.replay import ReplayConfig, run_replay

KEYS = {"overloaded_link_intervals", "dropped_mbit", "sla_violations", "reserved_over_used",
        "stitch_churn_per_hour", "loop_ms_p50", "loop_ms_p99"}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("replay")
    # 6 hours of the default day (10, 2004-03-11) at scale 10: the static strategy overloads the OC-48 link
    config = ReplayConfig(steps=72)
    result = run_replay(config, model_name="last_value", json_path=str(out / "r.json"), plot_dir=str(out / "plots"),
                        show_progress=False, log=lambda m: None)
    return result, out


def test_report_shape_and_files(report):
    result, out = report
    assert set(result["strategies"]) == {"static", "reactive", "proactive", "oracle"}
    for metrics in result["strategies"].values():
        assert KEYS <= set(metrics)
    assert result["scale"] == 10.0
    assert json.loads((out / "r.json").read_text())["strategies"] == result["strategies"]
    assert {p.split("/")[-1] for p in result["plots"]} == {"max_link_utilisation.png", "reserved_vs_actual.png"}
    assert all((out / "plots" / name).stat().st_size > 10_000 for name in ("max_link_utilisation.png",))


def test_static_overloads_and_stitching_relieves_it(report):
    s = report[0]["strategies"]
    assert s["static"]["overloaded_link_intervals"] > 5
    assert s["static"]["dropped_mbit"] > 0
    assert s["static"]["stitch_churn_per_hour"] == 0
    for name in ("proactive", "oracle"):
        assert s[name]["overloaded_link_intervals"] < s["static"]["overloaded_link_intervals"]
        assert s[name]["dropped_mbit"] < s["static"]["dropped_mbit"]
        assert s[name]["stitch_churn_per_hour"] > 0
    assert s["oracle"]["overloaded_link_intervals"] == 0  # knowing the next interval, nothing overloads


def test_reservations_never_exceed_capacity_during_replay():
    from vnstitch.data import data_path
    from vnstitch.domain.ledger import LEDGER_KIND
    from vnstitch.forecast import load_bundled_abilene
    from vnstitch.experiments.replay import run_strategy
    from vnstitch.store.memory import MemoryStore
    from vnstitch.topology.importers import load_topology

    series = load_bundled_abilene()
    nodes = series.nodes()
    demand = series.values_mbps.reshape(series.n_steps, len(nodes), len(nodes)) * 14  # heavier: more stitches
    topology = load_topology(data_path("abilene.xml"))
    store = MemoryStore()
    config = ReplayConfig(steps=24, allocator=AllocatorConfig(congestion_threshold=0.6))
    result = run_strategy("oracle", demand, nodes, topology, config, store=store)
    assert result.established > 3
    capacity = {r.name: r.value["spec"]["capacity"] for r in store.list("Link")}
    for record in store.list(LEDGER_KIND):
        assert record.value["forward"] <= capacity[record.name] and record.value["reverse"] <= capacity[record.name]
    graph = store.get("PredictedGraph", "backbone", "current").value
    assert graph["stitches"] and graph["decisions"] is not None


def test_cli_replay_and_bad_input(tmp_path, capsys):
    out = tmp_path / "r.json"
    code = main(["replay", "--steps", "6", "--strategy", "static,oracle", "--model", "last_value",
                 "--json", str(out)])
    captured = capsys.readouterr()
    assert code == 0 and "oracle" in captured.out and "static" in captured.out
    written = json.loads(out.read_text())
    assert set(written["strategies"]) == {"static", "oracle"}
    assert written["window"]["start"].startswith("2004-03-11"), "day 10, held out from tuning, by default"
    assert main(["replay", "--strategy", "psychic"]) == 1
    assert "unknown strategy 'psychic'" in capsys.readouterr().err
    assert main(["replay", "--day", "14"]) == 1
    assert "window must lie inside" in capsys.readouterr().err
    assert main(["replay", "--dataset", "geant"]) == 1
    assert "unknown dataset 'geant'" in capsys.readouterr().err


def test_every_decision_is_logged_with_its_reason_and_forecast(tmp_path):
    log = tmp_path / "decisions.jsonl"
    store_url = f"sqlite://{tmp_path}/state.db"
    run_replay(ReplayConfig(steps=24, strategies=("oracle",)), model_name="last_value", decisions_path=str(log),
               store_url=store_url, show_progress=False, log=lambda m: None)
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert entries and {e["strategy"] for e in entries} == {"oracle"}
    first = entries[0]
    assert first["action"] == "establish" and first["forecast_upper_bps"] > 0 and "would load" in first["reason"]
    assert first["time"].startswith("2004-03-11")  # the default day, 10


def test_forecast_stitches_carry_their_reason(tmp_path):
    from vnstitch.store import open_store

    store_url = f"sqlite://{tmp_path}/state.db"
    run_replay(ReplayConfig(steps=12, strategies=("proactive",)), model_name="last_value", store_url=store_url,
               show_progress=False, log=lambda m: None)
    store = open_store(store_url)
    stitches = store.list("Stitch", "backbone")
    assert stitches
    assert all(s.value["metadata"]["annotations"]["vnstitch.io/reason"].split(":")[0] in
               ("establish", "adjust", "reroute") for s in stitches)
    store.close()


def test_replay_defaults_to_a_held_out_day_and_its_help_says_which_days_tuned():
    from vnstitch.cli.help import subcommands
    from vnstitch.cli.main import build_parser
    from vnstitch.cli.replay_cmd import HELD_OUT_DAYS, replay_config
    from vnstitch.experiments.demo import DEMO_DAY, TUNING_DAYS
    from vnstitch.experiments.replay import STEPS_PER_DAY

    parser = build_parser()
    args = parser.parse_args(["replay"])
    assert args.day == DEMO_DAY and DEMO_DAY in HELD_OUT_DAYS and not set(HELD_OUT_DAYS) & set(TUNING_DAYS)
    assert replay_config(args).start_step == DEMO_DAY * STEPS_PER_DAY == ReplayConfig().start_step
    text = " ".join(dict(subcommands(parser))["replay"].format_help().split())
    assert f"(default: {DEMO_DAY}, as `vnstitch demo`)" in text
    assert "days 11 and 12 tuned the allocator's defaults; days 10 and 13 are held out" in text
