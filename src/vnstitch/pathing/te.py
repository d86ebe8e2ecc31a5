"""Traffic engineering: split demands over k candidate paths to minimise the maximum link utilisation.

Path-based LP (one variable per demand and candidate path, plus U):

    minimise U
    subject to  Σ_p x[d,p] = 1                                   for every demand d
                (background[a] + Σ_{d,p ∋ a} bps[d]·x[d,p]) / capacity[a] ≤ U   for every arc a
                x ≥ 0

where background[a] = capacity[a] − residual[a] is what is already reserved on the arc.
A second LP keeps U at its optimum and prefers short paths, so splits are not arbitrary.
Utilisation is per arc (direction), since capacity is per direction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from scipy.optimize import linprog
from scipy.sparse import coo_matrix

from vnstitch.errors import InsufficientCapacity, InvalidInput, VnstitchError
from vnstitch.pathing.paths import Arc, Path, PathFinder

Pair = tuple[str, str]


@dataclass(frozen=True)
class TEProblem:
    """Demands, their candidate paths, and per-arc capacity and background load."""

    demands_bps: dict[Pair, float]
    candidates: dict[Pair, list[Path]]
    capacity_bps: dict[Arc, float]
    background_bps: dict[Arc, float]


@dataclass(frozen=True)
class DemandSplit:
    """How one demand is spread over its candidate paths (fractions sum to 1)."""

    demand_bps: float
    paths: tuple[Path, ...]
    fractions: tuple[float, ...]


@dataclass(frozen=True)
class TESolution:
    """Per-demand splits and the resulting per-arc load and utilisation."""

    splits: dict[Pair, DemandSplit]
    max_utilisation: float
    arc_load_bps: dict[Arc, float]
    arc_utilisation: dict[Arc, float]
    solver: str


class TESolver(Protocol):
    """Anything that turns a `TEProblem` into a `TESolution`."""

    name: str

    def solve(self, problem: TEProblem) -> TESolution: ...


def _evaluate(problem: TEProblem, fractions: dict[Pair, Sequence[float]], solver: str) -> TESolution:
    """Loads and utilisation on every candidate arc for given split fractions."""
    load = {arc: 0.0 for paths in problem.candidates.values() for p in paths for arc in p.arcs}
    splits = {}
    for pair, paths in problem.candidates.items():
        demand = problem.demands_bps[pair]
        share = tuple(float(f) for f in fractions[pair])
        splits[pair] = DemandSplit(demand, tuple(paths), share)
        for path, fraction in zip(paths, share):
            for arc in path.arcs:
                load[arc] += demand * fraction
    utilisation = {arc: (problem.background_bps[arc] + bps) / problem.capacity_bps[arc] for arc, bps in load.items()}
    return TESolution(splits, max(utilisation.values(), default=0.0), load, utilisation, solver)


class HighsPathLP:
    """Min-max-utilisation path LP solved by HiGHS through scipy.optimize.linprog."""

    name = "highs-path-lp"

    def solve(self, problem: TEProblem) -> TESolution:
        pairs = [p for p in problem.candidates if problem.demands_bps[p] > 0 and problem.candidates[p][0].arcs]
        columns = [(pair, i) for pair in pairs for i in range(len(problem.candidates[pair]))]
        arcs = sorted({arc for pair in pairs for p in problem.candidates[pair] for arc in p.arcs})
        fractions: dict[Pair, list[float]] = {
            pair: [1.0] + [0.0] * (len(paths) - 1) for pair, paths in problem.candidates.items()}
        if not columns:
            return _evaluate(problem, fractions, self.name)
        row_of = {arc: r for r, arc in enumerate(arcs)}
        n_x, u = len(columns), len(columns)
        rows, cols, vals = [], [], []
        for c, (pair, i) in enumerate(columns):
            demand = problem.demands_bps[pair]
            for arc in problem.candidates[pair][i].arcs:
                rows.append(row_of[arc])
                cols.append(c)
                vals.append(demand / problem.capacity_bps[arc])
        rows += list(range(len(arcs)))
        cols += [u] * len(arcs)
        vals += [-1.0] * len(arcs)
        a_ub = coo_matrix((vals, (rows, cols)), shape=(len(arcs), n_x + 1)).tocsr()
        b_ub = np.array([-problem.background_bps[a] / problem.capacity_bps[a] for a in arcs])
        pair_row = {pair: r for r, pair in enumerate(pairs)}
        eq_rows = [pair_row[pair] for pair, _ in columns]
        a_eq = coo_matrix(([1.0] * n_x, (eq_rows, range(n_x))), shape=(len(pairs), n_x + 1)).tocsr()
        b_eq = np.ones(len(pairs))
        objective = np.zeros(n_x + 1)
        objective[u] = 1.0
        first = linprog(objective, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_eq, method="highs")
        if first.status != 0:
            raise VnstitchError(f"TE solver failed: {first.message}")
        best_u = float(first.x[u])
        # Second pass: hold U at its optimum, prefer low-latency paths (weighted by demand share).
        total = sum(problem.demands_bps[p] for p in pairs)
        latency = np.array([problem.demands_bps[pair] / total * (problem.candidates[pair][i].latency_s + 1e-9)
                            for pair, i in columns] + [0.0])
        bounds = [(0, None)] * n_x + [(0, best_u + abs(best_u) * 1e-7 + 1e-9)]
        second = linprog(latency / latency.max(), A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_eq,
                         bounds=bounds, method="highs")
        x = second.x if second.status == 0 else first.x
        for c, (pair, i) in enumerate(columns):
            fractions[pair][i] = max(0.0, float(x[c]))
        for pair in pairs:
            total_share = sum(fractions[pair])
            fractions[pair] = [f / total_share for f in fractions[pair]]
        return _evaluate(problem, fractions, self.name)


def build_problem(demands_bps: Mapping[Pair, float], finder: PathFinder, *, k: int = 3,
                  residual: Mapping[Arc, float] | None = None, metric: str = "latency") -> TEProblem:
    """Candidate paths (k per demand, directed) and per-arc capacity/background for the solver."""
    clean: dict[Pair, float] = {}
    candidates: dict[Pair, list[Path]] = {}
    for pair, bps in demands_bps.items():
        if not (isinstance(bps, (int, float)) and math.isfinite(bps) and bps >= 0):
            raise InvalidInput(f"demand must be a finite number ≥ 0, got {bps!r}", field=f"demands[{pair}]")
        src, dst = pair
        paths = finder.paths(src, dst, k=k, metric=metric, symmetric=False, residual=residual)
        if not paths:
            raise InsufficientCapacity(f"no path from {src} to {dst}", field=f"demands[{pair}]")
        clean[pair], candidates[pair] = float(bps), paths
    arcs = {arc for paths in candidates.values() for p in paths for arc in p.arcs}
    capacity = {arc: finder.capacity_bps(arc) for arc in arcs}
    residual = residual or {}
    background = {arc: max(0.0, capacity[arc] - residual.get(arc, capacity[arc])) for arc in arcs}
    return TEProblem(clean, candidates, capacity, background)


def solve_min_max_utilisation(demands_bps: Mapping[Pair, float], finder: PathFinder, *, k: int = 3,
                              residual: Mapping[Arc, float] | None = None, metric: str = "latency",
                              solver: TESolver | None = None) -> TESolution:
    """Split each demand over its k best paths so that the most loaded arc is as low as possible."""
    problem = build_problem(demands_bps, finder, k=k, residual=residual, metric=metric)
    return (solver or HighsPathLP()).solve(problem)


def single_path_routing(demands_bps: Mapping[Pair, float], finder: PathFinder, *,
                        residual: Mapping[Arc, float] | None = None, metric: str = "latency") -> TESolution:
    """Baseline: every demand entirely on its single best path (what plain shortest-path routing does)."""
    problem = build_problem(demands_bps, finder, k=1, residual=residual, metric=metric)
    return _evaluate(problem, {pair: [1.0] for pair in problem.candidates}, "single-shortest-path")


__all__ = ["TEProblem", "TESolution", "DemandSplit", "TESolver", "HighsPathLP", "build_problem",
           "solve_min_max_utilisation", "single_path_routing"]
