"""Replay benchmark: all four strategies in the same run, at several traffic scales and windows.

Usage: python bench/replay.py [--scales 8,10,12] [--days 10,11,12,13] [--json FILE]
The GRU for each window is trained only on the days before it (cached per window in out/bench/).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from vnstitch.experiments.replay import STEPS_PER_DAY, ReplayConfig, render_table, run_replay

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scales", default="8,10,12")
    parser.add_argument("--days", default="10,11,12,13",
                        help="0-based days; 11 and 12 were used to choose the allocator defaults, 10 and 13 were not")
    parser.add_argument("--model", default="gru")
    parser.add_argument("--json", default=str(ROOT / "out" / "bench" / "replay.json"))
    args = parser.parse_args()
    runs = []
    for day in (int(d) for d in args.days.split(",")):
        model_path = ROOT / "out" / "bench" / f"{args.model}-before-day{day}.npz"
        for scale in (float(s) for s in args.scales.split(",")):
            started = time.perf_counter()
            report = run_replay(ReplayConfig(scale=scale, start_step=day * STEPS_PER_DAY,
                                             steps=STEPS_PER_DAY - 2 if day == 13 else STEPS_PER_DAY),
                                model_name=args.model, model_path=str(model_path), show_progress=False,
                                log=lambda m: print(m, file=sys.stderr))
            report["day"] = day
            report["seconds"] = round(time.perf_counter() - started, 1)
            print(f"\nday {day} ({report['window']['start']}), scale {scale:g}:")
            print(render_table(report), flush=True)
            runs.append(report)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    out = {"command": "python bench/replay.py " + " ".join(sys.argv[1:]), "machine": machine,
           "load_avg_1m": round(os.getloadavg()[0], 2), "runs": runs}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2))
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
