// Forecasts tab: per forecast pair, the recent actual rate, the forecast mean with its 80 % and 90 %
// intervals, the reservation made from it, and how far past forecasts were from what happened.

import { el, clear, kv, fmtBps, fmtBpsShort, fmtPct, fmtTime, unixOf } from "./dom.js";
import { S, keyOf, latestGraph } from "./state.js";
import { drawChart } from "./charts.js";
import { refreshGraphs, pairSeries, bands } from "./forecast-data.js";
import { legend } from "./panel-stitches.js";
import { schedule } from "./app.js";

const BAND_NOTES = {
  model: "the model's own quantiles for the next interval (80 %: q0.1–q0.9, 90 %: q0.05–q0.95), as the predicted graph keeps them",
  normal: "derived from the forecast mean and its upper bound at the policy's quantile assuming a normal error (the model gave no quantiles)",
  mixed: "the model's quantiles where the predicted graph has them, otherwise derived from mean and upper bound assuming a normal error",
};

export class ForecastsPanel {
  constructor() {
    this.id = "forecasts";
    this.title = "Forecasts";
    this.root = el("section", { class: "view", id: "view-forecasts" });
    this.list = el("div", { class: "grid2", id: "forecast-charts" });
    this.note = el("p", { class: "muted", id: "forecast-note" });
    this.root.append(el("div", { class: "card" }, el("h2", { text: "Forecast policies" }), this.policiesBox = el("div", { id: "policies" })), this.note, this.list);
    this.series = new Map();  // "tenant/policy/from>to" → telemetry samples
    this.cards = new Map();
    this.dirty = true;
  }

  onPolicy(policy, type) {
    const key = keyOf(policy);
    if (type === "DELETED") { S.graphs.delete(key); this.dirty = true; return; }
    refreshGraphs(policy, key).then((added) => { if (added) { this.dirty = true; this.loadSeries(policy, key); } schedule(); })
      .catch(() => {});
  }

  async loadSeries(policy, key) {
    const graph = latestGraph(key);
    if (!graph) return;
    const interval = graph.interval || policy.spec.interval || 300;
    const since = graph.time - 40 * interval;
    await Promise.all((graph.forecast || []).map(async (f) => {
      try { this.series.set(`${key}/${f.from}>${f.to}`, await pairSeries(policy, f.from, f.to, since)); } catch (_) { /* shown as no data */ }
    }));
    this.dirty = true;
    schedule();
  }

  shown() { this.dirty = true; }

  render() {
    if (!this.dirty) return;
    this.dirty = false;
    const policies = [...S.policies.values()].filter((p) => !S.filters.tenant || p.metadata.tenant === S.filters.tenant);
    clear(this.policiesBox);
    if (!policies.length) this.policiesBox.append(el("p", { class: "empty", text: "No forecast policy in this tenant." }));
    const table = el("table", {}, el("thead", {}, el("tr", {}, ...["policy", "mode", "model", "interval", "quantile", "last interval", "pairs", "stitches", "telemetry", "message"].map((h) => el("th", { text: h })))));
    const body = el("tbody");
    for (const p of policies) {
      const st = p.status || {};
      body.append(el("tr", {}, el("td", { text: keyOf(p) }), el("td", { text: p.spec.mode }), el("td", { text: `${p.spec.model} (${st.model?.state || "–"})` }),
        el("td", { text: `${p.spec.interval} s` }), el("td", { text: p.spec.quantile }), el("td", { text: fmtTime(st.lastEnd) }),
        el("td", { text: st.pairs ?? "–" }), el("td", { text: st.stitches ?? "–" }), el("td", { text: st.telemetry || "–" }), el("td", { text: st.message || "" })));
    }
    if (policies.length) this.policiesBox.append(table.appendChild(body).parentNode);
    const wanted = new Set();
    for (const policy of policies) {
      const key = keyOf(policy);
      const graph = latestGraph(key);
      for (const f of graph?.forecast || []) {
        const id = `${key}/${f.from}>${f.to}`;
        wanted.add(id);
        let card = this.cards.get(id);
        if (!card) {
          card = { root: el("div", { class: "card forecast", dataset: { pair: id } }) };
          this.cards.set(id, card);
          this.list.append(card.root);
        }
        this.draw(card, policy, key, f);
      }
    }
    for (const [id, card] of this.cards) if (!wanted.has(id)) { card.root.remove(); this.cards.delete(id); }
    const sources = new Set([...this.cards.values()].map((card) => card.root.dataset.bands));
    this.note.dataset.bands = [...sources].sort().join(" ");
    this.note.textContent = !this.cards.size ? ""
      : `Bands: ${[...sources].sort().map((source) => BAND_NOTES[source]).join("; ")}.`;
  }

  draw(card, policy, key, latest) {
    const graphs = [...(S.graphs.get(key) || new Map()).values()].sort((a, b) => a.step - b.step);
    const current = graphs[graphs.length - 1];
    const interval = current.interval || policy.spec.interval;
    const horizon = policy.spec.horizon || 1;
    const q = policy.spec.quantile || 0.9;
    const actual = (this.series.get(`${key}/${latest.from}>${latest.to}`) || []).map((s) => [s.time, s.rateBps]);
    const mean = [];
    const b80 = [];
    const b90 = [];
    const reservation = [];
    const sources = new Set();
    let shownNow = null;
    for (const g of graphs) {
      const f = (g.forecast || []).find((x) => x.from === latest.from && x.to === latest.to);
      const ahead = g.time + interval;  // the interval the forecast is for
      const reserved = (g.stitches || []).filter((s) => s.from === latest.from && s.to === latest.to).reduce((sum, s) => sum + s.bandwidthBps, 0);
      reservation.push([g.time, reserved]);
      if (!f) continue;
      const band = bands(f, q);
      sources.add(band.source);
      // the model's quantiles are for the next interval; the normal derivation spans the horizon's maximum
      const reach = band.source === "model" ? interval : horizon * interval;
      const points = g === current ? [g.time, g.time + reach] : [ahead];
      for (const t of points) { mean.push([t, band.meanBps]); b80.push([t, ...band.b80]); b90.push([t, ...band.b90]); }
      if (g === current) shownNow = band;
    }
    if (current) reservation.push([current.time + horizon * interval, reservation[reservation.length - 1]?.[1] ?? 0]);
    // discrepancy: each past forecast against the actual rate measured for the interval it was for
    const errors = [];
    let above = 0;
    for (const g of graphs.slice(0, -1)) {
      const f = (g.forecast || []).find((x) => x.from === latest.from && x.to === latest.to);
      if (!f) continue;
      const target = g.time + interval;
      const hit = actual.find(([t]) => Math.abs(t - target) <= interval / 2);
      if (!hit) continue;
      errors.push([Math.abs(hit[1] - f.meanBps), hit[1]]);
      if (hit[1] > f.upperBps) above += 1;
    }
    const mae = errors.length ? errors.reduce((s, [e]) => s + e, 0) / errors.length : null;
    const level = errors.length ? errors.reduce((s, [, a]) => s + a, 0) / errors.length : null;
    const forecastStitches = [...S.stitches.values()].filter((s) => s.metadata.tenant === policy.metadata.tenant
      && s.metadata.annotations?.["vnstitch.io/pair"] === `${latest.from}>${latest.to}` && s.status?.state !== "TERMINATED");
    const reservedNow = forecastStitches.reduce((sum, s) => sum + (s.status?.reservedBandwidth || 0), 0);
    const source = sources.size > 1 ? "mixed" : [...sources][0] || "normal";
    card.root.dataset.bands = source;
    card.root.dataset.step = String(current.step);
    card.root.dataset.time = String(current.time);
    const chart = el("div", { class: "chart-host" });
    clear(card.root).append(
      el("h2", { text: `${latest.from} → ${latest.to}` }),
      el("p", { class: "muted", text: `${keyOf(policy)} · interval ${interval} s · horizon ${horizon} · sized at p${Math.round(q * 100)}` }),
      chart,
      el("div", { class: "chart-legend" }, ...legend([["actual", "actual rate"], ["mean", "forecast mean"], ["band80", "80 % interval"], ["band90", "90 % interval"], ["reserved", "reservation (predicted graph)"]])),
      kv([["forecast next", `${fmtBps(latest.meanBps)} (p${Math.round(q * 100)} ${fmtBps(latest.upperBps)})`],
        ["bands now", shownNow ? `80 % ${fmtBps(shownNow.b80[0])}–${fmtBps(shownNow.b80[1])}, 90 % ${fmtBps(shownNow.b90[0])}–${fmtBps(shownNow.b90[1])} `
          + (shownNow.source === "model" ? "(model quantiles)" : "(normal, from mean and upper)") : "–"],
        ["reserved now", `${fmtBps(reservedNow)} in ${forecastStitches.length} forecast stitch(es)`],
        ["discrepancy", mae === null ? "not enough history yet" : `mean abs error ${fmtBps(mae)} (${fmtPct(level ? mae / level : null)} of the actual) over ${errors.length} intervals; actual above p${Math.round(q * 100)} in ${above}`]]));
    drawChart(chart, { yFormat: fmtBpsShort, now: current?.time, bands: [{ cls: "band90", points: b90, source }, { cls: "band80", points: b80, source }],
      series: [{ cls: "s-reserved", step: true, points: reservation }, { cls: "s-actual", points: actual }, { cls: "s-mean", points: mean }] });
  }
}
