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
from vnstitch.errors import InvalidInput, VnstitchError
from vnstitch.pathing.paths import PathFinder
from vnstitch.planning.allocator import AllocatorConfig, AllocatorState, allocate
from vnstitch.store.memory import MemoryStore

STRATEGIES = ("static", "reactive", "proactive", "oracle")
TENANT = "backbone"
STEPS_PER_DAY = 288


@dataclass
class ReplayConfig:
    scale: float = 10.0
    start_step: int = 12 * STEPS_PER_DAY      # first replayed interval (day 13 of the bundled 14)
    steps: int = STEPS_PER_DAY                 # one day
    horizon: int = 2                           # forecast intervals ahead (10 minutes)
    quantile: float = 0.9
    strategies: tuple[str, ...] = STRATEGIES
    allocator: AllocatorConfig = field(default_factory=AllocatorConfig)
    sla_latency_factor: float = 1.5            # a pair's SLA: ≤ 1.5 × its shortest-path latency + 5 ms
    sla_latency_slack_s: float = 0.005


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

    def summary(self, hours: float) -> dict:
        loop = np.array(self.loop_ms or [0.0])
        return {
            "overloaded_link_intervals": self.overloaded_link_intervals,
            "dropped_mbit": round(self.dropped_mbit, 1),
            "sla_violations": self.sla_violations,
            "reserved_over_used": round(self.reserved_bps_intervals / self.used_bps_intervals, 3)
            if self.used_bps_intervals else None,
            "stitch_churn_per_hour": round((self.established + self.terminated) / hours, 2),
            "stitches_established": self.established,
            "stitches_terminated": self.terminated,
            "stitches_adjusted": self.adjusted,
            "admission_refusals": self.refused,
            "loop_ms_p50": round(float(np.percentile(loop, 50)), 2),
            "loop_ms_p99": round(float(np.percentile(loop, 99)), 2),
        }


class World:
    """A controller over an in-memory store, a reconciler and the simulator: one per strategy."""

    def __init__(self, topology, nodes: list[str], store=None):
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


def network_name(node: str) -> str:
    return f"pop-{node}"


def stitch_name(pair: tuple[str, str], part: int = 0) -> str:
    """fc-A-B for a pair's main stitch, fc-A-B-p1… for the further parts of a TE split."""
    return f"fc-{pair[0]}-{pair[1]}" + (f"-p{part}" if part else "")


REASON_ANNOTATION = "vnstitch.io/reason"


def _stitch_doc(pair, bandwidth_bps: float, path, part: int = 0, reason: str = "") -> object:
    return parse_resource({
        "kind": "Stitch", "metadata": {"name": stitch_name(pair, part), "tenant": TENANT,
                                       "annotations": {REASON_ANNOTATION: reason} if reason else {}},
        "spec": {"type": "bandwidth", "from": {"network": network_name(pair[0])},
                 "to": {"network": network_name(pair[1])}, "bandwidth": round(bandwidth_bps),
                 "origin": "forecast", "priority": 10, "symmetric": False, "path": list(path)}})


def run_strategy(name: str, demand_mbps: np.ndarray, nodes: list[str], topology, config: ReplayConfig,
                 predict: Callable[[int], tuple[np.ndarray, np.ndarray]] | None = None,
                 progress: Callable[[], None] | None = None, store=None,
                 decision_log: Callable[[dict], None] | None = None) -> StrategyResult:
    """Replay `config.steps` intervals from `config.start_step` of `demand_mbps` (T, n, n), already scaled."""
    world = World(topology, nodes, store=store)
    result = StrategyResult(name)
    pairs = [(a, b) for a in nodes for b in nodes if a != b]
    index = {node: i for i, node in enumerate(nodes)}
    default_paths = {pair: world.sim.default_path(*pair) for pair in pairs}
    capacity = {arc: world.finder.capacity_bps(arc) for arc in world.finder.arcs()}
    latency_bound = {pair: config.sla_latency_factor * world.sim.path_latency(default_paths[pair])
                     + config.sla_latency_slack_s for pair in pairs}
    alloc_config = config.allocator
    if name == "reactive":  # only congestion actually observed counts, sized to what was seen
        alloc_config = AllocatorConfig(**{**alloc_config.__dict__, "congestion_threshold": 1.0})
    state = AllocatorState()
    for t in range(config.steps):
        step = config.start_step + t
        world.now = step * 300.0
        started = time.perf_counter()
        if name != "static":
            mean, upper = _strategy_view(name, step, demand_mbps, config, predict)
            mean_bps = {p: mean[index[p[0]], index[p[1]]] * 1e6 for p in pairs}
            upper_bps = {p: upper[index[p[0]], index[p[1]]] * 1e6 for p in pairs}
            allocation = allocate(state, mean_bps, upper_bps, default_paths, capacity, world.finder, alloc_config,
                                  latency_bound_s=latency_bound)
            state = _apply(world, allocation, state, result)
            if decision_log:
                for d in allocation.decisions:
                    decision_log({"strategy": name, "step": step, "time": str(world_time(step)), "action": d.action,
                                  "from": d.pair[0], "to": d.pair[1], "bandwidth_bps": round(d.bandwidth_bps),
                                  "parts": [{"path": list(p), "bandwidth_bps": round(b)} for p, b in d.all_parts]
                                  if d.action != "terminate" else [],
                                  "forecast_mean_bps": round(d.forecast_mean_bps),
                                  "forecast_upper_bps": round(d.forecast_upper_bps), "reason": d.reason})
            if store is not None:
                _record_prediction(world, allocation, step)
        result.loop_ms.append((time.perf_counter() - started) * 1e3)
        demands = {(f"{TENANT}/{network_name(a)}", f"{TENANT}/{network_name(b)}"):
                   float(demand_mbps[step, index[a], index[b]]) * 1e6 for a, b in pairs}
        report = world.sim.carry(demands, interval_s=300.0, default_route=True)
        overloaded = report.overloaded()
        result.overloaded_link_intervals += len(overloaded)
        result.dropped_mbit += sum(report.dropped_bps.values()) * 300.0 / 1e6
        result.max_utilisation.append(max(load / report.link_capacity_bps[arc] for arc, load in report.link_load_bps.items()))
        for (src, dst), offered in demands.items():
            pair = (src.split("/pop-")[1], dst.split("/pop-")[1])
            delivered = report.delivered_bps.get((src, dst), 0.0)
            route = report.route.get((src, dst), (None, default_paths[pair]))[1]
            if delivered < offered * 0.999 or world.sim.path_latency(route) > latency_bound[pair]:
                result.sla_violations += 1
        for pair, held in state.held.items():
            result.reserved_bps_intervals += held.total_bps
            result.used_bps_intervals += float(demand_mbps[step, index[pair[0]], index[pair[1]]]) * 1e6
        for pair, held in state.held.items():
            label = f"{pair[0]}->{pair[1]}"
            series = result.reserved_series.setdefault(label, [0.0] * config.steps)
            series[t] = held.total_bps / 1e6
        if progress:
            progress()
    return result


def world_time(step: int) -> np.datetime64:
    """Wall time of a bundled Abilene interval (2004-03-01 00:00 + 5 min × step)."""
    return np.datetime64("2004-03-01T00:00") + np.timedelta64(5 * step, "m")


def _strategy_view(name: str, step: int, demand_mbps: np.ndarray, config: ReplayConfig, predict):
    """(mean, upper) demand matrices in Mbit/s the strategy believes for the coming horizon."""
    if name == "reactive":
        seen = demand_mbps[step - 1]
        return seen, seen
    if name == "oracle":
        future = demand_mbps[step:step + config.horizon]
        return future.mean(axis=0), future.max(axis=0)
    return predict(step)


def _apply(world: World, allocation, old_state: AllocatorState, result: StrategyResult) -> AllocatorState:
    """Turn decisions into stitch resources (one per part), admit them, reconcile.

    A part that admission refuses keeps what it had before (or nothing); the allocator's state
    is rebuilt from what really landed.
    """
    from vnstitch.planning.allocator import Held

    held = dict(allocation.state.held)
    docs, owners = [], []
    stale: list[str] = []
    for decision in allocation.decisions:
        before = old_state.held[decision.pair].parts if decision.pair in old_state.held else ()
        parts = () if decision.action == "terminate" else decision.all_parts
        stale += [stitch_name(decision.pair, i) for i in range(len(parts), len(before))]
        for i, (path, bps) in enumerate(parts):
            docs.append(_stitch_doc(decision.pair, bps, path, i, f"{decision.action}: {decision.reason}"))
            owners.append((decision, i))
    landed: dict[tuple[str, str], dict[int, tuple]] = {}
    for (decision, i), outcome in zip(owners, world.controller.apply_each(docs) if docs else []):
        if isinstance(outcome, VnstitchError):
            result.refused += 1
            before = old_state.held[decision.pair].parts if decision.pair in old_state.held else ()
            if i < len(before):
                landed.setdefault(decision.pair, {})[i] = before[i]  # the stored stitch is unchanged
        else:
            landed.setdefault(decision.pair, {})[i] = decision.all_parts[i]
            before = old_state.held[decision.pair].parts if decision.pair in old_state.held else ()
            if i < len(before):
                result.adjusted += 1
            else:
                result.established += 1
    for decision in allocation.decisions:
        if decision.action == "terminate":
            continue
        parts = [landed.get(decision.pair, {}).get(i) for i in range(len(decision.all_parts))]
        # Parts are stitches named by index: keep the unbroken prefix, so part i is always stitch i;
        # what landed after a refused part is removed again.
        first_gap = next((i for i, part in enumerate(parts) if part is None), len(parts))
        kept = parts[:first_gap]
        stale += [stitch_name(decision.pair, i) for i in range(first_gap, len(parts))]
        if not kept:
            held.pop(decision.pair, None)
        else:
            safe = held[decision.pair].safe_intervals if decision.pair in held else 0
            held[decision.pair] = Held(kept[0][0], kept[0][1], safe, tuple(kept[1:]))
    for name in stale:
        try:
            world.controller.delete("stitches", name, TENANT)
            result.terminated += 1
        except VnstitchError:
            pass  # never created (refused), or already going
    world.reconciler.reconcile_once(world.now)
    return AllocatorState(held)


def _record_prediction(world: World, allocation, step: int) -> None:
    """Store the predicted network graph for `vnstitch plan --predicted` and the API."""
    value = {"step": step, "stitches": [
        {"from": p[0], "to": p[1], "bandwidthBps": bps, "path": list(path)}
        for p, h in sorted(allocation.state.held.items()) for path, bps in h.parts],
        "links": [{"arc": list(arc), "predictedLoadBps": round(load)} for arc, load in sorted(allocation.predicted_load_bps.items())],
        "decisions": [{"action": d.action, "pair": list(d.pair), "bandwidthBps": d.bandwidth_bps, "reason": d.reason}
                      for d in allocation.decisions]}
    world.store.put("PredictedGraph", TENANT, "current", value)


def make_forecast_predictor(model, series_mbps: np.ndarray, timestamps: np.ndarray, nodes: list[str],
                            config: ReplayConfig, scale: float):
    """predict(step) → (mean, upper) (n, n) Mbit/s from a fitted forecaster, rolling origin, no refit."""
    n = len(nodes)
    context = max(model.context_steps, model.min_history_steps)

    def predict(step: int) -> tuple[np.ndarray, np.ndarray]:
        start = max(0, step - context)
        forecast = model.predict(series_mbps[start:step], horizon=config.horizon, timestamps=timestamps[start:step])
        mean = forecast.mean.max(axis=1).reshape(n, n) * scale
        upper = forecast.quantile(config.quantile).max(axis=1).reshape(n, n) * scale
        return mean, upper

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
    log(f"training {model_name} on {end_step} intervals ({end_step / STEPS_PER_DAY:.1f} days) before the replayed window…")
    model.fit(series.values_mbps[:end_step], series.timestamps[:end_step], series.pairs)
    log(f"trained in {time.perf_counter() - started:.0f} s")
    if model_path:
        Path(model_path).parent.mkdir(parents=True, exist_ok=True)
        model.save(model_path)
    return model


def run_replay(config: ReplayConfig, model_name: str = "gru", model_path: str | None = None,
               epochs: int | None = None, json_path: str | None = None, plot_dir: str | None = None,
               store_url: str | None = None, show_progress: bool = True, log=print,
               decisions_path: str | None = None) -> dict:
    """The whole replay: load bundled Abilene, train/load the model, run each strategy, report."""
    from vnstitch.data import data_path
    from vnstitch.forecast import load_bundled_abilene
    from vnstitch.topology.importers import load_topology

    unknown = [s for s in config.strategies if s not in STRATEGIES]
    if unknown:
        raise InvalidInput(f"unknown strategy '{unknown[0]}' (valid: {', '.join(STRATEGIES)})", field="--strategy")
    if config.scale <= 0:
        raise InvalidInput("scale must be above 0", field="--scale")
    series = load_bundled_abilene()
    nodes = series.nodes()
    n = len(nodes)
    if not 1 <= config.start_step or config.start_step + config.steps + config.horizon > series.n_steps:
        raise InvalidInput(f"the window must lie inside the {series.n_steps} bundled intervals "
                           f"(start ≥ 1, start + steps + horizon ≤ {series.n_steps})", field="--start")
    topology = load_topology(data_path("abilene.xml"))
    demand = series.values_mbps.reshape(series.n_steps, n, n) * config.scale
    predictor = None
    if "proactive" in config.strategies:
        model = train_forecaster(series, config.start_step, model_name, model_path, epochs, log=log)
        predictor = make_forecast_predictor(model, series.values_mbps, series.timestamps, nodes, config, config.scale)
    results = {}
    from tqdm import tqdm

    decisions_file = None
    if decisions_path:
        Path(decisions_path).parent.mkdir(parents=True, exist_ok=True)
        decisions_file = open(decisions_path, "w", encoding="utf-8")

    for name in config.strategies:
        bar = tqdm(total=config.steps, desc=f"{name:>9}", unit="interval", file=sys.stderr, disable=not show_progress,
                   leave=True)
        store = None
        if store_url and name == "proactive":
            from vnstitch.store import open_store

            store = open_store(store_url)
        try:
            results[name] = run_strategy(
                name, demand, nodes, topology, config, predictor, progress=bar.update, store=store,
                decision_log=(lambda entry: decisions_file.write(json.dumps(entry) + "\n")) if decisions_file else None)
        finally:
            bar.close()
    if decisions_file:
        decisions_file.close()
    hours = config.steps * 300 / 3600
    report = {"scale": config.scale, "window": {"start_step": config.start_step, "steps": config.steps,
                                                "start": str(series.timestamps[config.start_step]), "hours": hours},
              "model": model_name if predictor else None, "horizon": config.horizon, "quantile": config.quantile,
              "strategies": {name: r.summary(hours) for name, r in results.items()}}
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(report, indent=2))
    if plot_dir:
        report["plots"] = plot_results(results, demand, nodes, config, plot_dir)
    return report


def plot_results(results: dict[str, StrategyResult], demand, nodes, config: ReplayConfig, plot_dir: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
               "stitch_churn_per_hour", "loop_ms_p50", "loop_ms_p99"]
    heads = ["strategy", "overloaded", "dropped Mbit", "SLA viol.", "reserved/used", "churn/h", "loop p50 ms", "loop p99 ms"]
    rows = [heads] + [[name] + ["-" if v[c] is None else str(v[c]) for c in columns]
                      for name, v in report["strategies"].items()]
    widths = [max(len(r[i]) for r in rows) for i in range(len(heads))]
    return "\n".join("  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(r, widths)))
                     for r in rows)
