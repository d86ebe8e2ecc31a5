"""`vnstitch demo`: the main job on bundled real data — replay one Abilene day under four strategies."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# The allocator's defaults were chosen on days 11 and 12 (0-based) of the bundled 14; days 10 and 13 were
# not used for tuning (docs/BENCHMARKS.md). The demo replays day 10: all of it, with the horizon's
# intervals after it still inside the data (day 13 is 2 intervals short).
DEMO_DAY = 10
TUNING_DAYS = (11, 12)


def _versus(s: dict, base: str, than: str = "proactive") -> str | None:
    """'proactive vs static: 341 → 0 overloaded link-intervals, …' when both ran."""
    if base not in s or than not in s:
        return None
    a, b = s[base], s[than]
    return (f"{than} vs {base}: {a['overloaded_link_intervals']} → {b['overloaded_link_intervals']} overloaded "
            f"link-intervals, {a['dropped_mbit']:.0f} → {b['dropped_mbit']:.0f} Mbit dropped, "
            f"{a['sla_violations']} → {b['sla_violations']} SLA violations")


def run_demo(args) -> int:
    from vnstitch.experiments.replay import STEPS_PER_DAY, ReplayConfig, render_table, run_replay, world_time

    workdir = Path(args.workdir or os.path.join("out", "demo")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    store_path = workdir / "state.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{store_path}{suffix}").unlink(missing_ok=True)
    model = getattr(args, "model", None) or "gru"
    steps = getattr(args, "steps", None) or STEPS_PER_DAY
    day = str(world_time(DEMO_DAY * STEPS_PER_DAY))[:10]
    print(f"vnstitch demo: {'one day' if steps == STEPS_PER_DAY else f'{steps} intervals'} of real Abilene "
          f"traffic (Internet2, {day}, day {DEMO_DAY} of the bundled 14), ×10, on the Abilene backbone,\n"
          f"simulated data plane, SQLite store. This day was not used for tuning: the allocator's defaults were "
          f"chosen on days {' and '.join(map(str, TUNING_DAYS))},\nand the {model} forecaster is trained only on "
          f"the {DEMO_DAY} days before it. Four strategies: static shortest paths, reactive stitching after\n"
          f"congestion was seen, proactive stitching from the {model} forecast, and an oracle that knows the next "
          "interval.\n", file=sys.stderr)
    # the model file names its training window: a model trained on other days must not be reused
    report = run_replay(ReplayConfig(start_step=DEMO_DAY * STEPS_PER_DAY, steps=steps), model_name=model,
                        model_path=str(workdir / f"{model}-abilene-before-day{DEMO_DAY}.npz"),
                        json_path=str(workdir / "replay.json"), plot_dir=str(workdir / "plots"),
                        store_url=f"sqlite://{store_path}", log=lambda msg: print(msg, file=sys.stderr),
                        decisions_path=str(workdir / "decisions.jsonl"))
    print(f"replayed {report['window']['start']} + {report['window']['hours']:g} h (day {DEMO_DAY}, not used for "
          f"tuning), traffic ×{report['scale']:g}:")
    print(render_table(report))
    print("churn/h: stitches set up and torn down per hour; resized/h: stitches resized or rerouted per hour")
    s = report["strategies"]
    lines = [line for line in (_versus(s, "static"), _versus(s, "reactive")) if line]
    if lines:
        print()
        print("\n".join(lines))
    print(f"\nresults: {workdir / 'replay.json'}")
    print(f"decisions (every allocator decision with its reason and forecast): {workdir / 'decisions.jsonl'}")
    for plot in report.get("plots", []):
        print(f"plot:    {plot}")
    print(f"inspect: vnstitch --store sqlite://{store_path} get stitches\n"
          f"         vnstitch --store sqlite://{store_path} plan --predicted")
    print("\n".join(dashboard_hint(store_path)))
    return 0


def dashboard_hint(store_path: Path, port: int = 8470) -> list[str]:
    """How to look at what the demo left in its store: the dashboard served on it, and the token to sign in with."""
    from vnstitch.experiments.replay import TENANT

    store = f"sqlite://{store_path}"
    return [f"dashboard: vnstitch --store {store} serve --dev",
            f"           then open http://127.0.0.1:{port}/ui/ and sign in with the admin token it prints (once: while the",
            f"           store has no admin token; after that make one: vnstitch --store {store} token create --tenant "
            f"{TENANT} --role reader)"]
