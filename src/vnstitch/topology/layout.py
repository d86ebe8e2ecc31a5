"""Where a map draws each substrate node: geographic where the topology has coordinates, else a graph layout.

The dashboard's own layout (static/ui/js/layout.js) computed here with numpy and scipy, so that the server
lays a substrate out once and every page load reads the points instead of computing them: pivot MDS (hop
distances from a few far-apart pivots, Brandes & Pich 2006) for the global shape, then Fruchterman-Reingold
rounds with a cut-off repulsion to untangle it locally. A pure function of the node names, their coordinates
and the links' endpoints: deterministic, whatever order they come in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Literal

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import shortest_path
from scipy.spatial import cKDTree

WIDTH, HEIGHT = 1000.0, 620.0   # the box the points are fitted into (the dashboard's map), y downwards
PADDING = 30.0
GEOGRAPHIC_SHARE = 0.8          # this share of the nodes with latitude and longitude: a geographic layout
PIVOTS = 16
REFINE_ROUNDS = 20
SEED = 42


@dataclass(frozen=True)
class NodePlace:
    name: str
    latitude: float | None = None
    longitude: float | None = None


@dataclass(frozen=True)
class Layout:
    method: Literal["geographic", "graph"]
    points: dict[str, tuple[float, float]]  # node name → (x, y) in [0, WIDTH] × [0, HEIGHT], 0.1 apart


def substrate_layout(nodes: Iterable[NodePlace], edges: Iterable[tuple[str, str]]) -> Layout:
    """Every node's place: longitude and latitude (north up, squeezed by the cosine of the mean latitude) where
    at least GEOGRAPHIC_SHARE of the nodes have them (the others at (0, 0) before fitting), else the graph layout."""
    nodes = sorted(nodes, key=lambda node: node.name)
    names = [node.name for node in nodes]
    if not names:
        return Layout("graph", {})
    located = [node for node in nodes if node.latitude is not None and node.longitude is not None]
    if len(located) >= GEOGRAPHIC_SHARE * len(nodes):
        squeeze = math.cos(math.radians(sum(node.latitude for node in located) / len(located)))
        x = np.array([node.longitude * squeeze if node.latitude is not None and node.longitude is not None else 0.0
                      for node in nodes])
        y = np.array([-node.latitude if node.latitude is not None and node.longitude is not None else 0.0
                      for node in nodes])
        return Layout("geographic", _fitted(names, x, y))
    x, y = graph_layout(names, sorted({tuple(sorted(edge)) for edge in edges}))
    return Layout("graph", _fitted(names, x, y))


def graph_layout(names: list[str], edges: list[tuple[str, str]]) -> tuple[np.ndarray, np.ndarray]:
    """Pivot MDS then REFINE_ROUNDS force rounds; edges to unknown nodes and loops are left out."""
    index = {name: i for i, name in enumerate(names)}
    pairs = np.array([(index[a], index[b]) for a, b in edges if a in index and b in index and a != b],
                     dtype=np.int64).reshape(-1, 2)
    rng = np.random.default_rng(SEED)
    x, y = _pivot_mds(len(names), pairs)
    _spread(x, y)
    _refine(x, y, pairs, REFINE_ROUNDS, WIDTH / 30, rng)
    return x, y


def _pivot_mds(n: int, pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    k = min(PIVOTS, n)
    ones = np.ones(len(pairs))
    graph = coo_matrix((ones, (pairs[:, 0], pairs[:, 1])), shape=(n, n)).tocsr()
    squared = np.empty((n, k))
    nearest = np.full(n, np.inf)  # hops to the nearest pivot so far: the next pivot is the farthest node
    pivot = 0
    for p in range(k):
        hops = shortest_path(graph, directed=False, unweighted=True, indices=pivot)
        reachable = np.isfinite(hops)
        reach = hops[reachable].max() if reachable.any() else 0.0
        hops = np.where(reachable, hops, reach + 1)  # another component: just beyond the farthest node
        squared[:, p] = hops * hops
        nearest = np.minimum(nearest, hops)
        pivot = int(np.argmax(nearest))
    centred = -0.5 * (squared - squared.mean(axis=1, keepdims=True) - squared.mean(axis=0, keepdims=True)
                      + squared.mean())
    _, vectors = np.linalg.eigh(centred.T @ centred)  # ascending: the last two lead
    leading = np.zeros((k, 2))
    leading[:, : min(k, 2)] = vectors[:, ::-1][:, :2]  # one pivot (one node): a single axis
    leading *= np.where(leading[np.abs(leading).argmax(axis=0), [0, 1]] < 0, -1.0, 1.0)  # a fixed sign
    coords = centred @ leading
    return coords[:, 0].copy(), coords[:, 1].copy()


def _spread(x: np.ndarray, y: np.ndarray) -> None:
    """Into [0, WIDTH] × [0, HEIGHT] keeping the aspect ratio."""
    x -= x.min()
    y -= y.min()
    scale = min(WIDTH / (x.max() or 1.0), HEIGHT / (y.max() or 1.0))
    x *= scale
    y *= scale


def _refine(x: np.ndarray, y: np.ndarray, pairs: np.ndarray, rounds: int, temperature: float,
            rng: np.random.Generator) -> None:
    """Fruchterman-Reingold rounds; repulsion only between nodes closer than 1.6 k (a k-d tree finds them)."""
    n = len(x)
    k = math.sqrt(WIDTH * HEIGHT / max(n, 1)) * 0.9
    reach = 1.6 * k
    a, b = pairs[:, 0], pairs[:, 1]
    for _ in range(rounds):
        points = np.column_stack([x, y])
        near = cKDTree(points).query_pairs(reach, output_type="ndarray")
        i, j = near[:, 0], near[:, 1]
        dx, dy = x[i] - x[j], y[i] - y[j]
        d2 = dx * dx + dy * dy
        same = d2 < 0.01
        if same.any():  # on top of each other: pushed apart in a random direction
            dx[same], dy[same] = rng.random(same.sum()) - 0.5, rng.random(same.sum()) - 0.5
            d2[same] = 0.01
        force = k * k / d2
        fx, fy = np.zeros(n), np.zeros(n)  # (bincount of nothing is integer)
        fx += np.bincount(i, dx * force, n) - np.bincount(j, dx * force, n)
        fy += np.bincount(i, dy * force, n) - np.bincount(j, dy * force, n)
        ex, ey = x[a] - x[b], y[a] - y[b]
        pull = np.sqrt(ex * ex + ey * ey) / k
        pull[pull == 0] = 0.01 / k
        fx += np.bincount(b, ex * pull, n) - np.bincount(a, ex * pull, n)
        fy += np.bincount(b, ey * pull, n) - np.bincount(a, ey * pull, n)
        fx += (WIDTH / 2 - x) * 0.01  # gravity keeps components together
        fy += (HEIGHT / 2 - y) * 0.01
        length = np.sqrt(fx * fx + fy * fy)
        length[length == 0] = 1.0
        step = np.minimum(length, temperature)
        x += fx / length * step
        y += fy / length * step
        temperature = max(1.0, temperature * 0.95)


def _fitted(names: list[str], x: np.ndarray, y: np.ndarray) -> dict[str, tuple[float, float]]:
    """Into the padded box, centred, keeping the aspect ratio; rounded to 0.1."""
    x0, x1, y0, y1 = x.min(), x.max(), y.min(), y.max()
    scale = min((WIDTH - 2 * PADDING) / ((x1 - x0) or 1.0), (HEIGHT - 2 * PADDING) / ((y1 - y0) or 1.0))
    fx = (WIDTH - (x1 - x0) * scale) / 2 + (x - x0) * scale
    fy = (HEIGHT - (y1 - y0) * scale) / 2 + (y - y0) * scale
    return {name: (round(float(px), 1), round(float(py), 1)) for name, px, py in zip(names, fx, fy)}
