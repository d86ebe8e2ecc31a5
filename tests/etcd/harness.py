"""Replica processes, a stitch-churning client and the ledger checks shared by the etcd tests
and bench/etcd_failover.py."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.etcd.cluster import free_ports

ROOT = Path(__file__).resolve().parents[2]
TENANT = "acme"
NETWORKS = [("web", "NYCMng"), ("db", "LOSAng"), ("cache", "CHINng"), ("batch", "ATLAng"), ("edge", "SNVAng")]


def seed(store) -> str:
    """Abilene substrate, five networks of one tenant; returns an admin token."""
    from vnstitch.api.auth import create_token
    from vnstitch.controller.service import Controller
    from vnstitch.data import data_path
    from vnstitch.domain.registry import parse_resource
    from vnstitch.topology.importers import load_topology

    topology = load_topology(data_path("abilene.xml"))
    controller = Controller(store)
    controller.apply(list(topology.nodes) + list(topology.links))
    controller.apply([parse_resource({"kind": "VirtualNetwork", "metadata": {"name": name, "tenant": TENANT},
                                      "spec": {"vnid": 100 + i, "cidr": f"10.{i}.0.0/24",
                                               "members": [{"name": f"{name}1", "node": node,
                                                            "address": f"10.{i}.0.1"}]}})
                      for i, (name, node) in enumerate(NETWORKS)])
    return create_token(store, TENANT, "admin")[0]


class Replica:
    def __init__(self, store_url: str, log_path: str, ttl_s: float, name: str, extra: tuple[str, ...] = ()):
        self.store_url, self.log_path, self.ttl_s, self.name = store_url, log_path, ttl_s, name
        self.extra = tuple(a.replace("{name}", name) for a in extra)  # more replica.py flags
        self.port = free_ports(1)[0]
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'src'}"}
        err = open(self.log_path + ".stderr", "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.etcd.replica", "--store", self.store_url, "--port", str(self.port),
             "--log", self.log_path, "--ttl", str(self.ttl_s), "--id", self.name, *self.extra],
            cwd=ROOT, env=env, stdout=err, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True)
        err.close()

    def wait_up(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"replica {self.name} exited: {Path(self.log_path + '.stderr').read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"replica {self.name} did not come up")

    def ready(self) -> dict | None:
        try:
            r = httpx.get(self.url + "/readyz", timeout=2.0)
            return r.json() if r.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None

    def send(self, sig: int) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)

    def stop(self, sig: int = signal.SIGKILL) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.send_signal(sig)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None


class Fleet:
    """`count` replicas over one etcd prefix."""

    def __init__(self, store_url: str, log_dir: str, count: int = 3, ttl_s: float = 2.0,
                 extra: tuple[str, ...] = ()):
        self.log_dir = log_dir
        self.replicas = [Replica(store_url, os.path.join(log_dir, f"r{i}.jsonl"), ttl_s, f"r{i}", extra)
                         for i in range(count)]

    def start(self) -> "Fleet":
        for replica in self.replicas:
            replica.start()
        for replica in self.replicas:
            replica.wait_up()
        return self

    def stop(self) -> None:
        for replica in self.replicas:
            replica.stop()

    def leader(self, timeout_s: float = 30.0, exclude: Replica | None = None) -> Replica:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for replica in self.replicas:
                if replica is exclude or replica.process is None:
                    continue
                state = replica.ready()
                if state and state.get("leading"):
                    return replica
            time.sleep(0.05)
        raise AssertionError("no replica leads")

    def writes(self) -> list[dict]:
        """Every fenced write any replica logged, oldest first."""
        out = []
        for replica in self.replicas:
            if os.path.exists(replica.log_path):
                with open(replica.log_path) as f:
                    out += [dict(json.loads(line), replica=replica.name) for line in f if line.strip()]
        return sorted(out, key=lambda w: w["t"])


@dataclass
class ChurnStats:
    acked: set = field(default_factory=set)        # created (201), not asked to delete
    deleting: set = field(default_factory=set)     # delete acknowledged
    refused: int = 0                               # 409/422 answers (capacity, conflicts)
    unavailable: int = 0                           # 503 answers
    unreachable: int = 0                           # connection errors (a killed replica)
    created: int = 0
    deleted: int = 0
    statuses: dict = field(default_factory=lambda: defaultdict(int))
    latencies_s: list = field(default_factory=list)


class Churn:
    """Create and delete stitches at `rate_per_s` across the replicas; remembers every answer."""

    def __init__(self, fleet: Fleet, token: str, rate_per_s: float = 50.0, live_target: int = 30, seed: int = 7):
        self.fleet, self.rate = fleet, rate_per_s
        self.headers = {"Authorization": f"Bearer {token}"}
        self.live_target = live_target
        self.rng = random.Random(seed)
        self.stats = ChurnStats()
        self._stop = threading.Event()
        self._pause = threading.Event()
        self._idle = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._http = httpx.Client(timeout=10.0)
        self._next = 0
        self._rr = 0

    def start(self) -> "Churn":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def paused(self):
        """Context: no request in flight while checking."""
        churn = self

        class _Paused:
            def __enter__(self):
                churn._idle.clear()
                churn._pause.set()
                churn._idle.wait(30)

            def __exit__(self, *exc):
                churn._pause.clear()
        return _Paused()

    def _targets(self):
        live = [r for r in self.fleet.replicas if r.process is not None and r.process.poll() is None]
        self._rr += 1
        return live[self._rr % len(live):] + live[:self._rr % len(live)] if live else []

    def _request(self, method: str, path: str, **kwargs):
        """Send to the next replica; on a connection error try the others. None: nobody answered.

        Sets `self.retried` when an earlier replica failed: the request may have landed there."""
        self.retried = False
        for replica in self._targets():
            try:
                t0 = time.perf_counter()
                response = self._http.request(method, replica.url + path, headers=self.headers, **kwargs)
                self.stats.latencies_s.append(time.perf_counter() - t0)
                return response, replica
            except httpx.HTTPError:
                self.stats.unreachable += 1
                self.retried = True
        return None, None

    def _exists(self, name: str) -> dict | None:
        """Read a stitch after an unknown outcome (after the store settled)."""
        time.sleep(0.5)
        deadline = time.monotonic() + 120  # the store may be without quorum for a while
        while time.monotonic() < deadline and not self._stop.is_set():
            response, _ = self._request("GET", f"/v1/stitches/{name}")
            if response is not None and response.status_code in (200, 404):
                return response.json() if response.status_code == 200 else None
            time.sleep(0.5)
        raise AssertionError(f"could not learn whether stitch {name} exists")

    def _create(self) -> None:
        name = f"s{self._next}"
        self._next += 1
        a, b = self.rng.sample([n for n, _ in NETWORKS], 2)
        body = {"apiVersion": "vnstitch.io/v1", "kind": "Stitch", "metadata": {"name": name},
                "spec": {"type": "bandwidth", "from": {"network": a}, "to": {"network": b},
                         "bandwidth": self.rng.choice(["200Mbps", "500Mbps", "1Gbps"])}}
        response, _ = self._request("POST", "/v1/stitches", json=body)
        status = response.status_code if response is not None else 0
        self.stats.statuses[status] += 1
        if status == 201:
            self.stats.acked.add(name)
            self.stats.created += 1
        elif status in (409, 422, 403) and not (status == 409 and self.retried):
            self.stats.refused += 1
        else:  # unknown outcome: find out, so the ledger check knows what should exist
            self.stats.unavailable += status == 503
            if self._exists(name) is not None:
                self.stats.acked.add(name)
                self.stats.created += 1

    def _delete(self) -> None:
        name = self.rng.choice(sorted(self.stats.acked))
        response, _ = self._request("DELETE", f"/v1/stitches/{name}")
        status = response.status_code if response is not None else 0
        self.stats.statuses[status] += 1
        if status in (200, 202, 404):
            self.stats.acked.discard(name)
            self.stats.deleting.add(name)
            self.stats.deleted += 1
        elif status not in (409,):
            self.stats.unavailable += status == 503
            found = self._exists(name)
            if found is None or found.get("metadata", {}).get("deletionTimestamp"):
                self.stats.acked.discard(name)
                self.stats.deleting.add(name)
                self.stats.deleted += 1

    def _run(self) -> None:
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        while not self._stop.is_set():
            if self._pause.is_set():
                self._idle.set()
                time.sleep(0.01)
                next_at = time.monotonic()
                continue
            if len(self.stats.acked) < self.live_target or self.rng.random() < 0.5:
                self._create()
            else:
                self._delete()
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                next_at = time.monotonic()
        self._idle.set()


def check_consistency(store, stats: ChurnStats | None = None) -> list[str]:
    """Problems in one snapshot: over-reserved links, ledgers that are not the sum of the
    stitches' holdings, acknowledged stitches missing, stitches nobody acknowledged."""
    from vnstitch.domain.ledger import LEDGER_KIND, LinkLedger, held_by

    revision, records = store.snapshot(["Link", "Stitch", LEDGER_KIND])
    links = {r.name: r.value for r in records if r.kind == "Link"}
    stitches = {r.name: r.value for r in records if r.kind == "Stitch"}
    ledgers = {r.name: r.value for r in records if r.kind == LEDGER_KIND}
    arcs = {}
    for name, link in links.items():
        a, b = link["spec"]["endpoints"]
        arcs[(a, b)], arcs[(b, a)] = (name, "forward"), (name, "reverse")
    expected: dict = defaultdict(int)
    for value in stitches.values():
        for arc, bps in held_by(value).items():
            expected[arcs[arc]] += bps
    problems = []
    for name, link in links.items():
        ledger = LinkLedger.from_value(name, link["spec"]["endpoints"], link["spec"]["capacity"], ledgers.get(name))
        for direction in ("forward", "reverse"):
            if ledger.residual_bps(direction) < 0:
                problems.append(f"@{revision} link {name} {direction} over-reserved: "
                                f"{ledger.reserved_bps(direction)} > {ledger.capacity_bps:g}")
            if ledger.reserved_bps(direction) != expected[(name, direction)]:
                problems.append(f"@{revision} link {name} {direction}: ledger {ledger.reserved_bps(direction)} "
                                f"!= stitches' holdings {expected[(name, direction)]}")
    if stats is not None:
        lost = sorted(stats.acked - set(stitches))
        unknown = sorted(set(stitches) - stats.acked - stats.deleting)
        if lost:
            problems.append(f"acknowledged stitches lost: {lost[:10]}")
        if unknown:
            problems.append(f"stitches nobody acknowledged: {unknown[:10]}")
    return problems
