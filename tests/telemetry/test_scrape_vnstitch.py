"""A real Prometheus scrapes a real vnstitch server's /metrics and reads every label back unchanged."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.api.conftest import free_port, make_store
from tests.telemetry.conftest import LocalPrometheus

ODD_REPLICA = 'rack "7" \\ host\nsecond line'   # a quote, a backslash and a newline in one label value


@pytest.fixture
def server(tmp_path):
    import uvicorn

    from vnstitch.api.app import create_app
    from vnstitch.api.settings import Settings

    app = create_app(Settings(rate_limit_per_s=0, dev=True, tick_s=0.5, leader_election=True,
                              replica_id=ODD_REPLICA, leader_ttl_s=5), store=make_store(tmp_path))
    port = free_port()
    running = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not running.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"127.0.0.1:{port}"
    running.should_exit = True
    thread.join(10)


def query(prometheus: LocalPrometheus, promql: str) -> list[dict]:
    answer = httpx.get(f"{prometheus.url}/api/v1/query", params={"query": promql}, timeout=5).json()
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def test_prometheus_scrapes_vnstitch_metrics(prometheus_binary, server, tmp_path):
    prometheus = LocalPrometheus(prometheus_binary, str(tmp_path / "prometheus"), [server])
    (tmp_path / "prometheus").mkdir()
    prometheus.start()
    try:
        prometheus.wait_for("vnstitch_leader")
        assert [float(r["value"][1]) for r in query(prometheus, "up")] == [1.0]
        assert [r["metric"]["replica"] for r in query(prometheus, "vnstitch_leader")] == [ODD_REPLICA]
        assert query(prometheus, "process_cpu_seconds_total")
        links = query(prometheus, "vnstitch_link_capacity_bps")
        assert len(links) > 10 and all(float(r["value"][1]) > 0 for r in links)
        prometheus.wait_for('vnstitch_http_request_duration_seconds_bucket{route="/metrics",le="+Inf"}')  # 2nd scrape
    finally:
        prometheus.stop()
