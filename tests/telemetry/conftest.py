"""A real Prometheus on 127.0.0.1 (free port, tmp dir) scraping a tiny exporter with known values.

Without the `prometheus` binary the tests skip with the reason, except under CI=true, where a
tier that cannot run fails (tests/tiers.py)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.tiers import require_tier

PROMETHEUS_BINARY = shutil.which("prometheus")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def prometheus_binary() -> str:
    reason = "prometheus is not installed: run scripts/system-deps.sh (Debian package prometheus)"
    require_tier("prometheus", reason if PROMETHEUS_BINARY is None else None)
    return PROMETHEUS_BINARY


@dataclass
class Exporter:
    """An HTTP server answering every GET with `text` (Prometheus text format): /metrics for the
    scraper, and garbage for a client that takes it for Prometheus' API."""

    text: str
    server: ThreadingHTTPServer | None = None
    hits: list = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> "Exporter":
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                exporter.hits.append(self.path)
                body = exporter.text.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class LocalPrometheus:
    binary: str
    workdir: str
    targets: list[str]
    port: int = 0
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 15.0) -> "LocalPrometheus":
        import httpx

        self.port = free_port()
        config = os.path.join(self.workdir, "prometheus.yml")
        with open(config, "w") as handle:
            handle.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                         "scrape_configs:\n  - job_name: exporter\n    static_configs:\n"
                         f"      - targets: [{', '.join(repr(t) for t in self.targets)}]\n")
        self.log = open(os.path.join(self.workdir, "prometheus.log"), "w")
        self.process = subprocess.Popen(
            [self.binary, f"--config.file={config}", f"--storage.tsdb.path={self.workdir}/data",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited {self.process.returncode}: {self.tail()}")
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"prometheus not ready after {timeout_s} s: {self.tail()}")
            time.sleep(0.1)

    def wait_for(self, promql: str, timeout_s: float = 15.0) -> None:
        """Until an instant query answers at least one series (the first scrape landed)."""
        import httpx

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            answer = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=2).json()
            if answer.get("data", {}).get("result"):
                return
            time.sleep(0.2)
        raise RuntimeError(f"no series for {promql} after {timeout_s} s: {self.tail()}")

    def tail(self) -> str:
        self.log.flush()
        with open(self.log.name) as handle:
            return handle.read()[-2000:]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.log.close()


METRICS = """# TYPE vnstitch_pair_rate_bps gauge
vnstitch_pair_rate_bps{src="web",dst="db"} 1.5e6
vnstitch_pair_rate_bps{src="db",dst="web/vm-1"} 250000
vnstitch_pair_rate_bps{src="web",dst="idle"} NaN
# TYPE vnstitch_pair_latency_seconds gauge
vnstitch_pair_latency_seconds{src="web",dst="db"} 0.012
vnstitch_pair_latency_seconds{src="db",dst="lonely"} 0.5
# TYPE vnstitch_pair_loss_ratio gauge
vnstitch_pair_loss_ratio{src="web",dst="db"} 0.001
# TYPE node_bytes gauge
node_bytes{from_pop="ATLA",to_pop="CHIN"} 1000
"""


@pytest.fixture(scope="module")
def exporter():
    running = Exporter(METRICS).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def prometheus(prometheus_binary, exporter, tmp_path_factory):
    server = LocalPrometheus(prometheus_binary, str(tmp_path_factory.mktemp("prometheus")),
                             [exporter.url.removeprefix("http://")])
    server.start()
    try:
        server.wait_for("vnstitch_pair_loss_ratio")
        yield server
    finally:
        server.stop()
