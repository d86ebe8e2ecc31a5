"""The dashboard at /ui/ in headless Chromium against a running server: what an operator sees (topology with
utilisation colours, a stitch's history, a forecast with its bands, decisions, a new stitch arriving live),
and what must never happen (data without a valid token, another tenant's objects, a name run as markup)."""

from __future__ import annotations

import time

import httpx

from tests.browser.conftest import screenshot, sign_in, wait_until
from tests.browser.server import XSS_NAME, DroppingProxy, stitch
from vnstitch.api.routes.ui import CSP

GREY = "#9ca3af"


def test_an_operator_sees_topology_stitches_forecasts_and_decisions_live(served, open_page, artefacts):
    page, console = open_page()
    sign_in(page, served, "acme")
    assert page.locator("#who").text_content() == "tenant acme · member"
    # topology: the geographic layout of Abilene, links coloured by measured utilisation
    wait_until(page, "() => document.querySelectorAll('line.link[data-util]:not([data-util=\"\"])').length >= 3")
    assert page.locator("svg.topology").get_attribute("data-layout") == "geographic"
    coloured = page.eval_on_selector_all("line.link", "els => els.filter(e => e.dataset.util !== '')"
                                                      ".map(e => [e.dataset.link, +e.dataset.util, e.getAttribute('stroke')])")
    assert coloured and all(colour != GREY and 0 < util < 1.5 for _, util, colour in coloured), coloured
    assert page.locator("polyline.stitch").count() >= 3  # stitches drawn on their paths
    busiest = max(coloured, key=lambda c: c[1])[0]
    link = page.locator(f"line.link[data-link='{busiest}']")
    link.hover()
    tip = page.locator("#tooltip").text_content()
    for word in ("capacity", "reserved", "measured", "predicted", busiest):
        assert word in tip, tip
    link.click()
    assert busiest in page.locator("#link-info").text_content()
    screenshot(page, artefacts, "topology")

    # stitches: the table, then one stitch's history and throughput
    page.click("[data-tab=stitches]")
    page.wait_for_selector("tr[data-stitch='acme/batch-db']")
    tenants = set(page.eval_on_selector_all("#stitch-rows tr", "rows => rows.map(r => r.dataset.stitch.split('/')[0])"))
    assert tenants == {"acme"}
    page.select_option("#filter-origin", "forecast")
    wait_until(page, "() => [...document.querySelectorAll('#stitch-rows tr')].every(r => r.dataset.stitch.startsWith('acme/fc-'))")
    page.select_option("#filter-origin", "")
    page.click("tr[data-stitch='acme/batch-db']")
    page.wait_for_selector("#history-rows tr >> nth=2")
    history = page.locator("#history-rows").text_content()
    assert "accepted" in history and "ACTIVE" in history and "established" in history
    page.wait_for_selector("#chart-throughput polyline[data-series=s-reserved]", state="attached")
    page.wait_for_selector("#chart-throughput polyline[data-series=s-offered]", state="attached")
    screenshot(page, artefacts, "stitch")

    # forecasts: web→db with its mean, 80 % and 90 % bands and the reservation made from it
    page.click("[data-tab=forecasts]")
    card = "div.forecast[data-pair='acme/fc/web>db']"
    page.wait_for_selector(f"{card} polygon[data-band=band80]", state="attached")
    for part in ("polygon[data-band=band90]", "polyline[data-series=s-mean]", "polyline[data-series=s-actual]",
                 "polyline[data-series=s-reserved]"):
        assert page.locator(f"{card} {part}").count() == 1, part
    assert "forecast stitch" in page.locator(card).text_content()
    assert_bands_are_the_models_quantiles(page, served, card)
    screenshot(page, artefacts, "forecasts")

    # decisions: the latest interval's, the last intervals', and an earlier one through the slider
    page.click("[data-tab=decisions]")
    page.wait_for_selector("#decisions-recent")
    assert "forecast p90" in page.locator("#decisions-recent").text_content()
    page.fill("#decision-slider", str(int(page.get_attribute("#decision-slider", "max")) - 3))
    wait_until(page, "() => document.querySelector('#decision-when').textContent.startsWith('3 intervals back')")
    screenshot(page, artefacts, "decisions")

    # live: a stitch created through the API appears without a reload
    page.evaluate("window.__sameDocument = true")
    page.click("[data-tab=stitches]")
    served.ok("acme", "POST", "/v1/stitches", json=stitch("live-new", "web", "batch", 1e8))
    page.wait_for_selector("tr[data-stitch='acme/live-new']", timeout=10_000)
    assert page.evaluate("window.__sameDocument") is True
    assert page.get_attribute("#live", "data-state") == "live"
    intents_route = "/v1/intents" in httpx.get(served.url + "/openapi.json").json()["paths"]
    assert page.locator("[data-tab=intents]").count() == (1 if intents_route else 0)
    assert console.errors == [] and console.dialogs == []


def assert_bands_are_the_models_quantiles(page, served, card: str) -> None:
    """The newest 80 % and 90 % bands drawn are the model's quantiles of that interval's predicted graph (read
    here from the API), not the normal derivation from mean and upper bound, and the note says so."""
    shown = page.evaluate("""(card) => { const root = document.querySelector(card);
        const band = (name) => { const p = root.querySelector(`polygon[data-band=${name}]`); return [+p.dataset.lo, +p.dataset.hi]; };
        return {step: +root.dataset.step, time: +root.dataset.time, source: root.dataset.bands,
                b80: band('band80'), b90: band('band90'), note: document.querySelector('#forecast-note').textContent}; }""", card)
    graph = served.ok("acme", "GET", "/v1/predictedgraph", params={"policy": "fc", "at": shown["time"]})["spec"]
    assert graph["step"] == shown["step"], (graph["step"], shown)
    entry = next(f for f in graph["forecast"] if (f["from"], f["to"]) == ("web", "db"))
    assert {"lo80Bps", "hi80Bps", "lo90Bps", "hi90Bps"} <= entry.keys(), entry  # this model gives quantiles
    assert shown["source"] == "model" and "model's own quantiles" in shown["note"], shown
    for band, lo, hi in (("b80", "lo80Bps", "hi80Bps"), ("b90", "lo90Bps", "hi90Bps")):  # to the bit/s
        assert abs(shown[band][0] - entry[lo]) <= 1 and abs(shown[band][1] - entry[hi]) <= 1, (band, shown, entry)
    quantile = served.ok("acme", "GET", "/v1/forecastpolicies/fc")["spec"]["quantile"]
    sigma = (entry["upperBps"] - entry["meanBps"]) / {0.8: 0.8416, 0.9: 1.2816, 0.95: 1.6449}[quantile]
    normal90 = [max(0, entry["meanBps"] - 1.6449 * sigma), entry["meanBps"] + 1.6449 * sigma]
    assert abs(normal90[1] - entry["hi90Bps"]) > 0.01 * entry["hi90Bps"], (normal90, entry)  # the check tells them apart


def test_the_live_mark_turns_stale_when_the_stream_drops(served, open_page):
    proxy = DroppingProxy(int(served.url.rsplit(":", 1)[1]))
    try:
        page, console = open_page()
        sign_in(page, served, "acme", url=proxy.url)
        page.wait_for_selector("#live[data-state=live]")
        proxy.cut()  # every stream ends, and reconnecting fails until allowed again
        page.wait_for_selector("#live[data-state=stale]", timeout=10_000)
        assert "stale" in page.locator("#live").text_content()
        assert page.locator("tr[data-stitch], line.link").count() > 0  # what was shown stays, marked stale
        proxy.allow()
        page.wait_for_selector("#live[data-state=live]", timeout=20_000)
        served.ok("acme", "POST", "/v1/stitches", json=stitch("after-drop", "db", "cache", 1e8))
        page.click("[data-tab=stitches]")
        page.wait_for_selector("tr[data-stitch='acme/after-drop']", timeout=10_000)  # resumed, nothing lost
    finally:
        proxy.close()


def test_a_wrong_or_missing_token_shows_the_login_prompt_and_no_data(served, open_page):
    page, console = open_page()
    asked = []
    page.on("request", lambda request: asked.append(request.url))
    page.goto(served.url + "/ui/")
    assert page.locator("#login").is_visible() and page.locator("#views > *").count() == 0
    page.fill("#token", "vns_" + "x" * 43)
    page.click("#login-form button[type=submit]")
    wait_until(page, "() => document.querySelector('#login-error').textContent.includes('token refused')")
    assert page.locator("#login").is_visible()
    assert page.locator("#views > *").count() == 0 and page.locator("#tabs").is_hidden()
    reads = [url for url in asked if "/v1/" in url]
    assert reads and all(url.endswith("/v1/whoami") for url in reads), reads  # nothing but the token check
    assert "batch-db" not in page.content() and "ATLAng" not in page.content()


def test_each_tenant_sees_only_its_own_objects(served, open_page, artefacts):
    for tenant, other in (("globex", "acme"), ("acme", "globex")):
        page, console = open_page()
        sign_in(page, served, tenant)
        wait_until(page, "() => document.querySelectorAll('polyline.stitch').length >= 1")
        drawn = set(page.eval_on_selector_all("polyline.stitch", "els => els.map(e => e.dataset.stitch.split('/')[0])"))
        assert drawn == {tenant}
        page.click("[data-tab=stitches]")
        page.wait_for_selector(f"tr[data-stitch^='{tenant}/']")
        listed = set(page.eval_on_selector_all("#stitch-rows tr", "rows => rows.map(r => r.dataset.stitch.split('/')[0])"))
        assert listed == {tenant}
        page.click("[data-tab=forecasts]")
        time.sleep(1.0)
        pairs = page.eval_on_selector_all("div.forecast", "els => els.map(e => e.dataset.pair)")
        assert all(p.startswith(f"{tenant}/") for p in pairs), pairs
        assert (tenant == "acme") == bool(pairs)
        text = page.locator("body").inner_text()
        for name in ("shop-ledger", "batch-db", "web-cache") if other == "globex" else ("batch-db", "web-cache", "acme/fc"):
            if other == "globex" and name != "shop-ledger":
                continue
            assert name not in text, f"{tenant} sees {name}"
        if tenant == "globex":
            screenshot(page, artefacts, "tenant-globex")
        assert console.errors == []


def test_a_hostile_name_renders_as_text(served, open_page, artefacts):
    refused = served.call("globex", "POST", "/v1/virtualnetworks", json={
        "kind": "VirtualNetwork", "metadata": {"name": XSS_NAME},
        "spec": {"vnid": 300, "cidr": "10.98.0.0/24", "members": []}})
    assert refused.status_code == 422  # the API refuses it as a name; it still reaches the page as free text:
    served.ok("admin", "PATCH", "/v1/substrate/nodes/KSCYng", json={"spec": {"site": XSS_NAME}},
              headers={"Content-Type": "application/merge-patch+json"})
    hostile = stitch("hostile", "shop", "evil", 1e8)
    hostile["metadata"]["annotations"] = {"note": XSS_NAME}
    served.ok("globex", "POST", "/v1/stitches", json=hostile)
    page, console = open_page()
    sign_in(page, served, "globex")
    page.locator("circle.node[data-node=KSCYng]").hover()
    assert XSS_NAME in page.locator("#tooltip").text_content()
    page.click("[data-tab=stitches]")
    page.click("tr[data-stitch='globex/hostile']")
    page.wait_for_selector("#stitch-annotations")
    assert page.locator("#stitch-annotations").text_content() == f"note: {XSS_NAME}"
    time.sleep(0.5)
    assert page.locator("img").count() == 0
    assert console.dialogs == [] and console.errors == []
    screenshot(page, artefacts, "hostile-name")


def test_the_server_sends_a_csp_that_forbids_inline_scripts_and_other_origins(served, open_page):
    for path in ("/ui/", "/ui/js/app.js", "/ui/app.css"):
        answer = httpx.get(served.url + path)
        assert answer.status_code == 200, path
        assert answer.headers["content-security-policy"] == CSP
    assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP and "unsafe-eval" not in CSP
    assert "default-src 'none'" in CSP and "connect-src 'self'" in CSP
    for path in ("/ui/../app.py", "/ui/js/../../../routes/ui.py", "/ui/.hidden.js", "/ui/nope.js"):
        assert httpx.get(served.url + path).status_code == 404, path
    assert httpx.get(served.url + "/ui", follow_redirects=False).headers["location"] == "ui/"
    page, console = open_page()
    page.goto(served.url + "/ui/")
    blocked = page.evaluate("""() => new Promise(resolve => {
        document.addEventListener('securitypolicyviolation', e => resolve(e.violatedDirective), {once: true});
        const s = document.createElement('script'); s.textContent = 'window.__ran = true'; document.body.append(s);
        setTimeout(() => resolve(window.__ran ? 'ran' : 'silent'), 2000);
    })""")
    assert blocked.startswith("script-src") and page.evaluate("window.__ran") is None


def test_a_reload_signs_in_again_from_the_session_asking_each_read_once(served, open_page):
    page, console = open_page()
    sign_in(page, served, "acme")
    asked, sent = [], []   # the paths read; (path, authorization header) of each
    page.on("request", lambda request: None if "watch=true" in request.url  # reads, not the watch streams
            else (asked.append(request.url.split("?")[0].removeprefix(served.url)),
                  sent.append((asked[-1], request.headers.get("authorization", "")))))
    page.reload()  # the token kept in sessionStorage: boot.js asks who it is and for the substrate early
    page.wait_for_selector("#view-topology[data-ready=true]", timeout=15_000)
    links = served.ok("acme", "GET", "/v1/substrate/links")["items"]
    assert page.locator("#login").is_hidden() and page.locator("line.link").count() == len(links)
    for path in ("/v1/whoami", "/v1/substrate/nodes", "/v1/substrate/links", "/v1/substrate/layout", "/v1/stitches"):
        assert asked.count(path) == 1, (path, asked)
    assert asked.index("/v1/whoami") < asked.index("/v1/substrate/nodes")
    assert console.errors == []
    page.evaluate("sessionStorage.setItem('vnstitch.token', 'vns_' + 'y'.repeat(43))")  # now refused
    sent.clear()
    page.reload()
    wait_until(page, "() => document.querySelector('#login-error').textContent.includes('token refused')")
    # what the page before the reload still asked with the accepted token (its forecast tab's module loads
    # after the map is interactive and reads the predicted graphs) is not this page's; everything else is
    accepted = served.tokens["acme"]
    assert [path for path, auth in sent if path.startswith("/v1/") and accepted not in auth] == ["/v1/whoami"], sent
    assert page.locator("#views > *").count() == 0


def test_without_coordinates_the_map_is_the_servers_layout_or_the_pages_own_where_that_fails(served, open_page):
    """Nodes without coordinates (stripped from the page's copy): drawn where GET /v1/substrate/layout places them;
    with that answer failing, the page lays the graph out itself (its worker) and still draws every node."""
    def without_coordinates(route):
        answer = route.fetch()
        body = answer.json()
        for node in body["items"]:
            node["spec"].pop("latitude", None)
            node["spec"].pop("longitude", None)
        route.fulfill(response=answer, json=body)

    placed = served.ok("acme", "GET", "/v1/substrate/layout")["points"]
    for layout_fails in (False, True):
        page, console = open_page()
        page.route(lambda url: "/v1/substrate/nodes" in url, without_coordinates)
        if layout_fails:
            page.route(lambda url: "/v1/substrate/layout" in url, lambda route: route.fulfill(status=500, json={
                "code": "Internal", "message": "no layout", "field": None}))
        sign_in(page, served, "acme")
        assert page.locator("svg.topology").get_attribute("data-layout") == "graph"
        drawn = dict(page.eval_on_selector_all(
            "circle.node", "els => els.map(e => [e.dataset.node, [+e.getAttribute('cx'), +e.getAttribute('cy')]])"))
        assert set(drawn) == set(placed)
        assert page.locator("line.link").count() == len(served.ok("acme", "GET", "/v1/substrate/links")["items"])
        same = all(abs(drawn[n][0] - x) <= 0.2 and abs(drawn[n][1] - y) <= 0.2 for n, (x, y) in placed.items())
        assert same is not layout_fails, (layout_fails, drawn, placed)
        if not layout_fails:
            assert console.errors == []
