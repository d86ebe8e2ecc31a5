"""Benchmark the linux driver (root): time to a working encrypted stitch, 100 stitches, a shell
baseline, and iperf3 over WireGuard vs the raw veth path. Writes docs/bench/linux.json.

usage: sudo .venv/bin/python bench/linux_stitch.py [--rounds 30] [--many 100]
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

from vnstitch.drivers.linux import create_driver  # noqa: E402
from vnstitch.lab import builder  # noqa: E402
from vnstitch.lab.stitching import stitch_op  # noqa: E402
from vnstitch.domain.stitch import Stitch  # noqa: E402
from vnstitch.planning.ops import RemoveStitch  # noqa: E402


def stitch_resource(name: str) -> Stitch:
    return Stitch.model_validate({"kind": "Stitch", "metadata": {"name": name, "tenant": "acme"},
                                  "spec": {"type": "direct", "from": {"network": "blue", "member": "blue-1"},
                                           "to": {"network": "red", "member": "red-1"}}})


def first_reply(ns: str, address: str, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while subprocess.run(["ip", "netns", "exec", ns, "ping", "-c1", "-W1", "-n", "-q", address],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode != 0:
        if time.monotonic() > deadline:
            raise RuntimeError("no reply")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def iperf(lab: str, client_ns: str, server_ns: str, address: str, seconds: int = 5) -> float:
    server = subprocess.Popen(["ip", "netns", "exec", server_ns, "iperf3", "-s", "-1", "-p", "5999"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    try:
        out = subprocess.run(["ip", "netns", "exec", client_ns, "iperf3", "-c", address, "-p", "5999", "-t",
                              str(seconds), "-J"], capture_output=True, text=True, timeout=60).stdout
        return json.loads(out)["end"]["sum_received"]["bits_per_second"]
    finally:
        server.kill()
        server.wait()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--many", type=int, default=100)
    args = parser.parse_args()
    name = "bench"
    directory = tempfile.mkdtemp(prefix="vnsbench-")
    results: dict = {"command": " ".join(["python", "bench/linux_stitch.py"] + sys.argv[1:]),
                     "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} CPUs, kernel "
                                f"{platform.release()}", "date": time.strftime("%Y-%m-%d %H:%M")}
    # Each wireguard-go holds an inotify instance; 100 stitches = 200 processes, over the
    # default fs.inotify.max_user_instances (128). Raised for the run, restored after.
    inotify = Path("/proc/sys/fs/inotify/max_user_instances")
    inotify_before = int(inotify.read_text())
    inotify.write_text(str(max(inotify_before, 4 * args.many + 64)))
    results["inotify_max_user_instances"] = {"before": inotify_before, "during": int(inotify.read_text())}
    try:
        # scale 1: HTB at the modelled 5 Gbit/s, so throughput is bounded by CPU, not by shaping
        lab = builder.up(str(REPO / "examples" / "lab.yaml"), name=name, scale=1.0, directory=directory)
        driver = create_driver(directory)
        vm_a = lab.vm_ns("blue-1")

        apply_ms, reply_ms = [], []
        for i in range(args.rounds):
            op = stitch_op(driver.lab, driver.state["networks"], stitch_resource(f"one-{i}"))
            t0 = time.perf_counter()
            driver.apply(op)
            t1 = time.perf_counter()
            first_reply(vm_a, "10.2.0.21")
            t2 = time.perf_counter()
            apply_ms.append((t1 - t0) * 1e3)
            reply_ms.append((t2 - t0) * 1e3)
            driver.apply(RemoveStitch(op.stitch))
        results["one_stitch"] = {
            "rounds": args.rounds,
            "apply_ms": {"median": statistics.median(apply_ms), "p99": pct(apply_ms, 0.99)},
            "to_first_reply_ms": {"median": statistics.median(reply_ms), "p99": pct(reply_ms, 0.99)},
        }
        noop = []
        op = stitch_op(driver.lab, driver.state["networks"], stitch_resource("noop"))
        driver.apply(op)
        for _ in range(10):
            t0 = time.perf_counter()
            assert driver.apply(op) is False
            noop.append((time.perf_counter() - t0) * 1e3)
        driver.apply(RemoveStitch(op.stitch))
        results["reapply_unchanged_ms"] = {"median": statistics.median(noop)}

        ops = [stitch_op(driver.lab, driver.state["networks"], stitch_resource(f"many-{i}"))
               for i in range(args.many)]
        t0 = time.perf_counter()
        for op in ops:
            driver.apply(op)
        t1 = time.perf_counter()
        first_reply(vm_a, "10.2.0.21")
        t2 = time.perf_counter()
        for op in ops:
            driver.apply(RemoveStitch(op.stitch))
        t3 = time.perf_counter()
        results["many_stitches"] = {"count": args.many, "apply_all_s": t1 - t0, "to_first_reply_s": t2 - t0,
                                    "remove_all_s": t3 - t2}

        base = subprocess.run([str(REPO / "bench" / "linux_baseline.sh"), name, str(min(args.rounds, 20))],
                              capture_output=True, text=True)
        base_ms = [int(line) / 1e3 for line in base.stdout.split()]
        results["baseline_shell_ms"] = {"rounds": len(base_ms), "median": statistics.median(base_ms),
                                        "p99": pct(base_ms, 0.99)} if base_ms else {"error": base.stderr[-300:]}

        op = stitch_op(driver.lab, driver.state["networks"], stitch_resource("tput"), path=("n1", "n2", "n3"))
        driver.apply(op)
        first_reply(vm_a, "10.2.0.21")
        results["iperf3_bps"] = {
            "wireguard_stitch_blue1_to_red1": iperf(name, vm_a, lab.vm_ns("red-1"), "10.2.0.21"),
            "raw_veth_path_n1_to_n3": iperf(name, lab.node_ns("n1"), lab.node_ns("n3"), "10.255.0.3"),
        }
        driver.close()
    finally:
        builder.down(directory, name=name)
        inotify.write_text(str(inotify_before))
        os.rmdir(directory) if os.path.isdir(directory) and not os.listdir(directory) else None
    out = REPO / "docs" / "bench" / "linux.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
