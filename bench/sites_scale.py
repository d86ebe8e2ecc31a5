"""Benchmark many VNIDs over BGP EVPN (issue 14, root, gobgpd): N VNIDs across S sites, each VNID served at
two neighbouring sites (VNID i at sites i mod S and i+1 mod S), one route manager and GoBGP speaker per site
(the lab of tests/linux/test_sites_evpn.py).

- converge: the route managers run with the Sites only and their sessions up; at t0 the resource file gains
  all N networks (one atomic rename); the time until every site has, for each VNID it serves, its bridge,
  its VXLAN device and exactly one flood entry, to the other serving site's VTEP. The speakers' and route
  managers' CPU seconds over that time and their memory (RSS, peak RSS) are read from /proc.
- idle: the same processes' CPU over `--idle` seconds once converged (a route manager's full pass every 5 s).
- one more: with all N in place, one network added at two sites: the time until both flood to each other
  (`--trials` times).
- static: the same kernel state (bridges, VXLAN devices, flood entries) written by iproute2 in fresh
  namespaces of the same layout, `ip -batch` and `bridge -batch` per site, the S sites at once: the
  shell baseline, in the same run.

usage: sudo .venv/bin/python bench/sites_scale.py [--vnids 1000] [--sites 4] [--trials 5]
           [--json out/bench/sites_scale.json]
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

from vnstitch.drivers.linux.layout import NETWORK_MTU, NETWORK_VXLAN_PORT, bridge_ifname, vxlan_ifname  # noqa: E402
from vnstitch.sites.dataplane import ZERO_MAC  # noqa: E402
from vnstitch.sites.lab import SitesLab  # noqa: E402

FIRST_VNID = 1000
TICK = os.sysconf("SC_CLK_TCK")


def placement(count: int, sites: list[str]) -> dict[int, tuple[str, str]]:
    """VNID → the two sites that serve it."""
    return {FIRST_VNID + i: (sites[i % len(sites)], sites[(i + 1) % len(sites)]) for i in range(count)}


def documents(lab: SitesLab, where: dict[int, tuple[str, str]]) -> list[str]:
    docs = []
    for i, (vnid, (one, two)) in enumerate(sorted(where.items())):
        docs.append(SitesLab.network_document(f"net{vnid}", vnid, {f"m{vnid}a": one, f"m{vnid}b": two},
                                              cidr_prefix=f"10.{100 + i // 256}.{i % 256}"))
    return docs


def expected(lab: SitesLab, where: dict[int, tuple[str, str]]) -> dict[str, dict[int, list[str]]]:
    """site → VNID → its flood entries once converged."""
    wanted: dict[str, dict[int, list[str]]] = {s: {} for s in lab.sites}
    for vnid, (one, two) in where.items():
        wanted[one][vnid] = [lab.address(two)]
        wanted[two][vnid] = [lab.address(one)]
    return wanted


def floods_by_tool(ns: str) -> tuple[set[str], dict[int, list[str]]]:
    """(bridge names, VNID → flood entries) from `ip -j link show type bridge` and `bridge -j fdb show`: the
    check that polls during the run forks iproute2 (5× cheaper than decoding the dumps in pyroute2, so it
    takes less of the CPU the route managers need)."""
    links = json.loads(subprocess.run(["ip", "-n", ns, "-j", "link", "show", "type", "bridge"], capture_output=True,
                                      text=True, check=True).stdout or "[]")
    fdb = json.loads(subprocess.run(["bridge", "-n", ns, "-j", "fdb", "show"], capture_output=True, text=True,
                                    check=True).stdout or "[]")
    floods: dict[int, list[str]] = {}
    for entry in fdb:
        dev = entry.get("ifname") or ""
        if entry.get("mac") == ZERO_MAC and entry.get("dst") and dev.startswith("vx") and dev[2:].isdigit():
            floods.setdefault(int(dev[2:]), []).append(entry["dst"])
    return {link["ifname"] for link in links}, {v: sorted(d) for v, d in floods.items()}


def converged(namespaces: dict[str, str], wanted: dict[str, dict[int, list[str]]]) -> bool:
    for site, ns in namespaces.items():
        bridges, floods = floods_by_tool(ns)
        if any(bridge_ifname(v) not in bridges or floods.get(v) != dsts for v, dsts in wanted[site].items()):
            return False
    return True


def cpu_s(pid: int) -> float:
    """utime + stime of a process and of its children it has waited for (a route manager's `gobgp` CLI
    calls), in seconds (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:15]) / TICK


def memory_mib(pid: int) -> dict:
    found = {}
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = round(int(value.split()[0]) / 1024, 1)
    return {"rss_mib": found.get("VmRSS"), "peak_rss_mib": found.get("VmHWM")}


def wait_for(predicate, timeout_s: float, what: str, interval_s: float = 0.05) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout_s:
            raise SystemExit(f"timed out after {timeout_s:g}s waiting for {what}")
        time.sleep(interval_s)
    return time.monotonic()


def processes(lab: SitesLab) -> dict[str, int]:
    found = {}
    for site in lab.sites:
        found[f"route-manager {site}"] = lab.procs[site].pid
        found[f"gobgpd {site}"] = lab.speaker_pid(site)
    return found


def remove_devices(lab: SitesLab, vnids) -> None:
    """Delete the bridges and VXLAN devices before the namespaces: the kernel tears down a namespace with
    thousands of devices in the background, for minutes, and holds up the next namespace made meanwhile."""
    for site in lab.sites:
        path = os.path.join(lab.directory, f"{site}.del")
        with open(path, "w") as handle:
            handle.write("".join(f"link del {vxlan_ifname(v)}\nlink del {bridge_ifname(v)}\n" for v in vnids))
        subprocess.run(["ip", "-force", "-n", lab.ns(site), "-batch", path], capture_output=True)


def settle(timeout_s: float = 600) -> float:
    """Wait until a namespace can be made at once (none still being torn down in the kernel); seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        t0 = time.monotonic()
        probe = f"vns-settle-{os.getpid()}"
        subprocess.run(["ip", "netns", "add", probe], check=True)
        subprocess.run(["ip", "netns", "del", probe], check=True)
        if time.monotonic() - t0 < 0.2 and os.getloadavg()[0] < 1.5:
            break
        time.sleep(2)
    return round(time.monotonic() - started, 1)


def static_baseline(name: str, directory: str, sites: list[str], where: dict[int, tuple[str, str]]) -> dict:
    """The same bridges, VXLAN devices and flood entries by iproute2's batch mode, the sites at once."""
    lab = SitesLab(name, directory, sites)
    try:
        lab.build()
        batches = {}
        for site in sites:
            links, fdb = [], []
            for vnid, (one, two) in sorted(where.items()):
                if site not in (one, two):
                    continue
                other = lab.address(two if site == one else one)
                br, vx = bridge_ifname(vnid), vxlan_ifname(vnid)
                links += [f"link add {br} mtu {NETWORK_MTU} type bridge",
                          f"link add {vx} mtu {NETWORK_MTU} type vxlan id {vnid} local {lab.address(site)} "
                          f"dstport {NETWORK_VXLAN_PORT} learning",
                          f"link set {vx} master {br} up", f"link set {br} up"]
                fdb.append(f"fdb append {ZERO_MAC} dev {vx} dst {other}")
            for kind, lines in (("ip", links), ("bridge", fdb)):
                path = os.path.join(directory, f"{site}.{kind}")
                with open(path, "w") as handle:
                    handle.write("\n".join(lines) + "\n")
                batches.setdefault(site, []).append((kind, path))
        script = os.path.join(directory, "static.sh")
        with open(script, "w") as handle:
            handle.write("#!/bin/sh -e\n# the shell baseline: each site's state by iproute2 batch files, sites at once\n")
            for site in sites:
                steps = " && ".join(f"{kind} -n {lab.ns(site)} -batch {path}" for kind, path in batches[site])
                handle.write(f"( {steps} ) &\n")
            handle.write("wait\n")
        t0 = time.monotonic()
        started = os.times()
        subprocess.run(["sh", "-e", script], check=True)
        elapsed = time.monotonic() - t0
        done = os.times()
        if not converged({s: lab.ns(s) for s in sites}, expected(lab, where)):
            raise SystemExit("the static baseline did not produce the expected state")
        remove_devices(lab, where)
        return {"seconds": round(elapsed, 3),
                "cpu_s": round(done.children_user + done.children_system - started.children_user
                               - started.children_system, 3),
                "script": "ip -n SITE -batch FILE && bridge -n SITE -batch FILE, the sites in parallel"}
    finally:
        lab.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vnids", type=int, default=1000)
    parser.add_argument("--sites", type=int, default=4)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of steady state measured (default 10)")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--json", default="out/bench/sites_scale.json")
    args = parser.parse_args()
    if SitesLab.available():
        raise SystemExit(f"cannot run: {SitesLab.available()}")
    if not 2 <= args.sites <= 26 or args.vnids < 1:
        raise SystemExit("--sites must be 2..26 and --vnids ≥ 1")
    names = [chr(ord("a") + i) for i in range(args.sites)]
    directory = tempfile.mkdtemp(prefix="vns-sites-scale-")
    lab = SitesLab(f"sc{os.getpid() % 10000}", directory, names)
    where = placement(args.vnids, names)
    results: dict = {"command": "sudo .venv/bin/python bench/sites_scale.py " + " ".join(sys.argv[1:]),
                     "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": platform.machine(),
                     "cpus": os.cpu_count(), "python": platform.python_version(),
                     "gobgpd": subprocess.run(["gobgpd", "--version"], capture_output=True, text=True).stdout.strip(),
                     "vnids": args.vnids, "sites": args.sites, "adverts": 2 * args.vnids}
    results["settle_before_s"] = settle()
    try:
        lab.build()
        lab.write_config()
        for site in names:
            lab.start(site)
        wait_for(lab.established, 60, "the full mesh of sessions")
        pids = processes(lab)
        wanted = expected(lab, where)
        docs = documents(lab, where)
        before = {who: cpu_s(pid) for who, pid in pids.items()}
        print(f"{args.vnids} VNIDs at {args.sites} sites: writing the resource file", file=sys.stderr)
        t0 = time.monotonic()
        lab.write_config(*docs)
        done = wait_for(lambda: converged({s: lab.ns(s) for s in names}, wanted), args.timeout,
                        "every site to converge", interval_s=0.2)
        results["converge_s"] = round(done - t0, 3)
        after = {who: cpu_s(pid) for who, pid in pids.items()}
        results["converge_cpu_s"] = {who: round(after[who] - before[who], 2) for who in pids}
        results["memory"] = {who: memory_mib(pid) for who, pid in pids.items()}
        print(f"converged in {results['converge_s']} s; measuring {args.idle:g} s of steady state", file=sys.stderr)
        time.sleep(2)
        before = {who: cpu_s(pid) for who, pid in pids.items()}
        time.sleep(args.idle)
        after = {who: cpu_s(pid) for who, pid in pids.items()}
        results["idle_cpu_share"] = {who: round((after[who] - before[who]) / args.idle, 3) for who in pids}
        extra: list[float] = []
        for trial in range(args.trials):
            vnid = FIRST_VNID + args.vnids + trial
            one, two = names[trial % len(names)], names[(trial + 2) % len(names)]
            where[vnid] = (one, two)
            t0 = time.monotonic()
            lab.write_config(*documents(lab, where))
            extra.append(wait_for(lambda: lab.flood(one, vnid) == [lab.address(two)]
                                  and lab.flood(two, vnid) == [lab.address(one)], 30, f"VNID {vnid}") - t0)
        results["one_more_network"] = {"n": len(extra), "p50_s": round(statistics.median(extra), 3),
                                       "max_s": round(max(extra), 3)} if extra else None
    finally:
        for proc in lab.procs.values():   # the route managers first (they would put the devices back)
            proc.terminate()
        for proc in lab.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        remove_devices(lab, where)
        lab.close()
    print("the static baseline (waiting for the kernel to settle first)", file=sys.stderr)
    results["settle_before_static_s"] = settle()
    results["static"] = static_baseline(f"st{os.getpid() % 10000}", tempfile.mkdtemp(prefix="vns-sites-static-"),
                                        names, placement(args.vnids, names))
    results["converge_vs_static"] = round(results["converge_s"] / results["static"]["seconds"], 1)
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as handle:
        json.dump(results, handle, indent=1)
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
