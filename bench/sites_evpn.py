"""Benchmark sites over BGP EVPN (issue 14, root, gobgpd): three sites in namespaces, a route manager and a
GoBGP speaker each (the same lab as tests/linux/test_sites_evpn.py).

- appear: network blue (VNID 100) served at b and c; its member at site a is added to the resource file
  (written atomically at t0); the time until b's and c's vx100 flood to a's VTEP (the later of the two);
  then removed again: the time until both entries are gone (withdraw).
- kill: site a's route manager and speaker SIGKILLed (the kernel closes their TCP sessions) → the time until
  b's and c's entries for a are gone; a restarted → the time until all three converge again.
- cut: site a's link set down (no FIN: only the hold timer notices) → the time until b and c drop a.

usage: sudo .venv/bin/python bench/sites_evpn.py [--trials 20] [--failures 5] [--json out/bench/sites_evpn.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from vnstitch.sites.dataplane import Vtep  # noqa: E402
from vnstitch.sites.lab import SitesLab  # noqa: E402

VNID = 100


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def summary(values: list[float]) -> dict:
    return {"n": len(values), "p50_s": round(statistics.median(values), 4), "p95_s": round(pct(values, 0.95), 4),
            "max_s": round(max(values), 4), "min_s": round(min(values), 4)}


def wait_for(predicate, timeout_s: float, what: str, interval_s: float = 0.01) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout_s:
            raise SystemExit(f"timed out after {timeout_s:g}s waiting for {what}")
        time.sleep(interval_s)
    return time.monotonic()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--failures", type=int, default=5)
    parser.add_argument("--json", default="out/bench/sites_evpn.json")
    args = parser.parse_args()
    if SitesLab.available():
        raise SystemExit(f"cannot run: {SitesLab.available()}")
    directory = tempfile.mkdtemp(prefix="vns-sites-bench-")
    lab = SitesLab(f"sb{os.getpid() % 10000}", directory, ["a", "b", "c"])
    A = lab.address("a")
    with_a = SitesLab.network_document("blue", VNID, {"va": "a", "vb": "b", "vc": "c"})
    without_a = SitesLab.network_document("blue", VNID, {"vb": "b", "vc": "c"})
    results: dict = {"command": "sudo .venv/bin/python bench/sites_evpn.py " + " ".join(sys.argv[1:]),
                     "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": platform.machine(),
                     "cpus": os.cpu_count(), "python": platform.python_version(),
                     "gobgpd": subprocess.run(["gobgpd", "--version"], capture_output=True, text=True).stdout.strip(),
                     "timers": {"hold_s": 3, "keepalive_s": 1, "connect_retry_s": 1, "poll_interval_s": 0.05, "resync_interval_s": 1.0}}
    vteps: dict[str, Vtep] = {}
    try:
        lab.build()
        lab.write_config(without_a)
        for site in lab.sites:
            lab.start(site)
        vteps = {s: Vtep(lab.ns(s), lab.address(s)) for s in lab.sites}

        def a_at_others() -> bool:
            return all(A in vteps[s].flood(VNID) for s in ("b", "c"))

        def a_gone() -> bool:
            return all(A not in vteps[s].flood(VNID) for s in ("b", "c"))

        def b_and_c_paired() -> bool:
            return vteps["b"].flood(VNID) == [lab.address("c")] and vteps["c"].flood(VNID) == [lab.address("b")]

        wait_for(b_and_c_paired, 60, "b and c to pair")
        appear, withdraw, a_programmed = [], [], []
        for _ in range(args.trials):
            time.sleep(0.3)
            t0 = time.monotonic()
            lab.write_config(with_a)
            done = wait_for(a_at_others, 10, "b and c to flood to a")
            appear.append(done - t0)
            a_programmed.append(wait_for(lambda: sorted(vteps["a"].flood(VNID)) == sorted(
                [lab.address("b"), lab.address("c")]), 10, "a's own entries") - t0)
            time.sleep(0.3)
            t0 = time.monotonic()
            lab.write_config(without_a)
            withdraw.append(wait_for(a_gone, 10, "a's entries to go") - t0)
        results["appear"] = summary(appear)
        results["appear_at_a_itself"] = summary(a_programmed)
        results["withdraw"] = summary(withdraw)

        lab.write_config(with_a)
        wait_for(a_at_others, 10, "b and c to flood to a")
        killed, returned, cut = [], [], []
        for _ in range(args.failures):
            time.sleep(0.5)
            t0 = time.monotonic()
            lab.kill("a")
            killed.append(wait_for(a_gone, 10, "a's entries to go after the kill") - t0)
            t0 = time.monotonic()
            lab.start("a")
            returned.append(wait_for(a_at_others, 60, "a to return") - t0)
        for _ in range(args.failures):
            time.sleep(0.5)
            subprocess.run(["ip", "-n", lab.ns("a"), "link", "set", "eth0", "down"], check=True)
            t0 = time.monotonic()
            cut.append(wait_for(a_gone, 10, "a's entries to go after the cut") - t0)
            subprocess.run(["ip", "-n", lab.ns("a"), "link", "set", "eth0", "up"], check=True)
            wait_for(a_at_others, 60, "a to return after the cut")
        results["kill_to_removed"] = summary(killed)
        results["restart_to_converged"] = summary(returned)
        results["link_cut_to_removed"] = summary(cut)
    finally:
        for vtep in vteps.values():
            vtep.close()
        lab.close()
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as handle:
        json.dump(results, handle, indent=1)
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
