"""PrometheusSource against a real Prometheus scraping known values; down or garbage → TelemetryUnavailable."""

from __future__ import annotations

import time

import pytest

from vnstitch.telemetry import TelemetrySource, TelemetryUnavailable, validate_batch
from vnstitch.telemetry.base import CAPABILITIES, PULL
from vnstitch.telemetry.prometheus import PrometheusSource, PromQuery
from vnstitch.telemetry.store import MemoryTelemetryStore
from vnstitch.telemetry.validate import endpoints_of
from tests.telemetry.conftest import LocalPrometheus

QUERIES = [PromQuery("acme", "vnstitch_pair_rate_bps"),
           PromQuery("acme", "vnstitch_pair_latency_seconds", field="latency_s"),
           PromQuery("acme", "vnstitch_pair_loss_ratio", field="loss")]


def test_the_scraped_values_come_back_as_samples_and_land_in_the_store(prometheus):
    source = PrometheusSource(prometheus.url, QUERIES)
    assert isinstance(source, TelemetrySource) and PULL in source.capabilities <= CAPABILITIES
    now = time.time()
    samples = source.collect(now)
    got = {(s.tenant, s.src, s.dst): s for s in samples}
    assert set(got) == {("acme", "web", "db"), ("acme", "db", "web/vm-1")}  # NaN is a gap; latency alone is no sample
    web_db = got[("acme", "web", "db")]
    assert web_db.rate_bps == 1.5e6 and web_db.latency_s == 0.012 and web_db.loss == 0.001
    assert abs(web_db.time - now) < 1e-3
    assert got[("acme", "db", "web/vm-1")].rate_bps == 250000 and got[("acme", "db", "web/vm-1")].latency_s is None
    assert source.skipped == 2
    known = {"acme": endpoints_of({"web": ["vm-1"], "db": []})}
    store = MemoryTelemetryStore()
    store.insert(validate_batch(samples, now, known))
    assert store.rates("acme", [("web", "db")], end=now, steps=1, interval_s=60)[0, 0] == 1.5e6


def test_labels_and_units_are_mapped_per_query(prometheus):
    query = PromQuery("acme", "node_bytes", src_label="from_pop", dst_label="to_pop", scale=8,
                      names={"ATLA": "pop-atla"})
    [sample] = PrometheusSource(prometheus.url, [query]).collect(time.time())
    assert (sample.src, sample.dst, sample.rate_bps) == ("pop-atla", "CHIN", 8000)


def test_a_refused_query_or_missing_labels_or_a_garbage_answer_say_why(prometheus, exporter):
    with pytest.raises(TelemetryUnavailable, match=r"refused query 'rate\(\(' \(HTTP 400\): bad_data"):
        PrometheusSource(prometheus.url, [PromQuery("acme", "rate((")]).collect(time.time())
    with pytest.raises(TelemetryUnavailable, match="without label 'src'"):
        PrometheusSource(prometheus.url, [PromQuery("acme", "node_bytes")]).collect(time.time())
    with pytest.raises(TelemetryUnavailable, match="expected 'vector'"):
        PrometheusSource(prometheus.url, [PromQuery("acme", "vnstitch_pair_rate_bps[5s]")]).collect(time.time())
    # an HTTP server that is not Prometheus: the exporter answers its text format to every path
    with pytest.raises(TelemetryUnavailable, match=r"not a Prometheus instant vector \(not JSON\): b'# TYPE"):
        PrometheusSource(exporter.url, QUERIES).collect(time.time())


def test_a_stopped_server_is_unavailable_not_a_crash(prometheus_binary, tmp_path):
    server = LocalPrometheus(prometheus_binary, str(tmp_path), []).start()
    source = PrometheusSource(server.url, QUERIES, timeout_s=2)
    try:
        assert source.collect(time.time()) == []  # up, and nothing to report
    finally:
        server.stop()
    started = time.monotonic()
    with pytest.raises(TelemetryUnavailable, match=f"prometheus at {server.url} is unreachable"):
        source.collect(time.time())
    assert time.monotonic() - started < 3
