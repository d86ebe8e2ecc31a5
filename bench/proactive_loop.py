"""One control interval of the controller's proactive loop, timed: telemetry read + forecast + allocate +
admit + reconcile, on a SQLite state store and a SQLite telemetry store.

Usage: python bench/proactive_loop.py [--intervals 96] [--kdl-pairs 2000] [--json FILE]

Three runs, each in this process:
  abilene   the bundled Abilene topology, its 12 PoPs as networks (132 pairs), real Abilene traffic ×10
            (day 13 of the bundled 14; the day before it is preloaded as history), baseline forecaster;
  kdl       Topology Zoo Kdl (754 nodes; the file has no capacities: 10 Gbit/s links), networks on random
            nodes and --kdl-pairs random pairs with a diurnal synthetic load (seeded);
  training  abilene again while a GRU trains in the loop's background worker: the loop's p99 then
            against the p99 of the plain abilene run (the goal: ≤ 1.5×).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np

from vnstitch.controller.proactive import ModelStore, ProactiveLoop
from vnstitch.controller.reconciler import Reconciler
from vnstitch.controller.service import Controller
from vnstitch.domain.registry import parse_resource
from vnstitch.drivers.sim import SimDriver
from vnstitch.store.sqlite import SQLiteStore
from vnstitch.telemetry.base import Sample
from vnstitch.telemetry.store import SQLiteTelemetryStore

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
TENANT = "bench"
INTERVAL = 300.0


def percentiles(samples_ms: list[float]) -> dict:
    a = np.array(samples_ms)
    return {"p50_ms": round(float(np.percentile(a, 50)), 2), "p99_ms": round(float(np.percentile(a, 99)), 2),
            "max_ms": round(float(a.max()), 2), "intervals": len(a)}


class Setup:
    def __init__(self, workdir: str, topology, networks: list[tuple[str, str]], pairs, model: str = "last_value",
                 train: bool = False):
        self.store = SQLiteStore(os.path.join(workdir, "state.db"))
        self.now = 0.0
        self.controller = Controller(self.store, clock=lambda: self.now)
        self.controller.apply(list(topology.nodes) + list(topology.links))
        docs = [parse_resource({"kind": "VirtualNetwork", "metadata": {"name": name, "tenant": TENANT},
                                "spec": {"vnid": 100 + i, "cidr": f"10.{i // 250}.{i % 250}.0/24",
                                         "members": [{"name": "gw", "node": node,
                                                      "address": f"10.{i // 250}.{i % 250}.1"}]}})
                for i, (name, node) in enumerate(networks)]
        self.controller.apply_each(docs)
        spec = {"interval": "5m", "horizon": 2, "model": model, "minHistory": 12, "trainingWindow": "1d"}
        if pairs is not None:
            spec["pairs"] = [{"from": a, "to": b} for a, b in pairs]
        self.controller.apply([parse_resource({"kind": "ForecastPolicy", "metadata": {"name": "fc", "tenant": TENANT},
                                               "spec": spec})])
        self.sim = SimDriver(topology=topology.links)
        self.reconciler = Reconciler(self.controller, self.sim)
        self.telemetry = SQLiteTelemetryStore(os.path.join(workdir, "telemetry.db"), synchronous="NORMAL")
        self.loop = ProactiveLoop(self.controller, self.telemetry,
                                  ModelStore(os.path.join(workdir, "models")) if train else None, train=train)
        self.reconciler.reconcile_once(self.now)

    def push(self, step: int, rates: dict[tuple[str, str], float]) -> None:
        self.telemetry.insert([Sample(TENANT, a, b, (step + 1) * INTERVAL, bps) for (a, b), bps in rates.items()])

    def interval(self, step: int) -> float:
        """One control interval at the start of `step`; returns its wall time in ms."""
        self.now = step * INTERVAL
        started = time.perf_counter()
        self.loop.step(self.now)
        self.reconciler.reconcile_once(self.now)
        return (time.perf_counter() - started) * 1e3

    def carry(self, rates) -> None:
        self.sim.carry({(f"{TENANT}/{a}", f"{TENANT}/{b}"): bps for (a, b), bps in rates.items()}, INTERVAL)

    def close(self) -> None:
        self.loop.close()
        self.telemetry.close()
        self.store.close()


def abilene_run(intervals: int, train_model: str | None = None) -> dict:
    from vnstitch.data import data_path
    from vnstitch.forecast import load_bundled_abilene
    from vnstitch.topology.importers import load_topology

    series = load_bundled_abilene()
    nodes = series.nodes()
    n = len(nodes)
    demand = series.values_mbps.reshape(series.n_steps, n, n) * 10 * 1e6
    topology = load_topology(data_path("abilene.xml"))
    pairs = [(a, b) for a in nodes for b in nodes if a != b]
    index = {node: i for i, node in enumerate(nodes)}

    def rates(step):
        return {(f"pop-{a}", f"pop-{b}"): float(demand[step, index[a], index[b]]) for a, b in pairs}

    with tempfile.TemporaryDirectory() as workdir:
        setup = Setup(workdir, topology, [(f"pop-{node}", node) for node in nodes], None,
                      model=train_model or "last_value", train=train_model is not None)
        start = 12 * 288
        for step in range(start - 288, start):  # a day of history
            setup.push(step, rates(step))
        times, stitches = [], 0
        training_seen = 0
        for step in range(start, start + intervals):
            times.append(setup.interval(step))
            state = setup.store.get("ForecastPolicy", TENANT, "fc").value["status"]["model"].get("state")
            training_seen += state == "training"
            setup.carry(rates(step))
            setup.push(step, rates(step))
        stitches = sum(1 for r in setup.store.list("Stitch", TENANT) if r.value["status"]["state"] == "ACTIVE")
        deadline = time.monotonic() + 600
        while train_model and setup.loop.trainer.busy("bench/fc") and time.monotonic() < deadline:
            time.sleep(0.5)  # let the fit finish before the store closes
        model = setup.store.get("ForecastPolicy", TENANT, "fc").value["status"]["model"]
        setup.close()
    out = {"pairs": len(pairs), "active_forecast_stitches_at_end": stitches, **percentiles(times)}
    if train_model:
        out.update({"intervals_while_training": training_seen, "model_state_at_end": model.get("state"),
                    "model_message": model.get("message", "")})
    return out


def kdl_run(intervals: int, n_pairs: int, seed: int = 7, args_mean_bps: float = 1.2e7) -> dict:
    from vnstitch.topology.importers import load_topology

    path = SHARED / "topologies" / "topology_zoo" / "Kdl.graphml"
    topology = load_topology(str(path), default_capacity_bps=10e9)
    rng = np.random.default_rng(seed)
    names = sorted(node.name for node in topology.nodes)
    n_networks = max(2, int(np.ceil(np.sqrt(n_pairs))) + 1)
    hosts = rng.choice(names, size=n_networks, replace=False)
    networks = [(f"net{i}", str(node)) for i, node in enumerate(hosts)]
    all_pairs = [(a[0], b[0]) for a in networks for b in networks if a != b]
    pairs = [all_pairs[i] for i in rng.choice(len(all_pairs), size=min(n_pairs, len(all_pairs)), replace=False)]
    # bit/s, heavy-tailed; the mean is set so that at the daily peak the busiest links run at about
    # 80-110% of capacity (a network that is mostly fine, with hot spots), not everything congested
    base = rng.lognormal(mean=np.log(args_mean_bps), sigma=1.0, size=len(pairs))

    def rates(step):
        diurnal = 1.0 + 0.6 * np.sin(2 * np.pi * (step % 288) / 288)
        noise = rng.normal(1.0, 0.05, size=len(pairs)).clip(0.5, 1.5)
        return dict(zip(pairs, (base * diurnal * noise).tolist()))

    with tempfile.TemporaryDirectory() as workdir:
        setup = Setup(workdir, topology, networks, pairs)
        for step in range(0, 288):
            setup.push(step, rates(step))
        times = []
        for step in range(288, 288 + intervals):
            times.append(setup.interval(step))
            r = rates(step)
            setup.carry(r)
            setup.push(step, r)
        stitches = sum(1 for r in setup.store.list("Stitch", TENANT) if r.value["status"]["state"] == "ACTIVE")
        setup.close()
    return {"nodes": len(names), "links": len(topology.links), "networks": len(networks), "pairs": len(pairs),
            "active_forecast_stitches_at_end": stitches, **percentiles(times)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--intervals", type=int, default=96)
    parser.add_argument("--kdl-pairs", type=int, default=2000)
    parser.add_argument("--kdl-intervals", type=int, default=24)
    parser.add_argument("--kdl-mean", type=float, default=1.2e7,
                        help="mean pair rate, bit/s (1.2e7: the busiest Kdl links peak near 80-110%%)")
    parser.add_argument("--json", default=str(ROOT / "out" / "bench" / "proactive_loop.json"))
    args = parser.parse_args()
    results = {}
    results["abilene"] = abilene_run(args.intervals)
    print("abilene:", results["abilene"], flush=True)
    results["training"] = abilene_run(args.intervals, train_model="gru")
    results["training"]["p99_vs_plain"] = round(results["training"]["p99_ms"] / results["abilene"]["p99_ms"], 2)
    print("abilene while a GRU trains:", results["training"], flush=True)
    if (SHARED / "topologies").exists():
        results["kdl"] = kdl_run(args.kdl_intervals, args.kdl_pairs, args_mean_bps=args.kdl_mean)
        print("kdl:", results["kdl"], flush=True)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    out = {"command": "python bench/proactive_loop.py " + " ".join(sys.argv[1:]), "machine": machine,
           "load_avg_1m": round(os.getloadavg()[0], 2), "results": results}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
