"""Anomalies through the API: policies are created (an unknown detector lists the valid ones), anomalies are
recorded by the engine from pushed telemetry and only read, watched, approved and kept; /metrics counts them."""

from __future__ import annotations

import json
import time

from vnstitch.anomaly.engine import AnomalyEngine
from vnstitch.domain.substrate import Link
from vnstitch.drivers.sim import SimDriver
from tests.api.payloads import vnet

INTERVAL = 10.0


def policy(mode="suggest", detector="residual"):
    return {"kind": "AnomalyPolicy", "metadata": {"name": "watch"},
            "spec": {"networks": ["web", "db", "lake"], "interval": f"{INTERVAL:g}s", "mode": mode,
                     "detector": detector, "minHistory": 60}}


def world(api, mode="suggest"):
    """acme's web, db, lake; a policy; an engine over the app's telemetry store and a simulator."""
    for doc in (vnet("web", 100, "10.0.0.0/24", [("w1", "NYCMng", "10.0.0.1")]),
                vnet("db", 101, "10.1.0.0/24", [("d1", "LOSAng", "10.1.0.1")]),
                vnet("lake", 102, "10.2.0.0/24", [("l1", "CHINng", "10.2.0.1")])):
        api.call("member", "POST", "/v1/virtualnetworks", json=doc).raise_for_status()
    created = api.call("member", "POST", "/v1/anomalypolicies", json=policy(mode))
    assert created.status_code == 201, created.text
    controller = api.app.state.ctx.controller
    driver = SimDriver(topology=[Link.model_validate(r.value) for r in controller.cache.list("Link")])
    return AnomalyEngine(controller, api.app.state.telemetry, driver), driver


def flood(api, engine, intervals=1):
    """web sends 50 Mbit/s to lake, which nothing lets it reach; the engine scores each interval."""
    end = (time.time() // INTERVAL) * INTERVAL - 10 * INTERVAL
    for k in range(intervals):
        at = end + k * INTERVAL
        samples = [{"from": "web", "to": "lake", "time": at, "rateBps": 50e6}]
        assert api.call("member", "POST", "/v1/telemetry", json={"samples": samples}).status_code == 200
        engine.step(at + 0.01)
    return end


def test_an_unknown_detector_is_refused_with_the_valid_names(api):
    response = api.call("member", "POST", "/v1/anomalypolicies", json=policy(detector="isolation-forest"))
    assert response.status_code == 422, response.text
    message = response.json()["message"]
    assert "unknown detector 'isolation-forest'" in message and "pca" in message and "residual" in message


def test_anomalies_are_listed_read_and_watched_but_not_made_by_hand(make_api):
    api = make_api(proactive=True)
    engine, _ = world(api)
    flood(api, engine)
    items = api.call("reader", "GET", "/v1/anomalies").json()["items"]
    assert [(a["spec"]["kind"], a["spec"]["pairs"], a["status"]["state"]) for a in items] == [
        ("forbidden_flow", ["web>lake"], "Open")]
    name = items[0]["metadata"]["name"]
    one = api.call("reader", "GET", f"/v1/anomalies/{name}").json()
    assert one["status"]["actions"][0]["type"] == "block" and one["status"]["actions"][0]["state"] == "suggested"
    assert one["spec"]["start"].endswith("Z")   # times as RFC 3339, like every other read
    assert api.call("other", "GET", f"/v1/anomalies/{name}").status_code == 404   # another tenant's
    assert api.call("member", "GET", "/v1/anomalies?state=Ended").json()["items"] == []
    watched = api.call("reader", "GET", "/v1/anomalies?watch=true&timeoutSeconds=0")
    events = [json.loads(line) for line in watched.text.splitlines() if line.strip()]
    assert events[0]["type"] == "ADDED" and events[0]["object"]["metadata"]["name"] == name
    # only the engine records them
    assert api.call("member", "POST", "/v1/anomalies", json=one).status_code == 405
    applied = api.call("member", "POST", "/v1/apply", json={"items": [one]})
    assert applied.status_code == 422 and "'Anomaly'" in applied.text, applied.text
    status = api.call("reader", "GET", "/v1/anomalypolicies/watch").json()["status"]
    assert status["ready"] is False and status["message"].startswith("not ready")


def test_approve_applies_the_suggested_block_and_keep_keeps_it(make_api):
    api = make_api(proactive=True)
    engine, driver = world(api)
    end = flood(api, engine)
    name = api.call("member", "GET", "/v1/anomalies").json()["items"][0]["metadata"]["name"]
    assert api.call("reader", "POST", f"/v1/anomalies/{name}/approve").status_code == 403
    approved = api.call("member", "POST", f"/v1/anomalies/{name}/approve")
    assert approved.status_code == 200 and approved.json()["spec"]["approved"] is True
    engine.step(end + 0.02)
    action = api.call("member", "GET", f"/v1/anomalies/{name}").json()["status"]["actions"][0]
    assert action["state"] == "applied" and list(driver.filters()) == [action["detail"]["filter"]]
    kept = api.call("member", "POST", f"/v1/anomalies/{name}/keep", json={"keep": True})
    assert kept.status_code == 200 and kept.json()["spec"]["keep"] is True
    for k in range(1, 4):   # web stops: nothing pushed, the anomaly ends after two quiet intervals
        engine.step(end + k * INTERVAL + 0.01)
    got = api.call("member", "GET", f"/v1/anomalies/{name}").json()
    assert got["status"]["state"] == "Kept" and got["status"]["actions"][0]["state"] == "kept"
    assert list(driver.filters()) == [action["detail"]["filter"]]
    metrics = api.call("anyone", "GET", "/metrics").text
    assert 'vnstitch_anomalies{kind="forbidden_flow",state="Kept"} 1.0' in metrics
    assert 'vnstitch_anomaly_actions{state="kept",type="block"} 1.0' in metrics


def test_keeping_an_ended_anomaly_is_a_conflict(make_api):
    api = make_api(proactive=True)
    engine, _ = world(api, mode="auto")
    end = flood(api, engine)
    for k in range(1, 4):
        engine.step(end + k * INTERVAL + 0.01)
    name = api.call("member", "GET", "/v1/anomalies").json()["items"][0]["metadata"]["name"]
    assert api.call("member", "GET", f"/v1/anomalies/{name}").json()["status"]["state"] == "Ended"
    response = api.call("member", "POST", f"/v1/anomalies/{name}/keep")
    assert response.status_code == 409 and "undone" in response.json()["message"]
    assert api.call("member", "POST", "/v1/anomalies/nope/approve").status_code == 404


def test_the_running_server_records_an_anomaly_from_pushed_telemetry(make_api):
    """The leader's reconcile pass runs the anomaly engine (serve --proactive: there is a telemetry store)."""
    api = make_api(reconcile=True, proactive=True, tick_s=0.2, reconcile_min_interval_s=0.05)
    for doc in (vnet("web", 100, "10.0.0.0/24", [("w1", "NYCMng", "10.0.0.1")]),
                vnet("lake", 102, "10.2.0.0/24", [("l1", "CHINng", "10.2.0.1")])):
        api.call("member", "POST", "/v1/virtualnetworks", json=doc).raise_for_status()
    body = policy(mode="auto")
    body["spec"].update(networks=["web", "lake"], interval="1s")
    assert api.call("member", "POST", "/v1/anomalypolicies", json=body).status_code == 201
    deadline = time.monotonic() + 20
    while True:
        samples = [{"from": "web", "to": "lake", "time": time.time(), "rateBps": 50e6}]
        api.call("member", "POST", "/v1/telemetry", json={"samples": samples}).raise_for_status()
        items = api.call("member", "GET", "/v1/anomalies").json()["items"]
        applied = [a for a in items if any(x["state"] == "applied" for x in a["status"]["actions"])]
        if applied:
            break
        assert time.monotonic() < deadline, (items, api.call("member", "GET", "/v1/anomalypolicies/watch").json())
        time.sleep(0.3)
    assert applied[0]["spec"]["kind"] == "forbidden_flow" and applied[0]["spec"]["pairs"] == ["web>lake"]
