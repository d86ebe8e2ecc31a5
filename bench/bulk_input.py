"""Bulk input (issue 17): validate and apply one file of many documents, as a user would, timed.

Writes N documents (default 100,000: two thirds VirtualNetworks with members on the bundled Abilene
substrate, one third Stitches between networks of the same tenant), imports the substrate into a fresh
SQLite store, then runs each command as a subprocess and records its wall time and peak RSS:

    vnstitch validate --offline FILE      (syntax and schema)
    vnstitch validate FILE                (against the store: references, policies, capacity)
    vnstitch apply -f FILE                (a fresh store: everything is created)
    vnstitch apply -f FILE                (again: everything is unchanged)

Run from the repository root:  python bench/bulk_input.py [--docs 100000] [--json out/bench/bulk_input.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

ABILENE = Path(__file__).resolve().parent.parent / "src" / "vnstitch" / "data" / "abilene.xml"
NODES = ("ATLAM5", "ATLAng", "CHINng", "DNVRng", "HSTNng", "IPLSng", "KSCYng", "LOSAng", "NYCMng", "SNVAng",
         "STTLng", "WASHng")
TENANTS = 100
GOALS = {"validate": 30.0, "apply": 60.0, "reapply": 10.0}  # seconds, for 100,000 documents
MEMORY_GOAL_MIB = 1024


def write_documents(path: Path, count: int, stitch_share: float, seed: int) -> dict:
    """`count` documents in one multi-document YAML file; returns how many of each kind."""
    rng = random.Random(seed)
    stitches = int(count * stitch_share)
    networks = count - stitches
    with path.open("w", encoding="utf-8") as out:
        out.write(f"# bench/bulk_input.py: {networks} networks and {stitches} stitches on Abilene\n")
        for i in range(networks):
            octets = f"{10 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}"
            members = "".join(
                f"    - {{name: m{k}, node: {node}, address: {octets}.{10 + k}}}\n"
                for k, node in enumerate(rng.sample(NODES, rng.randint(1, 3)), 1))
            out.write(f"---\napiVersion: vnstitch.io/v1\nkind: VirtualNetwork\n"
                      f"metadata:\n  name: net-{i}\n  tenant: t{i % TENANTS}\n  labels: {{app: bench, shard: s{i % 7}}}\n"
                      f"spec:\n  vnid: {i + 1}\n  cidr: {octets}.0/24\n  members:\n{members}")
        for j in range(stitches):
            a = rng.randrange(networks)
            b = a + TENANTS if a + TENANTS < networks else a - TENANTS  # same tenant: no policy needed
            tenant = f"t{a % TENANTS}"
            if j % 3 == 2:  # a direct stitch between two VMs (first members, which every network has)
                spec = (f"  type: direct\n  from: {{network: net-{a}, member: m1}}\n"
                        f"  to: {{network: net-{b}, member: m1}}\n")
            else:
                spec = (f"  type: bandwidth\n  from: {{network: net-{a}}}\n  to: {{network: net-{b}}}\n"
                        f"  bandwidth: {rng.choice((10, 20, 50))}kbps\n  maxLatency: 60ms\n")
            out.write(f"---\napiVersion: vnstitch.io/v1\nkind: Stitch\n"
                      f"metadata: {{name: s-{j}, tenant: {tenant}}}\nspec:\n{spec}")
    return {"VirtualNetwork": networks, "Stitch": stitches}


def run(label: str, argv: list[str], log: Path, timeout_s: float, env: dict) -> dict:
    """Run one command: its wall time, CPU time (user + system, which a shared machine does not inflate),
    peak RSS (wait4: that process alone), exit status and how many resources it reported created/unchanged."""
    shown = " ".join(["vnstitch", *argv[1:]])
    print(f"$ {shown}", flush=True)
    started = time.monotonic()
    with log.open("w") as out, (log.with_suffix(".err")).open("w") as err:
        child = subprocess.Popen(argv, stdout=out, stderr=err, env=env, start_new_session=True)
        deadline = started + timeout_s
        status, usage, timed_out = None, None, False
        while status is None:
            pid, raw, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                status = os.waitstatus_to_exitcode(raw)
                break
            if time.monotonic() > deadline:
                os.killpg(child.pid, signal.SIGKILL)
                _, raw, usage = os.wait4(child.pid, 0)
                status, timed_out = os.waitstatus_to_exitcode(raw), True
                break
            time.sleep(0.05)
        child.returncode = status
    wall_s = time.monotonic() - started
    lines = log.read_text(errors="replace").splitlines()
    errors = log.with_suffix(".err").read_text(errors="replace").splitlines()
    result = {
        "step": label, "command": shown, "wall_s": round(wall_s, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "exit": status, "timed_out": timed_out,
        "created": sum(line.endswith(" created") for line in lines),
        "unchanged": sum(line.endswith(" unchanged") for line in lines),
        "last_line": lines[-1] if lines else "", "stderr_tail": errors[-3:],
    }
    verdict = "TIMED OUT" if timed_out else f"exit {status}"
    print(f"  {label}: {wall_s:.2f} s ({result['cpu_s']:.2f} s CPU), peak RSS {result['peak_rss_mib']:.0f} MiB, {verdict}; "
          f"{result['created']} created, {result['unchanged']} unchanged; {result['last_line'][:100]}", flush=True)
    for line in result["stderr_tail"]:
        print(f"  stderr: {line[:200]}", flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=100_000, help="documents in the file (default 100000)")
    parser.add_argument("--stitch-share", type=float, default=1 / 3, help="share of Stitches (default 1/3)")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--workdir", default="out/bench/bulk_input", help="file, store and logs go here")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per command before it is killed")
    parser.add_argument("--steps", default="offline,validate,apply,reapply",
                        help="comma-separated subset of offline,validate,apply,reapply")
    parser.add_argument("--label", default="", help="a name for this run in the JSON (e.g. baseline)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON here")
    args = parser.parse_args(argv)

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    data = workdir / f"docs-{args.docs}.yaml"
    if not data.exists():
        counts = write_documents(data, args.docs, args.stitch_share, args.seed)
    else:
        stitches = int(args.docs * args.stitch_share)
        counts = {"VirtualNetwork": args.docs - stitches, "Stitch": stitches}
    print(f"{data}: {args.docs} documents ({counts}), {data.stat().st_size / 1e6:.1f} MB", flush=True)

    store = workdir / "store.db"
    for leftover in workdir.glob("store.db*"):
        leftover.unlink()
    cli = str(Path(sys.executable).with_name("vnstitch"))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    url = f"sqlite://{store.resolve()}"
    setup = run("import", [cli, "--store", url, "--create", "substrate", "import", str(ABILENE)],
                workdir / "import.log", args.timeout, env)
    if setup["exit"] != 0:
        raise SystemExit("substrate import failed")

    commands = {
        "offline": [cli, "validate", "--offline", str(data)],
        "validate": [cli, "--store", url, "validate", str(data)],
        "apply": [cli, "--store", url, "apply", "-f", str(data)],
        "reapply": [cli, "--store", url, "apply", "-f", str(data)],
    }
    results = []
    load_before = f"{os.getloadavg()[0]:.1f}"
    for step in args.steps.split(","):
        results.append(run(step, commands[step], workdir / f"{step}.log", args.timeout, env))

    print(f"\n{args.docs} documents, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"load average before: {load_before}, after: {os.getloadavg()[0]:.1f}")
    print(f"{'step':10} {'wall s':>9} {'CPU s':>9} {'peak RSS MiB':>13}  exit")
    for r in results:
        print(f"{r['step']:10} {r['wall_s']:>9.2f} {r['cpu_s']:>9.2f} {r['peak_rss_mib']:>13.0f}  "
              f"{'timeout' if r['timed_out'] else r['exit']}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({
            "label": args.label, "docs": args.docs, "counts": counts, "file_bytes": data.stat().st_size,
            "cores": os.cpu_count(), "load_average": [load_before, f"{os.getloadavg()[0]:.1f}"],
            "python": platform.python_version(), "goals_s": GOALS,
            "memory_goal_mib": MEMORY_GOAL_MIB, "results": results,
            "command": " ".join(["python", "bench/bulk_input.py", *(argv if argv is not None else sys.argv[1:])]),
        }, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
