"""Prometheus metrics through prometheus-client: one registry per app holding the request latency
histogram, the process/platform/GC collectors and a collector that reads the controller's mirror
at scrape time (stitches by state, per-link capacity, reserved and measured bandwidth, the worst
measured stitch latency and loss, reconcile and leader-election counters)."""

from __future__ import annotations

from collections import defaultdict

from prometheus_client import GCCollector, Histogram, PlatformCollector, ProcessCollector, generate_latest
from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from vnstitch.domain.ledger import LEDGER_KIND

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # the text format every Prometheus reads
ESTABLISHED = ("ACTIVE", "ADJUSTING", "DEGRADED")  # states whose measures are current


class RequestMetrics:
    """This app's registry: request durations by method, route template and status code, the
    process collectors and, once `watch` is called, the controller state."""

    def __init__(self) -> None:
        self.in_flight = 0  # HTTP requests being served (changed on the event loop only)
        self.registry = CollectorRegistry()  # per app, never the global one: apps in one process stay apart
        self._duration = Histogram("vnstitch_http_request_duration_seconds", "API request latency.",
                                   ["method", "route", "status"], buckets=LATENCY_BUCKETS_S, registry=self.registry)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self._duration.labels(method, route, str(status)).observe(seconds)

    def watch(self, controller, worker=None) -> None:
        """Add the state collector over `controller` (and the reconcile worker, if any)."""
        self.registry.register(StateCollector(controller, worker))
        from vnstitch.forecast.live_metrics import ForecastCollector  # the forecast's discrepancy (issue 11)
        self.registry.register(ForecastCollector(controller))

    def exposition(self) -> bytes:
        """Everything in the registry, collected now, in the text format (CONTENT_TYPE)."""
        return generate_latest(self.registry)


class StateCollector(Collector):
    """Gauges and counters over the current state; aggregates only, no tenant or stitch names."""

    def __init__(self, controller, worker=None) -> None:
        self.controller = controller
        self.worker = worker

    def describe(self):
        return []  # collected at scrape time only: registering must not read the store

    def collect(self):
        yield from _state_families(self.controller)
        from vnstitch.anomaly.engine import metric_families as anomaly_families  # issue 13
        yield from anomaly_families(self.controller)
        if self.worker is not None:
            yield from _worker_families(self.worker)


def _state_families(controller):
    from vnstitch.domain.stitch import State

    controller.refresh()
    cache = controller.cache
    by_state: dict[str, int] = {s.value: 0 for s in State}
    measured: dict[tuple[str, str], float] = defaultdict(float)
    worst: dict[str, float] = {}   # latency (s), loss (0–1): the highest measured by an established stitch
    arc_links = {}
    for record in cache.list("Link"):
        a, b = record.value["spec"]["endpoints"]
        arc_links[(a, b)] = (record.name, "forward")
        arc_links[(b, a)] = (record.name, "reverse")
    for record in cache.list("Stitch"):
        status = record.value.get("status") or {}
        state = status.get("state", "PENDING")
        by_state[state] = by_state.get(state, 0) + 1
        observed = status.get("measured") or {}
        if state in ESTABLISHED:
            for what in ("latency", "loss"):
                if observed.get(what) is not None:
                    worst[what] = max(worst.get(what, 0.0), float(observed[what]))
        throughput = observed.get("throughput")
        path = status.get("path") or []
        if throughput:
            for arc in zip(path, path[1:]):
                if arc in arc_links:
                    measured[arc_links[arc]] += float(throughput)

    stitches = GaugeMetricFamily("vnstitch_stitches", "Stitches by lifecycle state.", labels=["state"])
    for state, count in sorted(by_state.items()):
        stitches.add_metric([state], count)
    capacity = GaugeMetricFamily("vnstitch_link_capacity_bps", "Link capacity per direction (bit/s).",
                                 labels=["link"])
    for record in cache.list("Link"):
        capacity.add_metric([record.name], float(record.value["spec"]["capacity"]))
    reserved = GaugeMetricFamily("vnstitch_link_reserved_bps", "Bandwidth reserved by stitches (bit/s).",
                                 labels=["link", "direction"])
    for record in cache.list(LEDGER_KIND):
        for direction in ("forward", "reverse"):
            reserved.add_metric([record.name, direction], float(record.value.get(direction) or 0))
    crossing = GaugeMetricFamily("vnstitch_link_measured_bps",
                                 "Measured stitch throughput crossing the link (bit/s).", labels=["link", "direction"])
    for (link, direction), bps in sorted(measured.items()):
        crossing.add_metric([link, direction], bps)
    yield from (stitches, capacity, reserved, crossing)
    for what, name, text in (("latency", "vnstitch_stitch_latency_max_seconds", "one-way latency (s)"),
                             ("loss", "vnstitch_stitch_loss_max_ratio", "loss (0-1)")):
        if what in worst:  # absent, not 0, where no stitch has been measured
            yield GaugeMetricFamily(name, f"Highest measured {text} among established stitches.", value=worst[what])


def _worker_families(worker):
    yield CounterMetricFamily("vnstitch_reconcile_passes_total", "Reconcile passes run by the server.",
                              value=worker.passes)
    yield CounterMetricFamily("vnstitch_reconcile_failures_total", "Reconcile passes that raised.",
                              value=worker.failures)
    election = getattr(worker, "election", None)
    if election is not None:
        leader = GaugeMetricFamily("vnstitch_leader", "1 when this replica leads (runs the reconciler), else 0.",
                                   labels=["replica"])
        leader.add_metric([election.identity], int(election.is_leader()))
        yield leader
        yield CounterMetricFamily("vnstitch_leader_transitions_total",
                                  "Times this replica gained or lost leadership.", value=election.transitions)
        yield GaugeMetricFamily("vnstitch_leader_fence_revision",
                                "Create revision of the leader key this replica holds.",
                                value=election.fence_revision or 0)


def state_lines(controller, worker=None) -> list[str]:
    """The state collector's exposition as text lines (what /metrics adds to the request metrics)."""
    registry = CollectorRegistry()
    registry.register(StateCollector(controller, worker))
    return generate_latest(registry).decode().splitlines()
