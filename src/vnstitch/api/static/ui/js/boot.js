// Runs before the rest of the page's modules have loaded: with a token kept from this tab's session it asks
// who that is and, only once the server has accepted it, for the substrate and its layout, so that app.js finds the
// answers on their way instead of starting them itself. A refused token gets nothing but the whoami answer.

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
    // where the map draws each node, laid out once by the server (the page lays out itself only if this fails)
    "/v1/substrate/layout": accepted.then((ok) => (ok ? get("/v1/substrate/layout") : null)),
    // the stitch list once the server has answered the substrate (its headers are in: the server is done with
    // it), so that it does not hold the substrate back, nor wait for the page to have parsed it
    "/v1/stitches": Promise.all([nodes, links]).then(([n, l]) => (n?.ok && l?.ok ? get("/v1/stitches?limit=1000") : null)),
  };
  for (const key of Object.keys(window.vnstitchEarly)) if (key !== "token") window.vnstitchEarly[key].catch(() => {});
}
