"""Prometheus text exposition, written by hand: request latency histogram plus gauges
computed from the controller's mirror at scrape time (stitches by state, per-link
reserved and measured bandwidth, the worst measured stitch latency and loss)."""

from __future__ import annotations

import threading
from collections import defaultdict

from vnstitch.domain.ledger import LEDGER_KIND

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _labels(**labels: str) -> str:
    def esc(v: str) -> str:
        return str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return "{" + ",".join(f'{k}="{esc(v)}"' for k, v in labels.items()) + "}"


class RequestMetrics:
    """Histogram of request durations by method, route template and status code."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str, str], list] = {}  # → [bucket counts..., count, sum]
        self.in_flight = 0  # HTTP requests being served (changed on the event loop only)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, str(status))
        with self._lock:
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = [0] * len(LATENCY_BUCKETS_S) + [0, 0.0]
            for i, bound in enumerate(LATENCY_BUCKETS_S):
                if seconds <= bound:
                    series[i] += 1
            series[-2] += 1
            series[-1] += seconds

    def render(self) -> list[str]:
        name = "vnstitch_http_request_duration_seconds"
        lines = [f"# HELP {name} API request latency.", f"# TYPE {name} histogram"]
        with self._lock:
            items = sorted((k, list(v)) for k, v in self._series.items())
        for (method, route, status), series in items:
            for bound, count in zip(LATENCY_BUCKETS_S, series):
                lines.append(f"{name}_bucket{_labels(method=method, route=route, status=status, le=f'{bound:g}')} {count}")
            lines.append(f"{name}_bucket{_labels(method=method, route=route, status=status, le='+Inf')} {series[-2]}")
            lines.append(f"{name}_count{_labels(method=method, route=route, status=status)} {series[-2]}")
            lines.append(f"{name}_sum{_labels(method=method, route=route, status=status)} {series[-1]:.6f}")
        return lines


def state_lines(controller, worker=None) -> list[str]:
    """Gauges over the current state; aggregates only, no tenant or stitch names."""
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
        by_state[status.get("state", "PENDING")] = by_state.get(status.get("state", "PENDING"), 0) + 1
        throughput = (status.get("measured") or {}).get("throughput")
        if status.get("state") in ("ACTIVE", "ADJUSTING", "DEGRADED"):  # established: its measures are current
            for what in ("latency", "loss"):
                value = (status.get("measured") or {}).get(what)
                if value is not None:
                    worst[what] = max(worst.get(what, 0.0), float(value))
        path = status.get("path") or []
        if throughput:
            for arc in zip(path, path[1:]):
                if arc in arc_links:
                    measured[arc_links[arc]] += float(throughput)
    lines = ["# HELP vnstitch_stitches Stitches by lifecycle state.", "# TYPE vnstitch_stitches gauge"]
    lines += [f"vnstitch_stitches{_labels(state=state)} {count}" for state, count in sorted(by_state.items())]
    lines += ["# HELP vnstitch_link_capacity_bps Link capacity per direction (bit/s).",
              "# TYPE vnstitch_link_capacity_bps gauge"]
    lines += [f"vnstitch_link_capacity_bps{_labels(link=r.name)} {float(r.value['spec']['capacity']):g}"
              for r in cache.list("Link")]
    lines += ["# HELP vnstitch_link_reserved_bps Bandwidth reserved by stitches (bit/s).",
              "# TYPE vnstitch_link_reserved_bps gauge"]
    for record in cache.list(LEDGER_KIND):
        for direction in ("forward", "reverse"):
            total = float(record.value.get(direction) or 0)
            lines.append(f"vnstitch_link_reserved_bps{_labels(link=record.name, direction=direction)} {total:g}")
    lines += ["# HELP vnstitch_link_measured_bps Measured stitch throughput crossing the link (bit/s).",
              "# TYPE vnstitch_link_measured_bps gauge"]
    lines += [f"vnstitch_link_measured_bps{_labels(link=link, direction=d)} {bps:g}"
              for (link, d), bps in sorted(measured.items())]
    for what, name, text in (("latency", "vnstitch_stitch_latency_max_seconds", "one-way latency (s)"),
                             ("loss", "vnstitch_stitch_loss_max_ratio", "loss (0-1)")):
        if what in worst:  # absent, not 0, where no stitch has been measured
            lines += [f"# HELP {name} Highest measured {text} among established stitches.",
                      f"# TYPE {name} gauge", f"{name} {worst[what]:g}"]
    if worker is not None:
        lines += ["# HELP vnstitch_reconcile_passes_total Reconcile passes run by the server.",
                  "# TYPE vnstitch_reconcile_passes_total counter",
                  f"vnstitch_reconcile_passes_total {worker.passes}",
                  "# HELP vnstitch_reconcile_failures_total Reconcile passes that raised.",
                  "# TYPE vnstitch_reconcile_failures_total counter",
                  f"vnstitch_reconcile_failures_total {worker.failures}"]
    return lines
