"""Predictive allocator: forecast quantiles per pair → stitches to establish, adjust, reroute, terminate.

Pure: takes the forecast, the topology and the allocator's own state, returns decisions with
reasons (and the forecast values behind them) plus the predicted network graph. No clock, no I/O.

A pair is *at risk* on a route when, with every other pair at its forecast mean and this pair
at its upper quantile (default p90, the max over the horizon), some link of the route would
run above `congestion_threshold` of its capacity. At-risk pairs, largest first, get a
bandwidth stitch sized to their upper quantile on the candidate path (k shortest with enough
unreserved capacity): the lowest-latency one that stays under the threshold, else the one with
the lowest predicted peak utilisation. A stitch is resized when
the upper quantile leaves a band around its reservation, rerouted when its own path turns
hot, and terminated once the pair has been safe on its default route for `terminate_after`
intervals in a row.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping

Pair = tuple[str, str]
Arc = tuple[str, str]


@dataclass(frozen=True)
class AllocatorConfig:
    quantile: float = 0.9                 # which forecast quantile sizes a stitch
    congestion_threshold: float = 0.9     # predicted utilisation that counts as congestion
    pair_threshold_bps: float | None = None  # any pair forecast above this gets a stitch
    adjust_band: float = 0.10             # resize when the upper quantile leaves ±10% of the reservation
    hysteresis: float = 0.8               # "safe" = predicted utilisation under hysteresis × threshold
    terminate_after: int = 3              # consecutive safe intervals before terminating
    k_paths: int = 3
    min_stitch_bps: float = 1e6


@dataclass(frozen=True)
class Held:
    """A stitch the allocator owns."""

    path: tuple[str, ...]
    reserved_bps: float
    safe_intervals: int = 0


@dataclass(frozen=True)
class Decision:
    action: str            # establish | adjust | reroute | terminate
    pair: Pair
    bandwidth_bps: float
    path: tuple[str, ...]
    reason: str
    forecast_mean_bps: float
    forecast_upper_bps: float


@dataclass
class AllocatorState:
    held: dict[Pair, Held] = field(default_factory=dict)


@dataclass
class Allocation:
    state: AllocatorState
    decisions: list[Decision]
    predicted_load_bps: dict[Arc, float]        # the "scaffolding": expected load per arc next horizon
    routes: dict[Pair, tuple[str, ...]]         # expected route per pair


def _arcs(path: tuple[str, ...]) -> list[Arc]:
    return list(zip(path, path[1:]))


def _pct(x: float) -> str:
    return f"{x * 100:.0f}%"


def _mbps(x: float) -> str:
    return f"{x / 1e6:.0f} Mbit/s"


def allocate(state: AllocatorState, mean_bps: Mapping[Pair, float], upper_bps: Mapping[Pair, float],
             default_paths: Mapping[Pair, tuple[str, ...]], capacity_bps: Mapping[Arc, float],
             finder, config: AllocatorConfig = AllocatorConfig(),
             latency_bound_s: Mapping[Pair, float] | None = None) -> Allocation:
    """One control interval of decisions. `finder` is a PathFinder over the same substrate;
    `latency_bound_s` keeps each pair's stitch within its latency SLA."""
    held = dict(state.held)
    routes = {pair: held[pair].path if pair in held else default_paths[pair] for pair in default_paths}
    load: dict[Arc, float] = {}
    for pair, path in routes.items():
        for arc in _arcs(path):
            load[arc] = load.get(arc, 0.0) + mean_bps.get(pair, 0.0)
    reserved: dict[Arc, float] = {}
    for h in held.values():
        for arc in _arcs(h.path):
            reserved[arc] = reserved.get(arc, 0.0) + h.reserved_bps

    def peak(pair: Pair, path: tuple[str, ...], current: tuple[str, ...] | None) -> tuple[float, Arc | None]:
        """Predicted peak utilisation on `path` with `pair` at its upper quantile."""
        worst, where = 0.0, None
        on_current = set(_arcs(current)) if current else set()
        for arc in _arcs(path):
            base = load.get(arc, 0.0) - (mean_bps.get(pair, 0.0) if arc in on_current else 0.0)
            util = (base + upper_bps.get(pair, 0.0)) / capacity_bps[arc]
            if util > worst:
                worst, where = util, arc
        return worst, where

    def move(pair: Pair, old: tuple[str, ...], new: tuple[str, ...], old_res: float, new_res: float) -> None:
        for arc in _arcs(old):
            load[arc] -= mean_bps.get(pair, 0.0)
            reserved[arc] = reserved.get(arc, 0.0) - old_res
        for arc in _arcs(new):
            load[arc] = load.get(arc, 0.0) + mean_bps.get(pair, 0.0)
            reserved[arc] = reserved.get(arc, 0.0) + new_res
        routes[pair] = new

    def best_path(pair: Pair, size: float, current: tuple[str, ...], current_res: float):
        residual = {arc: capacity_bps[arc] - reserved.get(arc, 0.0)
                    + (current_res if arc in set(_arcs(current)) and pair in held else 0.0)
                    for arc in capacity_bps}
        bound = latency_bound_s.get(pair) if latency_bound_s else None
        candidates = finder.paths(pair[0], pair[1], bandwidth_bps=size, symmetric=False,
                                  residual=residual, k=config.k_paths, max_latency_s=bound)
        scored = [(peak(pair, c.nodes, current)[0], c.latency_s, c.nodes) for c in candidates]
        if not scored:
            return None
        # the shortest path that stays under the threshold; failing that, the lowest peak
        return min(scored, key=lambda x: (x[0] if x[0] > config.congestion_threshold else 0.0, x[1]))

    decisions: list[Decision] = []

    def decide(action: str, pair: Pair, size: float, path: tuple[str, ...], reason: str) -> None:
        decisions.append(Decision(action, pair, size, path, reason, mean_bps.get(pair, 0.0), upper_bps.get(pair, 0.0)))

    limit = config.congestion_threshold
    # 1. stitches we hold: terminate, reroute or resize
    for pair in sorted(held, key=lambda p: -upper_bps.get(p, 0.0)):
        h = held[pair]
        size = max(upper_bps.get(pair, 0.0), config.min_stitch_bps)
        up_q = f"p{config.quantile * 100:.0f}"
        home_peak, home_arc = peak(pair, default_paths[pair], h.path)
        above_pair_threshold = config.pair_threshold_bps is not None and size > config.pair_threshold_bps
        if home_peak < config.hysteresis * limit and not above_pair_threshold:
            if h.safe_intervals + 1 >= config.terminate_after:
                move(pair, h.path, default_paths[pair], h.reserved_bps, 0.0)
                del held[pair]
                decide("terminate", pair, 0.0, default_paths[pair],
                       f"demand fell under hysteresis: {up_q} {_mbps(upper_bps.get(pair, 0.0))} would load the "
                       f"default path to {_pct(home_peak)} (< {_pct(config.hysteresis * limit)}) for "
                       f"{config.terminate_after} intervals")
                continue
            held[pair] = replace(h, safe_intervals=h.safe_intervals + 1)
        else:
            held[pair] = replace(h, safe_intervals=0)
        h = held[pair]
        own_peak, own_arc = peak(pair, h.path, h.path)
        outside_band = not (h.reserved_bps * (1 - config.adjust_band) <= size <= h.reserved_bps * (1 + config.adjust_band))
        fits = all(capacity_bps[a] - reserved.get(a, 0.0) + h.reserved_bps >= size for a in _arcs(h.path))
        if own_peak > limit or not fits:
            choice = best_path(pair, size, h.path, h.reserved_bps)
            if choice and choice[2] != h.path and choice[0] < own_peak:
                move(pair, h.path, choice[2], h.reserved_bps, size)
                held[pair] = Held(choice[2], size)
                decide("reroute", pair, size, choice[2],
                       f"forecast {up_q} {_mbps(size)} would load {own_arc[0]}→{own_arc[1]} to {_pct(own_peak)}; "
                       f"new path peaks at {_pct(choice[0])}")
                continue
        if outside_band and fits:
            move(pair, h.path, h.path, h.reserved_bps, size)
            held[pair] = replace(h, reserved_bps=size)
            decide("adjust", pair, size, h.path,
                   f"forecast {up_q} {_mbps(size)} left the ±{_pct(config.adjust_band)} band around "
                   f"the reservation of {_mbps(h.reserved_bps)}")
    # 2. pairs at risk on their default route get a stitch, largest first
    candidates = []
    for pair, path in default_paths.items():
        if pair in held or upper_bps.get(pair, 0.0) < config.min_stitch_bps:
            continue
        risk, arc = peak(pair, path, path)
        size = upper_bps.get(pair, 0.0)
        if risk > limit or (config.pair_threshold_bps is not None and size > config.pair_threshold_bps):
            candidates.append((size, pair, risk, arc))
    for size, pair, _, _ in sorted(candidates, reverse=True):
        path = default_paths[pair]
        risk, arc = peak(pair, path, path)  # others may have moved since
        above_pair_threshold = config.pair_threshold_bps is not None and size > config.pair_threshold_bps
        if risk <= limit and not above_pair_threshold:
            continue
        choice = best_path(pair, size, path, 0.0)
        if choice is None or (choice[0] >= risk and not above_pair_threshold):
            continue  # no path has the room, or none relieves the hot link: left best effort
        move(pair, path, choice[2], 0.0, size)
        held[pair] = Held(choice[2], size)
        why = (f"forecast p{config.quantile * 100:.0f} {_mbps(size)} (mean {_mbps(mean_bps.get(pair, 0.0))}) would load "
               f"{arc[0]}→{arc[1]} to {_pct(risk)} of capacity" if risk > limit
               else f"forecast p{config.quantile * 100:.0f} {_mbps(size)} above the per-pair threshold")
        decide("establish", pair, size, choice[2], f"{why}; path peaks at {_pct(choice[0])}")
    return Allocation(AllocatorState(held), decisions, load, routes)
