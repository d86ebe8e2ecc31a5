"""Intent benchmarks: compile N intents over a real topology (the checks at apply, then the engine's run:
compile, enforce with stitch admission, assess, report), ProbeIntent answers, and the time from create
to the first report on a live server.

Usage: python bench/intents.py [--topology abilene|PATH] [--intents N] [--probes N] [--live-trials N] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from vnstitch.controller.service import Controller
from vnstitch.data import data_path
from vnstitch.domain.intent import Intent
from vnstitch.domain.registry import parse_resource
from vnstitch.intent.engine import IntentEngine, probe
from vnstitch.store.sqlite import SQLiteStore
from vnstitch.topology.importers import load_topology

ROOT = Path(__file__).resolve().parents[1]
KDL = ROOT.parent / "shared" / "data" / "topologies" / "topology_zoo" / "Kdl.graphml"


def networks(rng: random.Random, nodes: list[str], groups: int, services: int) -> list:
    out = []
    for i in range(groups + services):
        node = rng.choice(nodes)
        doc = {"kind": "VirtualNetwork", "metadata": {"name": f"g{i}" if i < groups else f"s{i - groups}",
                                                      "tenant": "bench"},
               "spec": {"vnid": 10 + i, "cidr": f"10.{i // 256}.{i % 256}.0/24",
                        "members": [{"name": "vm", "node": node, "address": f"10.{i // 256}.{i % 256}.2"}]}}
        if i >= groups:
            doc["spec"]["services"] = [{"name": "api", "port": 8443}]
        out.append(parse_resource(doc))
    return out


def intent_doc(i: int, service: int, latency_ms: float, isolate: bool) -> Intent:
    text = f"for group('bench/g{i}') " + ("isolate; " if isolate else "") + \
        f"allow service('bench/s{service}:8443') latency < {latency_ms:.3f}ms bandwidth >= 10Mbps"
    return parse_resource({"kind": "Intent", "metadata": {"name": f"i{i}", "tenant": "bench"}, "spec": {"text": text}},
                          user_input=True)


def compile_bench(topology_path: str, intents: int, probes: int, seed: int) -> dict:
    rng = random.Random(seed)
    topo = load_topology(topology_path, default_capacity_bps=100e9)
    nodes = [n.name for n in topo.nodes]
    services = max(10, intents // 20)
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(os.path.join(tmp, "bench.db"))
        controller = Controller(store)
        controller.apply(list(topo.nodes) + list(topo.links))
        controller.apply(networks(rng, nodes, intents, services))
        engine = IntentEngine(controller)
        controller.refresh()
        finder = controller.pathfinder()
        by_name = {r.name: r for r in controller.cache.list("VirtualNetwork", "bench")}
        apply_s, run_s, refused, compliant = [], [], 0, 0
        start = time.perf_counter()
        for i in range(intents):
            service = rng.randrange(services)
            a = by_name[f"g{i}"].value["spec"]["members"][0]["node"]
            b = by_name[f"s{service}"].value["spec"]["members"][0]["node"]
            shortest = finder.availability(a, b, bandwidth_bps=0).best_latency_s or 0.0
            intent = intent_doc(i, service, max(1.0, shortest * 3e3), isolate=i % 2 == 0)
            t0 = time.perf_counter()
            try:
                controller.apply([intent])
            except Exception as exc:  # noqa: BLE001 - a refusal is a decided intent too
                refused += 1
                apply_s.append(time.perf_counter() - t0)
                print(f"  refused i{i}: {exc}", file=sys.stderr)
                continue
            t1 = time.perf_counter()
            record = controller.store.get("Intent", "bench", f"i{i}")
            run = engine.run(record, controller._typed(Intent, record), controller.clock())
            t2 = time.perf_counter()
            apply_s.append(t1 - t0)
            run_s.append(t2 - t1)
            compliant += run.state in ("Compliant", "Received")
            if (i + 1) % 200 == 0:
                print(f"  {i + 1} intents, {(i + 1) / (time.perf_counter() - start):.1f}/s", file=sys.stderr)
        elapsed = time.perf_counter() - start
        probe_s = []
        for _ in range(probes):
            i, service = rng.randrange(intents), rng.randrange(services)
            question = intent_doc(i, service, 50.0, isolate=False).model_copy(deep=True)
            question.metadata.name = "probe"
            t0 = time.perf_counter()
            probe(controller, question)
            probe_s.append(time.perf_counter() - t0)
        stitches = sum(1 for r in controller.cache.list("Stitch", "bench"))
        store.close()
    total = np.array(apply_s[:len(run_s)]) + np.array(run_s)

    def pct(values, q):
        return round(float(np.percentile(np.array(values) * 1e3, q)), 2) if len(values) else None

    return {"topology": Path(topology_path).name, "nodes": len(topo.nodes), "links": len(topo.links),
            "intents": intents, "refused": refused, "stitches_made": stitches, "compliant_or_received": compliant,
            "intents_per_s": round(intents / elapsed, 1), "seconds": round(elapsed, 2),
            "apply_p50_ms": pct(apply_s, 50), "apply_p99_ms": pct(apply_s, 99),
            "engine_run_p50_ms": pct(run_s, 50), "engine_run_p99_ms": pct(run_s, 99),
            "per_intent_p50_ms": pct(total, 50), "per_intent_p99_ms": pct(total, 99),
            "probes": probes, "probe_p50_ms": pct(probe_s, 50), "probe_p99_ms": pct(probe_s, 99)}


def live_first_report(trials: int) -> dict:
    """A real server (uvicorn on 127.0.0.1, SQLite, the simulator, its reconcile loop): POST an intent, poll
    until its first report is there."""
    import httpx
    import uvicorn

    from vnstitch.api.app import create_app
    from vnstitch.api.auth import create_token
    from vnstitch.api.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(os.path.join(tmp, "state.db"))
        topo = load_topology(data_path("abilene.xml"))
        Controller(store).apply(list(topo.nodes) + list(topo.links))
        create_token(store, "ops", "admin")
        token = create_token(store, "acme", "member")[0]
        app = create_app(Settings(tick_s=1.0, rate_limit_per_s=0, driver_state=os.path.join(tmp, "sim.json")),
                         store=store)
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{port}"
        client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        while True:
            try:
                if client.get("/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        for i, node in enumerate(("NYCMng", "WASHng")):
            body = {"kind": "VirtualNetwork", "metadata": {"name": ["orders", "analytics"][i]},
                    "spec": {"vnid": 200 + i, "cidr": f"10.{i + 1}.0.0/24",
                             "members": [{"name": "vm", "node": node, "address": f"10.{i + 1}.0.11"}]}}
            if i:
                body["spec"]["services"] = [{"name": "reporting", "port": 8443}]
            client.post("/v1/virtualnetworks", json=body).raise_for_status()
        firsts, compliant = [], []
        for trial in range(trials):
            t0 = time.perf_counter()
            client.post("/v1/intents", json={"kind": "Intent", "metadata": {"name": f"t{trial}"}, "spec": {
                "text": "for group('acme/orders') allow service('acme/analytics:8443') latency < 20ms "
                        "bandwidth >= 10Mbps"}}).raise_for_status()
            first = None
            while time.perf_counter() - t0 < 30:
                status = client.get(f"/v1/intents/t{trial}").json()["status"]
                if first is None and status.get("reportCount", 0) >= 1:
                    first = time.perf_counter() - t0
                if status.get("handlingState") == "Compliant":
                    compliant.append(time.perf_counter() - t0)
                    break
                time.sleep(0.01)
            firsts.append(first if first is not None else float("inf"))
            client.delete(f"/v1/intents/t{trial}").raise_for_status()
        server.should_exit = True
        thread.join(10)
        app.state.audit.close()
        store.close()
    return {"trials": trials, "first_report_p50_ms": round(float(np.median(firsts)) * 1e3, 1),
            "first_report_max_ms": round(max(firsts) * 1e3, 1),
            "compliant_p50_ms": round(float(np.median(compliant)) * 1e3, 1) if compliant else None,
            "compliant_max_ms": round(max(compliant) * 1e3, 1) if compliant else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--topology", action="append", help="abilene (bundled) or a topology file; repeatable "
                                                            "(default: abilene and Kdl)")
    parser.add_argument("--intents", type=int, default=1000)
    parser.add_argument("--probes", type=int, default=200)
    parser.add_argument("--live-trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--json")
    args = parser.parse_args()
    paths = [str(data_path("abilene.xml")) if t == "abilene" else t for t in (args.topology or ["abilene", str(KDL)])]
    result = {"command": "python bench/intents.py " + " ".join(sys.argv[1:]),
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                         f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f}",
              "compile": [compile_bench(p, args.intents, args.probes, args.seed) for p in paths]}
    if args.live_trials:
        result["live"] = live_first_report(args.live_trials)
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
