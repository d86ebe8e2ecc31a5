// The substrate map: a geographic layout from node coordinates where the topology has them, a graph layout
// otherwise (the server's, GET /v1/substrate/layout; layout.js in a worker where that fails); links coloured by
// measured utilisation, stitches drawn on their paths; hover and click show a link's capacity, reserved, measured
// and predicted load per direction.

import { svg, clear, fmtBps, fmtPct } from "./dom.js";
import { W, H, fit, graphLayout } from "./layout.js";

const SVG_NS = "http://www.w3.org/2000/svg";

export const UTIL_CLASSES = [[0.3, "#16a34a"], [0.5, "#84cc16"], [0.7, "#eab308"], [0.9, "#f97316"], [Infinity, "#dc2626"]];
export const NO_MEASUREMENT = "#9ca3af";

export function utilColour(util) {
  if (util === null || util === undefined) return NO_MEASUREMENT;
  for (const [bound, colour] of UTIL_CLASSES) if (util < bound) return colour;
  return UTIL_CLASSES[UTIL_CLASSES.length - 1][1];
}

// Node name → [x, y] in the map's coordinates where the topology has coordinates (≥ 80 % of the nodes), else
// null: the graph layout is the server's (GET /v1/substrate/layout), or graphPoints' where that fails.
export function geographicPoints(nodes) {
  const located = nodes.filter((node) => typeof node.spec?.latitude === "number" && typeof node.spec?.longitude === "number");
  if (!nodes.length || located.length < 0.8 * nodes.length) return null;
  const midLat = located.reduce((sum, node) => sum + node.spec.latitude, 0) / located.length;
  const squeeze = Math.cos((midLat * Math.PI) / 180);
  const points = new Map(located.map((node) => [node.metadata.name, [node.spec.longitude * squeeze, -node.spec.latitude]]));
  for (const node of nodes) if (!points.has(node.metadata.name)) points.set(node.metadata.name, [0, 0]);
  return fit(points);
}

// The server's layout (a SubstrateLayout answer) as points, or null where it does not place every node.
export function serverPoints(answer, nodes) {
  const placed = answer?.points;
  if (!placed) return null;
  const points = new Map();
  for (const node of nodes) {
    const p = placed[node.metadata.name];
    if (!Array.isArray(p) || p.length !== 2) return null;
    points.set(node.metadata.name, [p[0], p[1]]);
  }
  return points.size ? fit(points) : null;
}

let worker = null;       // null: not tried yet; false: none to be had (the main thread lays out)
let asked = 0;
const waiting = new Map();  // id → [resolve, names, edges]

// The page's own graph layout, where the server's cannot be had: in a worker where the browser allows one,
// here otherwise; resolves to a Map of node name → [x, y].
export function graphPoints(nodes, links) {
  const names = nodes.map((node) => node.metadata.name);
  const edges = links.map((link) => link.spec.endpoints);
  startLayoutWorker();
  if (!worker) return Promise.resolve(fit(graphLayout(names, edges)));
  const id = ++asked;
  return new Promise((resolve) => { waiting.set(id, [resolve, names, edges]); worker.postMessage([id, names, edges]); });
}

function startLayoutWorker() {
  if (worker === null) {
    try {
      worker = new Worker(new URL("./layout-worker.js", import.meta.url), { type: "module" });
      worker.onmessage = (event) => { const [id, points] = event.data; waiting.get(id)?.[0](new Map(points)); waiting.delete(id); };
      worker.onerror = () => {  // could not load or run: lay out what was asked here
        worker = false;
        for (const [id, [resolve, n, e]] of waiting) { waiting.delete(id); resolve(fit(graphLayout(n, e))); }
      };
    } catch (_) { worker = false; }
  }
}

export class TopologyMap {
  constructor(host, tooltip, { onLinkPick, onDrawn } = {}) {
    this.host = host;
    this.tooltip = tooltip;
    this.onLinkPick = onLinkPick || (() => {});
    this.onDrawn = onDrawn || (() => {});
    this.substrateAsked = 0;
    this.drawn = false;
    this.root = svg("svg", { class: "topology", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "substrate map" });
    this.linkLayer = svg("g", { class: "links" });
    this.stitchLayer = svg("g", { class: "stitches" });
    this.nodeLayer = svg("g", { class: "nodes" });
    this.root.append(this.linkLayer, this.stitchLayer, this.nodeLayer);
    host.append(this.root);
    this.view = { x: 0, y: 0, w: W, h: H };
    this.linkEls = new Map();
    this.stitchEls = new Map();
    this.pointText = new Map();
    this.loads = new Map();
    this.pinned = null;
    this.installPanZoom();
    this.installHover();
  }

  // Draws at once where the topology has coordinates; otherwise once `placed` (a promise of the server's layout
  // answer, or of null) has given every node's place, or else the page's own layout has; then calls onDrawn.
  // `drawn` says whether the map is there.
  setSubstrate(nodes, links, placed) {
    const asked = ++this.substrateAsked;
    clear(this.linkLayer); clear(this.nodeLayer); clear(this.stitchLayer);
    this.linkEls.clear(); this.stitchEls.clear();
    this.pointText = new Map();
    this.drawn = false;
    performance.mark("vnstitch:layout-start");
    const geographic = geographicPoints(nodes);
    if (geographic) {
      performance.measure("vnstitch:layout", "vnstitch:layout-start");
      this.draw(nodes, links, geographic, true);
      return;
    }
    Promise.resolve(placed).catch(() => null)
      .then((answer) => serverPoints(answer, nodes) || graphPoints(nodes, links))
      .then((points) => {
        if (asked !== this.substrateAsked) return;  // a newer substrate is on its way
        performance.measure("vnstitch:layout", "vnstitch:layout-start");
        this.draw(nodes, links, points, false);
        this.onDrawn();
      });
  }

  draw(nodes, links, points, geographic) {
    this.points = points;
    this.pointText = new Map([...points].map(([name, p]) => [name, `${p[0].toFixed(1)},${p[1].toFixed(1)}`]));
    this.geographic = geographic;
    this.links = new Map(links.map((link) => [link.metadata.name, link]));
    this.nodes = new Map(nodes.map((node) => [node.metadata.name, node]));
    const small = nodes.length <= 60;
    // one fragment per layer, attributes set directly, and hover/click handled once per layer (below)
    const linkFragment = document.createDocumentFragment();
    for (const link of links) {
      const [a, b] = link.spec.endpoints;
      const pa = points.get(a);
      const pb = points.get(b);
      if (!pa || !pb) continue;
      const line = document.createElementNS(SVG_NS, "line");
      line.setAttribute("class", "link");
      line.setAttribute("x1", pa[0].toFixed(1)); line.setAttribute("y1", pa[1].toFixed(1));
      line.setAttribute("x2", pb[0].toFixed(1)); line.setAttribute("y2", pb[1].toFixed(1));
      line.setAttribute("stroke", NO_MEASUREMENT);
      line.setAttribute("stroke-width", small ? "5" : "2.5");
      line.setAttribute("data-link", link.metadata.name);
      line.setAttribute("data-util", "");
      line.shownUtil = null;
      line.shownColour = NO_MEASUREMENT;
      linkFragment.append(line);
      this.linkEls.set(link.metadata.name, line);
    }
    this.linkLayer.append(linkFragment);
    const nodeFragment = document.createDocumentFragment();
    for (const node of nodes) {
      const p = points.get(node.metadata.name);
      const dot = document.createElementNS(SVG_NS, "circle");
      dot.setAttribute("class", "node");
      dot.setAttribute("cx", p[0].toFixed(1)); dot.setAttribute("cy", p[1].toFixed(1));
      dot.setAttribute("r", small ? "6" : "2.2");
      dot.setAttribute("stroke-width", small ? "1.5" : "0.5");
      dot.dataset.node = node.metadata.name;
      nodeFragment.append(dot);
      if (small) nodeFragment.append(svg("text", { class: "label", x: p[0] + 8, y: p[1] - 6, text: node.metadata.name }));
    }
    this.nodeLayer.append(nodeFragment);
    this.root.dataset.layout = geographic ? "geographic" : "graph";
    this.root.dataset.links = String(this.linkEls.size);
    this.drawn = true;
  }

  installHover() {
    const target = (event) => {
      const item = event.target;
      if (item.dataset?.link !== undefined) return ["link", item.dataset.link];
      if (item.dataset?.node !== undefined) return ["node", item.dataset.node];
      return null;
    };
    this.root.addEventListener("mousemove", (event) => {
      const hit = target(event);
      if (!hit) { this.hideTip(); return; }
      const [kind, name] = hit;
      if (kind === "link") this.showTip(event, this.linkText(name));
      else if (this.nodes?.has(name)) this.showTip(event, this.nodeText(this.nodes.get(name)));
    });
    this.root.addEventListener("mouseleave", () => this.hideTip());
    this.root.addEventListener("click", (event) => {
      const hit = target(event);
      if (hit && hit[0] === "link") { event.stopPropagation(); this.pin(hit[1]); }
    });
  }

  // loads: link name → {capacity, directions: [[from, to, reserved, measured, predicted], …], stitches}
  setLoads(loads) {
    this.loads = loads;
    for (const [name, line] of this.linkEls) {  // what each line shows is kept on it: no DOM reads
      const load = loads.get(name);
      const util = load ? load.util : null;
      if (util === line.shownUtil) continue;
      line.shownUtil = util;
      const colour = utilColour(util);
      line.setAttribute("data-util", util === null || util === undefined ? "" : util.toFixed(4));
      if (line.shownColour !== colour) { line.shownColour = colour; line.setAttribute("stroke", colour); }
    }
    if (this.pinned) this.onLinkPick(this.pinned, this.linkText(this.pinned));
  }

  // stitches: key → {path: [node…], state, selected}
  setStitches(stitches) {
    const fresh = document.createDocumentFragment();
    for (const [key, polyline] of this.stitchEls) if (!stitches.has(key)) { polyline.remove(); this.stitchEls.delete(key); }
    for (const [key, stitch] of stitches) {
      const drawn = this.stitchEls.get(key);
      const pathKey = stitch.path.join("\u0000");
      if (drawn && drawn.pathKey === pathKey) { drawn.classList.toggle("selected", Boolean(stitch.selected)); continue; }
      const points = [];
      for (const node of stitch.path) { const at = this.pointText.get(node); if (at) points.push(at); }
      if (points.length < 2) { const old = this.stitchEls.get(key); if (old) { old.remove(); this.stitchEls.delete(key); } continue; }
      const text = points.join(" ");
      let polyline = drawn;
      if (!polyline) {
        polyline = document.createElementNS(SVG_NS, "polyline");
        polyline.setAttribute("class", stitch.selected ? "stitch selected" : "stitch");
        polyline.setAttribute("data-stitch", key);
        fresh.append(polyline);
        this.stitchEls.set(key, polyline);
      } else polyline.classList.toggle("selected", Boolean(stitch.selected));
      polyline.setAttribute("points", text);
      polyline.pathKey = pathKey;
    }
    this.stitchLayer.append(fresh);
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
