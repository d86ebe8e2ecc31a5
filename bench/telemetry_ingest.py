"""Telemetry ingest: samples/s into the SQLite telemetry store in one process, and through
`POST /v1/telemetry` in batches against a real uvicorn server on 127.0.0.1.

1. SQLite: `--samples` samples of 132 network pairs (12 networks), inserted in batches of
   `--batch` (one transaction each, WAL, synchronous=FULL), timed with and without
   `validate_batch` in front (what the API and the CLI run before inserting).
2. API: `create_app` under uvicorn in a child process (as bench/api_load.py: SQLite state store in
   a temp dir, the reconciler running inside with the sim driver, rate limit off, gc frozen as
   `vnstitch serve` does), the same samples POSTed as JSON batches of `--batch` over
   `--concurrency` keep-alive HTTP/1.1 connections (`http.client`, bodies serialised before the
   clock starts). Every answer is checked: 200 and `accepted` equal to the batch size.

Usage: python bench/telemetry_ingest.py [--samples N] [--batch B] [--concurrency C] [--json FILE]
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import platform
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from common import wait_healthy

NODES = ("ATLAM5", "ATLAng", "CHINng", "DNVRng", "HSTNng", "IPLSng", "KSCYng", "LOSAng", "NYCMng", "SNVAng",
         "STTLng", "WASHng")
NETWORKS = [f"pop-{n}" for n in NODES]
PAIRS = [(a, b) for a in NETWORKS for b in NETWORKS if a != b]


def make_samples(n: int, now: float, tenant: str = "bench"):
    """n samples round-robin over the pairs, one interval (10 s) apart per round, ending now - 60."""
    from vnstitch.telemetry import Sample

    rounds = -(-n // len(PAIRS))
    out = []
    for i in range(n):
        step, pair = divmod(i, len(PAIRS))
        src, dst = PAIRS[pair]
        out.append(Sample(tenant, src, dst, now - 60 - (rounds - step) * 10.0, 1e6 + (i % 977) * 1e3))
    return out


def bench_sqlite(workdir: str, samples, batch: int, validate: bool) -> dict:
    from vnstitch.telemetry import validate_batch
    from vnstitch.telemetry.store import SQLiteTelemetryStore
    from vnstitch.telemetry.validate import endpoints_of

    path = os.path.join(workdir, f"telemetry-{'v' if validate else 'raw'}.db")
    store = SQLiteTelemetryStore(path)
    known = {"bench": endpoints_of({n: [] for n in NETWORKS})}
    now = time.time()
    started = time.perf_counter()
    for first in range(0, len(samples), batch):
        chunk = samples[first:first + batch]
        if validate:
            chunk = validate_batch(chunk, now, known)
        store.insert(chunk)
    wall = time.perf_counter() - started
    stored = store.count()
    store.close()
    assert stored == len(samples), (stored, len(samples))
    return {"name": "SQLite insert" + (" (validate_batch + insert)" if validate else " (insert only)"),
            "samples": len(samples), "batch": batch, "seconds": round(wall, 3),
            "samples_per_s": round(len(samples) / wall)}


def serve(db_path: str, port: int, ready, reconcile: bool) -> None:
    import logging

    import uvicorn

    from vnstitch.api.app import create_app
    from vnstitch.api.settings import Settings
    from vnstitch.store.sqlite import SQLiteStore

    logging.basicConfig(level=logging.WARNING)
    app = create_app(Settings(rate_limit_per_s=0, tick_s=5.0, reconcile=reconcile, gc_freeze=True),
                     store=SQLiteStore(db_path))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False, timeout_keep_alive=60))
    threading.Thread(target=lambda: (time.sleep(0.2), ready.set()), daemon=True).start()
    server.run()


def prepare(db_path: str) -> str:
    """State store with the Abilene substrate, 12 networks of tenant bench and a member token."""
    from vnstitch.api.auth import create_token
    from vnstitch.controller.service import Controller
    from vnstitch.data import data_path
    from vnstitch.domain.vnet import VirtualNetwork
    from vnstitch.store.sqlite import SQLiteStore
    from vnstitch.topology.importers import load_topology

    store = SQLiteStore(db_path)
    topology = load_topology(data_path("abilene.xml"))
    networks = [VirtualNetwork.model_validate({
        "kind": "VirtualNetwork", "metadata": {"name": name, "tenant": "bench"},
        "spec": {"vnid": 100 + i, "cidr": f"10.{i}.0.0/24", "members": []}}) for i, name in enumerate(NETWORKS)]
    Controller(store).apply(list(topology.nodes) + list(topology.links) + networks)
    create_token(store, "ops", "admin")
    token = create_token(store, "bench", "member")[0]
    store.close()
    return token


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bench_api(workdir: str, samples, batch: int, concurrency: int, reconcile: bool) -> dict:
    db_path = os.path.join(workdir, "state.db")
    token = prepare(db_path)
    port = free_port()
    spawn = multiprocessing.get_context("spawn")
    ready = spawn.Event()
    server = spawn.Process(target=serve, args=(db_path, port, ready, reconcile), daemon=True)
    server.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url)
        bodies = [json.dumps({"samples": [{"from": s.src, "to": s.dst, "time": s.time, "rateBps": s.rate_bps}
                                          for s in samples[first:first + batch]]}).encode()
                  for first in range(0, len(samples), batch)]
        chunks = [bodies[i::concurrency] for i in range(concurrency)]
        errors: list[str] = []
        latencies: list[float] = []
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

        def worker(index: int) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            try:
                for body in chunks[index]:
                    began = time.perf_counter()
                    conn.request("POST", "/v1/telemetry", body=body, headers=headers)
                    response = conn.getresponse()
                    text = response.read()
                    latencies.append(time.perf_counter() - began)
                    if response.status != 200:
                        errors.append(f"{response.status} {text[:160]!r}")
            finally:
                conn.close()

        warm = http.client.HTTPConnection("127.0.0.1", port, timeout=60)  # first request opens the store
        warm.request("POST", "/v1/telemetry", body=b'{"samples": []}', headers=headers)
        warm.getresponse().read()
        warm.close()
        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(worker, range(concurrency)))
        wall = time.perf_counter() - started
        latest = httpx.get(f"{url}/v1/telemetry", headers={"Authorization": f"Bearer {token}"}).json()["items"]
    finally:
        server.terminate()
        server.join(10)
    latencies.sort()
    return {"name": f"POST /v1/telemetry (batches of {batch}, {concurrency} connections)",
            "samples": len(samples), "batch": batch, "requests": len(bodies), "seconds": round(wall, 3),
            "samples_per_s": round(len(samples) / wall),
            "request_p50_ms": round(latencies[len(latencies) // 2] * 1e3, 1),
            "request_p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1e3, 1),
            "series_read_back": len(latest), "reconciler": reconcile, "errors": len(errors),
            "first_error": errors[0] if errors else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=500_000)
    parser.add_argument("--api-samples", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--no-reconcile", action="store_true", help="API alone, without the in-server reconciler")
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="vnstitch-telemetry-bench-")
    now = time.time()
    samples = make_samples(args.samples, now)
    results = [bench_sqlite(workdir, samples, args.batch, validate=False),
               bench_sqlite(workdir, samples, args.batch, validate=True)]
    results.append(bench_api(workdir, make_samples(args.api_samples, time.time()), args.batch, args.concurrency,
                             not args.no_reconcile))
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
               "processor": platform.processor() or platform.machine()}
    report = {"command": "python " + " ".join(sys.argv), "machine": machine, "results": results}
    print(json.dumps(report, indent=2))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)
    return 0 if all(not r.get("errors") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
