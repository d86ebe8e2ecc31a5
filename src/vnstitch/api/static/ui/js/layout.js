// Where the nodes go when the topology has no coordinates and the server's layout (GET /v1/substrate/layout,
// topology/layout.py: the same method in numpy) cannot be had: pure functions over names and endpoint pairs, no
// DOM, so that topology.js can run them in a worker (layout-worker.js).

export const W = 1000;
export const H = 620;
const PAD = 30;

export function fit(points) {
  const xs = [...points.values()].map((p) => p[0]);
  const ys = [...points.values()].map((p) => p[1]);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const scale = Math.min((W - 2 * PAD) / (x1 - x0 || 1), (H - 2 * PAD) / (y1 - y0 || 1));
  const dx = (W - (x1 - x0) * scale) / 2;
  const dy = (H - (y1 - y0) * scale) / 2;
  for (const [name, [x, y]] of points) points.set(name, [dx + (x - x0) * scale, dy + (y - y0) * scale]);
  return points;
}

function mulberry32(seed) {
  return () => {
    seed |= 0; seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Pivot MDS (Brandes & Pich 2006): hop distances from a few far-apart pivot nodes, double-centred, and the two
// leading eigenvectors give the global shape in O(pivots · (n + m)); a few Fruchterman-Reingold rounds then
// untangle it locally. Deterministic; about a tenth of the cost of a force layout from random positions.
const PIVOTS = 16;
const REFINE_ROUNDS = 20;

function adjacency(n, pairs) {
  const degree = new Int32Array(n + 1);
  for (let e = 0; e < pairs.length; e += 2) { degree[pairs[e] + 1] += 1; degree[pairs[e + 1] + 1] += 1; }
  for (let i = 0; i < n; i++) degree[i + 1] += degree[i];
  const next = degree.slice(0, n);
  const neighbours = new Int32Array(pairs.length);
  for (let e = 0; e < pairs.length; e += 2) {
    neighbours[next[pairs[e]]++] = pairs[e + 1];
    neighbours[next[pairs[e + 1]]++] = pairs[e];
  }
  return { start: degree, neighbours };
}

function hops(n, graph, source, out, queue) {  // BFS; unreachable nodes get -1
  out.fill(-1);
  out[source] = 0;
  let head = 0;
  let tail = 0;
  queue[tail++] = source;
  while (head < tail) {
    const u = queue[head++];
    for (let e = graph.start[u]; e < graph.start[u + 1]; e++) {
      const v = graph.neighbours[e];
      if (out[v] < 0) { out[v] = out[u] + 1; queue[tail++] = v; }
    }
  }
  return out;
}

function pivotMds(n, graph, random) {
  const k = Math.min(PIVOTS, n);
  const d = new Float64Array(n * k);  // d[i * k + p]: squared hops from pivot p to node i
  const far = new Float64Array(n).fill(Infinity);
  const dist = new Int32Array(n);
  const queue = new Int32Array(n);
  let pivot = 0;
  for (let p = 0; p < k; p++) {
    hops(n, graph, pivot, dist, queue);
    let reach = 0;
    for (let i = 0; i < n; i++) if (dist[i] > reach) reach = dist[i];
    let next = 0;
    for (let i = 0; i < n; i++) {
      const h = dist[i] < 0 ? reach + 1 : dist[i];  // another component: just beyond the farthest node
      d[i * k + p] = h * h;
      if (h < far[i]) far[i] = h;
      if (far[i] > far[next]) next = i;
    }
    pivot = next;
  }
  // double centring: c = -1/2 (d - row mean - column mean + mean)
  const rowMean = new Float64Array(n);
  const colMean = new Float64Array(k);
  let mean = 0;
  for (let i = 0; i < n; i++) for (let p = 0; p < k; p++) { const v = d[i * k + p]; rowMean[i] += v / k; colMean[p] += v / n; mean += v / (n * k); }
  for (let i = 0; i < n; i++) for (let p = 0; p < k; p++) d[i * k + p] = -0.5 * (d[i * k + p] - rowMean[i] - colMean[p] + mean);
  // cᵀc (k × k), then its two leading eigenvectors by power iteration (the second deflated by the first)
  const ctc = new Float64Array(k * k);
  for (let i = 0; i < n; i++) for (let p = 0; p < k; p++) { const a = d[i * k + p]; if (a) for (let q = 0; q < k; q++) ctc[p * k + q] += a * d[i * k + q]; }
  const vectors = [];
  for (let axis = 0; axis < 2; axis++) {
    let v = new Float64Array(k);
    for (let p = 0; p < k; p++) v[p] = random() - 0.5;
    for (let it = 0; it < 50; it++) {
      const w = new Float64Array(k);
      for (let p = 0; p < k; p++) { let sum = 0; for (let q = 0; q < k; q++) sum += ctc[p * k + q] * v[q]; w[p] = sum; }
      for (const u of vectors) { let dot = 0; for (let p = 0; p < k; p++) dot += w[p] * u[p]; for (let p = 0; p < k; p++) w[p] -= dot * u[p]; }
      let norm = 0;
      for (let p = 0; p < k; p++) norm += w[p] * w[p];
      norm = Math.sqrt(norm) || 1;
      for (let p = 0; p < k; p++) w[p] /= norm;
      v = w;
    }
    vectors.push(v);
  }
  const x = new Float64Array(n);
  const y = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    for (let p = 0; p < k; p++) { x[i] += d[i * k + p] * vectors[0][p]; y[i] += d[i * k + p] * vectors[1][p]; }
  }
  return [x, y];
}

// Into [0, W] × [0, H] keeping the aspect ratio (the longer axis along x).
function spread(x, y) {
  const n = x.length;
  let [x0, x1, y0, y1] = [Infinity, -Infinity, Infinity, -Infinity];
  for (let i = 0; i < n; i++) { x0 = Math.min(x0, x[i]); x1 = Math.max(x1, x[i]); y0 = Math.min(y0, y[i]); y1 = Math.max(y1, y[i]); }
  const scale = Math.min(W / (x1 - x0 || 1), H / (y1 - y0 || 1));
  for (let i = 0; i < n; i++) { x[i] = (x[i] - x0) * scale; y[i] = (y[i] - y0) * scale; }
}

// Fruchterman-Reingold rounds with a grid for the repulsion (near cells only): O(n) a round.
function refine(x, y, pairs, rounds, temperature, random) {
  const n = x.length;
  const k = Math.sqrt((W * H) / Math.max(n, 1)) * 0.9;
  const cell = 1.6 * k;  // repulsion reaches 1.6 k: further nodes barely push
  const cell2 = cell * cell;
  const k2 = k * k;
  const dxs = new Float64Array(n);
  const dys = new Float64Array(n);
  const cols = Math.ceil((3 * W) / cell) + 2;
  const rows = Math.ceil((3 * H) / cell) + 2;
  const cellOf = new Int32Array(n);
  const start = new Int32Array(cols * rows + 1);
  const fillAt = new Int32Array(cols * rows);
  const members = new Int32Array(n);
  for (let round = 0; round < rounds; round++) {
    dxs.fill(0); dys.fill(0);
    // counting sort of the nodes into grid cells (the map spans [-W, 2W] × [-H, 2H] at most)
    start.fill(0);
    for (let i = 0; i < n; i++) {
      const cx = Math.min(cols - 1, Math.max(0, Math.floor((x[i] + W) / cell)));
      const cy = Math.min(rows - 1, Math.max(0, Math.floor((y[i] + H) / cell)));
      cellOf[i] = cy * cols + cx;
      start[cellOf[i] + 1] += 1;
    }
    for (let c = 0; c < cols * rows; c++) start[c + 1] += start[c];
    fillAt.set(start.subarray(0, cols * rows));
    for (let i = 0; i < n; i++) members[fillAt[cellOf[i]]++] = i;
    for (let i = 0; i < n; i++) {
      const cx = cellOf[i] % cols;
      const cy = (cellOf[i] - cx) / cols;
      const xi = x[i];
      const yi = y[i];
      let fx = 0;
      let fy = 0;
      for (let gy = Math.max(0, cy - 1); gy <= Math.min(rows - 1, cy + 1); gy++) {
        const last = gy * cols + Math.min(cols - 1, cx + 1);
        for (let m = start[gy * cols + Math.max(0, cx - 1)]; m < start[last + 1]; m++) {
          const j = members[m];
          if (j === i) continue;
          let ddx = xi - x[j];
          let ddy = yi - y[j];
          let d2 = ddx * ddx + ddy * ddy;
          if (d2 > cell2) continue;
          if (d2 < 0.01) { ddx = random() - 0.5; ddy = random() - 0.5; d2 = 0.01; }
          const force = k2 / d2;
          fx += ddx * force; fy += ddy * force;
        }
      }
      dxs[i] = fx; dys[i] = fy;
    }
    for (let e = 0; e < pairs.length; e += 2) {
      const a = pairs[e];
      const b = pairs[e + 1];
      const ddx = x[a] - x[b];
      const ddy = y[a] - y[b];
      const force = (Math.sqrt(ddx * ddx + ddy * ddy) || 0.01) / k;
      dxs[a] -= ddx * force; dys[a] -= ddy * force;
      dxs[b] += ddx * force; dys[b] += ddy * force;
    }
    for (let i = 0; i < n; i++) {
      dxs[i] += (W / 2 - x[i]) * 0.01; dys[i] += (H / 2 - y[i]) * 0.01;  // gravity keeps components together
      const d = Math.sqrt(dxs[i] * dxs[i] + dys[i] * dys[i]) || 1;
      const step = Math.min(d, temperature);
      x[i] += (dxs[i] / d) * step; y[i] += (dys[i] / d) * step;
    }
    temperature = Math.max(1, temperature * 0.95);
  }
}

export function graphLayout(names, edges) {
  const n = names.length;
  const index = new Map(names.map((name, i) => [name, i]));
  const random = mulberry32(42);
  const ends = [];
  for (const [a, b] of edges) {
    const [i, j] = [index.get(a), index.get(b)];
    if (i !== undefined && j !== undefined && i !== j) ends.push(i, j);
  }
  const pairs = Int32Array.from(ends);
  const [x, y] = pivotMds(n, adjacency(n, pairs), random);
  spread(x, y);
  refine(x, y, pairs, REFINE_ROUNDS, W / 30, random);
  return new Map(names.map((name, i) => [name, [x[i], y[i]]]));
}

