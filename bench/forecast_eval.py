"""Forecast benchmark: full backtest on the 14 Abilene days, all models, horizons 1 and 12.

Writes docs/bench/forecast.md (table, command, machine). Run from the repository root:

    python bench/forecast_eval.py [--threads 2] [--models ...] [--json FILE] [--plot FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

NOTES_MARKER = "<!-- notes below are kept when the benchmark is rerun -->"


def machine_line(threads: int) -> str:
    """'model name, N CPU(s), RAM' like lscpu, plus the torch thread count used."""
    try:
        info = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
        cpu = f"{fields.get('Model name', '?').strip()}, {fields.get('CPU(s)', '?').strip()} CPU(s)"
    except (OSError, subprocess.CalledProcessError):
        cpu = platform.processor() or "unknown CPU"
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
    load = os.getloadavg()[0]
    return (f"{cpu}, {mem_gib:.0f} GiB RAM, Linux {platform.release()}, Python {platform.python_version()}, "
            f"torch threads {threads}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}, "
            f"load average at start {load:.1f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", default="last_value,seasonal_naive_day,seasonal_naive_week,ets,lstm,gru")
    parser.add_argument("--horizon", default="1,12")
    parser.add_argument("--out", type=Path, default=Path("docs/bench/forecast.md"))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--plot", type=Path, default=None)
    args = parser.parse_args(argv)

    # Idle OpenMP threads sleep instead of spinning: on a shared 2-core machine spinning threads
    # burnt several times the useful CPU time (GRU fit 275 s wall, 252 s CPU at 2 threads under load).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    torch.set_num_threads(args.threads)
    from vnstitch.forecast import load_bundled_abilene
    from vnstitch.forecast.backtest import plot_runs, results_table, run_backtest

    machine = machine_line(args.threads)
    models = args.models.split(",")
    horizons = [int(h) for h in args.horizon.split(",")]
    options = {name: {"num_threads": args.threads} for name in ("lstm", "gru")}
    series = load_bundled_abilene()
    started = time.perf_counter()
    runs = run_backtest(series, models, horizons, options)
    total = time.perf_counter() - started
    rows = [row for run in runs for row in run.results]
    table = results_table(rows)
    print(table)
    command = "python bench/forecast_eval.py " + " ".join(sys.argv[1:] if argv is None else argv)
    text = [
        "# Forecasting benchmark (issue 4)",
        "",
        f"Command: `{command.strip()}` (equivalent: `vnstitch forecast eval --dataset abilene --horizon "
        f"{args.horizon} --models {args.models} --threads {args.threads}`)",
        "",
        f"Machine: {machine}",
        "",
        f"Data: bundled Abilene, {series.n_steps} steps x {series.n_pairs} pairs, 5-minute steps, "
        "2004-03-01..14; split 60/15/25 % (fit / conformal calibration / test); one forecast per test "
        "origin (rolling origin, no refit); metrics over the 132 pairs with traffic (diagonal excluded); "
        "intervals conformal-calibrated; `fit s` includes calibration; `predict ms` is the median time of "
        "one `predict()` call for all pairs.",
        "",
        "```",
        table,
        "```",
        "",
        f"Total wall time {total:.0f} s; load average at the end {os.getloadavg()[0]:.1f}.",
        "",
        "Fit + calibration CPU time (process CPU seconds over all threads; on 2 dedicated cores the wall "
        "time is about this divided by the threads used): "
        + ", ".join(f"{run.model} {run.fit_cpu_seconds:.0f} s" for run in runs) + ".",
        "",
        "```json",
        json.dumps({"results": rows}, indent=1),
        "```",
        "",
    ]
    notes = ""
    if args.out.exists() and NOTES_MARKER in args.out.read_text():
        notes = args.out.read_text().split(NOTES_MARKER, 1)[1]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(text) + NOTES_MARKER + notes)
    if args.json:
        args.json.write_text(json.dumps({"results": rows}, indent=2) + "\n")
    if args.plot:
        best = min(runs, key=lambda r: r.results[-1]["nmae"])
        plot_runs(series, best, max(horizons), args.plot)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
