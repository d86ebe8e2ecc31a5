// Runs before the rest of the page's modules have loaded: with a token kept from this tab's session it asks
// who that is and, only once the server has accepted it, for the substrate, so that app.js finds the answers
// on their way instead of starting them itself. A refused token gets nothing but the whoami answer.

const token = sessionStorage.getItem("vnstitch.token");
if (token) {
  const get = (path) => fetch(new URL(path, window.location.origin),
    { headers: { Authorization: `Bearer ${token}`, Accept: "application/json" }, cache: "no-store" });
  const who = get("/v1/whoami");
  const accepted = who.then((response) => response.ok, () => false);
  const nodes = accepted.then((ok) => (ok ? get("/v1/substrate/nodes?limit=1000") : null));
  const links = accepted.then((ok) => (ok ? get("/v1/substrate/links?limit=1000") : null));
  window.vnstitchEarly = {
    token,
    "/v1/whoami": who,
    "/v1/substrate/nodes": nodes,
    "/v1/substrate/links": links,
    // the stitch list once the server has answered the substrate (its headers are in: the server is done with
    // it), so that it does not hold the substrate back, nor wait for the page to have parsed it
    "/v1/stitches": Promise.all([nodes, links]).then(([n, l]) => (n?.ok && l?.ok ? get("/v1/stitches?limit=1000") : null)),
  };
  // The graph layout too, once the substrate is in (while the page's modules load and run): the worker that
  // topology.js then uses for later layouts, and the points it laid out (id 0), or null where the substrate has
  // coordinates, more than one page, or the worker failed. topology.js checks that the graph is the one it has.
  try {
    const worker = new Worker(new URL("./layout-worker.js", import.meta.url), { type: "module" });
    window.vnstitchEarly.worker = worker;
    window.vnstitchEarly.layout = Promise.all([nodes, links]).then(async ([n, l]) => {
      if (!n?.ok || !l?.ok) return null;
      const [nb, lb] = await Promise.all([n.clone().json(), l.clone().json()]);
      if (nb.metadata?.continue || lb.metadata?.continue) return null;
      const items = nb.items || [];
      const located = items.filter((node) => typeof node.spec?.latitude === "number" && typeof node.spec?.longitude === "number");
      if (!items.length || located.length >= 0.8 * items.length) return null;
      const names = items.map((node) => node.metadata.name);
      const edges = (lb.items || []).map((link) => link.spec.endpoints);
      if (cached(JSON.stringify([names, edges]))) return null;  // kept from an earlier visit: topology.js uses that
      return new Promise((resolve) => {
        worker.addEventListener("message", (event) => { if (event.data[0] === 0) resolve({ names, edges, points: event.data[1] }); });
        worker.addEventListener("error", () => resolve(null));
        worker.postMessage([0, names, edges]);
      });
    }).catch(() => null);
  } catch (_) { /* no worker: topology.js lays out on its own */ }
  for (const key of ["/v1/whoami", "/v1/substrate/nodes", "/v1/substrate/links", "/v1/stitches"]) window.vnstitchEarly[key].catch(() => {});
}

// whether topology.js keeps a layout of this graph (its cacheKey: FNV-1a of the names and endpoint pairs)
function cached(text) {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) { h ^= text.charCodeAt(i); h = Math.imul(h, 0x01000193); }
  try { return localStorage.getItem(`vnstitch.layout.${(h >>> 0).toString(16)}`) !== null; } catch (_) { return false; }
}
