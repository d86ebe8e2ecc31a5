"""`make bench`: every benchmark in bench/ with its default arguments, one after the other, each one's
output in out/bench/<name>.log and its figures (where it writes JSON) in out/bench/<name>.json.

Benchmarks that need what this machine lacks (root for the Linux lab, the etcd binary) are reported
as "not run" with the reason, and never counted as passed. The exit status is non-zero when a
benchmark that could run failed. The figures in docs/BENCHMARKS.md come from these scripts; this
runner does not edit that file.

Usage: python bench/run_all.py [--only NAME,...] [--skip NAME,...] [--list]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "out" / "bench"


def _etcd() -> str | None:
    if os.environ.get("VNSTITCH_ETCD_BINARY") or shutil.which("etcd"):
        return None
    return "the etcd binary is missing (Debian package etcd-server; scripts/system-deps.sh)"


def _chromium() -> str | None:
    return None if shutil.which("chromium") else "Debian's chromium is missing (scripts/system-deps.sh)"


def _root() -> str | None:
    return None if os.geteuid() == 0 else "needs root (it builds network namespaces)"


# name, command (after the interpreter), what it needs, a rough guide to how long it takes on 2 cores
BENCHMARKS = [
    ("admission", ["bench/admission.py"], None, "1 min"),
    ("path_queries", ["bench/path_queries.py"], None, "1 min"),
    ("api_load", ["bench/api_load.py"], None, "1 min"),
    ("telemetry_ingest", ["bench/telemetry_ingest.py"], None, "1 min"),
    ("proactive_loop", ["bench/proactive_loop.py"], None, "3 min"),
    ("replay", ["bench/replay.py"], None, "15 min"),
    ("forecast_eval", ["bench/forecast_eval.py"], None, "20 min"),
    ("etcd_failover", ["bench/etcd_failover.py"], _etcd, "5 min"),
    ("etcd_replay_failover", ["bench/etcd_replay_failover.py"], _etcd, "8 min"),
    ("linux_stitch", ["bench/linux_stitch.py"], _root, "3 min"),
    ("faults", ["bench/faults.py"], _root, "10 min"),
    ("intents", ["bench/intents.py"], None, "5 min"),
    ("intent_lab_drift", ["bench/intent_lab_drift.py"], _root, "3 min"),
    ("anomaly_eval", ["bench/anomaly_eval.py"], None, "10 min"),
    ("dashboard", ["bench/dashboard.py"], _chromium, "15 min"),
]


def _takes_json(script: str) -> bool:
    return "--json" in (ROOT / script).read_text(encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="comma-separated names (see --list)")
    parser.add_argument("--skip", default="", help="comma-separated names not to run")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args()
    names = [b[0] for b in BENCHMARKS]
    if args.list:
        for name, command, needs, takes in BENCHMARKS:
            why = needs() if needs else None
            print(f"{name:22} ~{takes:7} {' '.join(command)}" + (f"   (not here: {why})" if why else ""))
        return 0
    chosen = set(args.only.split(",")) if args.only else set(names)
    unknown = (chosen | set(filter(None, args.skip.split(",")))) - set(names)
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(sorted(unknown))} (valid: {', '.join(names)})")
    chosen -= set(args.skip.split(","))
    OUT.mkdir(parents=True, exist_ok=True)
    results = []
    for name, command, needs, takes in BENCHMARKS:
        if name not in chosen:
            continue
        why = needs() if needs else None
        if why:
            results.append((name, "not run", why))
            print(f"[{name}] not run: {why}", flush=True)
            continue
        argv = [sys.executable, *command]
        if _takes_json(command[0]):
            argv += ["--json", str(OUT / f"{name}.json")]
        print(f"[{name}] running (about {takes}): {' '.join(argv[1:])} > out/bench/{name}.log", flush=True)
        started = time.monotonic()
        with open(OUT / f"{name}.log", "w", encoding="utf-8") as log:
            code = subprocess.call(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        took = time.monotonic() - started
        status = "ok" if code == 0 else f"FAILED (exit {code}, see out/bench/{name}.log)"
        results.append((name, status, f"{took:.0f} s"))
        print(f"[{name}] {status} in {took:.0f} s", flush=True)
    print("\nsummary:")
    for name, status, detail in results:
        print(f"  {name:22} {status:10} {detail}")
    return 1 if any(status.startswith("FAILED") for _, status, _ in results) else 0


if __name__ == "__main__":
    sys.exit(main())
