// Predicted graphs of a policy, kept by step: the latest is fetched on every new interval, the last few
// intervals once at start (`?at=`), so that forecasts can be compared with what happened.

import { S } from "./state.js";

const BACKFILL = 20;
const inflight = new Map();

function params(policy, extra) {
  const tenant = policy.metadata.tenant;
  const scoped = S.who.role === "admin" || tenant !== S.who.tenant ? { tenant } : {};
  return { ...scoped, policy: policy.metadata.name, ...(extra || {}) };
}

function keep(policyKey, spec) {
  if (!spec || spec.step === null || spec.step === undefined) return false;
  let graphs = S.graphs.get(policyKey);
  if (!graphs) S.graphs.set(policyKey, (graphs = new Map()));
  const fresh = !graphs.has(spec.step);
  graphs.set(spec.step, spec);
  for (const step of graphs.keys()) if (graphs.size > 300 && step < spec.step - 300) graphs.delete(step);
  return fresh;
}

export async function refreshGraphs(policy, policyKey) {
  if (inflight.get(policyKey)) return false;
  inflight.set(policyKey, true);
  try {
    const current = await S.api.get("/v1/predictedgraph", params(policy));
    const added = keep(policyKey, current.spec);
    const graphs = S.graphs.get(policyKey);
    if (graphs && graphs.size === 1 && current.spec?.time) {
      const interval = current.spec.interval || 300;
      const times = [];
      for (let i = 1; i <= BACKFILL; i++) times.push(current.spec.time - i * interval + interval / 2);
      const earlier = await Promise.all(times.map((at) => S.api.get("/v1/predictedgraph", params(policy, { at })).catch(() => null)));
      for (const graph of earlier) if (graph) keep(policyKey, graph.spec);
    }
    return added;
  } finally {
    inflight.set(policyKey, false);
  }
}

export async function graphAt(policy, at) {
  return (await S.api.get("/v1/predictedgraph", params(policy, { at }))).spec;
}

export async function pairSeries(policy, from, to, since) {
  const tenant = policy.metadata.tenant;
  const scoped = S.who.role === "admin" || tenant !== S.who.tenant ? { tenant } : {};
  return (await S.api.get("/v1/telemetry", { ...scoped, from, to, since })).items || [];
}

// The 80 % and 90 % central intervals of a forecast entry of a predicted graph. Where the model gave quantiles
// the graph keeps the next interval's point and its q0.1–q0.9 and q0.05–q0.95 (pointBps, lo80Bps … hi90Bps,
// controller/proactive.py): those are drawn as they are. Otherwise only the mean and the upper bound at the
// policy's quantile q are known, and the intervals are derived from them assuming a normal forecast error
// (σ = (upper − mean) / z(q)). `source` says which: "model" or "normal".
const Z = { 0.8: 0.8416, 0.9: 1.2816, 0.95: 1.6449, 0.975: 1.96, 0.99: 2.3263 };
export function zOf(q) {
  if (Z[q]) return Z[q];
  // otherwise Tukey's lambda approximation (within 1e-3 for 0.5 < q < 0.999): enough for a band
  return 4.91 * (q ** 0.14 - (1 - q) ** 0.14);
}

export function normalBands(meanBps, upperBps, quantile) {
  const sigma = Math.max(0, upperBps - meanBps) / zOf(quantile);
  const at = (z) => [Math.max(0, meanBps - z * sigma), meanBps + z * sigma];
  return { b80: at(1.2816), b90: at(1.6449) };
}

const finite = (v) => typeof v === "number" && Number.isFinite(v);

export function bands(entry, quantile) {
  if ([entry.lo80Bps, entry.hi80Bps, entry.lo90Bps, entry.hi90Bps].every(finite)) {
    return { source: "model", meanBps: finite(entry.pointBps) ? entry.pointBps : entry.meanBps,
      b80: [entry.lo80Bps, entry.hi80Bps], b90: [entry.lo90Bps, entry.hi90Bps] };
  }
  return { source: "normal", meanBps: entry.meanBps, ...normalBands(entry.meanBps, entry.upperBps, quantile) };
}
