"""Benchmark: constrained path and availability queries on a real topology (default Topology Zoo Kdl).

Random pairs, random latency bounds and random residual bandwidth per arc, fixed seed.
Prints the figures and writes them (with the command) as JSON.

    .venv/bin/python bench/path_queries.py [--topology PATH] [--queries N] [--seed S] [--out FILE]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import shlex
import statistics
import sys
import time
from pathlib import Path

from vnstitch.pathing import PathFinder
from vnstitch.topology.importers import load_topology

REPO = Path(__file__).resolve().parents[1]
DEFAULT_TOPOLOGY = REPO / ".." / "shared" / "data" / "topologies" / "topology_zoo" / "Kdl.graphml"


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (Linux), else platform's answer."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def percentile(samples_s: list[float], q: float) -> float:
    """q-th percentile (nearest rank) of samples, in milliseconds."""
    ordered = sorted(samples_s)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))] * 1e3


def summary(samples_s: list[float]) -> dict:
    return {"queries": len(samples_s), "median_ms": round(statistics.median(samples_s) * 1e3, 3),
            "p99_ms": round(percentile(samples_s, 99), 3), "max_ms": round(max(samples_s) * 1e3, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topology", type=Path, default=DEFAULT_TOPOLOGY)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--out", type=Path, default=REPO / "out" / "bench" / "path_queries.json")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    topology = load_topology(args.topology, default_capacity_bps=10e9)  # Kdl's Zoo file gives no speeds
    finder = PathFinder(topology.nodes, topology.links)
    build_s = time.perf_counter() - started
    rng = random.Random(args.seed)
    names, arcs = finder.nodes, finder.arcs()
    capacity = {arc: finder.capacity_bps(arc) for arc in arcs}

    workload = []
    for _ in range(args.queries):
        src, dst = rng.sample(names, 2)
        residual = {arc: capacity[arc] * rng.random() for arc in arcs}  # each arc 0–100 % free
        workload.append({
            "src": src, "dst": dst, "residual": residual,
            "bandwidth_bps": rng.choice([0.1e9, 0.5e9, 1e9, 2e9, 5e9]),
            "max_latency_s": rng.uniform(0.010, 0.060),
        })

    for query in workload[:20]:  # warm-up: imports, caches
        finder.paths(**query)
    gc.collect()
    gc.freeze()  # the pre-built workload (millions of objects) would otherwise be rescanned by the collector
    load_before = os.getloadavg()[0]
    names_of = ("paths_latency_k1", "paths_cost_k1", "availability", "paths_latency_k3")
    wall: dict[str, list[float]] = {name: [] for name in names_of}
    cpu: dict[str, list[float]] = {name: [] for name in names_of}  # thread CPU time: excludes preemption

    def timed(name, call, **kwargs):
        w0, c0 = time.perf_counter(), time.thread_time()
        value = call(**kwargs)
        cpu[name].append(time.thread_time() - c0)
        wall[name].append(time.perf_counter() - w0)
        return value

    outcomes = {"paths_found": 0, "available": 0}
    for i, query in enumerate(workload):
        found = timed("paths_latency_k1", finder.paths, **query)
        timed("paths_cost_k1", finder.paths, metric="cost", **query)
        answer = timed("availability", finder.availability, **query)
        outcomes["paths_found"] += bool(found)
        outcomes["available"] += answer.feasible
        if i < args.queries // 10:  # k alternatives are slower (Yen); a tenth of the workload
            timed("paths_latency_k3", finder.paths, k=3, **query)

    command = "cd " + shlex.quote(str(REPO)) + " && " + " ".join(
        [".venv/bin/python", "bench/path_queries.py"] + [shlex.quote(a) for a in (argv or sys.argv[1:])])
    result = {
        "benchmark": "constrained path queries",
        "command": command,
        "topology": str(args.topology.resolve()), "nodes": len(topology.nodes), "links": len(topology.links),
        "arcs": len(arcs), "finder_build_s": round(build_s, 3), "seed": args.seed,
        "workload": "random pair; bandwidth in {0.1,0.5,1,2,5} Gbit/s; latency bound U(10,60) ms; "
                    "residual U(0,1)·capacity on every arc",
        "results": {name: summary(samples) for name, samples in wall.items()},
        "results_cpu_time": {name: summary(samples) for name, samples in cpu.items()},
        "outcomes": outcomes,
        "machine": {"nproc": os.cpu_count(), "cpu": cpu_model(), "python": platform.python_version(),
                    "load_average_1min_before": round(load_before, 2)},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{result['nodes']} nodes, {result['links']} links; {args.queries} queries, seed {args.seed}")
    for name, figures in result["results"].items():
        on_cpu = result["results_cpu_time"][name]
        print(f"  {name:18s} wall median {figures['median_ms']:7.3f} ms  p99 {figures['p99_ms']:7.3f} ms"
              f"  max {figures['max_ms']:7.3f} ms | cpu median {on_cpu['median_ms']:7.3f} ms"
              f"  p99 {on_cpu['p99_ms']:7.3f} ms  (n={figures['queries']})")
    print(f"  found a path: {outcomes['paths_found']}/{args.queries}; feasible: {outcomes['available']}/{args.queries}")
    print(f"machine: {result['machine']['nproc']} cores, {result['machine']['cpu']}, "
          f"load average {load_before:.2f} before the run; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
