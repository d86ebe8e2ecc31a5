// Runs before the rest of the page's modules have loaded: with a token kept from this tab's session it asks
// who that is and, only once the server has accepted it, for the substrate, so that app.js finds the answers
// on their way instead of starting them itself. A refused token gets nothing but the whoami answer.

const token = sessionStorage.getItem("vnstitch.token");
if (token) {
  const get = (path) => fetch(new URL(path, window.location.origin),
    { headers: { Authorization: `Bearer ${token}`, Accept: "application/json" }, cache: "no-store" });
  const who = get("/v1/whoami");
  const accepted = who.then((response) => response.ok, () => false);
  window.vnstitchEarly = {
    token,
    "/v1/whoami": who,
    "/v1/substrate/nodes": accepted.then((ok) => (ok ? get("/v1/substrate/nodes?limit=1000") : null)),
    "/v1/substrate/links": accepted.then((ok) => (ok ? get("/v1/substrate/links?limit=1000") : null)),
  };
  for (const key of Object.keys(window.vnstitchEarly)) if (key !== "token") window.vnstitchEarly[key].catch(() => {});
}
