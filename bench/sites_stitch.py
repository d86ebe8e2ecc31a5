"""Benchmark stitches across sites (issue 14, root, gobgpd, wireguard-go, iperf3): the three-site lab of
tests/linux/test_sites_stitch.py, a route manager per site.

- negotiate: network blue (acme, VNID 100) at site a, green (globex, VNID 300) at c only; the SiteStitch
  blue → green is written into the resource file at t0; the time until a's status says Established (consent
  asked, given, both WireGuard ends built) and until a member of blue gets its first ping reply from green's
  member; then the stitch is deleted: the time until both ends are gone.
- move: green at b and c; the site the stitch uses is SIGKILLed (route manager and speaker) at t0; the time
  until the stitch is Established with the other site, and until the first ping reply through it.
- throughput: iperf3 (TCP, 3 s) from a's blue member to c's green member through the stitch (WireGuard,
  wireguard-go), and, in the same run, between blue's members at a and b over plain VXLAN (the baseline).

usage: sudo .venv/bin/python bench/sites_stitch.py [--trials 10] [--moves 5] [--json out/bench/sites_stitch.json]
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

from vnstitch.drivers.linux.kernel import run_in  # noqa: E402
from vnstitch.sites.lab import SitesLab  # noqa: E402

BLUE = """kind: VirtualNetwork
metadata: {name: blue, tenant: acme}
spec: {vnid: 100, cidr: 10.1.0.0/24, policy: {allowStitchTo: [globex/green]},
       members: [{name: a1, node: a-1, address: 10.1.0.1}, {name: a2, node: b-1, address: 10.1.0.2}]}
"""
STITCH = """kind: SiteStitch
metadata: {name: blue-green, tenant: acme}
spec: {from: {network: blue}, to: {network: green, tenant: globex}, bandwidth: 100Mbps}
"""
GREEN_AT = {"b": "{name: b1, node: b-1, address: 10.3.0.2}", "c": "{name: c1, node: c-1, address: 10.3.0.1}"}
GREEN_ADDRESS = {"b": "10.3.0.2", "c": "10.3.0.1"}


def green(sites: list[str]) -> str:
    return ("kind: VirtualNetwork\nmetadata: {name: green, tenant: globex}\n"
            f"spec: {{vnid: 300, cidr: 10.3.0.0/24, policy: {{allowStitchTo: [acme/blue]}}, "
            f"members: [{', '.join(GREEN_AT[s] for s in sites)}]}}\n")


def summary(values: list[float]) -> dict:
    ordered = sorted(values)
    return {"n": len(values), "p50_s": round(statistics.median(values), 3),
            "p95_s": round(ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))], 3),
            "min_s": round(ordered[0], 3), "max_s": round(ordered[-1], 3)}


def wait_for(predicate, timeout_s: float, what: str, interval_s: float = 0.01) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout_s:
            raise SystemExit(f"timed out after {timeout_s:g}s waiting for {what}")
        time.sleep(interval_s)
    return time.monotonic()


def state(lab: SitesLab) -> dict:
    return lab.status("a").get("siteStitches", {}).get("acme/blue-green", {})


def pings(lab: SitesLab, vm: str, address: str) -> bool:
    return run_in(lab.vm_ns(vm), ["ping", "-n", "-q", "-c", "1", "-W", "0.2", address], check=False).returncode == 0


def iperf(lab: SitesLab, client: str, server: str, address: str, seconds: int = 3) -> float:
    srv = subprocess.Popen(["ip", "netns", "exec", lab.vm_ns(server), "iperf3", "-s", "-1", "-B", address],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(50):
            out = run_in(lab.vm_ns(client), ["iperf3", "-c", address, "-t", str(seconds), "-J"], check=False)
            received = json.loads(out.stdout or "{}").get("end", {}).get("sum_received") if out.returncode == 0 else None
            if received:
                return round(received["bits_per_second"] / 1e6, 1)
            time.sleep(0.1)
        raise SystemExit(f"iperf3 to {address} failed: {out.stderr[-300:]}")
    finally:
        srv.kill()
        srv.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10, help="negotiations timed (default: 10)")
    parser.add_argument("--moves", type=int, default=5, help="site failures timed (default: 5)")
    parser.add_argument("--json", default="out/bench/sites_stitch.json")
    args = parser.parse_args()
    if SitesLab.available():
        raise SystemExit(f"cannot run: {SitesLab.available()}")
    lab = SitesLab(f"ss{os.getpid() % 10000}", tempfile.mkdtemp(prefix="vns-stitch-bench-"), ["a", "b", "c"])
    results: dict = {"command": "sudo .venv/bin/python bench/sites_stitch.py " + " ".join(sys.argv[1:]),
                     "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": platform.machine(),
                     "cpus": os.cpu_count(), "python": platform.python_version(),
                     "defaults": {"poll_interval_s": 0.05, "resync_interval_s": 5.0, "hold_s": 3}}
    try:
        lab.build()
        lab.write_config(BLUE, green(["c"]))
        for site in lab.sites:
            lab.start(site)
        lab.attach_vm("a1", "a", 100, "10.1.0.1")
        lab.attach_vm("a2", "b", 100, "10.1.0.2")
        lab.attach_vm("c1", "c", 300, "10.3.0.1")
        lab.route("a1", "10.3.0.0/24")
        lab.route("c1", "10.1.0.0/24")
        wait_for(lab.established, 60, "the full mesh of sessions", 0.1)
        wait_for(lambda: lab.ping("a1", "10.1.0.2"), 30, "blue's members to reach each other over VXLAN", 0.1)
        print("lab up; negotiating", flush=True)
        established, first_reply, removed = [], [], []
        for trial in range(args.trials):
            time.sleep(1.0)
            t0 = time.monotonic()
            lab.write_config(BLUE, green(["c"]), STITCH)
            established.append(wait_for(lambda: state(lab).get("state") == "Established", 30, "Established") - t0)
            first_reply.append(wait_for(lambda: pings(lab, "a1", "10.3.0.1"), 30, "the first reply", 0) - t0)
            if trial == 0:
                results["throughput_mbps"] = {"stitch_wireguard": iperf(lab, "a1", "c1", "10.3.0.1"),
                                              "vxlan_baseline": iperf(lab, "a1", "a2", "10.1.0.2")}
            t1 = time.monotonic()
            lab.write_config(BLUE, green(["c"]))
            removed.append(wait_for(lambda: not lab.tunnel_pids("a") and not lab.tunnel_pids("c"), 30,
                                    "both ends removed") - t1)
            print(f"  negotiate {trial + 1}/{args.trials}: established {established[-1]:.3f}s, "
                  f"first reply {first_reply[-1]:.3f}s, removed {removed[-1]:.3f}s", flush=True)
        results["negotiate"] = {"established": summary(established), "first_reply": summary(first_reply),
                                "removed": summary(removed)}

        lab.write_config(BLUE, green(["b", "c"]), STITCH)
        lab.attach_vm("b1", "b", 300, "10.3.0.2")
        lab.route("b1", "10.1.0.0/24")
        moved, reply_after = [], []
        for trial in range(args.moves):
            wait_for(lambda: state(lab).get("state") == "Established" and len(state(lab)["candidates"]) == 2, 60,
                     "established with both sites heard", 0.05)
            wait_for(lab.established, 60, "the full mesh of sessions", 0.1)
            used = state(lab)["site"]
            other = {"b": "c", "c": "b"}[used]
            wait_for(lambda: pings(lab, "a1", GREEN_ADDRESS[other]), 30, "a reply before the failure", 0)
            t0 = time.monotonic()
            lab.kill(used)
            moved.append(wait_for(lambda: state(lab).get("site") == other
                                  and state(lab).get("state") == "Established", 30, "the move") - t0)
            reply_after.append(wait_for(lambda: pings(lab, "a1", GREEN_ADDRESS[other]), 30, "a reply after", 0) - t0)
            print(f"  move {trial + 1}/{args.moves}: {used} → {other} in {moved[-1]:.3f}s, "
                  f"first reply {reply_after[-1]:.3f}s", flush=True)
            lab.start(used)
        results["move"] = {"established_elsewhere": summary(moved), "first_reply": summary(reply_after)}
    finally:
        lab.close()
    os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
    with open(args.json, "w") as handle:
        json.dump(results, handle, indent=1)
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
