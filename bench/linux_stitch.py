"""Benchmark the linux driver (root): time to a working encrypted stitch, N stitches in batches (the
time of each hundred, so that a per-stitch cost that grows with N shows), the same with the shell
baseline (bench/linux_baseline.sh) in the same run, and iperf3 over WireGuard vs the raw veth path.
Writes docs/bench/linux.json (or --out).

Driver and baseline rounds alternate (driver, script, driver, script, ...) so both see the same
machine load; the ratios are driver time / script time. The N-stitch phase also samples, after each
batch, the memory in use (MemTotal − MemAvailable), the wireguard-go processes' resident and
proportional memory, and the CPU time they used during the batch (/proc/PID/stat).

usage: sudo .venv/bin/python bench/linux_stitch.py [--rounds 30] [--many 100] [--batch 100]
                                                    [--baseline-many N] [--no-iperf] [--out FILE]
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


def wireguard_go_pids() -> list[int]:
    out = subprocess.run(["pgrep", "-x", "wireguard-go"], capture_output=True, text=True).stdout
    return [int(pid) for pid in out.split()]


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of the processes (those that already ended count nothing)."""
    ticks = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        except (OSError, IndexError):
            pass
    return ticks / os.sysconf("SC_CLK_TCK")


def memory_sample(pids: list[int]) -> dict:
    """System memory in use and the wireguard-go processes' RSS and PSS, MiB."""
    info = {}
    with open("/proc/meminfo") as handle:
        for line in handle:
            key, value = line.split(":", 1)
            info[key] = int(value.split()[0])
    rss = pss = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as handle:
                for line in handle:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1])
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1])
        except OSError:
            pass
    return {"used_mib": round((info["MemTotal"] - info["MemAvailable"]) / 1024, 1), "wireguard_go": len(pids),
            "wireguard_go_rss_mib": round(rss / 1024, 1), "wireguard_go_pss_mib": round(pss / 1024, 1)}


def per_batch(done_s: list[float], batch: int) -> list[float]:
    """Seconds each batch of `batch` stitches took, from the times (since the start) each stitch was done."""
    marks = [0.0] + [done_s[i - 1] for i in range(batch, len(done_s) + 1, batch)]
    if len(done_s) % batch:
        marks.append(done_s[-1])
    return [round(b - a, 3) for a, b in zip(marks, marks[1:])]


def growth(batches: list[float], batch: int, count: int) -> dict:
    """The first and the last full batch and their ratio (the goal: last ≤ 1.5 × first)."""
    full = batches[:count // batch]
    if not full:
        return {}
    return {"first_batch_s": full[0], "last_batch_s": full[-1], "last_over_first": round(full[-1] / full[0], 3)}


def many(driver, lab, count: int, batch: int) -> dict:
    """N encrypted stitches in batches, then the first reply over the last one; removes them."""
    vm_a = lab.vm_ns("blue-1")
    ops = [stitch_op(driver.lab, driver.state["networks"], stitch_resource(f"many-{i}")) for i in range(count)]
    memory_before = memory_sample(wireguard_go_pids())
    done, samples, peak = [], [], memory_before
    t0 = time.perf_counter()
    for start in range(0, count, batch):
        pids_before = wireguard_go_pids()
        cpu_before = cpu_seconds(pids_before)
        for op in ops[start:start + batch]:
            driver.apply(op)
            done.append(time.perf_counter() - t0)
        pids = wireguard_go_pids()
        # CPU of the processes that were there before the batch, plus that of the batch's own
        cpu = cpu_seconds(pids) - cpu_before
        memory = memory_sample(pids)
        peak = max(peak, memory, key=lambda m: m["used_mib"])
        samples.append({"stitches": len(done), "wireguard_go_cpu_s": round(cpu, 3), "load_1": load_average()[0],
                        **memory})
    t1 = time.perf_counter()
    first_reply(vm_a, "10.2.0.21")
    t2 = time.perf_counter()
    t_obs = time.perf_counter()
    observed = driver.observe()
    observe_s = time.perf_counter() - t_obs
    healthy = sum(1 for s in observed.stitches.values() if s.healthy)
    idle_pids = wireguard_go_pids()
    idle_before = cpu_seconds(idle_pids)
    time.sleep(5)
    idle_cpu = (cpu_seconds(idle_pids) - idle_before) / 5
    t3 = time.perf_counter()
    for op in ops:
        driver.apply(RemoveStitch(op.stitch))
    remove_s = time.perf_counter() - t3
    batches = per_batch(done, batch)
    return {"count": count, "batch": batch, "apply_all_s": t1 - t0, "to_first_reply_s": t2 - t0,
            "batches_s": batches, **growth(batches, batch, count), "observe_s": observe_s, "healthy": healthy,
            "remove_all_s": remove_s, "memory_before": memory_before, "memory_peak": peak,
            "wireguard_go_idle_cpu_per_s": round(idle_cpu, 3), "per_batch": samples}


def baseline_many(lab_name: str, count: int, batch: int) -> dict:
    times_s = [t / 1e3 for t in baseline(lab_name, "many", count)]
    done, reply = times_s[:-1], times_s[-1]
    batches = per_batch(done, batch)
    return {"count": count, "to_first_reply_s": reply, "batches_s": batches, **growth(batches, batch, count)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--many", type=int, default=100)
    parser.add_argument("--batch", type=int, default=100, help="stitches per timed batch (default 100)")
    parser.add_argument("--baseline-many", type=int, default=None,
                        help="stitches for the shell baseline's N-stitch phase (default: --many)")
    parser.add_argument("--no-iperf", action="store_true", help="skip the iperf3 phase")
    parser.add_argument("--out", default=str(REPO / "docs" / "bench" / "linux.json"))
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
    inotify.write_text(str(max(inotify_before, 4 * max(args.many, args.baseline_many or 0) + 64)))
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
        driven = many(driver, lab, args.many, args.batch)
        results["load_average_1_5_15"]["after_many"] = load_average()
        base = baseline_many(name, args.baseline_many or args.many, args.batch)
        results["load_average_1_5_15"]["after_baseline_many"] = load_average()
        results["many_stitches"] = {**driven, "baseline_shell": base}
        if base["count"] == driven["count"]:
            results["many_stitches"]["driver_over_baseline"] = driven["to_first_reply_s"] / base["to_first_reply_s"]
        else:  # the same number of first stitches of each: time per stitch compared over the baseline's count
            results["many_stitches"]["driver_over_baseline_first_n"] = (
                driven["batches_s"] and sum(driven["batches_s"][:len(base["batches_s"])]) / base["to_first_reply_s"])

        if not args.no_iperf:
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
    out = Path(args.out)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
