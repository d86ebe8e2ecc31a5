"""API load over loopback with keep-alive: stitch creates/s (p50/p99) and GETs/s.

Starts `create_app` under uvicorn in a child process (SQLite file in a temp dir, Abilene
substrate, reconciler running inside with the sim driver, rate limit off, quotas raised),
then drives it from this process over `--concurrency` keep-alive HTTP/1.1 connections, one
per thread, with the standard library's `http.client` (lighter than httpx: client and server
share the machine). Latencies are client-side: request sent to response body read.

Usage: python bench/api_load.py [--creates N] [--gets N] [--concurrency C] [--json FILE]
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
import numpy as np
from common import wait_healthy


def serve(db_path: str, port: int, ready, reconcile: bool = True) -> None:
    import logging

    import uvicorn

    from vnstitch.api.app import create_app
    from vnstitch.api.settings import Settings
    from vnstitch.store.sqlite import SQLiteStore

    logging.basicConfig(level=logging.WARNING)
    app = create_app(Settings(rate_limit_per_s=0, quota_stitches=10**7, quota_bandwidth_bps=1e15, tick_s=5.0,
                              reconcile=reconcile, gc_freeze=True),  # as `vnstitch serve` does
                     store=SQLiteStore(db_path))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False, timeout_keep_alive=60))
    threading.Thread(target=lambda: (time.sleep(0.2), ready.set()), daemon=True).start()
    server.run()


def prepare(db_path: str) -> dict[str, str]:
    from vnstitch.api.auth import create_token
    from vnstitch.controller.service import Controller
    from vnstitch.data import data_path
    from vnstitch.store.sqlite import SQLiteStore
    from vnstitch.topology.importers import load_topology

    store = SQLiteStore(db_path)
    topology = load_topology(data_path("abilene.xml"))
    Controller(store).apply(list(topology.nodes) + list(topology.links))
    tokens = {"admin": create_token(store, "ops", "admin")[0], "member": create_token(store, "bench", "member")[0]}
    store.close()
    return tokens


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def drive(url: str, token: str, requests: list[tuple[str, str, dict | None]], concurrency: int):
    """Run requests over `concurrency` keep-alive HTTP/1.1 connections (one thread each, plain
    `http.client`, so that the load generator takes little of the CPU it shares with the
    server); latencies (s) and wall time. Every response is read in full and its status checked."""
    host, port = url.removeprefix("http://").split(":")
    chunks = [requests[i::concurrency] for i in range(concurrency)]
    latencies: list[list[float]] = [[] for _ in chunks]
    errors: list[str] = []
    auth = f"Bearer {token}"

    def worker(index: int) -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        try:
            for method, path, body in chunks[index]:
                headers = {"Authorization": auth}
                payload = None
                if body is not None:
                    payload = json.dumps(body).encode()
                    headers["Content-Type"] = "application/json"
                started = time.perf_counter()
                conn.request(method, path, body=payload, headers=headers)
                response = conn.getresponse()
                text = response.read()
                latencies[index].append(time.perf_counter() - started)
                if response.status >= 300:
                    errors.append(f"{response.status} {text[:120]!r}")
        finally:
            conn.close()

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(worker, range(concurrency)))
    wall = time.perf_counter() - started
    flat = np.array([x for chunk in latencies for x in chunk])
    return flat, wall, errors


def summary(name: str, latencies: np.ndarray, wall: float, errors: list[str]) -> dict:
    return {"name": name, "requests": int(len(latencies)), "per_s": round(len(latencies) / wall, 1),
            "p50_ms": round(float(np.percentile(latencies, 50)) * 1e3, 2),
            "p99_ms": round(float(np.percentile(latencies, 99)) * 1e3, 2), "errors": len(errors),
            "first_error": errors[0] if errors else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--creates", type=int, default=2000)
    parser.add_argument("--gets", type=int, default=10000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--no-reconcile", action="store_true", help="API alone, without the in-server reconciler")
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="vnstitch-api-bench-")
    db_path = os.path.join(workdir, "state.db")
    tokens = prepare(db_path)
    port = free_port()
    ready = multiprocessing.get_context("spawn").Event()
    server = multiprocessing.get_context("spawn").Process(target=serve, args=(db_path, port, ready, not args.no_reconcile), daemon=True)
    server.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url)
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {tokens['member']}"}) as client:
            for name, vnid, cidr, node in (("web", 100, "10.0.0.0/24", "NYCMng"),
                                           ("db", 101, "10.1.0.0/24", "LOSAng")):
                client.post("/v1/virtualnetworks", json={
                    "kind": "VirtualNetwork", "metadata": {"name": name},
                    "spec": {"vnid": vnid, "cidr": cidr,
                             "members": [{"name": "m1", "node": node, "address": cidr.replace("0/24", "1")}]}
                }).raise_for_status()
        creates = [("POST", "/v1/stitches", {
            "kind": "Stitch", "metadata": {"name": f"s{i}"},
            "spec": {"type": "bandwidth", "from": {"network": "web"}, "to": {"network": "db"}, "bandwidth": 1000}})
            for i in range(args.creates)]
        results = [summary("stitch create (POST /v1/stitches)", *drive(url, tokens["member"], creates,
                                                                         args.concurrency))]
        gets = [("GET", f"/v1/stitches/s{i % args.creates}", None) for i in range(args.gets)]
        results.append(summary("stitch read (GET /v1/stitches/{name})", *drive(url, tokens["member"], gets,
                                                                                 args.concurrency)))
    finally:
        server.terminate()
        server.join(10)
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
               "processor": platform.processor() or platform.machine()}
    report = {"command": "python " + " ".join(sys.argv), "machine": machine, "concurrency": args.concurrency,
              "reconciler": not args.no_reconcile,
              "results": results}
    print(json.dumps(report, indent=2))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
