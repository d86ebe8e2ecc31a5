"""Replay real traffic matrices through the controller and the simulator under four strategies.

Every PoP of the topology hosts one virtual network; pair (i, j) is the traffic from PoP i's
network to PoP j's. Each 5-minute interval: the strategy decides stitches (forecast → allocate),
the controller admits them (path + atomic reservation), the reconciler applies them to the
simulator driver, and the simulator carries that interval's real traffic matrix. Unstitched
traffic follows the shortest path as best effort; stitched traffic gets its reservation.

Strategies: static (shortest paths only), reactive (stitch after congestion was observed in
the previous interval), proactive (forecast quantiles), oracle (the next interval's real
demand, known in advance).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from vnstitch.controller.reconciler import Reconciler
from vnstitch.controller.service import Controller
from vnstitch.domain.registry import parse_resource
from vnstitch.drivers.sim import SimDriver
from vnstitch.errors import InvalidInput
from vnstitch.experiments.demo import DEMO_DAY
from vnstitch.pathing.paths import PathFinder
from vnstitch.planning.allocator import AllocatorConfig
from vnstitch.store.memory import MemoryStore

STRATEGIES = ("static", "reactive", "proactive", "oracle")
TENANT = "backbone"
STEPS_PER_DAY = 288


@dataclass
class ReplayConfig:
    scale: float = 10.0
    start_step: int = DEMO_DAY * STEPS_PER_DAY  # first replayed interval: the demo's day, not used for tuning
    steps: int = STEPS_PER_DAY                 # one day
    horizon: int = 2                           # forecast intervals ahead (10 minutes)
    quantile: float = 0.9
    strategies: tuple[str, ...] = STRATEGIES
    allocator: AllocatorConfig = field(default_factory=AllocatorConfig)
    sla_latency_factor: float = 1.5            # a pair's SLA: ≤ 1.5 × its shortest-path latency + 5 ms
    sla_latency_slack_s: float = 0.005
    interval_s: float = 300.0                  # the data's own interval
    refine: bool = False                       # the loop resizes from the observed rate when the forecast misses
    calibrate: bool | None = None              # online calibration of the published bands (None: as refine)
    # an injected regime shift: (source node, destination node, first absolute step, factor[, kind[, to]]),
    # see shifted(); None: none
    shift: tuple | None = None


@dataclass
class StrategyResult:
    name: str
    overloaded_link_intervals: int = 0
    dropped_mbit: float = 0.0
    sla_violations: int = 0
    reserved_bps_intervals: float = 0.0
    used_bps_intervals: float = 0.0
    established: int = 0
    terminated: int = 0
    adjusted: int = 0
    loop_ms: list[float] = field(default_factory=list)
    max_utilisation: list[float] = field(default_factory=list)
    reserved_series: dict[str, list[float]] = field(default_factory=dict)
    refused: int = 0
    overloaded_series: list[int] = field(default_factory=list)      # overloaded link-intervals per interval
    coverage90_series: list[float | None] = field(default_factory=list)  # the loop's rolling 90% coverage
    pair_coverage90_series: list[float | None] = field(default_factory=list)  # of the shifted pair (shift only)
    # per replayed day (of the data's interval): [hits, scored] of the published 80% and 90% bands
    band_hits: dict[str, list[list[int]]] = field(default_factory=lambda: {"80": [], "90": []})
    # per replayed day: [reserved, used] bit/s-intervals of the held stitches, and overloaded link-intervals
    day_reserved: list[list[float]] = field(default_factory=list)
    day_overloaded: list[int] = field(default_factory=list)

    def coverage_by_day(self) -> dict[str, list[float | None]]:
        return {band: [round(h / n, 4) if n else None for h, n in days] for band, days in self.band_hits.items()}

    def summary(self, hours: float) -> dict:
        loop = np.array(self.loop_ms or [0.0])
        return {
            "overloaded_link_intervals": self.overloaded_link_intervals,
            "dropped_mbit": round(self.dropped_mbit, 1),
            "sla_violations": self.sla_violations,
            "reserved_over_used": round(self.reserved_bps_intervals / self.used_bps_intervals, 3)
            if self.used_bps_intervals else None,
            "stitch_churn_per_hour": round((self.established + self.terminated) / hours, 2),
            "stitch_resizes_per_hour": round(self.adjusted / hours, 2),  # resized or rerouted in place
            "stitches_established": self.established,
            "stitches_terminated": self.terminated,
            "stitches_adjusted": self.adjusted,
            "admission_refusals": self.refused,
            "loop_ms_p50": round(float(np.percentile(loop, 50)), 2),
            "loop_ms_p99": round(float(np.percentile(loop, 99)), 2),
            **({"coverage_by_day": self.coverage_by_day()} if any(self.band_hits.values()) else {}),
            **({"reserved_over_used_by_day": [round(r / u, 3) if u else None for r, u in self.day_reserved],
                "overloaded_by_day": self.day_overloaded} if len(self.day_reserved) > 1 else {}),
        }


class World:
    """A controller over an in-memory store, a reconciler, the simulator and a telemetry store: one per
    strategy. The strategy is a ForecastPolicy run by the controller's proactive loop."""

    def __init__(self, topology, nodes: list[str], store=None):
        from vnstitch.telemetry.store import MemoryTelemetryStore

        self.store = store or MemoryStore()
        self.controller = Controller(self.store, clock=lambda: self.now)
        self.now = 0.0
        self.controller.apply(list(topology.nodes) + list(topology.links))
        networks = []
        for i, node in enumerate(nodes):
            networks.append(parse_resource({
                "kind": "VirtualNetwork", "metadata": {"name": network_name(node), "tenant": TENANT},
                "spec": {"vnid": 100 + i, "cidr": f"10.{i}.0.0/16",
                         "members": [{"name": f"gw-{node}", "node": node, "address": f"10.{i}.0.1"}]}}))
        self.controller.apply(networks)
        self.sim = SimDriver(topology=topology.links)
        self.reconciler = Reconciler(self.controller, self.sim)
        self.reconciler.reconcile_once(self.now)
        self.finder = PathFinder(topology.nodes, topology.links)
        self.telemetry = MemoryTelemetryStore()


def network_name(node: str) -> str:
    return f"pop-{node}"


def node_of(network: str) -> str:
    return network[len("pop-"):]


POLICY = "replay"
REACTIVE_BASIS = "last interval's rate"
REASON_ANNOTATION = "vnstitch.io/reason"


def _policy_doc(name: str, config: ReplayConfig, context_steps: int):
    alloc = config.allocator
    return parse_resource({
        "kind": "ForecastPolicy", "metadata": {"name": POLICY, "tenant": TENANT},
        "spec": {"interval": config.interval_s, "horizon": config.horizon, "quantile": config.quantile,
                 "mode": "off" if name == "static" else "auto",
                 # reactive: only congestion actually observed counts, sized to what was seen
                 "congestionThreshold": 1.0 if name == "reactive" else alloc.congestion_threshold,
                 "terminateAfter": alloc.terminate_after, "priority": 10,
                 "trainingWindow": max(context_steps, 2) * config.interval_s,
                 "latencyFactor": config.sla_latency_factor, "latencySlack": config.sla_latency_slack_s,
                 # the replay's figures are without refinement unless asked (its predictor is not retrained)
                 "refinement": {"adjust": config.refine, "correct": config.refine, "retrain": False,
                                "calibrate": config.refine if config.calibrate is None else config.calibrate}}})


def _view(name: str, demand_mbps: np.ndarray, index: dict[str, int], config: ReplayConfig, predict):
    """The strategy as the loop's predictor: (mean, upper) bit/s per pair for the coming horizon."""
    def predictor(policy, pairs, history_bps, observed, end):
        step = int(round(end / config.interval_s))
        rows = [index[node_of(a)] for a, _ in pairs], [index[node_of(b)] for _, b in pairs]
        if name == "reactive":  # what the last interval's telemetry saw
            seen = np.nan_to_num(history_bps[-1], nan=0.0)
            return dict(zip(pairs, seen)), dict(zip(pairs, seen))
        if name == "oracle":  # the next interval's real demand, known in advance
            future = demand_mbps[step:step + config.horizon]
            mean, upper = future.mean(axis=0), future.max(axis=0)
        else:
            predicted = predict(step)
            mean, upper = predicted[0], predicted[1]
            if len(predicted) > 2:  # the next interval's point and 80/90% bands: the loop scores them
                bands = {p: {key: float(values[rows][k] * 1e6) for key, values in predicted[2].items()}
                         for k, p in enumerate(pairs)}
                return (dict(zip(pairs, (mean[rows] * 1e6).tolist())), dict(zip(pairs, (upper[rows] * 1e6).tolist())),
                        bands)
        return (dict(zip(pairs, (mean[rows] * 1e6).tolist())), dict(zip(pairs, (upper[rows] * 1e6).tolist())))
    if name == "reactive":  # its decisions' reasons name what it acts on: no forecast
        predictor.demand_label = REACTIVE_BASIS
    return predictor


def run_strategy(name: str, demand_mbps: np.ndarray, nodes: list[str], topology, config: ReplayConfig,
                 predict: Callable[[int], tuple[np.ndarray, np.ndarray]] | None = None,
                 progress: Callable[[], None] | None = None, store=None,
                 decision_log: Callable[[dict], None] | None = None, timestamps=None) -> StrategyResult:
    """Replay `config.steps` intervals from `config.start_step` of `demand_mbps` (T, n, n), already scaled,
    through the controller's proactive loop: the simulator carries each interval's traffic, what the pairs
    offered goes into the telemetry store, and the loop forecasts (this strategy's view) and stitches."""
    from vnstitch.controller.proactive import ProactiveLoop
    from vnstitch.telemetry.base import Sample

    world = World(topology, nodes, store=store)
    result = StrategyResult(name)
    pairs = [(a, b) for a in nodes for b in nodes if a != b]
    index = {node: i for i, node in enumerate(nodes)}
    interval = config.interval_s
    default_paths = {pair: world.sim.default_path(*pair) for pair in pairs}
    latency_bound = {pair: config.sla_latency_factor * world.sim.path_latency(default_paths[pair])
                     + config.sla_latency_slack_s for pair in pairs}
    context = 2
    world.controller.apply([_policy_doc(name, config, context)])
    loop = ProactiveLoop(world.controller, world.telemetry, train=False,
                         predictor=_view(name, demand_mbps, index, config, predict))

    def report_telemetry(step: int) -> None:
        """What every pair offered in interval `step`, as the simulator's counters would report it."""
        world.telemetry.insert([Sample(TENANT, network_name(a), network_name(b), (step + 1) * interval,
                                       float(demand_mbps[step, index[a], index[b]]) * 1e6) for a, b in pairs])

    for back in range(context, 0, -1):
        if config.start_step - back >= 0:
            report_telemetry(config.start_step - back)
    for t in range(config.steps):
        step = config.start_step + t
        world.now = step * interval
        started = time.perf_counter()
        (run,) = loop.step(world.now)
        world.reconciler.reconcile_once(world.now)
        result.loop_ms.append((time.perf_counter() - started) * 1e3)
        result.established += run.established
        result.adjusted += run.adjusted
        result.terminated += run.terminated
        result.refused += len(run.refused)
        if decision_log:
            for d in run.decisions:
                decision_log({"strategy": name, "step": step, "time": str(timestamps[step] if timestamps is not None
                                                                  else world_time(step, interval)),
                              "action": d.action, "from": node_of(d.pair[0]), "to": node_of(d.pair[1]),
                              "bandwidth_bps": round(d.bandwidth_bps),
                              "parts": [{"path": list(p), "bandwidth_bps": round(b)} for p, b in d.all_parts]
                              if d.action != "terminate" else [],
                              "forecast_mean_bps": round(d.forecast_mean_bps),
                              "forecast_upper_bps": round(d.forecast_upper_bps), "reason": d.reason})
        demands = {(f"{TENANT}/{network_name(a)}", f"{TENANT}/{network_name(b)}"):
                   float(demand_mbps[step, index[a], index[b]]) * 1e6 for a, b in pairs}
        report = world.sim.carry(demands, interval_s=interval, default_route=True)
        report_telemetry(step)
        overloaded = report.overloaded()
        result.overloaded_link_intervals += len(overloaded)
        result.overloaded_series.append(len(overloaded))
        status = (world.controller.store.get("ForecastPolicy", TENANT, POLICY).value.get("status") or {})
        result.coverage90_series.append((status.get("discrepancy") or {}).get("coverage90"))
        graph = world.controller.store.get("PredictedGraph", TENANT, f"{POLICY}.current")
        scored = ((graph.value.get("discrepancy") or {}).get("pairs") or []) if graph else []
        day = t // max(1, round(86400 / interval))
        for band, days in result.band_hits.items():  # this interval's actuals against last interval's bands
            hits = [r[f"in{band}"] for r in scored if r.get(f"in{band}") is not None]
            if hits:
                while len(days) <= day:
                    days.append([0, 0])
                days[day][0] += sum(hits)
                days[day][1] += len(hits)
        if config.shift is not None:  # the shifted pair's own rolling 90% coverage
            rolling = ((graph.value.get("discrepancy") or {}).get("rolling") or {}).get("pairs", []) if graph else []
            moved_to = config.shift[5] if len(config.shift) > 5 and config.shift[4] == "move" else ""
            shifted_pair = (network_name(config.shift[0]), network_name(moved_to or config.shift[1]))
            result.pair_coverage90_series.append(next((r["coverage90"] for r in rolling
                                                       if (r["from"], r["to"]) == shifted_pair), None))
        result.dropped_mbit += sum(report.dropped_bps.values()) * interval / 1e6
        result.max_utilisation.append(max(load / report.link_capacity_bps[arc] for arc, load in report.link_load_bps.items()))
        for (src, dst), offered in demands.items():
            pair = (node_of(src.split("/")[1]), node_of(dst.split("/")[1]))
            delivered = report.delivered_bps.get((src, dst), 0.0)
            route = report.route.get((src, dst), (None, default_paths[pair]))[1]
            if delivered < offered * 0.999 or world.sim.path_latency(route) > latency_bound[pair]:
                result.sla_violations += 1
        world.controller.refresh()
        while len(result.day_reserved) <= day:
            result.day_reserved.append([0.0, 0.0])
            result.day_overloaded.append(0)
        result.day_overloaded[day] += len(overloaded)
        for (a, b), held in loop.held(TENANT, POLICY).items():
            pair = (node_of(a), node_of(b))
            result.reserved_bps_intervals += held.total_bps
            result.used_bps_intervals += float(demand_mbps[step, index[pair[0]], index[pair[1]]]) * 1e6
            result.day_reserved[day][0] += held.total_bps
            result.day_reserved[day][1] += float(demand_mbps[step, index[pair[0]], index[pair[1]]]) * 1e6
            label = f"{pair[0]}->{pair[1]}"
            series = result.reserved_series.setdefault(label, [0.0] * config.steps)
            series[t] = held.total_bps / 1e6
        if progress:
            progress()
    return result


def world_time(step: int, interval_s: float = 300.0) -> np.datetime64:
    """Wall time of a bundled Abilene interval (2004-03-01 00:00 + interval × step)."""
    return np.datetime64("2004-03-01T00:00") + np.timedelta64(int(interval_s * step), "s")


def make_forecast_predictor(model, series, nodes: list[str], config: ReplayConfig, scale: float):
    """predict(step) → (mean, upper) (n, n) Mbit/s from a fitted forecaster, rolling origin, no refit."""
    context = max(model.context_steps, model.min_history_steps)
    index = {node: i for i, node in enumerate(nodes)}
    where = [(j, index[a], index[b]) for j, (a, b) in enumerate(series.pairs) if a in index and b in index]
    cols, rows, to = (np.array(x, dtype=int) for x in zip(*where))

    def predict(step: int) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        start = max(0, step - context)
        forecast = model.predict(series.values_mbps[start:step], horizon=config.horizon,
                                 timestamps=series.timestamps[start:step], observed=series.observed[start:step])
        mean, upper = np.zeros((len(nodes), len(nodes))), np.zeros((len(nodes), len(nodes)))
        mean[rows, to] = forecast.mean.max(axis=1)[cols] * scale
        upper[rows, to] = forecast.quantile(config.quantile).max(axis=1)[cols] * scale
        bands = {}  # the next interval's point and 80/90% bands (Mbit/s, scaled), for the loop's discrepancy
        for key, values in (("pointBps", forecast.mean[:, 0]), ("lo80Bps", forecast.quantile(0.1)[:, 0]),
                            ("hi80Bps", forecast.quantile(0.9)[:, 0]), ("lo90Bps", forecast.quantile(0.05)[:, 0]),
                            ("hi90Bps", forecast.quantile(0.95)[:, 0])):
            bands[key] = np.zeros((len(nodes), len(nodes)))
            bands[key][rows, to] = np.maximum(values[cols], 0.0) * scale
        return mean, upper, bands

    return predict


# A small recurrent model for the control loop: 3 steps ahead, short window, few samples — it
# trains in minutes on 2 CPU cores. `vnstitch forecast train` builds the full-size ones.
SMALL_NEURAL = {"max_horizon": 3, "window": 36, "min_window": 12, "hidden_size": 32, "head_size": 64,
                "epochs": 4, "samples_per_epoch": 12_000, "batch_size": 256}


def train_forecaster(series, end_step: int, model_name: str = "gru", model_path: str | None = None,
                     epochs: int | None = None, log=print):
    """Fit (or load) a forecaster on the steps before `end_step`: the replayed window stays unseen."""
    from vnstitch.forecast import get_forecaster, load_forecaster

    if model_path and Path(model_path).exists():
        try:
            model = load_forecaster(model_path)
            log(f"loaded forecaster from {model_path}")
            return model
        except (ValueError, KeyError, OSError) as exc:  # an older or foreign file: train afresh
            log(f"cannot use the cached model {model_path} ({exc}); training a new one")
    kwargs = {}
    if model_name in ("gru", "lstm"):
        kwargs = dict(SMALL_NEURAL)
        if epochs:
            kwargs["epochs"] = epochs
    model = get_forecaster(model_name, **kwargs)
    started = time.perf_counter()
    days = end_step * series.interval_seconds / 86400
    log(f"training {model_name} on {end_step} intervals ({days:.1f} days) before the replayed window…")
    model.fit(series.values_mbps[:end_step], series.timestamps[:end_step], series.pairs)
    log(f"trained in {time.perf_counter() - started:.0f} s")
    if model_path:
        Path(model_path).parent.mkdir(parents=True, exist_ok=True)
        model.save(model_path)
    return model


def aggregate(series, factor: int):
    """Mean rates over blocks of `factor` intervals (e.g. 5-minute matrices → 15-minute ones)."""
    from vnstitch.forecast.series import TrafficSeries

    if factor == 1:
        return series
    steps = series.n_steps // factor
    if steps < 2:
        raise InvalidInput(f"the data has {series.n_steps} intervals: too few to aggregate by {factor}",
                           field="--aggregate")
    values = series.values_mbps[:steps * factor].reshape(steps, factor, -1)
    observed = series.observed[:steps * factor].reshape(steps, factor, -1)
    counts = observed.sum(axis=1)
    means = np.where(counts > 0, (values * observed).sum(axis=1) / np.maximum(counts, 1), 0.0)
    return TrafficSeries.from_array(means, series.timestamps[:steps * factor:factor], series.pairs, counts > 0,
                                    series.interval_seconds * factor)


def demand_cube(series, nodes: list[str]) -> np.ndarray:
    """(steps, n, n) Mbit/s over `nodes`; a pair the data does not carry is 0, a missing value 0."""
    n = len(nodes)
    index = {node: i for i, node in enumerate(nodes)}
    cube = np.zeros((series.n_steps, n, n))
    values = np.where(series.observed, series.values_mbps, 0.0)
    for j, (a, b) in enumerate(series.pairs):
        if a in index and b in index:
            cube[:, index[a], index[b]] = values[:, j]
    return cube


def load_inputs(dataset: str = "abilene", topology: str = "abilene", nodes: str | None = None,
                interval: float | None = None, default_capacity_bps: float | None = None, aggregate_s: float | None = None):
    """The traffic series and the substrate a replay runs on: the bundled Abilene pair, or any file the
    loaders and importers read. Every node that carries traffic must be a substrate node."""
    from vnstitch.data import data_path
    from vnstitch.forecast import load_dataset
    from vnstitch.forecast.datasets import load_hist
    from vnstitch.forecast.errors import ForecastInputError
    from vnstitch.topology.importers import load_topology

    try:
        if dataset.endswith(".hist"):
            if not nodes or not interval:
                raise InvalidInput("a .hist file needs --nodes A,B,… and --interval", field="--nodes")
            series = load_hist(dataset, [x.strip() for x in nodes.split(",") if x.strip()], interval)
        elif dataset == "abilene" or "." in Path(dataset).name or Path(dataset).exists():
            series = load_dataset(dataset)
        else:
            raise InvalidInput(f"unknown dataset '{dataset}' (bundled: abilene; or a .npz, .csv, .parquet, "
                               "SNDlib .xml, .hist file)", field="--dataset")
    except ForecastInputError as exc:
        raise InvalidInput(str(exc), field="--dataset") from None
    if aggregate_s:
        factor = aggregate_s / series.interval_seconds
        if factor < 1 or abs(factor - round(factor)) > 1e-9:
            raise InvalidInput(f"--aggregate must be a multiple of the data's interval ({series.interval_seconds:g} s)",
                               field="--aggregate")
        series = aggregate(series, int(round(factor)))
    substrate = load_topology(data_path("abilene.xml") if topology == "abilene" else topology,
                              default_capacity_bps=default_capacity_bps)
    known = {node.name for node in substrate.nodes}
    carried = [node for node in series.nodes() if node in known]
    missing = sorted(set(series.nodes()) - known)
    if missing:
        raise InvalidInput(f"{len(missing)} node(s) of the traffic data are not in the topology: "
                           f"{', '.join(missing[:5])}", field="--topology")
    return series, substrate, carried


def run_replay(config: ReplayConfig, model_name: str = "gru", model_path: str | None = None,
               epochs: int | None = None, json_path: str | None = None, plot_dir: str | None = None,
               store_url: str | None = None, show_progress: bool = True, log=print,
               decisions_path: str | None = None, inputs=None, with_series: bool = False) -> dict:
    """The whole replay: load the data (bundled Abilene unless `inputs` = load_inputs(…)), train/load the
    model, run each strategy through the controller's loop, report."""
    unknown = [s for s in config.strategies if s not in STRATEGIES]
    if unknown:
        raise InvalidInput(f"unknown strategy '{unknown[0]}' (valid: {', '.join(STRATEGIES)})", field="--strategy")
    if config.scale <= 0:
        raise InvalidInput("scale must be above 0", field="--scale")
    if plot_dir:
        from vnstitch.optional import pyplot

        pyplot()  # before the replay, not after it: a missing `plots` extra fails at once
    series, topology, nodes = inputs or load_inputs()
    config.interval_s = series.interval_seconds
    if not 1 <= config.start_step or config.start_step + config.steps + config.horizon > series.n_steps:
        raise InvalidInput(f"the window must lie inside the {series.n_steps} intervals of the data "
                           f"(start ≥ 1, start + steps + horizon ≤ {series.n_steps})", field="--start")
    if config.shift is not None:
        series = shifted(series, *config.shift)
    demand = demand_cube(series, nodes) * config.scale
    predictor = None
    if "proactive" in config.strategies:
        model = train_forecaster(series, config.start_step, model_name, model_path, epochs, log=log)
        predictor = make_forecast_predictor(model, series, nodes, config, config.scale)
    results = {}
    from vnstitch.optional import progress_bar

    decisions_file = None
    if decisions_path:
        Path(decisions_path).parent.mkdir(parents=True, exist_ok=True)
        decisions_file = open(decisions_path, "w", encoding="utf-8")

    for name in config.strategies:
        bar = progress_bar(config.steps, desc=f"{name:>9}", unit="interval", file=sys.stderr, disable=not show_progress,
                   leave=True)
        store = None
        if store_url and name == "proactive":
            from vnstitch.store import open_store

            store = open_store(store_url)
        try:
            results[name] = run_strategy(
                name, demand, nodes, topology, config, predictor, progress=bar.update, store=store,
                timestamps=series.timestamps,
                decision_log=(lambda entry: decisions_file.write(json.dumps(entry) + "\n")) if decisions_file else None)
        finally:
            bar.close()
    if decisions_file:
        decisions_file.close()
    hours = config.steps * config.interval_s / 3600
    report = {"scale": config.scale, "window": {"start_step": config.start_step, "steps": config.steps,
                                                "start": str(series.timestamps[config.start_step]), "hours": hours},
              "interval_s": config.interval_s,
              "model": model_name if predictor else None, "horizon": config.horizon, "quantile": config.quantile,
              "strategies": {name: r.summary(hours) for name, r in results.items()}}
    if with_series:  # per interval: overloaded link-intervals and the loop's rolling 90% coverage
        report["series"] = {name: {"overloaded": r.overloaded_series, "coverage90": r.coverage90_series,
                                   "pair_coverage90": r.pair_coverage90_series}
                            for name, r in results.items()}
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(report, indent=2))
    if plot_dir:
        report["plots"] = plot_results(results, demand, nodes, config, plot_dir)
    return report


SHIFT_KINDS = ("scale", "new", "move")


def shifted(series, src: str, dst: str, from_step: int, factor: float, kind: str = "scale", to: str = ""):
    """The series with a regime shift from `from_step` on:
    - scale: pair src→dst's traffic × `factor`;
    - new: src→dst carries nothing before `from_step` (in the training days too: the model never saw it) and
      its real traffic × `factor` from then on, a pair that appears;
    - move: src's traffic to dst goes to `to` instead (added to src→to's own), a node's traffic that moves."""
    from vnstitch.forecast.errors import UnknownPairError

    if kind not in SHIFT_KINDS:
        raise InvalidInput(f"unknown shift kind '{kind}' (valid: {', '.join(SHIFT_KINDS)})", field="shift")
    for a, b in ((src, dst),) + (((src, to),) if kind == "move" else ()):
        if (a, b) not in series.pairs:
            raise UnknownPairError(f"shift: pair {a}->{b} is not in the data")
    values, observed = series.values_mbps.copy(), series.observed.copy()
    j = series.pairs.index((src, dst))
    if kind == "move":
        k = series.pairs.index((src, to))
        moved = np.where(observed[from_step:, j], values[from_step:, j], 0.0)
        values[from_step:, k] = np.where(observed[from_step:, k], values[from_step:, k], 0.0) + moved
        observed[from_step:, k] = True
        values[from_step:, j] = 0.0
    else:
        values[from_step:, j] *= factor
        if kind == "new":
            values[:from_step, j] = 0.0
    return type(series).from_array(values, series.timestamps, series.pairs, observed, series.interval_seconds)


def plot_results(results: dict[str, StrategyResult], demand, nodes, config: ReplayConfig, plot_dir: str) -> list[str]:
    from vnstitch.optional import pyplot

    plt = pyplot()

    out = Path(plot_dir)
    out.mkdir(parents=True, exist_ok=True)
    hours = np.arange(config.steps) * 300 / 3600
    fig, ax = plt.subplots(figsize=(10, 4.5))
    for name, r in results.items():
        ax.plot(hours, r.max_utilisation, label=name, linewidth=1)
    ax.axhline(1.0, color="black", linestyle="--", linewidth=0.8)
    ax.set(xlabel="hours into the replayed window", ylabel="max link utilisation", title=f"Abilene replay, scale {config.scale:g}")
    ax.legend()
    fig.tight_layout()
    paths = [str(out / "max_link_utilisation.png")]
    fig.savefig(paths[0], dpi=110)
    plt.close(fig)
    reserved = results["proactive"].reserved_series if "proactive" in results else {}
    # the pairs that held the most reserved bandwidth over the window
    track = sorted(reserved, key=lambda label: -sum(reserved[label]))[:4]
    if track:
        fig, axes = plt.subplots(len(track), 1, figsize=(10, 2.2 * len(track)), sharex=True)
        for ax, label in zip(np.atleast_1d(axes), track):
            src, dst = label.split("->")
            actual = demand[config.start_step:config.start_step + config.steps, nodes.index(src), nodes.index(dst)]
            ax.plot(hours, actual, label="actual demand", linewidth=1)
            ax.step(hours, reserved[label], where="post", label="reserved (proactive)", linewidth=1)
            pair = (src, dst)
            ax.set_ylabel("Mbit/s")
            ax.set_title(f"{pair[0]} → {pair[1]}", fontsize=9)
        np.atleast_1d(axes)[0].legend(fontsize=8)
        np.atleast_1d(axes)[-1].set_xlabel("hours into the replayed window")
        fig.tight_layout()
        paths.append(str(out / "reserved_vs_actual.png"))
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


def render_table(report: dict) -> str:
    columns = ["overloaded_link_intervals", "dropped_mbit", "sla_violations", "reserved_over_used",
               "stitch_churn_per_hour", "stitch_resizes_per_hour", "loop_ms_p50", "loop_ms_p99"]
    heads = ["strategy", "overloaded", "dropped Mbit", "SLA viol.", "reserved/used", "churn/h", "resized/h",
             "loop p50 ms", "loop p99 ms"]
    rows = [heads] + [[name] + ["-" if v.get(c) is None else str(v[c]) for c in columns]
                      for name, v in report["strategies"].items()]
    widths = [max(len(r[i]) for r in rows) for i in range(len(heads))]
    return "\n".join("  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(r, widths)))
                     for r in rows)
