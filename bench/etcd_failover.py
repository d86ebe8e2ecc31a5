"""etcd scale-out figures: leader failover (SIGKILL) and graceful handover (SIGTERM) with 3
replicas under a 50/s create/delete client, and stitch admission throughput on etcd vs SQLite
in the same run (Controller.apply one stitch per transaction, and apply_each group commit).

Starts its own 3-member etcd cluster on 127.0.0.1 (Debian's etcd-server) and stops it.
Usage: python bench/etcd_failover.py [--ttl 10] [--kills 10] [--handovers 5] [--stitches 2000]
                                     [--batch 50] [--json out/bench/etcd.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from tests.etcd.cluster import LocalEtcdCluster  # noqa: E402
from tests.etcd.harness import Churn, Fleet, check_consistency, seed  # noqa: E402
from tests.etcd.test_failover import failover_gap, wait_for  # noqa: E402
from vnstitch.controller.service import Controller  # noqa: E402
from vnstitch.domain.registry import parse_resource  # noqa: E402
from vnstitch.errors import VnstitchError  # noqa: E402
from vnstitch.store.etcd import EtcdStore  # noqa: E402
from vnstitch.store.sqlite import SQLiteStore  # noqa: E402
from vnstitch.topology.importers import load_topology  # noqa: E402

KDL = ROOT.parent / "shared" / "data" / "topologies" / "topology_zoo" / "Kdl.graphml"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))], 3)


def failovers(cluster, ttl_s: float, kills: int, handovers: int, tmp: str) -> dict:
    store = EtcdStore(cluster.endpoints.split(","), "bench-failover")
    token = seed(store)
    fleet = Fleet(cluster.url("bench-failover"), tmp, count=3, ttl_s=ttl_s).start()
    churn = Churn(fleet, token, rate_per_s=50.0)
    out = {"sigkill": {"gap_s": [], "elected_s": []}, "sigterm": {"gap_s": [], "elected_s": []}}
    problems = []
    try:
        leader = fleet.leader()
        churn.start()
        wait_for(lambda: churn.stats.created >= 30, 60, "client never got going")
        plan = [("sigkill", signal.SIGKILL)] * kills + [("sigterm", signal.SIGTERM)] * handovers
        for n, (name, sig) in enumerate(plan):
            old_fence = store.get("Leader", "", "reconciler").create_revision
            t0 = time.time()
            leader.send(sig)
            leader.process.wait(30)
            new_leader = fleet.leader(timeout_s=4 * ttl_s + 10, exclude=leader)
            out[name]["elected_s"].append(store.get("Leader", "", "reconciler").value["electedAt"] - t0)
            leader.start()
            wait_for(lambda: failover_gap(fleet.writes(), old_fence, t0), 60, f"{name} {n}: no writes around it")
            last, first = failover_gap(fleet.writes(), old_fence, t0)
            out[name]["gap_s"].append(first - last)
            with churn.paused():
                problems += check_consistency(store, churn.stats)
            leader.wait_up()
            leader = new_leader
            print(f"  {name} {n + 1}/{len(plan)}: last→first write {first - last:.2f} s", file=sys.stderr)
    finally:
        churn.stop()
        fleet.stop()
        store.close()
    summary = {}
    for name, series in out.items():
        if series["gap_s"]:
            summary[name] = {"count": len(series["gap_s"]),
                             "gap_p50_s": pct(series["gap_s"], 50), "gap_p99_s": pct(series["gap_s"], 99),
                             "gap_max_s": round(max(series["gap_s"]), 3),
                             "elected_p50_s": pct(series["elected_s"], 50), "elected_p99_s": pct(series["elected_s"], 99)}
    stats = churn.stats
    summary.update(ttl_s=ttl_s, goal_p99_s=2 * ttl_s + 3, consistency_problems=problems[:10],
                   client={"created": stats.created, "deleted": stats.deleted, "refused": stats.refused,
                           "unreachable_retried": stats.unreachable, "answers": dict(stats.statuses),
                           "request_p50_ms": pct([x * 1e3 for x in stats.latencies_s], 50),
                           "request_p99_ms": pct([x * 1e3 for x in stats.latencies_s], 99)})
    return summary


def admission(store, stitches: int, batch: int, seed_: int = 7) -> dict:
    rng = random.Random(seed_)
    topo = load_topology(str(KDL) if KDL.exists() else str(ROOT / "src/vnstitch/data/abilene.xml"),
                         default_capacity_bps=100e9)
    nodes = [n.name for n in topo.nodes]
    controller = Controller(store)
    controller.apply(list(topo.nodes) + list(topo.links))
    networks = 200
    controller.apply([parse_resource({"kind": "VirtualNetwork", "metadata": {"name": f"n{i}", "tenant": "bench"},
                                      "spec": {"vnid": 10 + i, "cidr": f"10.{i // 256}.{i % 256}.0/24",
                                               "members": [{"name": f"vm{i}", "node": rng.choice(nodes),
                                                            "address": f"10.{i // 256}.{i % 256}.2"}]}})
                      for i in range(networks)])
    latencies, refused = [], 0
    start = time.perf_counter()
    for first in range(0, stitches, batch):
        docs = []
        for i in range(first, min(first + batch, stitches)):
            a, b = rng.sample(range(networks), 2)
            docs.append(parse_resource({"kind": "Stitch", "metadata": {"name": f"s{i}", "tenant": "bench"},
                                        "spec": {"type": "bandwidth", "from": {"network": f"n{a}"},
                                                 "to": {"network": f"n{b}"},
                                                 "bandwidth": rng.choice([10e6, 50e6, 100e6])}}))
        t0 = time.perf_counter()
        if batch == 1:
            try:
                controller.apply(docs)
            except VnstitchError:
                refused += 1
        else:
            refused += sum(isinstance(r, VnstitchError) for r in controller.apply_each(docs))
        latencies.append((time.perf_counter() - t0) * 1e3)
    elapsed = time.perf_counter() - start
    return {"stitches": stitches, "batch": batch, "refused": refused, "seconds": round(elapsed, 2),
            "stitches_per_s": round(stitches / elapsed, 1), "txn_p50_ms": pct(latencies, 50),
            "txn_p99_ms": pct(latencies, 99), "topology": KDL.name if KDL.exists() else "abilene.xml"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ttl", type=float, default=10.0)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--handovers", type=int, default=5)
    parser.add_argument("--stitches", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--json")
    args = parser.parse_args()
    result = {"command": "python " + " ".join([os.path.relpath(__file__, ROOT)] + sys.argv[1:]),
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                         f"Python {platform.python_version()}"}
    with tempfile.TemporaryDirectory() as tmp:
        with LocalEtcdCluster(3, base_dir=os.path.join(tmp, "etcd"), heartbeat_ms=100, election_ms=1000) as cluster:
            result["etcd"] = "3 members on 127.0.0.1, heartbeat 100 ms, election 1000 ms (etcd defaults)"
            rows = []
            for backend in ("sqlite", "etcd"):
                for batch in (1, args.batch):
                    if backend == "sqlite":
                        store = SQLiteStore(os.path.join(tmp, f"bench-{batch}.db"))
                    else:
                        store = EtcdStore(cluster.endpoints.split(","), f"bench-admission-{batch}")
                    try:
                        row = admission(store, args.stitches, batch)
                    finally:
                        store.close()
                    row["store"] = backend
                    rows.append(row)
                    print(f"  admission {backend} batch {batch}: {row['stitches_per_s']}/s", file=sys.stderr)
            result["admission"] = rows
            if args.kills or args.handovers:
                fleet_dir = os.path.join(tmp, "fleet")
                os.makedirs(fleet_dir)
                result["failover"] = failovers(cluster, args.ttl, args.kills, args.handovers, fleet_dir)
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
