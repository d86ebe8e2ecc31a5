// The dashboard's entry point: sign-in with a bearer token, the tabs, and the watch streams that keep the
// page live. Every figure comes from the public API with the user's token.

import { Api } from "./api.js";
import { el, clear } from "./dom.js";
import { S, keyOf, recordSample, setSubstrate } from "./state.js";
import { TopologyPanel } from "./panel-topology.js";

const TOKEN_KEY = "vnstitch.token";
const $ = (id) => document.getElementById(id);
const panels = [];
let active = null;
// The other tabs: their modules load once the map is interactive (or when one is opened first), so that only the
// map's modules are on the first paint's path; the optional ones (intents, anomalies) once the schema says so.
const LATER = new Map([
  ["stitches", ["Stitches", () => import("./panel-stitches.js").then((m) => new m.StitchesPanel())]],
  ["forecasts", ["Forecasts", () => import("./panel-forecasts.js").then((m) => new m.ForecastsPanel())]],
  ["decisions", ["Decisions", () => import("./panel-decisions.js").then((m) => new m.DecisionsPanel())]],
]);
const loading = new Map();  // tab id → promise of its panel (null where signed out meanwhile)
let session = 0;            // one per sign-in: a panel that loads after a sign-out is dropped
let opening = null;         // the tab asked for while its module loads
let frame = 0;
const watches = [];

function signOut(message) {
  session += 1;
  loading.clear();
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
let frameRequest = 0;  // the animation frame asked for once the wait is over
export function schedule(now = false) {
  const wait = now ? 0 : Math.max(0, lastRender + RENDER_GAP_MS - performance.now());
  if (frame && (!now || frameWait === 0)) return;
  cancelFrame();
  frameWait = wait;
  frame = setTimeout(() => { frameRequest = requestAnimationFrame(() => render(false)); }, wait);
}

// What the next frame would draw, drawn now from a task (the map has just been built: its stitches and colours go
// into the frame that paints it), and that frame no longer asked for.
export function renderNow() {
  cancelFrame();
  render(true);
}

function cancelFrame() {
  if (frame) { clearTimeout(frame); cancelAnimationFrame(frameRequest); }
  frame = 0;
  frameRequest = 0;
}

// `outsideFrame`: from a task, not a frame's callback (the topology panel then waits a frame to mark itself interactive)
function render(outsideFrame) {
  lastRender = performance.now();
  frame = 0;
  frameRequest = 0;
  renderLive();
  const started = performance.now();
  if (active) active.render(outsideFrame);
  if (!S.interactive) performance.measure("vnstitch:render", { start: started, end: performance.now() });  // until interactive only: the timeline stays small
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
  // and policies are then asked for at once and stay in flight while the map is drawn. The map's layout comes
  // from the server beside the substrate (the map waits for it, not the page).
  const placed = api.get("/v1/substrate/layout", {}, early["/v1/substrate/layout"]).catch(() => null);
  const [nodes, links] = await Promise.all([
    api.list("/v1/substrate/nodes", {}, early["/v1/substrate/nodes"]), api.list("/v1/substrate/links", {}, early["/v1/substrate/links"]),
  ]);
  performance.mark("vnstitch:substrate-fetched");
  let firstStitches = api.list("/v1/stitches", {}, early["/v1/stitches"]);
  let firstPolicies = api.list("/v1/forecastpolicies");
  firstStitches.catch(() => {}); firstPolicies.catch(() => {});
  // The map is drawn once its layout is in and, when it comes within half a second of that, the stitch list too:
  // one style and paint pass for the map with its stitches instead of two, and the list read meanwhile, not after
  const listed = firstStitches.then(() => null, () => null);
  S.layout = placed.then((answer) => Promise.race([listed, new Promise((resolve) => setTimeout(resolve, 500))]).then(() => answer));
  setSubstrate(nodes.items, links.items);
  clear($("tabs"));
  panels.length = 0;
  loading.clear();
  const topology = adopt(new TopologyPanel());
  tab(topology.id, topology.title);
  for (const [id, [title]] of LATER) tab(id, title);
  $("tabs").hidden = false;
  const wanted = location.hash.slice(1);
  show("topology");
  if (wanted && wanted !== "topology") show(wanted);
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
  const mine = session;
  quiet.then(() => {
    if (session !== mine) return;
    for (const id of LATER.keys()) loadPanel(id).catch(() => {});  // opening its tab tries again
    // the optional tabs: the schema that says whether the server has them (173 kB) is not on the first paint's path
    return Promise.all([import("./panel-extra.js"),
      fetch("/openapi.json", { cache: "no-store" }).then((r) => (r.ok ? r.json() : { paths: {} })).catch(() => ({ paths: {} }))]);
  }).then((loaded) => {
    if (!loaded || session !== mine) return;
    for (const panel of loaded[0].extraPanels(loaded[1])) {
      tab(panel.id, panel.title);
      adopt(panel);
      if (wanted === panel.id && active === panels[0]) show(panel.id);  // the tab the address named
    }
  });
}

function tab(id, title) {
  $("tabs").append(el("button", { type: "button", dataset: { tab: id }, text: title, onclick: () => show(id) }));
}

// A panel whose module has loaded: into the page, started, and told of the policies the others were told of.
function adopt(panel) {
  panels.push(panel);
  $("views").append(panel.root);
  panel.root.classList.toggle("active", panel === active);
  panel.start?.();
  for (const policy of S.policies.values()) panel.onPolicy?.(policy, "ADDED");
  return panel;
}

function loadPanel(id) {
  if (!loading.has(id)) {
    const mine = session;
    loading.set(id, LATER.get(id)[1]().then((panel) => (session === mine ? adopt(panel) : null),
      (error) => { loading.delete(id); throw error; }));
  }
  return loading.get(id);
}

export function show(id) {
  if (LATER.has(id) && !panels.some((p) => p.id === id)) {  // its module first (the tab shown meanwhile stays)
    opening = id;
    loadPanel(id).then((panel) => { if (panel && opening === id) show(id); }).catch(() => {});
    return;
  }
  opening = null;
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
  loadPanel("stitches").then((panel) => panel?.open(key)).catch(() => {});
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
