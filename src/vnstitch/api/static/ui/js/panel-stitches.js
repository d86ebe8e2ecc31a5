// Stitches tab: a table with filters (tenant, state, origin) and, for the picked stitch, its state history
// with reasons and its reservation, measured throughput, latency and loss over time.

import { el, clear, kv, fmtBps, fmtBpsShort, fmtSeconds, fmtPct, fmtTime, stateBadge, unixOf } from "./dom.js";
import { S, visibleStitches } from "./state.js";
import { drawChart } from "./charts.js";
import { schedule } from "./app.js";

const STATES = ["PENDING", "ESTABLISHING", "ACTIVE", "DEGRADED", "FAILED", "DELETING", "TERMINATED"];
// The table is virtual: every stitch counts and scrolls, only the rows in view (and a few around) are in the
// DOM, so 1,000 stitches cost what 30 do and a live update touches only what is visible.
const ROW_PX = 29;  // = the row height in app.css (#stitch-rows tr)
const OVERSCAN = 10;

function select(label, options, onChange, id) {
  const node = el("select", { id, onchange: (event) => onChange(event.target.value) },
    el("option", { value: "", text: "all" }), ...options.map((o) => el("option", { value: o, text: o })));
  return [el("label", { for: id, text: label }), node];
}

export class StitchesPanel {
  constructor() {
    this.id = "stitches";
    this.title = "Stitches";
    this.root = el("section", { class: "view", id: "view-stitches" });
    this.tenantSelect = select("tenant", [], (v) => { S.filters.tenant = v; schedule(); }, "filter-tenant");
    const filters = el("div", { class: "filters" },
      el("span", {}, ...this.tenantSelect),
      el("span", {}, ...select("state", STATES, (v) => { S.filters.state = v; schedule(); }, "filter-state")),
      el("span", {}, ...select("origin", ["user", "forecast", "intent"], (v) => { S.filters.origin = v; schedule(); }, "filter-origin")),
      el("span", {}, el("label", { for: "filter-text", text: "name" }),
        el("input", { id: "filter-text", type: "search", oninput: (e) => { S.filters.text = e.target.value; schedule(); } })));
    this.count = el("p", { class: "muted", id: "stitch-count" });
    this.body = el("tbody", { id: "stitch-rows" });
    this.padTop = el("td", { colspan: 9, class: "pad" });
    this.padBottom = el("td", { colspan: 9, class: "pad" });
    const table = el("table", { id: "stitch-table" }, el("thead", {}, el("tr", {},
      ...["tenant", "name", "from → to", "origin", "state", "reserved", "measured", "latency", "path"].map((h) => el("th", { text: h })))),
    el("tbody", { "aria-hidden": "true" }, el("tr", {}, this.padTop)), this.body, el("tbody", { "aria-hidden": "true" }, el("tr", {}, this.padBottom)));
    this.scroller = el("div", { class: "table-scroll", id: "stitch-scroll", onscroll: () => schedule(true) }, table);
    this.detail = el("div", { class: "card", id: "stitch-detail", hidden: true });
    this.root.append(el("div", { class: "card" }, el("h2", { text: "Stitches" }), filters, this.count, this.scroller), this.detail);
    this.rows = new Map();
    this.tenants = new Set();
  }

  render() {
    this.refreshTenants();
    const shown = visibleStitches();
    const top = this.scroller.scrollTop;  // read before anything is written: no forced layout
    const height = Math.max(this.scroller.clientHeight, window.innerHeight);  // the box grows with its rows: a screenful at least
    this.count.textContent = `${shown.length} stitches`;
    const first = Math.max(0, Math.min(shown.length, Math.floor(top / ROW_PX) - OVERSCAN));
    const last = Math.min(shown.length, Math.ceil((top + height) / ROW_PX) + OVERSCAN);
    this.padTop.style.height = `${first * ROW_PX}px`;
    this.padBottom.style.height = `${(shown.length - last) * ROW_PX}px`;
    this.padTop.parentNode.hidden = first === 0;
    this.padBottom.parentNode.hidden = last === shown.length;
    const keep = new Set();
    let previous = null;
    for (const [key, stitch] of shown.slice(first, last)) {
      keep.add(key);
      let row = this.rows.get(key);
      if (!row) {
        row = el("tr", { class: "clickable", dataset: { stitch: key }, onclick: () => this.open(key) });
        this.rows.set(key, row);
      }
      this.fillRow(row, stitch);
      row.classList.toggle("selected", key === S.selected);
      const want = previous ? previous.nextSibling : this.body.firstChild;
      if (want !== row) this.body.insertBefore(row, want);
      previous = row;
    }
    for (const [key, row] of this.rows) if (!keep.has(key)) { row.remove(); this.rows.delete(key); }
    if (S.selected && !this.detail.hidden) this.renderDetail(false);
  }

  refreshTenants() {
    let changed = false;
    for (const stitch of S.stitches.values()) if (!this.tenants.has(stitch.metadata.tenant)) { this.tenants.add(stitch.metadata.tenant); changed = true; }
    if (!changed) return;
    const node = this.tenantSelect[1];
    const value = node.value;
    clear(node).append(el("option", { value: "", text: "all" }), ...[...this.tenants].sort().map((t) => el("option", { value: t, text: t })));
    node.value = value;
  }

  fillRow(row, stitch) {
    const status = stitch.status || {};
    const measured = status.measured || {};
    const signature = `${stitch.metadata.resourceVersion}`;
    if (row.dataset.rv === signature) return;
    row.dataset.rv = signature;
    clear(row).append(
      el("td", { text: stitch.metadata.tenant }), el("td", { text: stitch.metadata.name }),
      el("td", { text: `${stitch.spec.from.tenant ? stitch.spec.from.tenant + "/" : ""}${stitch.spec.from.network} → ${stitch.spec.to.tenant ? stitch.spec.to.tenant + "/" : ""}${stitch.spec.to.network}` }),
      el("td", { text: stitch.spec.origin || "user" }), el("td", {}, stateBadge(status.state)),
      el("td", { text: fmtBps(status.reservedBandwidth) }), el("td", { text: fmtBps(measured.throughput) }),
      el("td", { text: fmtSeconds(measured.latency) }), el("td", { class: "mono", text: (status.path || []).join("→") }));
  }

  async open(key) {
    S.selected = key;
    this.history = null;
    this.offered = null;
    this.detail.hidden = false;
    this.renderDetail(true);
    schedule();
    const stitch = S.stitches.get(key);
    if (!stitch) return;
    const tenant = stitch.metadata.tenant;
    const params = S.who.role === "admin" || tenant !== S.who.tenant ? { tenant } : {};
    try {
      const history = await S.api.get(`/v1/stitches/${encodeURIComponent(stitch.metadata.name)}/history`, params);
      if (S.selected === key) { this.history = history; this.renderDetail(true); }
    } catch (error) { this.history = { error: error.message }; this.renderDetail(true); }
    if (!stitch.spec.from.tenant && !stitch.spec.to.tenant) {
      try {
        const since = Date.now() / 1000 - 3600;
        this.offered = await S.api.get("/v1/telemetry", { ...params, from: stitch.spec.from.network, to: stitch.spec.to.network, since });
        if (S.selected === key) this.renderDetail(true);
      } catch (_) { this.offered = null; }
    }
  }

  renderDetail(full) {
    const key = S.selected;
    const stitch = S.stitches.get(key);
    if (!stitch) { clear(this.detail).append(el("p", { class: "empty", text: `stitch ${key} is gone` })); return; }
    const status = stitch.status || {};
    const measured = status.measured || {};
    if (full || !this.charts) {
      const annotations = Object.entries(stitch.metadata.annotations || {}).map(([k, v]) => `${k}: ${v}`).join("\n");
      this.historyBody = el("tbody", { id: "history-rows" });
      const rows = this.history?.items || this.history?.history || status.history || [];
      if (this.history?.error) this.historyBody.append(el("tr", {}, el("td", { colspan: 4, class: "error", text: this.history.error })));
      for (const t of rows) this.historyBody.append(el("tr", {}, el("td", { text: fmtTime(t.time) }), el("td", { text: t.from ?? "–" }), el("td", {}, stateBadge(t.to)), el("td", { text: t.reason })));
      this.throughputChart = el("div", { id: "chart-throughput" });
      this.latencyChart = el("div", { id: "chart-latency" });
      this.facts = el("div", {});
      this.charts = true;
      clear(this.detail).append(
        el("h2", { id: "stitch-title", text: `Stitch ${key}` }),
        el("div", { class: "row" },
          el("div", { class: "side" }, this.facts, annotations ? el("pre", { class: "mono", id: "stitch-annotations", text: annotations }) : null),
          el("div", { class: "grow" },
            el("h2", { text: "Reservation vs measured throughput" }), this.throughputChart,
            el("div", { class: "chart-legend" }, ...legend([["reserved", "reserved"], ["measured", "measured (this stitch)"], ["offered", "offered (pair telemetry)"]])),
            el("h2", { text: "Latency and loss" }), this.latencyChart,
            el("div", { class: "chart-legend" }, ...legend([["latency", "latency (ms)"], ["loss", "loss (%)"]])))),
        el("h2", { text: "State history" }),
        el("table", {}, el("thead", {}, el("tr", {}, ...["time", "from", "to", "reason"].map((h) => el("th", { text: h })))), this.historyBody));
    }
    clear(this.facts).append(kv([
      ["state", stateBadge(status.state)], ["message", status.message || "–"], ["origin", stitch.spec.origin || "user"],
      ["from", `${stitch.spec.from.tenant ? stitch.spec.from.tenant + "/" : ""}${stitch.spec.from.network}`],
      ["to", `${stitch.spec.to.tenant ? stitch.spec.to.tenant + "/" : ""}${stitch.spec.to.network}`],
      ["type", stitch.spec.type], ["bandwidth (spec)", fmtBps(stitch.spec.bandwidth)], ["reserved", fmtBps(status.reservedBandwidth)],
      ["measured throughput", fmtBps(measured.throughput)], ["latency", fmtSeconds(measured.latency)], ["loss", fmtPct(measured.loss)],
      ["max latency", fmtSeconds(stitch.spec.maxLatency)], ["max loss", fmtPct(stitch.spec.maxLoss)],
      ["path", (status.path || []).join(" → ") || "–"], ["created", fmtTime(stitch.metadata.creationTimestamp)],
    ]));
    const samples = S.samples.get(key) || [];
    const offered = (this.offered?.items || []).map((s) => [s.time, s.rateBps]);
    const created = unixOf(stitch.metadata.creationTimestamp);
    const reserved = samples.map(([t, , r]) => [t, r]);
    if (created && reserved.length) reserved.unshift([Math.max(created, reserved[0][0] - 3600), reserved[0][1]]);
    drawChart(this.throughputChart, { yFormat: fmtBpsShort, now: Date.now() / 1000, series: [
      { cls: "s-offered", points: offered }, { cls: "s-reserved", step: true, points: reserved },
      { cls: "s-measured", points: samples.map(([t, m]) => [t, m]) }] });
    const latencies = samples.filter(([, , , l]) => l !== null).map(([t, , , l]) => [t, l * 1000]);
    const telemetryLatency = (this.offered?.items || []).filter((s) => s.latency !== null && s.latency !== undefined).map((s) => [s.time, s.latency * 1000]);
    drawChart(this.latencyChart, { yFormat: (v) => v.toFixed(1), series: [
      { cls: "s-latency", points: latencies.length ? latencies : telemetryLatency },
      { cls: "s-loss", points: samples.filter(([, , , , l]) => l !== null).map(([t, , , , l]) => [t, l * 100]) }] });
  }
}

export function legend(entries) {
  return entries.map(([cls, label]) => el("span", {}, el("span", { class: `k k-${cls}` }), label));
}
