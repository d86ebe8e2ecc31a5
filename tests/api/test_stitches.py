"""Stitches over the API: cross-tenant policy, quotas, monitoring, lists, watch, status."""

from __future__ import annotations

import json
import time

import httpx

from tests.api.payloads import stitch, vnet

MERGE = {"Content-Type": "application/merge-patch+json"}


def _globex_net(api, policy=None):
    body = vnet("partner", 300, "10.3.0.0/24", [("p1", "STTLng", "10.3.0.1")])
    if policy is not None:
        body["spec"]["policy"] = policy
    api.call("other", "POST", "/v1/virtualnetworks", json=body).raise_for_status()


def test_cross_tenant_stitch_needs_both_policies_and_403_names_the_refusing_side(seeded):
    cross = stitch("to-partner", "web", "partner")
    cross["spec"]["to"]["tenant"] = "globex"
    _globex_net(seeded)
    refused = seeded.call("member", "POST", "/v1/stitches", json=cross)
    assert refused.status_code == 403
    assert refused.json()["code"] == "policy_denied" and refused.json()["field"] == "spec.from"
    seeded.call("member", "PUT", "/v1/policies/web",
                json={"kind": "Policy", "metadata": {"name": "web"},
                      "spec": {"allowStitchTo": ["globex/partner"]}}).raise_for_status()
    refused = seeded.call("member", "POST", "/v1/stitches", json=cross)
    # globex's network refuses acme: to acme it does not exist (no existence oracle).
    assert refused.status_code == 422 and refused.json() == {
        "code": "invalid", "message": "unknown network 'globex/partner'", "field": "spec.to.network"}
    seeded.call("other", "PATCH", "/v1/policies/partner", headers=MERGE,
                json={"spec": {"allowStitchTo": ["acme/web"]}}).raise_for_status()
    accepted = seeded.call("member", "POST", "/v1/stitches", json=cross)
    assert accepted.status_code == 201, accepted.text
    # The stitch lives in acme; globex sees its own policy, not acme's stitch.
    assert seeded.call("other", "GET", "/v1/stitches").json()["items"] == []


def test_quotas_on_stitch_count_and_bandwidth_name_the_quota(make_api):
    api = make_api(quota_stitches=2, quota_bandwidth_bps=100e6)
    for body in (vnet("web", 100, "10.0.0.0/24", [("w1", "NYCMng", "10.0.0.1")]),
                 vnet("db", 101, "10.1.0.0/24", [("d1", "LOSAng", "10.1.0.1")])):
        api.call("member", "POST", "/v1/virtualnetworks", json=body).raise_for_status()
    too_big = api.call("member", "POST", "/v1/stitches", json=stitch("big", "web", "db", "150Mbps"))
    assert too_big.status_code == 403 and too_big.json()["code"] == "quota_exceeded"
    assert "'bandwidth'" in too_big.json()["message"]
    for name in ("a", "b"):
        api.call("member", "POST", "/v1/stitches", json=stitch(name, "web", "db", "10Mbps")).raise_for_status()
    third = api.call("member", "POST", "/v1/stitches", json=stitch("c", "web", "db", "10Mbps"))
    assert third.status_code == 403 and "'stitches'" in third.json()["message"]
    # Resizing an existing stitch within the bandwidth quota is fine; beyond it is not.
    assert api.call("member", "PATCH", "/v1/stitches/a", headers=MERGE,
                    json={"spec": {"bandwidth": "80Mbps"}}).status_code == 200
    over = api.call("member", "PATCH", "/v1/stitches/b", headers=MERGE, json={"spec": {"bandwidth": "30Mbps"}})
    assert over.status_code == 403 and over.json()["field"] == "spec.bandwidth"


def test_status_is_written_only_by_the_controller(seeded):
    body = stitch("web-db", "web", "db", "10Mbps")
    body["status"] = {"state": "ACTIVE", "reservedBandwidth": 1e12}
    answer = seeded.call("member", "PUT", "/v1/stitches/web-db", json=body)
    assert answer.status_code == 200
    assert answer.json()["status"]["state"] == "PENDING"
    assert answer.json()["status"]["reservedBandwidth"] == 10e6
    patched = seeded.call("member", "PATCH", "/v1/stitches/web-db", headers=MERGE,
                          json={"status": {"state": "ACTIVE"}})
    assert patched.json()["status"]["state"] == "PENDING"


def test_put_with_a_stale_resource_version_conflicts(seeded):
    current = seeded.call("member", "GET", "/v1/virtualnetworks/web").json()
    stale = current["metadata"]["resourceVersion"]
    current["metadata"]["labels"] = {"v": "2"}
    assert seeded.call("member", "PUT", "/v1/virtualnetworks/web", json=current).status_code == 200
    current["metadata"]["labels"] = {"v": "3"}
    current["metadata"]["resourceVersion"] = stale
    answer = seeded.call("member", "PUT", "/v1/virtualnetworks/web", json=current)
    assert answer.status_code == 409 and answer.json()["field"] == "metadata.resourceVersion"


def test_errors_are_json_with_stable_codes(seeded):
    unknown_key = seeded.call("member", "POST", "/v1/virtualnetworks",
                              json={**vnet("x", 9, "10.9.0.0/24", []), "colour": "red"})
    assert unknown_key.status_code == 422
    assert unknown_key.json() == {"code": "invalid", "message": "is not a known field (known: apiVersion, kind, metadata, "
                                                          "spec)", "field": "colour"}
    bad = seeded.call("member", "POST", "/v1/stitches", json=stitch("y", "web", "db", "lots"))
    assert bad.status_code == 422 and bad.json()["field"] == "spec.bandwidth"
    no_route = seeded.call("member", "GET", "/v1/nothing")
    assert no_route.status_code == 404 and no_route.json()["code"] == "not_found"
    wrong_method = seeded.call("member", "POST", "/v1/stitches/web-db")
    assert wrong_method.status_code == 405 and "GET" in wrong_method.headers["Allow"]
    not_json = seeded.call("member", "POST", "/v1/stitches", content=b"{nope",
                           headers={"Content-Type": "application/json"})
    assert not_json.status_code == 422 and not_json.json()["code"] == "invalid"


def test_list_with_label_selector_and_pagination(seeded):
    for i in range(5):
        body = vnet(f"n{i}", 200 + i, f"10.5.{i}.0/24", [])
        body["metadata"]["labels"] = {"tier": "even" if i % 2 == 0 else "odd"}
        seeded.call("member", "POST", "/v1/virtualnetworks", json=body).raise_for_status()
    even = seeded.call("member", "GET", "/v1/virtualnetworks", params={"labelSelector": "tier=even"}).json()
    assert [i["metadata"]["name"] for i in even["items"]] == ["n0", "n2", "n4"]
    not_odd = seeded.call("member", "GET", "/v1/virtualnetworks", params={"labelSelector": "tier,tier!=odd"}).json()
    assert len(not_odd["items"]) == 3
    names, token = [], None
    while True:
        params = {"limit": 2, **({"continue": token} if token else {})}
        page = seeded.call("member", "GET", "/v1/virtualnetworks", params=params).json()
        names += [i["metadata"]["name"] for i in page["items"]]
        token = page["metadata"]["continue"]
        if not token:
            break
    assert names == ["db", "n0", "n1", "n2", "n3", "n4", "web"]
    bad = seeded.call("member", "GET", "/v1/virtualnetworks", params={"continue": "%%%"})
    assert bad.status_code == 422 and bad.json()["field"] == "continue"


def test_availability_reserves_nothing(seeded):
    query = {"from": {"network": "web"}, "to": {"network": "db"}, "bandwidth": "9Gbps", "maxLatency": "100ms"}
    answer = seeded.call("member", "POST", "/v1/availability", json=query).json()
    assert answer["feasible"] is True and answer["path"]["nodes"][0] == "NYCMng"
    before = _reserved_bps(seeded)
    assert before and any(before.values()), "the seeded stitch reserves something: the comparison has values"
    seeded.call("member", "POST", "/v1/availability", json=query).raise_for_status()
    assert _reserved_bps(seeded) == before
    too_much = seeded.call("member", "POST", "/v1/availability", json={**query, "bandwidth": "50Gbps"}).json()
    assert too_much["feasible"] is False and too_much["reason"]
    assert _reserved_bps(seeded) == before
    # The comparison sees a reservation on links that already hold one (same lines, other values).
    seeded.call("member", "POST", "/v1/stitches", json=stitch("more", "web", "db", "1Mbps")).raise_for_status()
    after = _reserved_bps(seeded)
    assert after.keys() == before.keys() and after != before


def _reserved_bps(api) -> dict[tuple[str, str], float]:
    """(link, direction) → reserved bit/s, parsed from /metrics (the ledger as an operator sees it)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = api.call("admin", "GET", "/metrics").text
    return {(s.labels["link"], s.labels["direction"]): s.value
            for family in text_string_to_metric_families(text) if family.name == "vnstitch_link_reserved_bps"
            for s in family.samples}


def test_watch_streams_ndjson_and_sse(seeded):
    start = seeded.call("member", "GET", "/v1/stitches").json()["metadata"]["resourceVersion"]
    seeded.call("member", "PATCH", "/v1/stitches/web-db", headers=MERGE, json={"metadata": {"labels": {"a": "b"}}})
    seeded.call("other", "POST", "/v1/virtualnetworks", json=vnet("g", 400, "10.4.0.0/24", []))
    lines = seeded.call("member", "GET", "/v1/stitches",
                        params={"watch": "true", "resourceVersion": start, "timeoutSeconds": 1}).text.splitlines()
    events = [json.loads(line) for line in lines]
    assert [e["type"] for e in events] == ["MODIFIED"]
    assert events[0]["object"]["metadata"]["labels"] == {"a": "b"}
    sse = seeded.call("member", "GET", "/v1/stitches", params={"watch": "true", "timeoutSeconds": 0},
                      headers={"Accept": "text/event-stream"})
    assert sse.headers["content-type"].startswith("text/event-stream")
    assert sse.text.startswith("event: ADDED\ndata: {")
    # Another tenant's watch sees nothing of acme.
    theirs = seeded.call("other", "GET", "/v1/stitches",
                         params={"watch": "true", "resourceVersion": start, "timeoutSeconds": 1})
    assert theirs.text == ""


def test_reconciler_inside_the_server_activates_stitches_and_metrics_show_them(live):
    with httpx.Client(base_url=live.url, headers=live.headers("member"), timeout=10) as client:
        for body in (vnet("web", 100, "10.0.0.0/24", [("w1", "NYCMng", "10.0.0.1")]),
                     vnet("db", 101, "10.1.0.0/24", [("d1", "LOSAng", "10.1.0.1")])):
            client.post("/v1/virtualnetworks", json=body).raise_for_status()
        client.post("/v1/stitches", json=stitch("web-db", "web", "db", "10Mbps")).raise_for_status()
        deadline = time.monotonic() + 10
        while client.get("/v1/stitches/web-db/status").json()["state"] != "ACTIVE":
            assert time.monotonic() < deadline, client.get("/v1/stitches/web-db/status").json()
            time.sleep(0.05)
        history = [t["to"] for t in client.get("/v1/stitches/web-db/history").json()["items"]]
        assert history == ["PENDING", "ESTABLISHING", "ACTIVE"]
        assert client.get("/readyz").json()["reconciler"] == "ok"
        metrics = scraped(client)
        assert metrics[("vnstitch_stitches", (("state", "ACTIVE"),))] == 1
        assert metrics[("vnstitch_link_reserved_bps", (("direction", "forward"), ("link", "NYCMng--WASHng")))] == 1e7
        assert any(name == "vnstitch_http_request_duration_seconds_bucket" and ("method", "POST") in labels
                   and ("route", "/v1/stitches") in labels for name, labels in metrics)
        client.delete("/v1/stitches/web-db").raise_for_status()
        while client.get("/v1/stitches/web-db").json()["status"]["state"] != "TERMINATED":
            assert time.monotonic() < deadline + 10
            time.sleep(0.05)
        assert client.get("/v1/stitches/web-db").json()["status"]["reservedBandwidth"] == 0
        assert scraped(client)[("vnstitch_link_reserved_bps", (("direction", "forward"), ("link", "NYCMng--WASHng")))] == 0


def scraped(client) -> dict:
    """/metrics parsed: (sample name, sorted label pairs) → value."""
    from prometheus_client.parser import text_string_to_metric_families

    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(client.get("/metrics").text) for s in family.samples}


def test_predicted_graph_is_served_per_tenant(api):
    """The allocator's predicted graph, written to the store by the proactive loop, is readable per tenant."""
    graph = {"step": 7, "stitches": [{"from": "a", "to": "b", "bandwidthBps": 5e8, "path": ["a", "b"]}],
             "links": [], "decisions": []}
    api.app.state.ctx.controller.store.put("PredictedGraph", "acme", "current", graph)
    body = api.call("member", "GET", "/v1/predictedgraph").json()
    assert body["kind"] == "PredictedGraph" and body["spec"] == graph
    assert api.call("other", "GET", "/v1/predictedgraph").json()["spec"]["stitches"] == []


def test_an_open_watch_is_not_a_request_in_flight(seeded):
    """The reconciler paces itself while requests are in flight; a watch counts only until it starts
    streaming, else one open watch would slow every pass for as long as it stays open."""
    metrics = seeded.app.state.ctx.metrics
    assert metrics.in_flight == 0
    with seeded.client.stream("GET", "/v1/stitches", headers=seeded.headers("member"),
                              params={"watch": "true", "timeoutSeconds": 2}) as stream:
        assert stream.status_code == 200
        assert metrics.in_flight == 0, "streaming"
        for _ in stream.iter_lines():
            break
    seeded.call("member", "GET", "/v1/stitches/web-db")
    assert metrics.in_flight == 0


def test_a_terminated_stitchs_name_can_be_created_again(seeded):
    from vnstitch.controller.reconciler import Reconciler
    from vnstitch.drivers.sim import SimDriver

    controller = seeded.app.state.ctx.controller
    reconciler = Reconciler(controller, SimDriver())
    reconciler.reconcile_once(1.0)
    assert seeded.call("member", "DELETE", "/v1/stitches/web-db").status_code == 200
    reconciler.reconcile_once(2.0)
    assert seeded.call("member", "GET", "/v1/stitches/web-db").json()["status"]["state"] == "TERMINATED"
    again = seeded.call("member", "POST", "/v1/stitches", json=stitch("web-db", "web", "db", "5Mbps"))
    assert again.status_code == 201, again.text
    assert again.json()["status"]["state"] == "PENDING"
    assert seeded.call("member", "DELETE", "/v1/virtualnetworks/web").status_code == 409, "the new one uses it"
