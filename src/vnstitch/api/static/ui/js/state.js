// What the page knows, all of it read from the API with the user's token: the substrate, the stitches the
// token may see, the forecast policies and their predicted graphs. Derived figures (link loads) are computed
// from these on every change; nothing is merged across what the API answered.

export const S = {
  api: null,
  who: null,
  nodes: [],
  links: [],
  layout: null,               // a promise of the server's layout of the substrate (GET /v1/substrate/layout), or of null
  nodeIndex: new Map(),       // node name → index (linkLoads)
  arcOf: new Map(),           // from index × nodes + to index → arc (linkLoads)
  stitches: new Map(),        // "tenant/name" → Stitch
  samples: new Map(),         // "tenant/name" → [[t, throughput, reserved, latency, loss]…] seen while open (recordSample)
  policies: new Map(),        // "tenant/name" → ForecastPolicy
  graphs: new Map(),          // "tenant/policy" → Map(step → PredictedGraph spec)
  filters: { tenant: "", state: "", origin: "", text: "" },
  selected: null,             // "tenant/name" of the stitch shown
  live: new Map(),            // watch name → {state, why}
  lastEventAt: null,
  events: 0,
  stitchesLoaded: false,
  interactive: false,         // the map, its colours and the stitches have been drawn once
  onInteractive: null,        // app.js: called then (the watch streams open)
};

export const keyOf = (obj) => `${obj.metadata.tenant}/${obj.metadata.name}`;
// Samples kept per stitch: the open stitch keeps 600 (10 minutes at 1 Hz), every other one its last 60, so that
// the page's memory levels off within a minute whatever the number of stitches (1,000 × 60, a few MiB).
const MAX_SAMPLES_OPEN = 600;
const MAX_SAMPLES = 60;

export function setSubstrate(nodes, links) {
  S.nodes = nodes;
  S.links = links;
  // for linkLoads: node name → index, and (from, to) as one number → [link index, 0 forward | 1 backward]
  S.nodeIndex = new Map(nodes.map((node, i) => [node.metadata.name, i]));
  for (const link of links) for (const end of link.spec.endpoints) if (!S.nodeIndex.has(end)) S.nodeIndex.set(end, S.nodeIndex.size);
  S.arcOf = new Map();
  const size = S.nodeIndex.size;
  links.forEach((link, i) => {
    const [a, b] = link.spec.endpoints.map((end) => S.nodeIndex.get(end));
    S.arcOf.set(a * size + b, 2 * i);
    S.arcOf.set(b * size + a, 2 * i + 1);
  });
}

export function recordSample(stitch) {
  const key = keyOf(stitch);
  const status = stitch.status || {};
  const measured = status.measured || {};
  let list = S.samples.get(key);
  if (!list) S.samples.set(key, (list = []));
  list.push([Date.now() / 1000, measured.throughput ?? null, status.reservedBandwidth ?? 0, measured.latency ?? null, measured.loss ?? null]);
  const keep = key === S.selected ? MAX_SAMPLES_OPEN : MAX_SAMPLES;
  if (list.length > keep) list.splice(0, list.length - keep);
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
  const arcs = S.links.length * 2;  // arc 2i: link i from its first endpoint to its second; 2i + 1 back
  const reserved = new Float64Array(arcs);
  const measured = new Float64Array(arcs).fill(NaN);
  const predicted = new Float64Array(arcs).fill(NaN);
  const crossing = new Int32Array(S.links.length);
  const size = S.nodeIndex.size;
  const add = (values, arc, v) => { values[arc] = Number.isNaN(values[arc]) ? v : values[arc] + v; };
  for (const [, stitch] of stitches) {
    const status = stitch.status || {};
    const path = status.path;
    if (status.state === "TERMINATED" || !path || path.length < 2) continue;
    const bps = status.reservedBandwidth || 0;
    const throughput = status.measured?.throughput;
    const symmetric = stitch.spec?.symmetric !== false;
    let from = S.nodeIndex.get(path[0]);
    for (let i = 1; i < path.length; i++) {
      const to = S.nodeIndex.get(path[i]);
      const arc = from === undefined || to === undefined ? undefined : S.arcOf.get(from * size + to);
      from = to;
      if (arc === undefined) continue;
      reserved[arc] += bps;
      if (typeof throughput === "number") add(measured, arc, throughput);
      if (symmetric) reserved[arc ^ 1] += bps;
      crossing[arc >> 1] += 1;
    }
  }
  const tenant = S.filters.tenant;
  for (const [policyKey] of S.graphs) {
    if (tenant && !policyKey.startsWith(`${tenant}/`)) continue;
    const graph = latestGraph(policyKey);
    for (const entry of graph?.links || []) {
      const [a, b] = [S.nodeIndex.get(entry.arc[0]), S.nodeIndex.get(entry.arc[1])];
      const arc = a === undefined || b === undefined ? undefined : S.arcOf.get(a * size + b);
      if (arc !== undefined) add(predicted, arc, entry.predictedLoadBps);
    }
  }
  const loads = new Map();
  const arrays = { reserved, measured, predicted };
  const links = S.links;
  for (let i = 0; i < links.length; i++) {
    const link = links[i];
    const [ab, ba] = [measured[2 * i], measured[2 * i + 1]];
    const top = Number.isNaN(ab) ? ba : Number.isNaN(ba) ? ab : Math.max(ab, ba);
    loads.set(link.metadata.name, new LinkLoad(link, i, Number.isNaN(top) ? null : top / link.spec.capacity, crossing[i], arrays));
  }
  return loads;
}

const orNull = (v) => (Number.isNaN(v) ? null : v);

// One link's figures; its directions (for the tooltip) are read from the shared arrays when asked for, so that a
// render of 1,000 links allocates one small object each.
class LinkLoad {
  constructor(link, i, util, stitches, arrays) {
    this.link = link; this.i = i; this.util = util; this.stitches = stitches; this.arrays = arrays;
  }

  get directions() {
    const [a, b] = this.link.spec.endpoints;
    const { reserved, measured, predicted } = this.arrays;
    const [ab, ba] = [2 * this.i, 2 * this.i + 1];
    return [[a, b, reserved[ab], orNull(measured[ab]), orNull(predicted[ab])],
      [b, a, reserved[ba], orNull(measured[ba]), orNull(predicted[ba])]];
  }
}
