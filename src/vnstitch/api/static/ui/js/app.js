// The dashboard's entry point: sign-in with a bearer token, the tabs, and the watch streams that keep the
// page live. Every figure comes from the public API with the user's token.

import { Api } from "./api.js";
import { el, clear } from "./dom.js";
import { S, keyOf, recordSample, setSubstrate } from "./state.js";
import { TopologyPanel } from "./panel-topology.js";
import { startLayoutWorker } from "./topology.js";
import { StitchesPanel } from "./panel-stitches.js";
import { ForecastsPanel } from "./panel-forecasts.js";
import { DecisionsPanel } from "./panel-decisions.js";
import { extraPanels } from "./panel-extra.js";

const TOKEN_KEY = "vnstitch.token";
const $ = (id) => document.getElementById(id);
const panels = [];
let active = null;
let frame = 0;
const watches = [];

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  for (const w of watches) w.stop();
  watches.length = 0;
  S.api = null;
  S.who = null;
  for (const map of [S.stitches, S.samples, S.policies, S.graphs, S.live]) map.clear();  // nothing of one token stays for the next
  S.stitchesLoaded = false;
  S.interactive = false;
  S.selected = null;
  clear($("views"));
  $("tabs").hidden = true;
  $("live").hidden = true;
  $("logout").hidden = true;
  $("who").textContent = "";
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("token").value = "";
  $("token").focus();
}

// Render the active panel (and the live mark) in one frame however many events arrived, and at most every
// RENDER_GAP_MS under a steady stream of them (1,000 stitches measured every second), so the page keeps up.
const RENDER_GAP_MS = 250;
let lastRender = 0;
// `now`: a change the user waits for (a tab opened, the first list arrived) is drawn in the next frame.
let frameWait = 0;
export function schedule(now = false) {
  const wait = now ? 0 : Math.max(0, lastRender + RENDER_GAP_MS - performance.now());
  if (frame && (!now || frameWait === 0)) return;
  if (frame) clearTimeout(frame);
  frameWait = wait;
  frame = setTimeout(() => requestAnimationFrame(() => {
    lastRender = performance.now();
    frame = 0;
    renderLive();
    const started = performance.now();
    if (active) active.render();
    if (!S.interactive) performance.measure("vnstitch:render", { start: started, end: performance.now() });  // until interactive only: the timeline stays small
  }), wait);
}

function renderLive() {
  const mark = $("live");
  const stale = [...S.live.entries()].filter(([, v]) => v.state !== "live");
  mark.hidden = false;
  mark.classList.toggle("stale", stale.length > 0);
  mark.dataset.state = stale.length ? "stale" : "live";
  mark.textContent = stale.length ? "stale — reconnecting" : "live";
  mark.title = stale.length ? stale.map(([name, v]) => `${name}: ${v.why || "not connected"}`).join("\n") : `${S.events} updates received`;
}

function watchKind(name, path, onEvent, relist, after) {
  S.live.set(name, { state: "connecting" });
  watches.push(S.api.watch(path, {}, {
    relist,
    after,
    onEvent: (event) => { S.events += 1; S.lastEventAt = Date.now(); onEvent(event); schedule(); },
    onState: (state, why) => { S.live.set(name, { state, why }); schedule(); },
  }));
}

function upsert(map, event, onChange) {
  const obj = event.object;
  const key = keyOf(obj);
  if (event.type === "DELETED") map.delete(key);
  else map.set(key, obj);
  if (onChange) onChange(obj, event.type);
}

async function start(token) {
  const api = new Api(token, (error) => signOut(`signed out: ${error.message}`));
  performance.mark("vnstitch:start");
  startLayoutWorker();
  const early = window.vnstitchEarly?.token === token ? window.vnstitchEarly : {};  // boot.js: this token's, once
  delete window.vnstitchEarly;
  const who = await api.get("/v1/whoami", {}, early["/v1/whoami"]);  // 401 → the sign-in prompt, before anything else is read
  S.api = api;
  S.who = who;
  sessionStorage.setItem(TOKEN_KEY, token);
  $("login").hidden = true;
  $("who").textContent = `tenant ${who.tenant} · ${who.role}`;
  $("logout").hidden = false;
  // The substrate first, alone, so that the server answers it before it serialises the stitches; the stitches
  // and policies are then asked for at once and stay in flight while the map is laid out and drawn.
  const [nodes, links, openapi] = await Promise.all([
    api.list("/v1/substrate/nodes", {}, early["/v1/substrate/nodes"]), api.list("/v1/substrate/links", {}, early["/v1/substrate/links"]),
    fetch("/openapi.json", { cache: "no-store" }).then((r) => (r.ok ? r.json() : { paths: {} })).catch(() => ({ paths: {} })),
  ]);
  performance.mark("vnstitch:substrate-fetched");
  let firstStitches = api.list("/v1/stitches", {}, early["/v1/stitches"]);
  let firstPolicies = api.list("/v1/forecastpolicies");
  firstStitches.catch(() => {}); firstPolicies.catch(() => {});
  setSubstrate(nodes.items, links.items);
  const views = $("views");
  const tabs = clear($("tabs"));
  panels.length = 0;
  panels.push(new TopologyPanel(), new StitchesPanel(), new ForecastsPanel(), new DecisionsPanel(), ...extraPanels(openapi));
  for (const panel of panels) {
    views.append(panel.root);
    tabs.append(el("button", { type: "button", dataset: { tab: panel.id }, text: panel.title, onclick: () => show(panel.id) }));
  }
  tabs.hidden = false;
  show(location.hash.slice(1) || "topology");
  // The streams open once the map is interactive (or after 1.5 s at most), each from the revision its list was
  // read at: the events of the first second (1,000 stitches measured every second) do not compete with laying
  // out and drawing the map; they arrive right after, none lost.
  const quiet = new Promise((resolve) => { S.onInteractive = resolve; setTimeout(resolve, 1500); });
  watchKind("stitches", "/v1/stitches", (event) => upsert(S.stitches, event, (obj, type) => {
    if (type !== "DELETED") recordSample(obj);
    else S.samples.delete(keyOf(obj));
  }), async () => {
    const { items, resourceVersion } = await (firstStitches || api.list("/v1/stitches"));
    firstStitches = null;
    performance.mark("vnstitch:stitches-fetched");
    S.stitches = new Map(items.map((s) => [keyOf(s), s]));
    for (const key of S.samples.keys()) if (!S.stitches.has(key)) S.samples.delete(key);  // gone while we were away
    for (const s of items) recordSample(s);
    S.stitchesLoaded = true;
    schedule(true);
    return resourceVersion;
  }, quiet);
  watchKind("forecastpolicies", "/v1/forecastpolicies", (event) => upsert(S.policies, event, (obj, type) => {
    for (const panel of panels) panel.onPolicy?.(obj, type);
  }), async () => {
    const { items, resourceVersion } = await (firstPolicies || api.list("/v1/forecastpolicies"));
    firstPolicies = null;
    S.policies = new Map(items.map((p) => [keyOf(p), p]));
    for (const policy of items) for (const panel of panels) panel.onPolicy?.(policy, "ADDED");
    return resourceVersion;
  }, quiet);
  // link events come in bursts (a chunk of the stream at a time): applied to one map, and the substrate (with
  // its indexes) rebuilt once per burst instead of once per event
  const linksByName = new Map(links.items.map((l) => [l.metadata.name, l]));
  let linksPending = null;  // null: nothing to apply; else whether the set of links changed
  watchKind("links", "/v1/substrate/links", (event) => {
    const name = event.object.metadata.name;
    const changedShape = event.type === "DELETED" || !linksByName.has(name);
    if (event.type === "DELETED") linksByName.delete(name);
    else linksByName.set(name, event.object);
    if (linksPending === null) {
      linksPending = false;
      queueMicrotask(() => {
        const shape = linksPending;
        linksPending = null;
        setSubstrate(S.nodes, [...linksByName.values()]);
        if (shape) for (const panel of panels) panel.onSubstrate?.();
      });
    }
    linksPending = linksPending || changedShape;
  }, async () => links.resourceVersion, quiet);
  for (const panel of panels) panel.start?.();
}

export function show(id) {
  const panel = panels.find((p) => p.id === id) || panels[0];
  active = panel;
  for (const p of panels) p.root.classList.toggle("active", p === panel);
  for (const button of $("tabs").children) button.classList.toggle("active", button.dataset.tab === panel.id);
  if (location.hash !== `#${panel.id}`) history.replaceState(null, "", `#${panel.id}`);
  panel.shown?.();
  schedule(true);
}

export function openStitch(key) {
  S.selected = key;
  show("stitches");
  panels.find((p) => p.id === "stitches")?.open(key);
}

function boot() {
  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = $("token").value.trim();
    $("login-error").textContent = "";
    try {
      await start(token);
    } catch (error) {
      signOut(error.status === 401 ? `token refused: ${error.message}` : `cannot sign in: ${error.message}`);
    }
  });
  $("logout").addEventListener("click", () => signOut(""));
  window.addEventListener("hashchange", () => { if (S.api) show(location.hash.slice(1)); });
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) start(saved).catch((error) => signOut(error.status === 401 ? `token refused: ${error.message}` : `cannot load: ${error.message}`));
  else signOut("");
}

window.vnstitchDashboard = S;  // for bench/dashboard.py and debugging: what the page shows, nothing more
boot();
