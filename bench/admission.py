"""Stitch admission throughput: path + atomic reservation + SQLite commit, 10,000 stitches on Kdl.

Usage: python bench/admission.py [--topology PATH] [--stitches N] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from vnstitch.controller.service import Controller
from vnstitch.domain.registry import parse_resource
from vnstitch.errors import VnstitchError
from vnstitch.store.sqlite import SQLiteStore
from vnstitch.topology.importers import load_topology

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TOPOLOGY = ROOT.parent / "shared" / "data" / "topologies" / "topology_zoo" / "Kdl.graphml"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--topology", default=str(DEFAULT_TOPOLOGY))
    parser.add_argument("--stitches", type=int, default=10_000)
    parser.add_argument("--networks", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--batch", type=int, default=1,
                        help="stitches per transaction (group commit through Controller.apply_each); 1 = one commit each")
    parser.add_argument("--json")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    topo = load_topology(args.topology, default_capacity_bps=100e9)
    nodes = [n.name for n in topo.nodes]
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(os.path.join(tmp, "bench.db"))
        controller = Controller(store)
        controller.apply(list(topo.nodes) + list(topo.links))
        vnets = []
        for i in range(args.networks):
            node = rng.choice(nodes)
            vnets.append(parse_resource({"kind": "VirtualNetwork", "metadata": {"name": f"n{i}", "tenant": "bench"},
                                         "spec": {"vnid": 10 + i, "cidr": f"10.{i // 256}.{i % 256}.0/24",
                                                  "members": [{"name": f"vm{i}", "node": node,
                                                               "address": f"10.{i // 256}.{i % 256}.2"}]}}))
        controller.apply(vnets)
        latencies, refused = [], 0
        start, cpu_start = time.perf_counter(), time.process_time()
        for first in range(0, args.stitches, args.batch):
            docs = []
            for i in range(first, min(first + args.batch, args.stitches)):
                a, b = rng.sample(range(args.networks), 2)
                docs.append(parse_resource({"kind": "Stitch", "metadata": {"name": f"s{i}", "tenant": "bench"},
                                            "spec": {"type": "bandwidth", "from": {"network": f"n{a}"},
                                                     "to": {"network": f"n{b}"},
                                                     "bandwidth": rng.choice([10e6, 50e6, 100e6])}}))
            t0 = time.perf_counter()
            if args.batch == 1:
                try:
                    controller.apply(docs)
                except VnstitchError:  # capacity refusals count as admissions decided
                    refused += 1
            else:
                refused += sum(isinstance(r, VnstitchError) for r in controller.apply_each(docs))
            latencies.append(time.perf_counter() - t0)  # per transaction: what a caller waits for
            if (first + len(docs)) % 1000 == 0:
                done = first + len(docs)
                print(f"  {done} admitted, {done / (time.perf_counter() - start):.0f}/s", file=sys.stderr)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        store.close()
    ms = np.array(latencies) * 1e3
    result = {"stitches": args.stitches, "batch": args.batch, "refused": refused, "seconds": round(elapsed, 2),
              "stitches_per_s": round(args.stitches / elapsed, 1),
              "cpu_seconds": round(cpu, 2), "stitches_per_cpu_s": round(args.stitches / cpu, 1),
              "load_avg_1m": round(os.getloadavg()[0], 2), "txn_p50_ms": round(float(np.percentile(ms, 50)), 3),
              "txn_p99_ms": round(float(np.percentile(ms, 99)), 3), "topology": Path(args.topology).name,
              "nodes": len(topo.nodes), "links": len(topo.links), "machine": f"{platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} cores, Python {platform.python_version()}"}
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
