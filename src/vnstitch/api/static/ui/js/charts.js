// A small time-series chart in SVG: lines, shaded interval bands, horizontal steps and a "now" rule.

import { svg, clear } from "./dom.js";

const W = 640;
const H = 220;
const M = { left: 56, right: 12, top: 10, bottom: 24 };

function ticks(lo, hi, count) {
  const span = hi - lo || 1;
  const raw = span / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((f) => f * power).find((s) => s >= raw) || raw;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(v);
  return out;
}

// spec: {series: [{cls, points: [[t, v]…]}], bands: [{cls, points: [[t, lo, hi]…]}], now, yFormat, yMin}
export function drawChart(host, spec) {
  clear(host);
  const root = svg("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img" });
  host.append(root);
  const all = [];
  for (const s of spec.series || []) for (const [t, v] of s.points) if (v !== null && v !== undefined) all.push([t, v]);
  for (const b of spec.bands || []) for (const [t, lo, hi] of b.points) { all.push([t, lo]); all.push([t, hi]); }
  if (!all.length) {
    root.append(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", text: spec.empty || "no data yet" }));
    root.dataset.points = "0";
    return root;
  }
  let [t0, t1] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
  if (t1 === t0) { t0 -= 1; t1 += 1; }
  let v1 = Math.max(...all.map((p) => p[1]));
  let v0 = spec.yMin ?? Math.min(0, ...all.map((p) => p[1]));
  if (v1 === v0) v1 = v0 + 1;
  v1 += (v1 - v0) * 0.05;
  const x = (t) => M.left + ((t - t0) / (t1 - t0)) * (W - M.left - M.right);
  const y = (v) => H - M.bottom - ((v - v0) / (v1 - v0)) * (H - M.top - M.bottom);
  const format = spec.yFormat || ((v) => String(v));
  for (const v of ticks(v0, v1, 4)) {
    root.append(svg("line", { class: "grid", x1: M.left, x2: W - M.right, y1: y(v), y2: y(v) }));
    root.append(svg("text", { x: M.left - 4, y: y(v) + 3, "text-anchor": "end", text: format(v) }));
  }
  for (const t of ticks(t0, t1, 5)) {
    const label = new Date(t * 1000).toISOString().slice(11, 19);
    root.append(svg("text", { x: x(t), y: H - 8, "text-anchor": "middle", text: label }));
  }
  root.append(svg("line", { class: "axis", x1: M.left, x2: M.left, y1: M.top, y2: H - M.bottom }));
  root.append(svg("line", { class: "axis", x1: M.left, x2: W - M.right, y1: H - M.bottom, y2: H - M.bottom }));
  for (const band of spec.bands || []) {
    if (!band.points.length) continue;
    const upper = band.points.map(([t, , hi]) => `${x(t).toFixed(1)},${y(hi).toFixed(1)}`);
    const lower = band.points.slice().reverse().map(([t, lo]) => `${x(t).toFixed(1)},${y(lo).toFixed(1)}`);
    const [, lo, hi] = band.points[band.points.length - 1];  // the newest interval's bounds, for tests and tools
    root.append(svg("polygon", { class: band.cls, points: upper.concat(lower).join(" "),
      dataset: { band: band.cls, lo: String(Math.round(lo)), hi: String(Math.round(hi)), ...(band.source ? { source: band.source } : {}) } }));
  }
  for (const s of spec.series || []) {
    const points = s.points.filter(([, v]) => v !== null && v !== undefined);
    if (!points.length) continue;
    const path = s.step
      ? points.flatMap(([t, v], i) => (i ? [`${x(t).toFixed(1)},${y(points[i - 1][1]).toFixed(1)}`, `${x(t).toFixed(1)},${y(v).toFixed(1)}`] : [`${x(t).toFixed(1)},${y(v).toFixed(1)}`]))
      : points.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`);
    if (points.length === 1) path.push(`${(x(points[0][0]) + 3).toFixed(1)},${y(points[0][1]).toFixed(1)}`);
    root.append(svg("polyline", { class: `line ${s.cls}`, points: path.join(" "), "vector-effect": "non-scaling-stroke", dataset: { series: s.cls } }));
  }
  if (spec.now !== undefined && spec.now >= t0 && spec.now <= t1) {
    root.append(svg("line", { class: "now", x1: x(spec.now), x2: x(spec.now), y1: M.top, y2: H - M.bottom }));
  }
  root.dataset.points = String(all.length);
  return root;
}
