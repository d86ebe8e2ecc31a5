"""`vnstitch serve --proactive --prometheus FILE`: the running controller pulls its telemetry from a real
Prometheus (scraping known values) into the store its loop reads; a bad file is refused at start with
the file and the field."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import make_store, make_tokens
from tests.api.payloads import vnet
from vnstitch.api.app import create_app
from vnstitch.api.settings import Settings
from vnstitch.errors import InvalidInput
from vnstitch.telemetry.prometheus import load_source


def _config(tmp_path, url: str, body: str):
    path = tmp_path / "prometheus.yaml"
    path.write_text(f"url: {url}\n" + body)
    return str(path)


QUERIES = """queries:
  - tenant: acme
    promql: vnstitch_pair_rate_bps
  - {tenant: acme, promql: vnstitch_pair_latency_seconds, field: latency_s}
"""


def test_the_server_pulls_prometheus_telemetry_into_the_loops_store(prometheus, tmp_path):
    store = make_store(tmp_path / "s")
    tokens = make_tokens(store)
    settings = Settings(rate_limit_per_s=0, proactive=True, tick_s=0.2, reconcile_min_interval_s=0.05,
                        telemetry_url="memory://", prometheus_config=_config(tmp_path, prometheus.url, QUERIES))
    app = create_app(settings, store=store)
    with TestClient(app) as client:
        headers = {"Authorization": f"Bearer {tokens['member']}"}
        for doc in (vnet("web", 100, "10.0.0.0/24", [("vm-1", "NYCMng", "10.0.0.1")]),
                    vnet("db", 101, "10.1.0.0/24", [("d1", "LOSAng", "10.1.0.1")])):
            client.post("/v1/virtualnetworks", json=doc, headers=headers).raise_for_status()
        client.post("/v1/forecastpolicies", headers=headers, json={
            "kind": "ForecastPolicy", "metadata": {"name": "fc"},
            "spec": {"networks": ["web", "db"], "interval": "1s"}}).raise_for_status()
        deadline = time.monotonic() + 20
        while True:
            items = client.get("/v1/telemetry", headers=headers).json()["items"]
            got = {(s["from"], s["to"]): s for s in items}
            status = client.get("/v1/forecastpolicies/fc", headers=headers).json()["status"]
            if ("web", "db") in got and status.get("lastStep") is not None:
                break
            assert time.monotonic() < deadline, items
            time.sleep(0.2)
        assert got[("web", "db")]["rateBps"] == 1.5e6 and got[("web", "db")]["latency"] == 0.012
        assert status.get("telemetry") == "ok", status


@pytest.mark.parametrize("body, message", [
    ("queries: []\n", "queries"),
    ("queries:\n  - {tenant: acme}\n", "promql"),
    ("queries:\n  - {tenant: acme, promql: x, field: bytes}\n", "unknown sample field 'bytes'"),
    ("queries:\n  - {tenant: acme, promql: x, sclae: 8}\n", "sclae"),
])
def test_a_bad_configuration_names_the_file_and_the_field(tmp_path, body, message):
    path = _config(tmp_path, "http://127.0.0.1:9", body)
    with pytest.raises(InvalidInput) as caught:
        load_source(path)
    assert message in f"{caught.value.message} {caught.value.field}", caught.value.message
    assert "prometheus.yaml" in caught.value.message or message == "unknown sample field 'bytes'"


def test_serve_refuses_prometheus_without_the_loop(tmp_path, capsys):
    from vnstitch.cli.main import main

    path = _config(tmp_path, "http://127.0.0.1:9", QUERIES)
    assert main(["--store", f"sqlite://{tmp_path}/s.db", "--create", "serve", "--prometheus", path]) == 1
    assert "give --proactive too" in capsys.readouterr().err
