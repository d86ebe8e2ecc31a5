"""Authorization matrix: every route × {no token, other tenant's member, reader, member, admin}.

Tenant-scoped calls address tenant acme's objects with ?tenant=acme: acme's reader and
member act in their own tenant, the admin may name any tenant, and globex's member gets
404 as if acme did not exist. Nothing of acme's may appear in an answer to globex.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import pytest

from tests.api.payloads import ROLES, stitch, vnet

MERGE = {"Content-Type": "application/merge-patch+json"}
ACME_SECRETS = ("10.0.0.0/24", "10.1.0.0/24", "reservedBandwidth", "NYCMng\", \"WASHng")


@dataclass
class Route:
    method: str
    path: str
    expect: dict[str, int]
    body: Callable[[str], dict] | None = None
    setup: Callable[[object, str], None] | None = None
    headers: dict = field(default_factory=dict)
    tenant: bool = True  # send ?tenant=acme

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"


def tenant_read():
    return {"none": 401, "other": 404, "reader": 200, "member": 200, "admin": 200}


def tenant_write(ok=200):
    return {"none": 401, "other": 404, "reader": 403, "member": ok, "admin": ok}


def cluster_read():
    return {"none": 401, "other": 200, "reader": 200, "member": 200, "admin": 200}


def cluster_write(ok=200):
    return {"none": 401, "other": 403, "reader": 403, "member": 403, "admin": ok}


def public():
    return {"none": 200, "other": 200, "reader": 200, "member": 200, "admin": 200}


def _admin(api, method, path, **kw):
    response = api.call("admin", method, path, **kw)
    assert response.status_code < 300, response.text
    return response


def setup_vnet(api, who):
    _admin(api, "POST", "/v1/virtualnetworks?tenant=acme",
           json=vnet(f"del-{who}", 500 + ROLES.index(who), f"10.9.{ROLES.index(who)}.0/24", []))


def setup_stitch(api, who):
    _admin(api, "POST", "/v1/stitches?tenant=acme", json=stitch(f"del-{who}", "web", "db", "1Mbps"))


def setup_node(api, who):
    _admin(api, "POST", "/v1/substrate/nodes", json={"kind": "Node", "metadata": {"name": f"del-{who}"}})


def setup_link_nodes(api, who):
    for end in ("a", "b"):
        _admin(api, "POST", "/v1/substrate/nodes", json={"kind": "Node", "metadata": {"name": f"l{end}-{who}"}})


def setup_link(api, who):
    setup_link_nodes(api, who)
    _admin(api, "POST", "/v1/substrate/links", json=link_body(who))


def link_body(who):
    return {"kind": "Link", "metadata": {"name": f"l-{who}"},
            "spec": {"endpoints": [f"la-{who}", f"lb-{who}"], "capacity": "1Gbps"}}


def site_body(who, asn=65001):
    """Each role's site apart from the others' (its own AS, address and node): sites may not clash."""
    index = ROLES.index(who)
    return {"kind": "Site", "metadata": {"name": f"site-{who}"},
            "spec": {"nodes": [f"sn-{who}"], "borderNode": f"sn-{who}", "asNumber": asn + 10 * index,
                     "routeManagerAddress": f"192.0.2.{1 + index}"}}


def setup_site(api, who):
    _admin(api, "POST", "/v1/sites", json=site_body(who))


def site_stitch(name, bandwidth="100Mbps"):
    return {"kind": "SiteStitch", "metadata": {"name": name},
            "spec": {"from": {"network": "web"}, "to": {"network": "green", "tenant": "globex"}, "bandwidth": bandwidth}}


def setup_site_stitch(api, who):
    _admin(api, "POST", "/v1/sitestitches?tenant=acme", json=site_stitch(f"ss-{who}"))


def forecast_policy(name, horizon=2):
    return {"kind": "ForecastPolicy", "metadata": {"name": name}, "spec": {"networks": ["web", "db"], "horizon": horizon}}


def setup_policy(api, who):
    _admin(api, "POST", "/v1/forecastpolicies?tenant=acme", json=forecast_policy(f"fp-{who}"))


def setup_suggestion(api, who):
    """A pending suggestion (to end a pair the policy holds nothing for: approving it changes nothing)."""
    _admin(api, "POST", "/v1/forecastpolicies?tenant=acme", json=forecast_policy(f"fs-{who}"))
    api.app.state.ctx.controller.store.put("Suggestion", "acme", f"s-{who}", {
        "policy": f"fs-{who}", "step": 1, "time": 300.0, "action": "terminate", "from": "web", "to": "db",
        "bandwidthBps": 0.0, "parts": [], "reason": "test", "forecastMeanBps": 0.0, "forecastUpperBps": 0.0,
        "state": "pending"})


def intent(name, priority=100):
    return {"kind": "Intent", "metadata": {"name": name},
            "spec": {"text": "for group('acme/web') allow service('acme/db:5432')", "priority": priority}}


def setup_intent(api, who):
    _admin(api, "POST", "/v1/intents?tenant=acme", json=intent(f"in-{who}"))


def setup_proposal(api, who):
    """A pending proposal sent to acme (by globex's intent), put where the intent engine would."""
    from vnstitch.domain.intent import Proposal

    doc = Proposal.model_validate({"kind": "Proposal", "metadata": {"name": f"pr-{who}", "tenant": "acme"},
                                   "spec": {"requester": "globex", "intent": "lake", "expectation": "e",
                                            "fromNetwork": "globex/lake", "network": "db"}})
    api.app.state.ctx.controller.store.put("Proposal", "acme", f"pr-{who}",
                                           doc.model_dump(by_alias=True, mode="json", exclude_none=True))


def anomaly_policy(name, mode="suggest"):
    return {"kind": "AnomalyPolicy", "metadata": {"name": name}, "spec": {"mode": mode}}


def setup_anomaly_policy(api, who):
    _admin(api, "POST", "/v1/anomalypolicies?tenant=acme", json=anomaly_policy(f"ap-{who}"))


def setup_anomaly(api, who):
    """An open anomaly of acme's, put where the anomaly engine would."""
    from vnstitch.domain.anomaly import Anomaly

    doc = Anomaly.model_validate({"kind": "Anomaly", "metadata": {"name": f"an-{who}", "tenant": "acme"},
                                  "spec": {"policy": "p", "detector": "residual", "kind": "surge",
                                           "pairs": ["web>db"], "start": time.time()}})
    api.app.state.ctx.controller.store.put("Anomaly", "acme", f"an-{who}",
                                           doc.model_dump(by_alias=True, mode="json", exclude_none=True))


WEB = vnet("web", 100, "10.0.0.0/24", [("w1", "NYCMng", "10.0.0.1")])
NYC = {"kind": "Node", "metadata": {"name": "NYCMng", "labels": {"x": "y"}}}

ROUTES = [
    Route("GET", "/v1/virtualnetworks", tenant_read()),
    Route("POST", "/v1/virtualnetworks", tenant_write(201),
          body=lambda who: vnet(f"new-{who}", 200 + ROLES.index(who), f"10.8.{ROLES.index(who)}.0/24", [])),
    Route("GET", "/v1/virtualnetworks/web", tenant_read()),
    Route("PUT", "/v1/virtualnetworks/web", tenant_write(),
          body=lambda who: {**WEB, "metadata": {"name": "web", "labels": {"by": who}}}),
    Route("PATCH", "/v1/virtualnetworks/web", tenant_write(), headers=MERGE,
          body=lambda who: {"metadata": {"labels": {"patched": who}}}),
    Route("DELETE", "/v1/virtualnetworks/del-{who}", tenant_write(), setup=setup_vnet),
    Route("GET", "/v1/stitches", tenant_read()),
    Route("POST", "/v1/stitches", tenant_write(201), body=lambda who: stitch(f"new-{who}", "web", "db", "1Mbps")),
    Route("GET", "/v1/stitches/web-db", tenant_read()),
    Route("PUT", "/v1/stitches/web-db", tenant_write(), body=lambda who: stitch("web-db", "web", "db", "12Mbps")),
    Route("PATCH", "/v1/stitches/web-db", tenant_write(), headers=MERGE,
          body=lambda who: {"spec": {"bandwidth": "11Mbps"}}),
    Route("DELETE", "/v1/stitches/del-{who}", tenant_write(), setup=setup_stitch),
    Route("GET", "/v1/stitches/web-db/status", tenant_read()),
    Route("GET", "/v1/stitches/web-db/history", tenant_read()),
    Route("POST", "/v1/stitches/web-db/rotate-keys", tenant_write(202)),
    Route("GET", "/v1/policies", tenant_read()),
    Route("GET", "/v1/policies/web", tenant_read()),
    Route("PUT", "/v1/policies/web", tenant_write(),
          body=lambda who: {"kind": "Policy", "metadata": {"name": "web"}, "spec": {"allowStitchTo": ["db"]}}),
    Route("PATCH", "/v1/policies/web", tenant_write(), headers=MERGE,
          body=lambda who: {"spec": {"allowUnencrypted": True}}),
    Route("DELETE", "/v1/policies/web", tenant_write()),
    Route("POST", "/v1/availability", tenant_read(),
          body=lambda who: {"from": {"network": "web"}, "to": {"network": "db"}, "bandwidth": "1Gbps"}),
    Route("GET", "/v1/predictedgraph", tenant_read()),
    Route("GET", "/v1/sitestitches", tenant_read()),
    Route("POST", "/v1/sitestitches", tenant_write(201), body=lambda who: site_stitch(f"new-{who}")),
    Route("GET", "/v1/sitestitches/ss-{who}", tenant_read(), setup=setup_site_stitch),
    Route("PUT", "/v1/sitestitches/ss-{who}", tenant_write(), setup=setup_site_stitch,
          body=lambda who: site_stitch(f"ss-{who}", bandwidth="200Mbps")),
    Route("PATCH", "/v1/sitestitches/ss-{who}", tenant_write(), headers=MERGE, setup=setup_site_stitch,
          body=lambda who: {"spec": {"bandwidth": "300Mbps"}}),
    Route("DELETE", "/v1/sitestitches/ss-{who}", tenant_write(), setup=setup_site_stitch),
    Route("GET", "/v1/forecastpolicies", tenant_read()),
    Route("POST", "/v1/forecastpolicies", tenant_write(201), body=lambda who: forecast_policy(f"new-{who}")),
    Route("GET", "/v1/forecastpolicies/fp-{who}", tenant_read(), setup=setup_policy),
    Route("PUT", "/v1/forecastpolicies/fp-{who}", tenant_write(), setup=setup_policy,
          body=lambda who: forecast_policy(f"fp-{who}", horizon=3)),
    Route("PATCH", "/v1/forecastpolicies/fp-{who}", tenant_write(), headers=MERGE, setup=setup_policy,
          body=lambda who: {"spec": {"horizon": 4}}),
    Route("DELETE", "/v1/forecastpolicies/fp-{who}", tenant_write(), setup=setup_policy),
    Route("GET", "/v1/suggestions", tenant_read()),
    Route("POST", "/v1/suggestions/s-{who}/approve", tenant_write(), setup=setup_suggestion),
    Route("POST", "/v1/telemetry", tenant_write(),
          body=lambda who: {"samples": [{"from": "web", "to": "db", "time": time.time() - 1, "rateBps": 1e6}]}),
    Route("GET", "/v1/telemetry", tenant_read()),
    # these fixtures run no reconciler: an admin gets 409 (test_plan.py covers the 200)
    Route("GET", "/v1/plan", cluster_write(409), tenant=False),
    Route("GET", "/v1/audit", cluster_write(), tenant=False),
    Route("POST", "/v1/apply", tenant_write(),
          body=lambda who: {"items": [{**WEB, "metadata": {"name": "web", "labels": {"applied": who}}}]}),
    Route("GET", "/v1/substrate/nodes", cluster_read(), tenant=False),
    Route("POST", "/v1/substrate/nodes", cluster_write(201), tenant=False,
          body=lambda who: {"kind": "Node", "metadata": {"name": f"new-{who}"}}),
    Route("GET", "/v1/substrate/nodes/NYCMng", cluster_read(), tenant=False),
    Route("PUT", "/v1/substrate/nodes/NYCMng", cluster_write(), tenant=False, body=lambda who: NYC),
    Route("PATCH", "/v1/substrate/nodes/NYCMng", cluster_write(), tenant=False, headers=MERGE,
          body=lambda who: {"spec": {"site": who}}),
    Route("DELETE", "/v1/substrate/nodes/del-{who}", cluster_write(), tenant=False, setup=setup_node),
    Route("GET", "/v1/substrate/links", cluster_read(), tenant=False),
    Route("POST", "/v1/substrate/links", cluster_write(201), tenant=False, body=link_body, setup=setup_link_nodes),
    Route("GET", "/v1/substrate/links/NYCMng--WASHng", cluster_read(), tenant=False),
    Route("PUT", "/v1/substrate/links/l-{who}", cluster_write(), tenant=False, setup=setup_link,
          body=lambda who: {**link_body(who), "spec": {**link_body(who)["spec"], "capacity": "2Gbps"}}),
    Route("PATCH", "/v1/substrate/links/NYCMng--WASHng", cluster_write(), tenant=False, headers=MERGE,
          body=lambda who: {"metadata": {"labels": {"by": who}}}),
    Route("DELETE", "/v1/substrate/links/l-{who}", cluster_write(), tenant=False, setup=setup_link),
    Route("GET", "/v1/substrate/layout", cluster_read(), tenant=False),
    Route("GET", "/v1/sites", cluster_read(), tenant=False),
    Route("POST", "/v1/sites", cluster_write(201), tenant=False, body=site_body),
    Route("GET", "/v1/sites/site-{who}", cluster_read(), tenant=False, setup=setup_site),
    Route("PUT", "/v1/sites/site-{who}", cluster_write(), tenant=False, setup=setup_site,
          body=lambda who: site_body(who, asn=65002)),
    Route("PATCH", "/v1/sites/site-{who}", cluster_write(), tenant=False, headers=MERGE, setup=setup_site,
          body=lambda who: {"spec": {"trustLevel": "partner"}}),
    Route("DELETE", "/v1/sites/site-{who}", cluster_write(), tenant=False, setup=setup_site),
    Route("GET", "/v1/intents", tenant_read()),
    Route("POST", "/v1/intents", tenant_write(201), body=lambda who: intent(f"new-{who}")),
    Route("GET", "/v1/intents/in-{who}", tenant_read(), setup=setup_intent),
    Route("PUT", "/v1/intents/in-{who}", tenant_write(), setup=setup_intent,
          body=lambda who: intent(f"in-{who}", priority=150)),
    Route("PATCH", "/v1/intents/in-{who}", tenant_write(), headers=MERGE, setup=setup_intent,
          body=lambda who: {"spec": {"priority": 160}}),
    Route("DELETE", "/v1/intents/in-{who}", tenant_write(), setup=setup_intent),
    Route("GET", "/v1/intents/in-{who}/reports", tenant_read(), setup=setup_intent),
    Route("POST", "/v1/probeintents", tenant_read(), body=lambda who: intent("probe")),
    Route("POST", "/v1/parsedintents", {"none": 401, "other": 200, "reader": 200, "member": 200, "admin": 200},
          tenant=False, body=lambda who: {"text": "for group('acme/web') isolate"}),
    Route("GET", "/v1/proposals", tenant_read()),
    Route("GET", "/v1/proposals/pr-{who}", tenant_read(), setup=setup_proposal),
    Route("POST", "/v1/proposals/pr-{who}/accept", tenant_write(), setup=setup_proposal, body=lambda who: {}),
    Route("POST", "/v1/proposals/pr-{who}/reject", tenant_write(), setup=setup_proposal, body=lambda who: {}),
    Route("GET", "/v1/vngraph", tenant_read()),
    Route("GET", "/v1/anomalies", tenant_read()),
    Route("GET", "/v1/anomalies/an-{who}", tenant_read(), setup=setup_anomaly),
    Route("POST", "/v1/anomalies/an-{who}/approve", tenant_write(), setup=setup_anomaly),
    Route("POST", "/v1/anomalies/an-{who}/keep", tenant_write(), setup=setup_anomaly, body=lambda who: {}),
    Route("GET", "/v1/anomalypolicies", tenant_read()),
    Route("POST", "/v1/anomalypolicies", tenant_write(201), body=lambda who: anomaly_policy(f"new-{who}")),
    Route("GET", "/v1/anomalypolicies/ap-{who}", tenant_read(), setup=setup_anomaly_policy),
    Route("PUT", "/v1/anomalypolicies/ap-{who}", tenant_write(), setup=setup_anomaly_policy,
          body=lambda who: anomaly_policy(f"ap-{who}", mode="off")),
    Route("PATCH", "/v1/anomalypolicies/ap-{who}", tenant_write(), headers=MERGE, setup=setup_anomaly_policy,
          body=lambda who: {"spec": {"mode": "auto"}}),
    Route("DELETE", "/v1/anomalypolicies/ap-{who}", tenant_write(), setup=setup_anomaly_policy),
    Route("GET", "/v1/whoami", {"none": 401, "other": 200, "reader": 200, "member": 200, "admin": 200}, tenant=False),
    Route("GET", "/healthz", public(), tenant=False),
    Route("GET", "/readyz", public(), tenant=False),
    Route("GET", "/metrics", public(), tenant=False),
    Route("GET", "/openapi.json", public(), tenant=False),
]


def test_matrix_covers_every_route(api):
    documented = {(m.upper(), p) for p, ops in api.app.openapi()["paths"].items() for m in ops}
    tested = {(r.method, r.path.replace("{who}", "x")) for r in ROUTES}
    templates = {(m, p.split("{")[0]) for m, p in documented}
    for method, path in documented:
        assert any(m == method and _matches(path, p) for m, p in tested), f"untested route {method} {path}"
    assert templates


def _matches(template: str, path: str) -> bool:
    a, b = template.strip("/").split("/"), path.strip("/").split("/")
    return len(a) == len(b) and all(x == y or x.startswith("{") for x, y in zip(a, b))


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.id)
def test_route_authorization(seeded, route: Route):
    for who in ROLES:
        if route.setup:
            route.setup(seeded, who)
        path = route.path.replace("{who}", who)
        params = {"tenant": "acme"} if route.tenant else {}
        kwargs = {"params": params, "headers": route.headers}
        if route.body:
            kwargs["json"] = route.body(who)
        response = seeded.call(who, route.method, path, **kwargs)
        assert response.status_code == route.expect[who], f"{who}: {response.status_code} {response.text}"
        if response.status_code >= 400:
            assert set(response.json()) == {"code", "message", "field"}
        if who == "other" and path not in ("/metrics", "/openapi.json"):
            for secret in ACME_SECRETS:
                assert secret not in response.text, f"acme data leaked to globex: {response.text}"


def test_other_tenant_lists_show_none_of_acme(seeded):
    for path in ("/v1/virtualnetworks", "/v1/stitches", "/v1/policies"):
        response = seeded.call("other", "GET", path)
        assert response.status_code == 200
        assert response.json()["items"] == []
    names = {i["metadata"]["name"] for i in seeded.call("admin", "GET", "/v1/stitches").json()["items"]}
    assert names == {"web-db"}  # admins list every tenant


def test_other_tenant_cannot_write_into_acme_through_the_body(seeded):
    body = vnet("sneaky", 300, "10.7.0.0/24", [])
    body["metadata"]["tenant"] = "acme"
    assert seeded.call("other", "POST", "/v1/virtualnetworks", json=body).status_code == 404
    assert seeded.call("other", "POST", "/v1/apply", json={"items": [body]}).status_code == 404
    assert seeded.call("admin", "GET", "/v1/virtualnetworks/sneaky", params={"tenant": "acme"}).status_code == 404
