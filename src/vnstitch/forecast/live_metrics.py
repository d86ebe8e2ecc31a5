"""Prometheus gauges of the live forecast against what happened, read from the store at scrape time:
per policy the rolling NMAE, bias and 80/90% coverage, the intervals in a row outside the bounds, the
model version and retrains; per pair the same rolling figures (from the policy's current predicted graph)."""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

FIGURES = (("nmae", "Rolling one-step NMAE of the forecast (sum |forecast - actual| / sum actual)."),
           ("bias", "Rolling bias of the forecast (sum (forecast - actual) / sum actual; > 0 over-forecasts)."),
           ("coverage80", "Rolling share of actual rates inside the forecast's 80% interval."),
           ("coverage90", "Rolling share of actual rates inside the forecast's 90% interval."))


class ForecastCollector(Collector):
    """The discrepancy gauges over a controller's store (registered by api/metrics.py)."""

    def __init__(self, controller) -> None:
        self.controller = controller

    def describe(self):
        return []  # collected at scrape time only: registering must not read the store

    def collect(self):
        yield from forecast_families(self.controller)


def forecast_families(controller):
    """Metric families for every ForecastPolicy (labels tenant, policy; per pair also src, dst)."""
    controller.refresh()
    overall = {name: GaugeMetricFamily(f"vnstitch_forecast_{name}", text, labels=["tenant", "policy"])
               for name, text in FIGURES}
    per_pair = {name: GaugeMetricFamily(f"vnstitch_forecast_pair_{name}", text, labels=["tenant", "policy", "src", "dst"])
                for name, text in FIGURES}
    breach = GaugeMetricFamily("vnstitch_forecast_breach_intervals",
                               "Intervals in a row with the rolling figures outside the policy's bounds.",
                               labels=["tenant", "policy"])
    adjusted = GaugeMetricFamily("vnstitch_forecast_adjusted_pairs",
                                 "Pairs resized from their observed rate in the last interval.", labels=["tenant", "policy"])
    offset = GaugeMetricFamily("vnstitch_forecast_calibration_offset",
                               "Online calibration: the widths (log space) every pair's band is widened by "
                               "(< 0: narrowed), by band.", labels=["tenant", "policy", "band"])
    version = GaugeMetricFamily("vnstitch_forecast_model_version", "Version of the model the policy forecasts with.",
                                labels=["tenant", "policy", "model"])
    retrains = CounterMetricFamily("vnstitch_forecast_retrains", "Retrains recorded in the policy's status, by decision.",
                                   labels=["tenant", "policy", "decision"])
    for record in controller.cache.list("ForecastPolicy"):
        tenant, name = record.namespace, record.name
        status = record.value.get("status") or {}
        discrepancy = status.get("discrepancy") or {}
        for figure, family in overall.items():
            if discrepancy.get(figure) is not None:
                family.add_metric([tenant, name], float(discrepancy[figure]))
        breach.add_metric([tenant, name], float(discrepancy.get("breachIntervals", 0)))
        adjusted.add_metric([tenant, name], float(len(discrepancy.get("adjusted") or [])))
        for band, theta in sorted(((discrepancy.get("calibration") or {}).get("global") or {}).items()):
            offset.add_metric([tenant, name, band], float(theta))
        model = status.get("model") or {}
        version.add_metric([tenant, name, model.get("name", "")], float(model.get("version", 0)))
        counts: dict[str, int] = {}
        for entry in status.get("retrains") or []:
            counts[entry.get("decision", "")] = counts.get(entry.get("decision", ""), 0) + 1
        for decision, count in sorted(counts.items()):
            retrains.add_metric([tenant, name, decision], count)
        graph = controller.store.get("PredictedGraph", tenant, f"{name}.current")
        for row in ((graph.value.get("discrepancy") or {}).get("rolling") or {}).get("pairs", []) if graph else []:
            for figure, family in per_pair.items():
                if row.get(figure) is not None:
                    family.add_metric([tenant, name, row["from"], row["to"]], float(row[figure]))
    yield from overall.values()
    yield from per_pair.values()
    yield from (breach, adjusted, offset, version, retrains)


__all__ = ["ForecastCollector", "forecast_families"]
