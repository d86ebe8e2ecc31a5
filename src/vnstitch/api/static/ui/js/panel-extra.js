// Intents and anomalies: a tab for each only when the server's schema has the route (/v1/intents,
// /v1/anomalies); a feature that is not there has no tab at all.

import { el, clear, fmtTime } from "./dom.js";
import { S } from "./state.js";
import { schedule } from "./app.js";

const POLL_MS = 5000;

function summary(value) {
  if (value === null || value === undefined) return "–";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

class ListPanel {
  constructor(id, title, path, columns) {
    this.id = id;
    this.title = title;
    this.path = path;
    this.columns = columns;
    this.root = el("section", { class: "view", id: `view-${id}` });
    this.box = el("div", { id: `${id}-list` });
    this.root.append(el("div", { class: "card" }, el("h2", { text: title }), this.box));
    this.items = null;
    this.error = null;
  }

  start() {
    const load = async () => {
      if (!S.api) return;
      try { this.items = (await S.api.list(this.path)).items; this.error = null; } catch (error) { this.error = error.message; }
      schedule();
    };
    load();
    this.timer = setInterval(load, POLL_MS);
  }

  render() {
    clear(this.box);
    if (this.error) { this.box.append(el("p", { class: "error", text: this.error })); return; }
    if (!this.items) { this.box.append(el("p", { class: "muted", text: "loading …" })); return; }
    if (!this.items.length) { this.box.append(el("p", { class: "empty", text: `No ${this.title.toLowerCase()}.` })); return; }
    const rows = [...this.items].sort((a, b) => String(b.metadata?.creationTimestamp).localeCompare(String(a.metadata?.creationTimestamp)));
    this.box.append(el("table", {}, el("thead", {}, el("tr", {}, ...this.columns.map(([h]) => el("th", { text: h })))),
      el("tbody", {}, ...rows.map((item) => el("tr", {}, ...this.columns.map(([, get]) => el("td", { text: summary(get(item)) })))))));
  }
}

export function extraPanels(openapi) {
  const paths = openapi?.paths || {};
  const out = [];
  if (paths["/v1/intents"]) {
    out.push(new ListPanel("intents", "Intents", "/v1/intents", [
      ["tenant", (i) => i.metadata?.tenant], ["name", (i) => i.metadata?.name],
      ["compliance", (i) => i.status?.compliance ?? i.status?.state], ["message", (i) => i.status?.message],
      ["reports", (i) => i.status?.reports ?? i.status?.report], ["checked", (i) => fmtTime(i.status?.lastChecked ?? i.status?.lastRun)]]));
  }
  if (paths["/v1/anomalies"]) {
    out.push(new ListPanel("anomalies", "Anomalies", "/v1/anomalies", [
      ["time", (a) => fmtTime(a.spec?.time ?? a.status?.time ?? a.metadata?.creationTimestamp)], ["tenant", (a) => a.metadata?.tenant],
      ["name", (a) => a.metadata?.name], ["what", (a) => a.spec?.kind ?? a.spec?.type ?? a.spec?.description],
      ["action", (a) => a.status?.action ?? a.spec?.action], ["state", (a) => a.status?.state]]));
  }
  return out;
}
