// What the page knows, all of it read from the API with the user's token: the substrate, the stitches the
// token may see, the forecast policies and their predicted graphs. Derived figures (link loads) are computed
// from these on every change; nothing is merged across what the API answered.

export const S = {
  api: null,
  who: null,
  nodes: [],
  links: [],
  linkByEnds: new Map(),
  stitches: new Map(),        // "tenant/name" → Stitch
  samples: new Map(),         // "tenant/name" → [[t, throughput, reserved, latency, loss]…] seen while open
  policies: new Map(),        // "tenant/name" → ForecastPolicy
  graphs: new Map(),          // "tenant/policy" → Map(step → PredictedGraph spec)
  filters: { tenant: "", state: "", origin: "", text: "" },
  selected: null,             // "tenant/name" of the stitch shown
  live: new Map(),            // watch name → {state, why}
  lastEventAt: null,
  events: 0,
  stitchesLoaded: false,
};

export const keyOf = (obj) => `${obj.metadata.tenant}/${obj.metadata.name}`;
const MAX_SAMPLES = 600;

export function setSubstrate(nodes, links) {
  S.nodes = nodes;
  S.links = links;
  S.linkByEnds = new Map();
  for (const link of links) S.linkByEnds.set([...link.spec.endpoints].sort().join("\u0000"), link);
}

export function recordSample(stitch) {
  const key = keyOf(stitch);
  const status = stitch.status || {};
  const measured = status.measured || {};
  let list = S.samples.get(key);
  if (!list) S.samples.set(key, (list = []));
  list.push([Date.now() / 1000, measured.throughput ?? null, status.reservedBandwidth ?? 0, measured.latency ?? null, measured.loss ?? null]);
  if (list.length > MAX_SAMPLES) list.splice(0, list.length - MAX_SAMPLES);
}

export function visibleStitches() {
  const { tenant, state, origin, text } = S.filters;
  const out = [];
  for (const [key, stitch] of S.stitches) {
    if (tenant && stitch.metadata.tenant !== tenant) continue;
    if (state && stitch.status?.state !== state) continue;
    if (origin && (stitch.spec?.origin || "user") !== origin) continue;
    if (text && !key.toLowerCase().includes(text.toLowerCase())) continue;
    out.push([key, stitch]);
  }
  out.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  return out;
}

export function latestGraph(policyKey) {
  const graphs = S.graphs.get(policyKey);
  if (!graphs || !graphs.size) return null;
  return graphs.get(Math.max(...graphs.keys()));
}

// link name → {util, stitches, directions: [[from, to, reserved, measured, predicted]…]}: the reservations and
// measured throughput of the stitches shown (their paths), and the latest predicted load of each arc.
export function linkLoads(stitches) {
  const arcs = new Map();  // "a\0b" → [reserved, measured|null, predicted|null]
  const crossing = new Map();
  const arc = (a, b) => {
    const key = `${a}\u0000${b}`;
    let entry = arcs.get(key);
    if (!entry) arcs.set(key, (entry = [0, null, null]));
    return entry;
  };
  for (const [, stitch] of stitches) {
    const status = stitch.status || {};
    if (status.state === "TERMINATED" || !status.path || status.path.length < 2) continue;
    const reserved = status.reservedBandwidth || 0;
    const throughput = status.measured?.throughput;
    for (let i = 0; i + 1 < status.path.length; i++) {
      const [a, b] = [status.path[i], status.path[i + 1]];
      const forward = arc(a, b);
      forward[0] += reserved;
      if (typeof throughput === "number") forward[1] = (forward[1] || 0) + throughput;
      if (stitch.spec?.symmetric !== false) arc(b, a)[0] += reserved;
      const link = S.linkByEnds.get([a, b].sort().join("\u0000"));
      if (link) crossing.set(link.metadata.name, (crossing.get(link.metadata.name) || 0) + 1);
    }
  }
  const tenant = S.filters.tenant;
  for (const [policyKey] of S.graphs) {
    if (tenant && !policyKey.startsWith(`${tenant}/`)) continue;
    const graph = latestGraph(policyKey);
    for (const entry of graph?.links || []) {
      const target = arc(entry.arc[0], entry.arc[1]);
      target[2] = (target[2] || 0) + entry.predictedLoadBps;
    }
  }
  const loads = new Map();
  for (const link of S.links) {
    const [a, b] = link.spec.endpoints;
    const ab = arcs.get(`${a}\u0000${b}`) || [0, null, null];
    const ba = arcs.get(`${b}\u0000${a}`) || [0, null, null];
    const measured = [ab[1], ba[1]].filter((v) => v !== null);
    const util = measured.length ? Math.max(...measured) / link.spec.capacity : null;
    loads.set(link.metadata.name, { util, stitches: crossing.get(link.metadata.name) || 0,
      directions: [[a, b, ...ab], [b, a, ...ba]] });
  }
  return loads;
}
