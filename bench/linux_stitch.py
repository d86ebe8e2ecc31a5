"""Benchmark the linux driver (root): time to a working encrypted stitch, 100 stitches, the same
with the shell baseline (bench/linux_baseline.sh) in the same run, and iperf3 over WireGuard vs
the raw veth path. Writes docs/bench/linux.json.

Driver and baseline rounds alternate (driver, script, driver, script, ...) so both see the same
machine load; the ratios are driver time / script time.

usage: sudo .venv/bin/python bench/linux_stitch.py [--rounds 30] [--many 100]
"""

from __future__ import annotations

import argparse
import ctypes
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


BASELINE = REPO / "bench" / "linux_baseline.sh"


def become_subreaper() -> None:
    """prctl(PR_SET_CHILD_SUBREAPER): the script's daemonised wireguard-go processes are
    re-parented to us when they exit, so we reap them (PID 1 in a container may not)."""
    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)


def reap_orphans() -> None:
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass


def baseline(lab: str, mode: str, count: int) -> list[float]:
    """Run the shell baseline; its figures in ms."""
    proc = subprocess.run([str(BASELINE), lab, mode, str(count)], capture_output=True, text=True)
    reap_orphans()
    if proc.returncode != 0:
        raise RuntimeError(f"baseline {mode} {count} failed: {proc.stderr[-400:]}")
    return [int(line) / 1e3 for line in proc.stdout.split()]


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict:
    model = ""
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"host": platform.node(), "arch": platform.machine(), "nproc": os.cpu_count(), "cpu": model,
            "kernel": platform.release(),
            "wireguard_go": (subprocess.run(["wireguard-go", "--version"], capture_output=True,
                                            text=True).stdout.strip().splitlines() or [""])[0]}


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
                     "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M"),
                     "load_average_1_5_15": {"start": load_average()}}
    become_subreaper()
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

        apply_ms, reply_ms, base_ms = [], [], []
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
            base_ms += baseline(name, "one", 1)
        ratios = [d / b for d, b in zip(reply_ms, base_ms)]
        results["one_stitch"] = {
            "rounds": args.rounds,
            "apply_ms": {"median": statistics.median(apply_ms), "p99": pct(apply_ms, 0.99)},
            "to_first_reply_ms": {"median": statistics.median(reply_ms), "p99": pct(reply_ms, 0.99)},
            "baseline_shell_to_first_reply_ms": {"median": statistics.median(base_ms), "p99": pct(base_ms, 0.99)},
            "driver_over_baseline": {"ratio_of_medians": statistics.median(reply_ms) / statistics.median(base_ms),
                                     "median_of_paired_ratios": statistics.median(ratios)},
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

        results["load_average_1_5_15"]["before_many"] = load_average()
        ops = [stitch_op(driver.lab, driver.state["networks"], stitch_resource(f"many-{i}"))
               for i in range(args.many)]
        t0 = time.perf_counter()
        for op in ops:
            driver.apply(op)
        t1 = time.perf_counter()
        first_reply(vm_a, "10.2.0.21")
        t2 = time.perf_counter()
        t_obs = time.perf_counter()
        observed = driver.observe()
        observe_s = time.perf_counter() - t_obs
        healthy = sum(1 for s in observed.stitches.values() if s.healthy)
        for op in ops:
            driver.apply(RemoveStitch(op.stitch))
        t3 = time.perf_counter()
        base_many_s = baseline(name, "many", args.many)[0] / 1e3
        results["many_stitches"] = {"count": args.many, "apply_all_s": t1 - t0, "to_first_reply_s": t2 - t0,
                                    "observe_s": observe_s, "healthy": healthy, "remove_all_s": t3 - t2 - observe_s,
                                    "baseline_shell_to_first_reply_s": base_many_s,
                                    "driver_over_baseline": (t2 - t0) / base_many_s}
        results["load_average_1_5_15"]["after_many"] = load_average()

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
        reap_orphans()
        inotify.write_text(str(inotify_before))
        os.rmdir(directory) if os.path.isdir(directory) and not os.listdir(directory) else None
    results["load_average_1_5_15"]["end"] = load_average()
    out = REPO / "docs" / "bench" / "linux.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
