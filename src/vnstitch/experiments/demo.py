"""`vnstitch demo`: the main job on bundled real data — replay one Abilene day under four strategies."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def run_demo(args) -> int:
    from vnstitch.experiments.replay import ReplayConfig, render_table, run_replay

    workdir = Path(args.workdir or os.path.join("out", "demo")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    store_path = workdir / "state.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{store_path}{suffix}").unlink(missing_ok=True)
    print("vnstitch demo: one day of real Abilene traffic (Internet2, 2004-03-13), ×10, on the Abilene backbone,\n"
          "simulated data plane, SQLite store. Four strategies: static shortest paths, reactive stitching after\n"
          "congestion, proactive stitching from a GRU forecast, and an oracle that knows the next interval.\n",
          file=sys.stderr)
    report = run_replay(ReplayConfig(), model_name="gru", model_path=str(workdir / "gru-abilene.npz"),
                        json_path=str(workdir / "replay.json"), plot_dir=str(workdir / "plots"),
                        store_url=f"sqlite://{store_path}", log=lambda msg: print(msg, file=sys.stderr),
                        decisions_path=str(workdir / "decisions.jsonl"))
    print()
    print(render_table(report))
    s = report["strategies"]
    if "static" in s and "proactive" in s:
        print(f"\nproactive vs static: {s['static']['overloaded_link_intervals']} → "
              f"{s['proactive']['overloaded_link_intervals']} overloaded link-intervals, "
              f"{s['static']['dropped_mbit']:.0f} → {s['proactive']['dropped_mbit']:.0f} Mbit dropped")
    print(f"\nresults: {workdir / 'replay.json'}")
    print(f"decisions (every allocator decision with its reason and forecast): {workdir / 'decisions.jsonl'}")
    for plot in report.get("plots", []):
        print(f"plot:    {plot}")
    print(f"inspect: vnstitch --store sqlite://{store_path} get stitches\n"
          f"         vnstitch --store sqlite://{store_path} plan --predicted")
    return 0
