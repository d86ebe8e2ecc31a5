// Decisions tab: the predicted graph in force at a time chosen on a slider over the kept history (expected
// stitches, link loads, the decisions of that interval with their reasons), and the decisions of the last
// intervals seen.

import { el, clear, fmtBps, fmtTime } from "./dom.js";
import { S, keyOf, latestGraph } from "./state.js";
import { graphAt } from "./forecast-data.js";
import { schedule } from "./app.js";

const KEPT = 288;  // predicted graphs the controller keeps per policy (controller/proactive.py GRAPH_HISTORY)

function table(headers, rows, id) {
  return el("table", { id }, el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", { text: h })))),
    el("tbody", {}, ...rows.map((cells) => el("tr", {}, ...cells.map((c) => el("td", { text: c }))))));
}

function decisionRows(graph) {
  return (graph.decisions || []).map((d) => [fmtTime(graph.time), d.action, d.pair.join(" → "), fmtBps(d.bandwidthBps), d.reason,
    `${fmtBps(d.forecastMeanBps)} / ${fmtBps(d.forecastUpperBps)}`]);
}

export class DecisionsPanel {
  constructor() {
    this.id = "decisions";
    this.title = "Decisions";
    this.root = el("section", { class: "view", id: "view-decisions" });
    this.policySelect = el("select", { id: "decision-policy", onchange: () => { this.pinned = null; this.dirty = true; schedule(); } });
    this.slider = el("input", { id: "decision-slider", type: "range", min: 0, max: 0, step: 1, value: 0,
      oninput: () => this.slide() });
    this.when = el("p", { class: "muted", id: "decision-when" });
    this.at = el("div", { id: "decision-at" });
    this.recent = el("div", { id: "decision-recent" });
    this.root.append(
      el("div", { class: "card" }, el("h2", { text: "Predicted graph and decisions" }),
        el("div", { class: "filters" }, el("label", { for: "decision-policy", text: "policy" }), this.policySelect),
        this.slider, this.when, this.at),
      el("div", { class: "card" }, el("h2", { text: "Decisions of the last intervals" }), this.recent));
    this.pinned = null;   // the graph shown for a slider position away from "latest"
    this.dirty = true;
    this.timer = 0;
  }

  shown() { this.dirty = true; }
  onPolicy() { this.dirty = true; }

  policy() {
    const key = this.policySelect.value;
    return S.policies.get(key) || null;
  }

  refreshPolicies() {
    const keys = [...S.policies.keys()].filter((k) => !S.filters.tenant || k.startsWith(`${S.filters.tenant}/`)).sort();
    const have = [...this.policySelect.options].map((o) => o.value);
    if (have.join("\n") === keys.join("\n")) return;
    const value = this.policySelect.value;
    clear(this.policySelect).append(...keys.map((k) => el("option", { value: k, text: k })));
    if (keys.includes(value)) this.policySelect.value = value;
  }

  slide() {
    const policy = this.policy();
    const latest = policy && latestGraph(keyOf(policy));
    if (!latest) return;
    const back = Number(this.slider.max) - Number(this.slider.value);
    if (back === 0) { this.pinned = null; this.dirty = true; schedule(); return; }
    const at = latest.time - back * latest.interval + latest.interval / 2;
    this.when.textContent = `loading the graph in force at ${fmtTime(at)} …`;
    clearTimeout(this.timer);
    this.timer = setTimeout(async () => {
      try { this.pinned = { at, graph: await graphAt(policy, at) }; } catch (error) { this.pinned = { at, error: error.message }; }
      this.dirty = true;
      schedule();
    }, 120);
  }

  render() {
    this.refreshPolicies();
    if (!this.dirty) return;
    this.dirty = false;
    const policy = this.policy();
    if (!policy) {
      clear(this.at).append(el("p", { class: "empty", text: "No forecast policy in this tenant: nothing was predicted." }));
      clear(this.recent);
      return;
    }
    const key = keyOf(policy);
    const latest = latestGraph(key);
    if (!latest) { clear(this.at).append(el("p", { class: "empty", text: "The policy has not run an interval yet." })); return; }
    this.slider.max = String(KEPT - 1);
    if (!this.pinned) this.slider.value = this.slider.max;
    const shown = this.pinned ? this.pinned.graph : latest;
    if (this.pinned?.error) { clear(this.at).append(el("p", { class: "error", text: this.pinned.error })); return; }
    const back = Number(this.slider.max) - Number(this.slider.value);
    this.when.textContent = !shown || shown.step === null
      ? `nothing kept for ${fmtTime(this.pinned?.at)} (the history holds ${KEPT} intervals at most)`
      : `${back ? `${back} intervals back: ` : "latest: "}interval ${shown.step}, ended ${fmtTime(shown.time)} (${shown.interval} s)`;
    clear(this.at);
    if (shown && shown.step !== null) {
      const loads = [...(shown.links || [])].sort((a, b) => b.predictedLoadBps - a.predictedLoadBps).slice(0, 12);
      this.at.append(
        el("h2", { text: "Decisions of this interval" }),
        shown.decisions?.length ? table(["time", "action", "pair", "bandwidth", "reason", "forecast mean / upper"], decisionRows(shown), "decisions-at")
          : el("p", { class: "empty", text: "No decision: the forecasts fitted what was held." }),
        el("h2", { text: "Expected stitches next horizon" }),
        shown.stitches?.length ? table(["pair", "bandwidth", "path"], shown.stitches.map((s) => [`${s.from} → ${s.to}`, fmtBps(s.bandwidthBps), s.path.join("→")]), "expected-stitches")
          : el("p", { class: "empty", text: "No stitch expected." }),
        el("h2", { text: "Predicted link loads (highest 12)" }),
        table(["arc", "predicted load"], loads.map((l) => [l.arc.join(" → "), fmtBps(l.predictedLoadBps)]), "predicted-loads"));
    }
    const graphs = [...(S.graphs.get(key) || new Map()).values()].sort((a, b) => b.step - a.step).slice(0, 10);
    const rows = graphs.flatMap(decisionRows);
    clear(this.recent).append(rows.length ? table(["time", "action", "pair", "bandwidth", "reason", "forecast mean / upper"], rows, "decisions-recent")
      : el("p", { class: "empty", text: `No decision in the last ${graphs.length} intervals seen.` }));
  }
}
