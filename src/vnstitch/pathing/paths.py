"""Constrained paths over the substrate: latency or cost, residual bandwidth, trust zones, exclusions.

A `PathFinder` is built once per substrate; every query takes the residual bandwidth per
arc (`(from_node, to_node)` → bit/s) as an argument, so the reservations ledger stays
outside and nothing here is mutated by a query. Single best paths run scipy's C Dijkstra
on a per-query weight array (pruned arcs get an infinite weight); k alternatives use
networkx's Yen implementation with a weight function that hides pruned arcs.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import networkx as nx
import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from vnstitch.domain.substrate import Link, Node
from vnstitch.errors import InvalidInput, NotFound
from vnstitch.units import format_bandwidth

Arc = tuple[str, str]
METRICS = ("latency", "cost")
MAX_CANDIDATES_PER_ALTERNATIVE = 10  # k-path search stops after 10·k + 20 candidate paths
MAX_LABELS = 200_000  # cost-with-latency-bound search falls back to the lowest-latency path beyond this
_EPS = 1e-12


@dataclass(frozen=True)
class Path:
    """A loop-free path: its nodes, link names, arcs, total latency/cost and free bandwidth."""

    nodes: tuple[str, ...]
    links: tuple[str, ...]
    arcs: tuple[Arc, ...]
    latency_s: float
    cost: float
    bottleneck_bps: float


@dataclass(frozen=True)
class Availability:
    """Answer to 'X bit/s within Y s between A and B?' — reserves nothing."""

    feasible: bool
    path: Path | None
    best_bandwidth_bps: float
    best_latency_s: float | None
    reason: str


@dataclass
class _Query:
    """Per-query arrays in arc (CSR) order: effective residual and the structural mask."""

    src: int
    dst: int
    residual_bps: np.ndarray
    allowed: np.ndarray  # arcs allowed by zones and exclusions, whatever their bandwidth
    blocked_reason: str | None  # src or dst itself excluded / outside the allowed zones


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3g} ms"


class PathFinder:
    """Directed graph with both arcs of every link; answers path and availability queries."""

    def __init__(self, nodes: Iterable[Node], links: Iterable[Link]):
        self._names: list[str] = [n.name for n in nodes]
        self._index = {name: i for i, name in enumerate(self._names)}
        if len(self._index) != len(self._names):
            raise InvalidInput("duplicate node names", field="nodes")
        node_zone = {n.name: n.spec.trust_zone for n in nodes}
        self._node_zone = [node_zone[name] for name in self._names]
        raw = []  # (tail, head, latency_s, cost, capacity_bps, zone, link name, link number)
        self._link_names: list[str] = []
        seen_pairs: set[frozenset[int]] = set()
        for number, link in enumerate(links):
            a, b = link.spec.endpoints
            for end in (a, b):
                if end not in self._index:
                    raise InvalidInput(f"unknown node '{end}'", field=f"links[{link.name}].spec.endpoints")
            ia, ib = self._index[a], self._index[b]
            if frozenset((ia, ib)) in seen_pairs:
                raise InvalidInput(f"a second link between {a} and {b}", field=f"links[{link.name}]")
            seen_pairs.add(frozenset((ia, ib)))
            self._link_names.append(link.name)
            s = link.spec
            raw.append((ia, ib, s.latency, s.cost, s.capacity, s.trust_zone, number, s.state == "up"))
            raw.append((ib, ia, s.latency, s.cost, s.capacity, s.trust_zone, number, s.state == "up"))
        raw.sort(key=lambda r: (r[0], r[1]))
        n = len(self._names)
        self._tail = np.array([r[0] for r in raw], dtype=np.int32)
        self._head = np.array([r[1] for r in raw], dtype=np.int32)
        self._latency_s = np.array([r[2] for r in raw], dtype=np.float64)
        self._cost = np.array([r[3] for r in raw], dtype=np.float64)
        self._capacity_bps = np.array([r[4] for r in raw], dtype=np.float64)
        self._arc_zone = [r[5] for r in raw]
        self._arc_link = np.array([r[6] for r in raw], dtype=np.int64)
        self._arc_up = np.array([r[7] for r in raw], dtype=bool)  # links in maintenance or down carry nothing new
        self._indptr = np.searchsorted(self._tail, np.arange(n + 1)).astype(np.int32)
        self._arc_of = {(int(t), int(h)): i for i, (t, h) in enumerate(zip(self._tail, self._head))}
        self._reverse = np.array([self._arc_of[(int(h), int(t))] for t, h in zip(self._tail, self._head)],
                                 dtype=np.int64)
        self._arc_by_name = {(self._names[t], self._names[h]): i for (t, h), i in self._arc_of.items()}
        self._link_arcs: dict[str, list[int]] = {}
        for i, number in enumerate(self._arc_link):
            self._link_arcs.setdefault(self._link_names[number], []).append(i)
        self._latency_list = self._latency_s.tolist()
        self._cost_list = self._cost.tolist()
        self._out: list[list[tuple[int, int]]] = [[] for _ in range(n)]
        for i, (t, h) in enumerate(zip(self._tail.tolist(), self._head.tolist())):
            self._out[t].append((i, h))
        self._graph = nx.DiGraph()
        self._graph.add_nodes_from(range(n))
        self._graph.add_edges_from((t, h, {"arc": i}) for (t, h), i in self._arc_of.items())
        self._zones = sorted(set(self._node_zone) | set(self._arc_zone))

    # ------------------------------------------------------------ public queries

    @property
    def nodes(self) -> list[str]:
        return list(self._names)

    def arc_positions(self) -> dict[Arc, int]:
        """Arc → its position in a residual vector (pass `residual` as a numpy array in this order)."""
        return dict(self._arc_by_name)

    def capacity_vector(self) -> np.ndarray:
        """Capacity per arc in residual-vector order (a fresh copy)."""
        return self._capacity_bps.copy()

    def capacity_bps(self, arc: Arc) -> float:
        """Full capacity of one arc; NotFound for an unknown arc."""
        i = self._arc_by_name.get(tuple(arc))
        if i is None:
            raise NotFound(f"no link from '{arc[0]}' to '{arc[1]}'")
        return float(self._capacity_bps[i])

    def arcs(self) -> list[Arc]:
        """Every arc, both directions of every link."""
        return list(self._arc_by_name)

    def paths(self, src: str, dst: str, *, metric: str = "latency", bandwidth_bps: float = 0.0,
              symmetric: bool = True, max_latency_s: float | None = None,
              allowed_zones: Iterable[str] | None = None, exclude_nodes: Iterable[str] = (),
              exclude_links: Iterable[str] = (), residual: Mapping[Arc, float] | None = None,
              k: int = 1) -> list[Path]:
        """Up to k best paths meeting every constraint, best first; [] when there is none."""
        self._check_scalars(metric, bandwidth_bps, max_latency_s, k)
        query = self._prepare(src, dst, symmetric, allowed_zones, exclude_nodes, exclude_links, residual)
        if query.blocked_reason:
            return []
        if query.src == query.dst:
            return [self._zero_path(src)]
        mask = query.allowed & (query.residual_bps >= bandwidth_bps)
        best = self._best(query, mask, metric, max_latency_s)
        if best is None or k == 1:
            return [best] if best else []
        return self._alternatives(query, mask, metric, max_latency_s, k, best)

    def availability(self, src: str, dst: str, *, bandwidth_bps: float, max_latency_s: float | None = None,
                     metric: str = "latency", symmetric: bool = True,
                     allowed_zones: Iterable[str] | None = None, exclude_nodes: Iterable[str] = (),
                     exclude_links: Iterable[str] = (), residual: Mapping[Arc, float] | None = None
                     ) -> Availability:
        """Whether `bandwidth_bps` fits within `max_latency_s`, over which path, and the best on offer."""
        self._check_scalars(metric, bandwidth_bps, max_latency_s, 1)
        query = self._prepare(src, dst, symmetric, allowed_zones, exclude_nodes, exclude_links, residual)
        if query.blocked_reason:
            return Availability(False, None, 0.0, None, query.blocked_reason)
        if query.src == query.dst:
            return Availability(True, self._zero_path(src), math.inf, 0.0, "")
        bound = math.inf if max_latency_s is None else max_latency_s
        limit = bound * (1 + 1e-9) + _EPS
        mask = query.allowed & (query.residual_bps >= bandwidth_bps)
        fastest = self._shortest(query, self._latency_s, mask)  # lowest latency with the bandwidth
        best_latency = fastest.latency_s if fastest else None
        feasible = fastest is not None and fastest.latency_s <= limit
        path = None
        if feasible:
            path = fastest if metric == "latency" else self._best(query, mask, metric, max_latency_s)
        widest = self._widest_within(query, bound, known=fastest if feasible else None)
        best_bw = widest.bottleneck_bps if widest else 0.0
        reason = "" if feasible else self._reason(query, src, dst, bandwidth_bps, max_latency_s,
                                                  best_latency, widest)
        return Availability(feasible, path, best_bw, best_latency, reason)

    # ------------------------------------------------------------ query preparation

    def _check_scalars(self, metric: str, bandwidth_bps: float, max_latency_s: float | None, k: int) -> None:
        if metric not in METRICS:
            raise InvalidInput(f"unknown metric '{metric}' (valid: {', '.join(METRICS)})", field="metric")
        if not bandwidth_bps >= 0:
            raise InvalidInput("must be a number ≥ 0", field="bandwidth_bps")
        if max_latency_s is not None and not max_latency_s >= 0:
            raise InvalidInput("must be a number ≥ 0", field="max_latency_s")
        if not isinstance(k, int) or k < 1:
            raise InvalidInput("must be an integer ≥ 1", field="k")

    def _node(self, name: str, field: str) -> int:
        try:
            return self._index[name]
        except (KeyError, TypeError):
            raise NotFound(f"unknown node '{name}'", field=field) from None

    def _prepare(self, src: str, dst: str, symmetric: bool, allowed_zones: Iterable[str] | None,
                 exclude_nodes: Iterable[str], exclude_links: Iterable[str],
                 residual: Mapping[Arc, float] | None) -> _Query:
        """Residual per arc (both directions when symmetric) and the arcs zones/exclusions allow."""
        src_i, dst_i = self._node(src, "src"), self._node(dst, "dst")
        free = self._capacity_bps
        if isinstance(residual, np.ndarray):  # already in arc order (see arc_positions): no conversion
            if residual.shape != free.shape:
                raise InvalidInput(f"residual vector has {residual.shape[0]} arcs, the substrate {free.shape[0]}",
                                   field="residual")
            free = residual
        elif residual:
            free = free.copy()
            where = np.fromiter(map(self._arc_by_name.get, residual.keys(), itertools.repeat(-1)),
                                dtype=np.int64, count=len(residual))
            values = np.fromiter(residual.values(), dtype=np.float64, count=len(residual))
            known = where >= 0  # arcs outside this substrate are ignored
            free[where[known]] = values[known]
        if symmetric:
            free = np.minimum(free, free[self._reverse])
        node_ok = np.ones(len(self._names), dtype=bool)
        blocked = None
        if isinstance(exclude_nodes, str):
            exclude_nodes = (exclude_nodes,)
        if isinstance(exclude_links, str):
            exclude_links = (exclude_links,)
        excluded = [self._node(name, "exclude_nodes") for name in exclude_nodes]
        node_ok[excluded] = False
        allowed = self._arc_up.copy()
        if allowed_zones is not None:
            zones = set(allowed_zones)
            node_ok &= np.array([z in zones for z in self._node_zone], dtype=bool)
            allowed &= np.array([z in zones for z in self._arc_zone], dtype=bool)
        for name in exclude_links:
            arcs = self._link_arcs.get(name)
            if arcs is None:
                raise NotFound(f"unknown link '{name}'", field="exclude_links")
            allowed[arcs] = False
        allowed &= node_ok[self._tail] & node_ok[self._head]
        for name, i in ((src, src_i), (dst, dst_i)):
            if not node_ok[i] and blocked is None:
                blocked = (f"node {name} is excluded" if i in excluded
                           else f"node {name} is in trust zone '{self._node_zone[i]}', not an allowed one")
        return _Query(src_i, dst_i, free, allowed, blocked)

    # ------------------------------------------------------------ shortest paths

    def lowest_latency_from(self, src: str, dsts: Iterable[str]) -> dict[str, Path | None]:
        """The lowest-latency path from `src` to each of `dsts` (None where none), from one Dijkstra:
        the same paths as `paths(src, dst, k=1)` gives one by one."""
        query = self._prepare(src, src, False, None, (), (), None)
        dist, pred = self._distances(self._latency_s, query.allowed, query.src, predecessors=True)
        out: dict[str, Path | None] = {}
        for dst in dsts:
            target = self._node(dst, "dst")
            if target == query.src:
                out[dst] = self._zero_path(dst)
                continue
            if not math.isfinite(dist[target]):
                out[dst] = None
                continue
            chain = [target]
            while chain[-1] != query.src:
                chain.append(int(pred[chain[-1]]))
            out[dst] = self._path(chain[::-1], query)
        return out

    def _distances(self, weights: np.ndarray, mask: np.ndarray, source: int, limit: float = np.inf,
                   predecessors: bool = False):
        """Dijkstra from `source` over the arcs in `mask` (scipy, C)."""
        data = np.where(mask, weights, np.inf)
        graph = csr_matrix((data, self._head, self._indptr), shape=(len(self._names),) * 2)
        return dijkstra(graph, directed=True, indices=source, return_predecessors=predecessors, limit=limit)

    def _shortest(self, query: _Query, weights: np.ndarray, mask: np.ndarray,
                  limit: float = np.inf) -> Path | None:
        dist, pred = self._distances(weights, mask, query.src, limit, predecessors=True)
        if not math.isfinite(dist[query.dst]):
            return None
        chain = [query.dst]
        while chain[-1] != query.src:
            chain.append(int(pred[chain[-1]]))
        return self._path(chain[::-1], query)

    def _best(self, query: _Query, mask: np.ndarray, metric: str, max_latency_s: float | None) -> Path | None:
        """The single best path by `metric` within the latency bound, or None."""
        bound = math.inf if max_latency_s is None else max_latency_s * (1 + 1e-9) + _EPS
        fastest = self._shortest(query, self._latency_s, mask, limit=bound)
        if fastest is None or fastest.latency_s > bound:
            return None
        if metric == "latency":
            return fastest
        cheapest = self._shortest(query, self._cost, mask)
        if cheapest is not None and cheapest.latency_s <= bound:
            return cheapest
        return self._cheapest_within(query, mask, bound) or fastest

    def _cheapest_within(self, query: _Query, mask: np.ndarray, bound: float) -> Path | None:
        """Exact cheapest path with latency ≤ bound: A* over non-dominated (cost, latency) labels."""
        n = len(self._names)
        data_lat = np.where(mask, self._latency_s, np.inf)
        data_cost = np.where(mask, self._cost, np.inf)
        rev = lambda data: csr_matrix((data, self._head, self._indptr), shape=(n, n)).T.tocsr()  # noqa: E731
        lat_to = dijkstra(rev(data_lat), directed=True, indices=query.dst).tolist()
        cost_to = dijkstra(rev(data_cost), directed=True, indices=query.dst).tolist()
        ok, lat_w, cost_w, out = mask.tolist(), self._latency_list, self._cost_list, self._out
        labels: list[list[tuple[float, float]]] = [[] for _ in range(n)]
        tie = itertools.count()
        heap = [(cost_to[query.src], 0.0, next(tie), query.src, 0.0, None)]
        popped = 0
        while heap and popped < MAX_LABELS:
            _, lat, _, node, cost, parent = heapq.heappop(heap)
            if any(c <= cost and l <= lat for c, l in labels[node]):
                continue
            labels[node].append((cost, lat))
            popped += 1
            here = (node, parent)
            if node == query.dst:
                chain = []
                while here is not None:
                    chain.append(here[0])
                    here = here[1]
                return self._path(chain[::-1], query)
            for arc, head in out[node]:
                if not ok[arc]:
                    continue
                new_lat, new_cost = lat + lat_w[arc], cost + cost_w[arc]
                if new_lat + lat_to[head] > bound:
                    continue
                if any(c <= new_cost and l <= new_lat for c, l in labels[head]):
                    continue
                heapq.heappush(heap, (new_cost + cost_to[head], new_lat, next(tie), head, new_cost, here))
        return None

    def _alternatives(self, query: _Query, mask: np.ndarray, metric: str, max_latency_s: float | None,
                      k: int, best: Path) -> list[Path]:
        """`best` then further loop-free paths in metric order (Yen via networkx), bounded."""
        bound = math.inf if max_latency_s is None else max_latency_s * (1 + 1e-9) + _EPS
        ok = mask.tolist()
        values = self._latency_list if metric == "latency" else self._cost_list

        def weight(u, v, attrs):
            arc = attrs["arc"]
            return values[arc] if ok[arc] else None

        found, seen = [best], {best.nodes}
        budget = MAX_CANDIDATES_PER_ALTERNATIVE * k + 20
        try:
            for nodes in nx.shortest_simple_paths(self._graph, query.src, query.dst, weight=weight):
                budget -= 1
                path = self._path(nodes, query)
                if path.latency_s > bound:
                    if metric == "latency":
                        break  # later candidates are slower still
                elif path.nodes not in seen:
                    seen.add(path.nodes)
                    found.append(path)
                if len(found) >= k or budget <= 0:
                    break
        except nx.NetworkXNoPath:
            pass
        return found

    def _widest_within(self, query: _Query, bound: float, known: Path | None = None) -> Path | None:
        """Path with the most free bandwidth among those within the latency bound (binary search).

        Candidates are the distinct residuals above a path known to fit (`known`, else the
        lowest-latency path), capped by the widest arc leaving src and entering dst.
        """
        limit = bound * (1 + 1e-9) + _EPS
        free, allowed = query.residual_bps, query.allowed
        best = known or self._shortest(query, self._latency_s, allowed, limit=limit)
        if best is None or best.latency_s > limit:
            return None
        leaving, entering = allowed & (self._tail == query.src), allowed & (self._head == query.dst)
        cap = min(free[leaving].max(), free[entering].max())
        candidates = free[allowed]
        thresholds = np.unique(candidates[(candidates <= cap) & (candidates > best.bottleneck_bps)])
        best_index, low, high = -1, 0, len(thresholds) - 1
        while low <= high:
            middle = (low + high) // 2
            mask = allowed & (free >= thresholds[middle])
            reached_s = self._distances(self._latency_s, mask, query.src, limit=limit)[query.dst]
            if math.isfinite(reached_s) and reached_s <= limit:
                best_index, low = middle, middle + 1
            else:
                high = middle - 1
        if best_index >= 0:
            best = self._shortest(query, self._latency_s, allowed & (free >= thresholds[best_index]), limit=limit)
        return best

    # ------------------------------------------------------------ results

    def _path(self, chain: list[int], query: _Query) -> Path:
        arcs = [self._arc_of[(a, b)] for a, b in zip(chain, chain[1:])]
        names = self._names
        return Path(
            nodes=tuple(names[i] for i in chain),
            links=tuple(self._link_names[self._arc_link[a]] for a in arcs),
            arcs=tuple((names[a], names[b]) for a, b in zip(chain, chain[1:])),
            latency_s=float(sum(self._latency_list[a] for a in arcs)),
            cost=float(sum(self._cost_list[a] for a in arcs)),
            bottleneck_bps=float(min(query.residual_bps[a] for a in arcs)) if arcs else math.inf,
        )

    def _zero_path(self, node: str) -> Path:
        return Path((node,), (), (), 0.0, 0.0, math.inf)

    def _reason(self, query: _Query, src: str, dst: str, bandwidth_bps: float, max_latency_s: float | None,
                best_latency_s: float | None, widest: Path | None) -> str:
        """One line saying why a request does not fit."""
        want = format_bandwidth(bandwidth_bps)
        if max_latency_s is None:
            if widest is None:
                return f"no path between {src} and {dst} under the zone and exclusion constraints"
            return f"no path has {want} free: {self._bottleneck_text(widest, query)}"
        within = f"within {_ms(max_latency_s)}"
        if widest is None:
            fastest = self._shortest(query, self._latency_s, query.allowed)
            if fastest is None:
                return f"no path between {src} and {dst} under the zone and exclusion constraints"
            text = f"no path {within}: the lowest latency is {_ms(fastest.latency_s)}"
        else:
            text = f"no path {within} has {want} free: {self._bottleneck_text(widest, query)}"
        if best_latency_s is not None:
            text += f"; with {want} free the lowest latency is {_ms(best_latency_s)}"
        return text

    def _bottleneck_text(self, path: Path, query: _Query) -> str:
        arc = min((self._arc_by_name[a] for a in path.arcs), key=lambda a: query.residual_bps[a])
        return (f"bottleneck {self._link_names[self._arc_link[arc]]} has "
                f"{format_bandwidth(float(query.residual_bps[arc]))} free")


__all__ = ["PathFinder", "Path", "Availability", "Arc", "METRICS"]
