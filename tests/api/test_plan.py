"""GET /v1/plan: what the server's reconciler would apply, each op with its reason; admins only."""

from __future__ import annotations

import time

from tests.api.payloads import stitch, vnet


def _idle_reconciler(make_api):
    """A server whose reconciler ran its first pass and then waits (an hour) before the next one,
    so that what the test writes stays unapplied until the test runs a pass itself."""
    api = make_api(reconcile=True, tick_s=3600, reconcile_min_interval_s=3600)
    worker = api.app.state.ctx.worker
    deadline = time.monotonic() + 10
    while worker.passes < 1:
        assert time.monotonic() < deadline, "the reconciler never finished its first pass"
        time.sleep(0.02)
    return api, worker


def _seed(api):
    for body in (vnet("web", 100, "10.0.0.0/24", [("w1", "NYCMng", "10.0.0.1")]),
                 vnet("db", 101, "10.1.0.0/24", [("d1", "LOSAng", "10.1.0.1")]),
                 stitch("web-db", "web", "db", "10Mbps")):
        path = "/v1/stitches" if body["kind"] == "Stitch" else "/v1/virtualnetworks"
        api.call("member", "POST", path, json=body).raise_for_status()


def test_plan_lists_the_ops_the_next_pass_applies_each_with_a_reason(make_api):
    api, worker = _idle_reconciler(make_api)
    empty = api.call("admin", "GET", "/v1/plan")
    assert empty.status_code == 200, empty.text
    assert empty.json() == {"apiVersion": "vnstitch.io/v1", "kind": "Plan", "leading": True, "ops": []}

    _seed(api)
    body = api.call("admin", "GET", "/v1/plan").json()
    ops = [(op["action"], op["target"]) for op in body["ops"]]
    assert ops == [("ensure-network", "acme/db"), ("ensure-network", "acme/web"), ("ensure-stitch", "acme/web-db")]
    assert all(op["reason"] for op in body["ops"]), body
    assert body["ops"][0]["reason"] == "network has no data-plane state yet"
    assert body["ops"][2]["summary"].startswith("ensure-stitch acme/web-db (bandwidth, encrypted) over NYCMng→")
    assert api.call("admin", "GET", "/v1/plan").json() == body, "asking applies nothing"

    worker.run_pass()  # the server's own pass applies what the plan said, and nothing is left
    assert worker.last_error is None
    assert api.call("admin", "GET", "/v1/plan").json()["ops"] == []
    status = api.call("member", "GET", "/v1/stitches/web-db/status").json()
    assert status["state"] == "ACTIVE", status


def test_plan_is_for_admins_only(make_api):
    api, _ = _idle_reconciler(make_api)
    for who, code in (("none", 401), ("reader", 403), ("member", 403), ("other", 403)):
        response = api.call(who, "GET", "/v1/plan")
        assert response.status_code == code, (who, response.text)
        assert set(response.json()) == {"code", "message", "field"}
    assert "needs admin" in api.call("member", "GET", "/v1/plan").json()["message"]


def test_a_server_without_a_reconciler_says_so(api):
    response = api.call("admin", "GET", "/v1/plan")
    assert response.status_code == 409
    assert response.json()["code"] == "conflict"
    assert "runs no reconciler" in response.json()["message"]
