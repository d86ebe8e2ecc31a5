// DOM helpers. Text always goes in as text nodes (textContent), never as markup: a name such as
// `<img src=x onerror=alert(1)>` renders as those characters.

const SVG_NS = "http://www.w3.org/2000/svg";

function fill(node, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.setAttribute("class", value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "text") node.textContent = String(value);
    else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function el(tag, attrs, ...children) {
  return fill(document.createElement(tag), attrs, children);
}

export function svg(tag, attrs, ...children) {
  return fill(document.createElementNS(SVG_NS, tag), attrs, children);
}

export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

export function fmtBps(bps) {
  if (bps === null || bps === undefined || Number.isNaN(bps)) return "–";
  const units = [[1e12, "Tbit/s"], [1e9, "Gbit/s"], [1e6, "Mbit/s"], [1e3, "kbit/s"]];
  for (const [scale, unit] of units) if (Math.abs(bps) >= scale) return `${(bps / scale).toFixed(2)} ${unit}`;
  return `${Math.round(bps)} bit/s`;
}

export function fmtBpsShort(bps) {
  for (const [scale, unit] of [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"]]) if (Math.abs(bps) >= scale) return `${+(bps / scale).toFixed(1)}${unit}`;
  return `${+bps.toFixed(0)}`;
}

export function fmtSeconds(s) {
  if (s === null || s === undefined) return "–";
  if (s < 1) return `${(s * 1000).toFixed(2)} ms`;
  return `${s.toFixed(2)} s`;
}

export function fmtPct(x) {
  if (x === null || x === undefined || Number.isNaN(x)) return "–";
  return `${(x * 100).toFixed(1)} %`;
}

export function fmtTime(t) {
  if (t === null || t === undefined) return "–";
  const d = new Date(typeof t === "number" ? t * 1000 : t);
  return Number.isNaN(d.getTime()) ? String(t) : d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

export function unixOf(t) {
  if (t === null || t === undefined) return null;
  if (typeof t === "number") return t;
  const ms = Date.parse(t);
  return Number.isNaN(ms) ? null : ms / 1000;
}

export function kv(pairs) {
  const dl = el("dl", { class: "kv" });
  for (const [key, value] of pairs) dl.append(el("dt", { text: key }), el("dd", {}, value instanceof Node ? value : String(value ?? "–")));
  return dl;
}

export function stateBadge(state) {
  return el("span", { class: `state state-${state || "unknown"}`, text: state || "?" });
}
