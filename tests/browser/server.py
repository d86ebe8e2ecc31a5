"""A real `vnstitch serve` process on 127.0.0.1 (free port) over a SQLite file with the sim driver, and the
seed the dashboard tests and bench/dashboard.py share: a substrate, two tenants' networks and stitches, and a
forecast policy fed with telemetry so that the proactive loop writes predicted graphs."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from vnstitch.api.auth import create_token
from vnstitch.controller.service import Controller
from vnstitch.store.sqlite import SQLiteStore
from vnstitch.topology.importers import load_topology

XSS_NAME = "<img src=x onerror=alert(1)>"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Served:
    url: str
    tokens: dict[str, str]
    app: object
    store: SQLiteStore
    client: httpx.Client
    server: object = None
    thread: threading.Thread | None = None
    traffic: "Traffic | None" = None

    def call(self, who: str, method: str, path: str, **kwargs) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[who]}", **kwargs.pop("headers", {})}
        return self.client.request(method, self.url + path, headers=headers, **kwargs)

    def ok(self, who: str, method: str, path: str, **kwargs) -> dict:
        answer = self.call(who, method, path, **kwargs)
        assert answer.status_code < 300, f"{method} {path}: {answer.status_code} {answer.text}"
        return answer.json()

    def carry(self, demands_bps: dict[tuple[str, str], float], interval_s: float) -> None:
        """One interval of traffic through the server's simulated data plane (keys 'tenant/network'): the
        reconciler then measures the stitches and the proactive loop reads the pair counters."""
        driver = self.app.state.ctx.worker.reconciler.driver
        present = set(driver.networks)  # a network the reconciler has not built yet carries nothing
        demands_bps = {pair: bps for pair, bps in demands_bps.items() if pair[0] in present and pair[1] in present}
        driver.carry(demands_bps, interval_s=interval_s, default_route=True)

    def stop(self) -> None:
        if self.traffic is not None:
            self.traffic.stop()
        self.client.close()
        self.server.should_exit = True
        self.thread.join(15)
        self.app.state.audit.close()
        self.store.close()


class Traffic:
    """Carries `demands(second)` through the simulator every `period_s` in a thread of its own, as a real data
    plane carries what the tenants send (`second`: whole seconds since the start, so that the counters the
    proactive loop reads each interval hold a steady rate whatever the period)."""

    def __init__(self, served: Served, demands, period_s: float = 0.25):
        self.served, self.demands, self.period_s = served, demands, period_s
        self.started = time.monotonic()
        self.carried = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="traffic", daemon=True)

    def start(self) -> "Traffic":
        self.thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.served.carry(self.demands(int(time.monotonic() - self.started)), self.period_s)
            self.carried += 1
            self._stop.wait(self.period_s)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(10)


def start_server(workdir: Path, topology: str, *, proactive: bool = True, tick_s: float = 0.5,
                 default_capacity_bps: float | None = None, quota_stitches: int = 1000) -> Served:
    """Substrate and tokens written to a fresh SQLite store, then the server (`create_app`, as `vnstitch serve`
    makes it, reconciler and sim driver inside) under uvicorn on 127.0.0.1; returns once it is ready."""
    import uvicorn

    from vnstitch.api.app import create_app
    from vnstitch.api.settings import Settings

    workdir.mkdir(parents=True, exist_ok=True)
    store = SQLiteStore(str(workdir / "state.db"))
    topo = load_topology(topology, **({"default_capacity_bps": default_capacity_bps} if default_capacity_bps else {}))
    Controller(store).apply(list(topo.nodes) + list(topo.links))
    tokens = {"admin": create_token(store, "ops", "admin")[0],
              "acme": create_token(store, "acme", "member")[0],
              "globex": create_token(store, "globex", "member")[0]}
    settings = Settings(tick_s=tick_s, reconcile_min_interval_s=0.2, rate_limit_per_s=0, proactive=proactive,
                        quota_stitches=quota_stitches, driver_state=str(workdir / "sim.json"))
    app = create_app(settings, store=store)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    served = Served(f"http://127.0.0.1:{port}", tokens, app, store, httpx.Client(timeout=30), server, thread)
    deadline = time.monotonic() + 60
    while True:
        try:
            if server.started and served.client.get(served.url + "/readyz").status_code == 200:
                return served
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the server did not become ready within 60 s")
        time.sleep(0.1)


def vnet(name: str, vnid: int, cidr: str, node: str) -> dict:
    return {"kind": "VirtualNetwork", "metadata": {"name": name},
            "spec": {"vnid": vnid, "cidr": cidr,
                     "members": [{"name": "vm-1", "node": node, "address": cidr.replace("0/24", "1")}]}}


def stitch(name: str, src: str, dst: str, bandwidth: float) -> dict:
    return {"kind": "Stitch", "metadata": {"name": name},
            "spec": {"type": "bandwidth", "from": {"network": src}, "to": {"network": dst}, "bandwidth": bandwidth}}


ACME_NETWORKS = [("web", "NYCMng"), ("db", "LOSAng"), ("cache", "CHINng"), ("batch", "ATLAng")]
GLOBEX_NETWORKS = [("shop", "SNVAng"), ("ledger", "WASHng")]


def seed_abilene(served: Served, interval_s: float = 1.0) -> None:
    """acme: four networks, three stitches and a forecast policy over web/db fed with telemetry; globex: two
    networks (one with a hostile name) and a stitch; what the demo's store shows, in a minute of wall time."""
    for i, (name, node) in enumerate(ACME_NETWORKS):
        served.ok("acme", "POST", "/v1/virtualnetworks", json=vnet(name, 100 + i, f"10.{i}.0.0/24", node))
    for i, (name, node) in enumerate(GLOBEX_NETWORKS):
        served.ok("globex", "POST", "/v1/virtualnetworks", json=vnet(name, 200 + i, f"10.{50 + i}.0.0/24", node))
    served.ok("globex", "POST", "/v1/virtualnetworks", json={
        "kind": "VirtualNetwork", "metadata": {"name": "evil", "labels": {}, "annotations": {"note": XSS_NAME}},
        "spec": {"vnid": 299, "cidr": "10.99.0.0/24",
                 "members": [{"name": "vm-1", "node": "KSCYng", "address": "10.99.0.1"}]}})
    served.ok("acme", "POST", "/v1/stitches", json=stitch("web-cache", "web", "cache", 2e9))
    served.ok("acme", "POST", "/v1/stitches", json=stitch("cache-batch", "cache", "batch", 2e9))
    served.ok("acme", "POST", "/v1/stitches", json=stitch("batch-db", "batch", "db", 3e9))
    served.ok("globex", "POST", "/v1/stitches", json=stitch("shop-ledger", "shop", "ledger", 1e9))
    served.ok("acme", "POST", "/v1/forecastpolicies", json={
        "kind": "ForecastPolicy", "metadata": {"name": "fc"},
        "spec": {"networks": ["web", "db"], "pairs": [{"from": "web", "to": "db"}, {"from": "db", "to": "web"}],
                 "interval": f"{interval_s:g}s", "horizon": 2, "minHistory": 1000}})


def abilene_demands(second: int) -> dict[tuple[str, str], float]:
    """acme's web→db rising towards 7 Gbit/s (the loop stitches it), the stitched pairs busy with some jitter;
    globex steady. Keys as the simulator takes them ('tenant/network')."""
    wobble = 1.0 + 0.25 * ((second * 7919) % 11 - 5) / 5  # deterministic ±25 %, so measured values change
    return {("acme/web", "acme/db"): min(7e9, 1e9 + 0.25e9 * second), ("acme/db", "acme/web"): 3e8 * wobble,
            ("acme/web", "acme/cache"): 1.6e9 * wobble, ("acme/cache", "acme/batch"): 1.7e9 * wobble,
            ("acme/batch", "acme/db"): 2.6e9 * wobble, ("globex/shop", "globex/ledger"): 0.8e9 * wobble}


class DroppingProxy:
    """A TCP proxy on 127.0.0.1 in front of the server that can cut every open connection at once, as a
    load balancer restart or a network blip would: what a page's watch streams must survive."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.open: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.refusing = False
        threading.Thread(target=self._accept, name="proxy", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.refusing:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self.lock:
                self.open.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with self.lock:
                    self.open.discard(s)
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def cut(self, refuse: bool = True) -> None:
        """Close every connection now (and, with `refuse`, every new one until `allow()`)."""
        self.refusing = refuse
        with self.lock:
            sockets = list(self.open)
        for s in sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def allow(self) -> None:
        self.refusing = False

    def close(self) -> None:
        self.cut()
        self.listener.close()
