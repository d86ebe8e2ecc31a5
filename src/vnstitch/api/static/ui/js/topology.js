// The substrate map: a geographic layout from node coordinates where the topology has them, a force layout
// otherwise; links coloured by measured utilisation, stitches drawn on their paths; hover and click show a
// link's capacity, reserved, measured and predicted load per direction.

import { svg, clear, fmtBps, fmtPct } from "./dom.js";

const W = 1000;
const H = 620;
const PAD = 30;

export const UTIL_CLASSES = [[0.3, "#16a34a"], [0.5, "#84cc16"], [0.7, "#eab308"], [0.9, "#f97316"], [Infinity, "#dc2626"]];
export const NO_MEASUREMENT = "#9ca3af";

export function utilColour(util) {
  if (util === null || util === undefined) return NO_MEASUREMENT;
  for (const [bound, colour] of UTIL_CLASSES) if (util < bound) return colour;
  return UTIL_CLASSES[UTIL_CLASSES.length - 1][1];
}

function fit(points) {
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

// Fruchterman-Reingold with a grid for the repulsion (near cells only): O(n) a round, deterministic.
function forceLayout(names, edges) {
  const n = names.length;
  const index = new Map(names.map((name, i) => [name, i]));
  const random = mulberry32(42);
  const x = new Float64Array(n);
  const y = new Float64Array(n);
  for (let i = 0; i < n; i++) { x[i] = random() * W; y[i] = random() * H; }
  const pairs = edges.map(([a, b]) => [index.get(a), index.get(b)]).filter(([a, b]) => a !== undefined && b !== undefined);
  const k = Math.sqrt((W * H) / Math.max(n, 1)) * 0.9;
  const cell = 1.6 * k;  // repulsion reaches 1.6 k: further nodes barely push
  const rounds = n > 300 ? 150 : 300;
  let temperature = W / 8;
  const dxs = new Float64Array(n);
  const dys = new Float64Array(n);
  const cols = Math.ceil((3 * W) / cell) + 2;
  const rows = Math.ceil((3 * H) / cell) + 2;
  const cellOf = new Int32Array(n);
  const start = new Int32Array(cols * rows + 1);
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
    const fillAt = start.slice(0, cols * rows);
    for (let i = 0; i < n; i++) members[fillAt[cellOf[i]]++] = i;
    for (let i = 0; i < n; i++) {
      const cx = cellOf[i] % cols;
      const cy = (cellOf[i] - cx) / cols;
      for (let gy = Math.max(0, cy - 1); gy <= Math.min(rows - 1, cy + 1); gy++) {
        for (let gx = Math.max(0, cx - 1); gx <= Math.min(cols - 1, cx + 1); gx++) {
          const c = gy * cols + gx;
          for (let m = start[c]; m < start[c + 1]; m++) {
            const j = members[m];
            if (j === i) continue;
            let ddx = x[i] - x[j];
            let ddy = y[i] - y[j];
            let d2 = ddx * ddx + ddy * ddy;
            if (d2 < 0.01) { ddx = random() - 0.5; ddy = random() - 0.5; d2 = 0.01; }
            if (d2 > cell * cell) continue;
            const force = (k * k) / d2;
            dxs[i] += ddx * force; dys[i] += ddy * force;
          }
        }
      }
    }
    for (const [a, b] of pairs) {
      const ddx = x[a] - x[b];
      const ddy = y[a] - y[b];
      const d = Math.sqrt(ddx * ddx + ddy * ddy) || 0.01;
      const force = d / k;
      dxs[a] -= ddx * force; dys[a] -= ddy * force;
      dxs[b] += ddx * force; dys[b] += ddy * force;
    }
    for (let i = 0; i < n; i++) {
      dxs[i] += (W / 2 - x[i]) * 0.01; dys[i] += (H / 2 - y[i]) * 0.01;  // gravity keeps components together
      const d = Math.sqrt(dxs[i] * dxs[i] + dys[i] * dys[i]) || 1;
      const step = Math.min(d, temperature);
      x[i] += (dxs[i] / d) * step; y[i] += (dys[i] / d) * step;
    }
    temperature = Math.max(1, temperature * 0.985);
  }
  return new Map(names.map((name, i) => [name, [x[i], y[i]]]));
}

function hash(text) {  // FNV-1a, 32 bits
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) { h ^= text.charCodeAt(i); h = Math.imul(h, 0x01000193); }
  return (h >>> 0).toString(16);
}

// Node name → [x, y] in the map's coordinates; `geographic` says which layout was used.
export function layout(nodes, links) {
  const located = nodes.filter((node) => typeof node.spec?.latitude === "number" && typeof node.spec?.longitude === "number");
  if (nodes.length && located.length >= 0.8 * nodes.length) {
    const midLat = located.reduce((sum, node) => sum + node.spec.latitude, 0) / located.length;
    const squeeze = Math.cos((midLat * Math.PI) / 180);
    const points = new Map(located.map((node) => [node.metadata.name, [node.spec.longitude * squeeze, -node.spec.latitude]]));
    for (const node of nodes) if (!points.has(node.metadata.name)) points.set(node.metadata.name, [0, 0]);
    return { points: fit(points), geographic: true };
  }
  const names = nodes.map((node) => node.metadata.name);
  const edges = links.map((link) => link.spec.endpoints);
  const cacheKey = `vnstitch.layout.${hash(JSON.stringify([names, edges]))}`;
  try {  // the same substrate lays out the same way: keep it for the next visit (positions, no data)
    const cached = JSON.parse(localStorage.getItem(cacheKey) || "null");
    if (cached && cached.length === names.length) return { points: new Map(cached), geographic: false };
  } catch (_) { /* no storage: lay out again */ }
  const points = fit(forceLayout(names, edges));
  try { localStorage.setItem(cacheKey, JSON.stringify([...points])); } catch (_) { /* full or disabled */ }
  return { points, geographic: false };
}

export class TopologyMap {
  constructor(host, tooltip, { onLinkPick } = {}) {
    this.host = host;
    this.tooltip = tooltip;
    this.onLinkPick = onLinkPick || (() => {});
    this.root = svg("svg", { class: "topology", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "substrate map" });
    this.linkLayer = svg("g", { class: "links" });
    this.stitchLayer = svg("g", { class: "stitches" });
    this.nodeLayer = svg("g", { class: "nodes" });
    this.root.append(this.linkLayer, this.stitchLayer, this.nodeLayer);
    host.append(this.root);
    this.view = { x: 0, y: 0, w: W, h: H };
    this.linkEls = new Map();
    this.stitchEls = new Map();
    this.loads = new Map();
    this.pinned = null;
    this.installPanZoom();
  }

  setSubstrate(nodes, links) {
    clear(this.linkLayer); clear(this.nodeLayer); clear(this.stitchLayer);
    this.linkEls.clear(); this.stitchEls.clear();
    const { points, geographic } = layout(nodes, links);
    this.points = points;
    this.geographic = geographic;
    this.links = new Map(links.map((link) => [link.metadata.name, link]));
    this.nodes = new Map(nodes.map((node) => [node.metadata.name, node]));
    const small = nodes.length <= 60;
    for (const link of links) {
      const [a, b] = link.spec.endpoints;
      const pa = points.get(a);
      const pb = points.get(b);
      if (!pa || !pb) continue;
      const line = svg("line", { class: "link", x1: pa[0], y1: pa[1], x2: pb[0], y2: pb[1], stroke: NO_MEASUREMENT,
        "stroke-width": small ? 5 : 2.5, "stroke-opacity": 0.9, "vector-effect": "non-scaling-stroke",
        dataset: { link: link.metadata.name, util: "" } });
      line.addEventListener("mousemove", (event) => this.showTip(event, this.linkText(link.metadata.name)));
      line.addEventListener("mouseleave", () => this.hideTip());
      line.addEventListener("click", (event) => { event.stopPropagation(); this.pin(link.metadata.name); });
      this.linkLayer.append(line);
      this.linkEls.set(link.metadata.name, line);
    }
    for (const node of nodes) {
      const p = points.get(node.metadata.name);
      const dot = svg("circle", { class: "node", cx: p[0], cy: p[1], r: small ? 6 : 2.2, "stroke-width": small ? 1.5 : 0.5,
        "vector-effect": "non-scaling-stroke", dataset: { node: node.metadata.name } });
      dot.addEventListener("mousemove", (event) => this.showTip(event, this.nodeText(node)));
      dot.addEventListener("mouseleave", () => this.hideTip());
      this.nodeLayer.append(dot);
      if (small) this.nodeLayer.append(svg("text", { class: "label", x: p[0] + 8, y: p[1] - 6, text: node.metadata.name }));
    }
    this.root.dataset.layout = geographic ? "geographic" : "graph";
    this.root.dataset.links = String(this.linkEls.size);
  }

  // loads: link name → {capacity, directions: [[from, to, reserved, measured, predicted], …], stitches}
  setLoads(loads) {
    this.loads = loads;
    for (const [name, line] of this.linkEls) {
      const load = loads.get(name);
      const util = load ? load.util : null;
      const colour = utilColour(util);
      const text = util === null || util === undefined ? "" : util.toFixed(4);
      if (line.dataset.util !== text) line.dataset.util = text;
      if (line.getAttribute("stroke") !== colour) line.setAttribute("stroke", colour);
    }
    if (this.pinned) this.onLinkPick(this.pinned, this.linkText(this.pinned));
  }

  // stitches: key → {path: [node…], state, selected}
  setStitches(stitches) {
    for (const [key, polyline] of this.stitchEls) if (!stitches.has(key)) { polyline.remove(); this.stitchEls.delete(key); }
    for (const [key, stitch] of stitches) {
      const drawn = this.stitchEls.get(key);
      const pathKey = stitch.path.join("\u0000");
      if (drawn && drawn.pathKey === pathKey) { drawn.classList.toggle("selected", Boolean(stitch.selected)); continue; }
      const points = stitch.path.map((node) => this.points?.get(node)).filter(Boolean);
      if (points.length < 2) { const old = this.stitchEls.get(key); if (old) { old.remove(); this.stitchEls.delete(key); } continue; }
      const text = points.map((p) => `${p[0].toFixed(1)},${p[1].toFixed(1)}`).join(" ");
      let polyline = this.stitchEls.get(key);
      if (!polyline) {
        polyline = svg("polyline", { class: "stitch", stroke: "#7c3aed", "stroke-opacity": 0.55, "stroke-width": 1.5,
          "vector-effect": "non-scaling-stroke", dataset: { stitch: key } });
        this.stitchLayer.append(polyline);
        this.stitchEls.set(key, polyline);
      }
      polyline.setAttribute("points", text);
      polyline.pathKey = pathKey;
      polyline.classList.toggle("selected", Boolean(stitch.selected));
    }
  }

  linkText(name) {
    const link = this.links?.get(name);
    if (!link) return name;
    const load = this.loads.get(name);
    const lines = [`link ${name} (${link.spec.state})`, `capacity ${fmtBps(link.spec.capacity)} each way`];
    for (const [from, to, reserved, measured, predicted] of load?.directions || [[...link.spec.endpoints, 0, null, null], [link.spec.endpoints[1], link.spec.endpoints[0], 0, null, null]]) {
      lines.push(`${from} → ${to}: reserved ${fmtBps(reserved)}, measured ${fmtBps(measured)}, predicted ${fmtBps(predicted)}`);
    }
    lines.push(`utilisation (measured) ${fmtPct(load ? load.util : null)}; stitches on it: ${load ? load.stitches : 0}`);
    return lines.join("\n");
  }

  nodeText(node) {
    const spec = node.spec || {};
    const where = typeof spec.latitude === "number" ? `${spec.latitude.toFixed(2)}, ${spec.longitude.toFixed(2)}` : "no coordinates";
    return [`node ${node.metadata.name}`, `site ${spec.site ?? "–"}`, where, `trust zone ${spec.trustZone ?? "–"}`].join("\n");
  }

  pin(name) {
    for (const line of this.linkEls.values()) line.classList.remove("pinned");
    this.pinned = name;
    this.linkEls.get(name)?.classList.add("pinned");
    this.onLinkPick(name, this.linkText(name));
  }

  showTip(event, text) {
    this.tooltip.textContent = text;
    this.tooltip.hidden = false;
    this.tooltip.style.left = `${event.clientX + 14}px`;
    this.tooltip.style.top = `${event.clientY + 14}px`;
  }

  hideTip() { this.tooltip.hidden = true; }

  installPanZoom() {
    const apply = () => this.root.setAttribute("viewBox", `${this.view.x} ${this.view.y} ${this.view.w} ${this.view.h}`);
    this.root.addEventListener("wheel", (event) => {
      event.preventDefault();
      const rect = this.root.getBoundingClientRect();
      const fx = (event.clientX - rect.left) / rect.width;
      const fy = (event.clientY - rect.top) / rect.height;
      const factor = event.deltaY > 0 ? 1.15 : 1 / 1.15;
      const w = Math.min(W * 2, Math.max(W / 20, this.view.w * factor));
      const h = (w * H) / W;
      this.view = { x: this.view.x + (this.view.w - w) * fx, y: this.view.y + (this.view.h - h) * fy, w, h };
      apply();
    }, { passive: false });
    let drag = null;
    this.root.addEventListener("pointerdown", (event) => { drag = { x: event.clientX, y: event.clientY, view: { ...this.view } }; });
    window.addEventListener("pointerup", () => { drag = null; });
    this.root.addEventListener("pointermove", (event) => {
      if (!drag || !(event.buttons & 1)) return;
      const rect = this.root.getBoundingClientRect();
      this.view = { ...drag.view, x: drag.view.x - ((event.clientX - drag.x) * drag.view.w) / rect.width,
        y: drag.view.y - ((event.clientY - drag.y) * drag.view.h) / rect.height };
      apply();
    });
  }
}
