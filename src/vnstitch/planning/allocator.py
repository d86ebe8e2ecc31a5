"""Predictive allocator: forecast quantiles per pair → stitches to establish, adjust, reroute, terminate.

Pure: takes the forecast, the topology and the allocator's own state, returns decisions with
reasons (and the forecast values behind them) plus the predicted network graph. No clock, no I/O.

A pair is *at risk* on a route when, with every other pair at its forecast mean and this pair
at its upper quantile (default p90, the max over the horizon), some link of the route would
run above `congestion_threshold` of its capacity. At-risk pairs, largest first, get a
bandwidth stitch sized to their upper quantile on the candidate path (k shortest with enough
unreserved capacity): the lowest-latency one that stays under the threshold, else the one with
the lowest predicted peak utilisation. Where no single path relieves the hot link, the
min-max-utilisation LP (HiGHS) splits the pair over its candidate paths as several stitches.
A stitch is resized when
the upper quantile leaves a band around its reservation, rerouted when its own path turns
hot, and terminated once the pair has been safe on its default route for `terminate_after`
intervals in a row.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterable, Mapping

from vnstitch.pathing.te import HighsPathLP, TEProblem

Pair = tuple[str, str]
Arc = tuple[str, str]


@dataclass(frozen=True)
class AllocatorConfig:
    quantile: float = 0.9                 # which forecast quantile sizes a stitch
    congestion_threshold: float = 0.8     # predicted utilisation that counts as congestion
    pair_threshold_bps: float | None = None  # any pair forecast above this gets a stitch
    adjust_band: float = 0.10             # resize when the upper quantile leaves ±10% of the reservation
    hysteresis: float = 0.8               # "safe" = predicted utilisation under hysteresis × threshold
    terminate_after: int = 3              # consecutive safe intervals before terminating
    k_paths: int = 3
    min_stitch_bps: float = 1e6
    reroute_margin: float = 0.05          # a held stitch moves only for a peak this much lower (damping)
    demand_label: str = ""                # what the reasons call the sizing rate ("": "forecast p90")


@dataclass(frozen=True)
class Held:
    """Stitches the allocator owns for one pair: a main path, plus extra parts when TE split it."""

    path: tuple[str, ...]
    reserved_bps: float                      # on the main path
    safe_intervals: int = 0
    extra: tuple[tuple[tuple[str, ...], float], ...] = ()  # (path, bit/s) of further parts

    @property
    def parts(self) -> tuple[tuple[tuple[str, ...], float], ...]:
        return ((self.path, self.reserved_bps),) + self.extra

    @property
    def total_bps(self) -> float:
        return self.reserved_bps + sum(bps for _, bps in self.extra)


@dataclass(frozen=True)
class Decision:
    action: str            # establish | adjust | reroute | split | terminate
    pair: Pair
    bandwidth_bps: float   # total over the parts
    path: tuple[str, ...]  # the main path
    reason: str
    forecast_mean_bps: float
    forecast_upper_bps: float
    parts: tuple[tuple[tuple[str, ...], float], ...] = ()  # every (path, bit/s) part; empty = one part

    @property
    def all_parts(self) -> tuple[tuple[tuple[str, ...], float], ...]:
        return self.parts or ((self.path, self.bandwidth_bps),)


@dataclass
class AllocatorState:
    held: dict[Pair, Held] = field(default_factory=dict)


@dataclass
class Allocation:
    state: AllocatorState
    decisions: list[Decision]
    predicted_load_bps: dict[Arc, float]        # the "scaffolding": expected load per arc next horizon
    routes: dict[Pair, tuple[str, ...]]         # expected main route per pair


def _arcs(path: tuple[str, ...]) -> list[Arc]:
    return list(zip(path, path[1:]))


def _pct(x: float) -> str:
    return f"{x * 100:.0f}%"


def _mbps(x: float) -> str:
    return f"{x / 1e6:.0f} Mbit/s"


def allocate(state: AllocatorState, mean_bps: Mapping[Pair, float], upper_bps: Mapping[Pair, float],
             default_paths: Mapping[Pair, tuple[str, ...]], capacity_bps: Mapping[Arc, float],
             finder, config: AllocatorConfig = AllocatorConfig(),
             latency_bound_s: Mapping[Pair, float] | None = None,
             nodes: Mapping[Pair, tuple[str, str]] | None = None) -> Allocation:
    """One control interval of decisions. `finder` is a PathFinder over the same substrate;
    `latency_bound_s` keeps each pair's stitches within its latency SLA; `nodes` gives the substrate
    nodes a pair's traffic enters and leaves at (default: the pair names are node names)."""
    held = dict(state.held)
    limit = config.congestion_threshold
    up_q = f"p{config.quantile * 100:.0f}"
    basis = config.demand_label or f"forecast {up_q}"  # a reactive predictor's rates are observed, not forecast
    shares: dict[Pair, list[tuple[tuple[str, ...], float]]] = {}   # pair → (path, fraction of its traffic)
    load: dict[Arc, float] = {}
    reserved: dict[Arc, float] = {}

    def route(pair: Pair, parts: Iterable[tuple[tuple[str, ...], float]] | None, sign: float) -> None:
        """Add (sign=1) or remove (sign=-1) a pair's predicted load and reservations."""
        mean = mean_bps.get(pair, 0.0)
        fractions = _fractions(parts) if parts else [(default_paths[pair], 1.0)]
        for path, fraction in fractions:
            for arc in _arcs(path):
                load[arc] = load.get(arc, 0.0) + sign * mean * fraction
        for path, bps in parts or ():
            for arc in _arcs(path):
                reserved[arc] = reserved.get(arc, 0.0) + sign * bps
        if sign > 0:
            shares[pair] = fractions

    for pair in default_paths:
        route(pair, held[pair].parts if pair in held else None, +1)

    def peak(pair: Pair, fractions: list[tuple[tuple[str, ...], float]]) -> tuple[float, Arc | None]:
        """Predicted peak utilisation over `fractions`' arcs with the pair at its upper quantile there."""
        own: dict[Arc, float] = {}
        for path, fraction in shares[pair]:
            for arc in _arcs(path):
                own[arc] = own.get(arc, 0.0) + mean_bps.get(pair, 0.0) * fraction
        new: dict[Arc, float] = {}
        for path, fraction in fractions:
            for arc in _arcs(path):
                new[arc] = new.get(arc, 0.0) + upper_bps.get(pair, 0.0) * fraction
        worst, where = 0.0, None
        for arc, extra in new.items():
            util = (load.get(arc, 0.0) - own.get(arc, 0.0) + extra) / capacity_bps[arc]
            if util > worst:
                worst, where = util, arc
        return worst, where

    def free_for(pair: Pair) -> dict[Arc, float]:
        """Unreserved capacity per arc, counting the pair's own reservations as free."""
        free = {arc: capacity_bps[arc] - reserved.get(arc, 0.0) for arc in capacity_bps}
        if pair in held:
            for path, bps in held[pair].parts:
                for arc in _arcs(path):
                    free[arc] += bps
        return free

    def candidates(pair: Pair, size: float):
        bound = latency_bound_s.get(pair) if latency_bound_s else None
        src, dst = nodes[pair] if nodes else pair
        return finder.paths(src, dst, bandwidth_bps=size, symmetric=False, residual=free_for(pair),
                            k=config.k_paths, max_latency_s=bound)

    def best_single(pair: Pair, size: float):
        """(peak, parts) on the shortest candidate that stays under the threshold, else the lowest peak."""
        scored = [(peak(pair, [(c.nodes, 1.0)])[0], c.latency_s, c.nodes) for c in candidates(pair, size)]
        if not scored:
            return None
        worst, _, nodes = min(scored, key=lambda x: (x[0] if x[0] > limit else 0.0, x[1]))
        return worst, ((nodes, size),)

    def te_split(pair: Pair, size: float):
        """(peak, parts) from the min-max-utilisation LP over the pair's candidate paths, or None."""
        options = candidates(pair, config.min_stitch_bps)
        if len(options) < 2:
            return None
        own = {}
        for path, fraction in shares[pair]:
            for arc in _arcs(path):
                own[arc] = own.get(arc, 0.0) + mean_bps.get(pair, 0.0) * fraction
        arcs = {arc for c in options for arc in c.arcs}
        problem = TEProblem({pair: size}, {pair: list(options)}, {a: capacity_bps[a] for a in arcs},
                            {a: max(0.0, load.get(a, 0.0) - own.get(a, 0.0)) for a in arcs})
        split = HighsPathLP().solve(problem).splits[pair]
        free = free_for(pair)
        parts = []
        for path, fraction in zip(split.paths, split.fractions):
            if fraction * size >= config.min_stitch_bps:
                room = min(free[arc] for arc in path.arcs)
                parts.append((path.nodes, min(fraction * size, room)))
        if len(parts) < 2:
            return None
        parts.sort(key=lambda part: -part[1])
        return peak(pair, _fractions(parts))[0], tuple(parts)

    decisions: list[Decision] = []

    def commit(action: str, pair: Pair, parts, reason: str, safe: int = 0) -> None:
        route(pair, held[pair].parts if pair in held else None, -1)
        if parts is None:
            held.pop(pair, None)
            route(pair, None, +1)
            decisions.append(Decision(action, pair, 0.0, default_paths[pair], reason, mean_bps.get(pair, 0.0),
                                      upper_bps.get(pair, 0.0)))
            return
        held[pair] = Held(parts[0][0], parts[0][1], safe, tuple(parts[1:]))
        route(pair, parts, +1)
        if action:
            decisions.append(Decision(action, pair, sum(b for _, b in parts), parts[0][0], reason,
                                      mean_bps.get(pair, 0.0), upper_bps.get(pair, 0.0),
                                      tuple(parts) if len(parts) > 1 else ()))

    def describe(parts) -> str:
        return " + ".join(f"{_mbps(b)} over {'→'.join(p)}" for p, b in parts) if len(parts) > 1 else ""

    # 1. stitches we hold: terminate, reroute or resize
    for pair in sorted(held, key=lambda p: -upper_bps.get(p, 0.0)):
        h = held[pair]
        size = max(upper_bps.get(pair, 0.0), config.min_stitch_bps)
        home_peak, _ = peak(pair, [(default_paths[pair], 1.0)])
        above_pair_threshold = config.pair_threshold_bps is not None and size > config.pair_threshold_bps
        safe = h.safe_intervals + 1 if home_peak < config.hysteresis * limit and not above_pair_threshold else 0
        if safe >= config.terminate_after:
            commit("terminate", pair, None,
                   f"demand fell under hysteresis: {config.demand_label or up_q} {_mbps(upper_bps.get(pair, 0.0))} "
                   f"would load the default "
                   f"path to {_pct(home_peak)} (< {_pct(config.hysteresis * limit)}) for {config.terminate_after} intervals")
            continue
        held[pair] = replace(h, safe_intervals=safe)
        scaled = tuple((path, bps * size / h.total_bps) for path, bps in h.parts)
        free = free_for(pair)
        fits = all(free[arc] >= bps for path, bps in scaled for arc in _arcs(path))
        own_peak, own_arc = peak(pair, _fractions(h.parts))
        if own_peak > limit or not fits:
            option = best_single(pair, size)
            if option is None or option[0] >= min(own_peak, limit):
                option = min((o for o in (option, te_split(pair, size)) if o), default=None, key=lambda o: o[0])
            if option and option[1] != h.parts and (option[0] < own_peak - config.reroute_margin or not fits):
                where = f"{own_arc[0]}→{own_arc[1]} to {_pct(own_peak)}" if own_arc else "its path"
                commit("reroute", pair, option[1],
                       f"{basis} {_mbps(size)} would load {where}"
                       f"{'' if fits else ' and no longer fits its reservation'}; new route peaks at {_pct(option[0])}"
                       + (f" (TE split: {describe(option[1])})" if len(option[1]) > 1 else ""), safe)
                continue
        outside_band = not (h.total_bps * (1 - config.adjust_band) <= size <= h.total_bps * (1 + config.adjust_band))
        if outside_band and fits:
            commit("adjust", pair, scaled,
                   f"{basis} {_mbps(size)} left the ±{_pct(config.adjust_band)} band around the "
                   f"reservation of {_mbps(h.total_bps)}", safe)
    # 2. pairs at risk on their default route get stitches, largest first
    at_risk = []
    for pair, path in default_paths.items():
        size = upper_bps.get(pair, 0.0)
        if pair in held or size < config.min_stitch_bps:
            continue
        risk, _ = peak(pair, [(path, 1.0)])
        if risk > limit or (config.pair_threshold_bps is not None and size > config.pair_threshold_bps):
            at_risk.append((size, pair))
    for size, pair in sorted(at_risk, reverse=True):
        risk, arc = peak(pair, [(default_paths[pair], 1.0)])  # others may have moved since
        above_pair_threshold = config.pair_threshold_bps is not None and size > config.pair_threshold_bps
        if risk <= limit and not above_pair_threshold:
            continue
        option = best_single(pair, size)
        if (option is None or option[0] >= min(risk, limit)) and not above_pair_threshold:
            option = min((o for o in (option, te_split(pair, size)) if o), default=None, key=lambda o: o[0])
        if option is None or (option[0] >= risk and not above_pair_threshold):
            continue  # no route with room relieves the hot link: left best effort
        mean = "" if config.demand_label else f" (mean {_mbps(mean_bps.get(pair, 0.0))})"
        why = (f"{basis} {_mbps(size)}{mean} would load {arc[0]}→{arc[1]} to {_pct(risk)} of capacity"
               if risk > limit else f"{basis} {_mbps(size)} above the per-pair threshold")
        split = f"; TE split: {describe(option[1])}" if len(option[1]) > 1 else ""
        commit("establish", pair, option[1], f"{why}; route peaks at {_pct(option[0])}{split}")
    return Allocation(AllocatorState(held), decisions, load,
                      {pair: held[pair].path if pair in held else default_paths[pair] for pair in default_paths})


def _fractions(parts) -> list[tuple[tuple[str, ...], float]]:
    """(path, bit/s) parts → (path, share of the pair's traffic)."""
    total = sum(bps for _, bps in parts)
    return [(path, bps / total if total else 1.0 / len(parts)) for path, bps in parts]
