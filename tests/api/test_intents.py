"""Intents through the API: create from the language, compile into owned stitches and policies, negotiate
with another tenant by proposal, refuse contradictions and impossible targets, probe without change."""

from __future__ import annotations

import itertools

from vnstitch.controller.reconciler import Reconciler
from vnstitch.domain.substrate import Link
from vnstitch.drivers.sim import SimDriver
from vnstitch.intent.engine import IntentEngine
from tests.api.payloads import vnet

ORDERS = "for group('acme/orders') isolate; allow service('acme/analytics:8443') latency < 20ms bandwidth >= 200Mbps"


def intent(name: str, text: str) -> dict:
    return {"apiVersion": "vnstitch.io/v1", "kind": "Intent", "metadata": {"name": name}, "spec": {"text": text}}


def seed(api) -> IntentEngine:
    analytics = vnet("analytics", 201, "10.2.0.0/24", [("a1", "WASHng", "10.2.0.11")])
    analytics["spec"]["services"] = [{"name": "reporting", "port": 8443}]
    lake = vnet("lake", 301, "10.9.0.0/24", [("l1", "LOSAng", "10.9.0.11")])
    lake["spec"]["services"] = [{"name": "sql", "port": 5432}]
    for who, body in (("member", vnet("orders", 200, "10.1.0.0/24", [("o1", "NYCMng", "10.1.0.11")])),
                      ("member", analytics), ("member", vnet("web", 202, "10.3.0.0/24", [("w1", "CHINng", "10.3.0.11")])),
                      ("other", lake)):
        api.call(who, "POST", "/v1/virtualnetworks", json=body).raise_for_status()
    return IntentEngine(api.app.state.ctx.controller)


_HOURS = itertools.count(1)


def run(api, engine: IntentEngine) -> None:
    """One engine pass an hour after the last one, so every intent is due."""
    engine.step(api.app.state.ctx.controller.clock() + 3600 * next(_HOURS))


def test_an_intent_compiles_into_an_isolated_group_and_a_port_level_stitch(api):
    engine = seed(api)
    created = api.call("member", "POST", "/v1/intents", json=intent("orders", ORDERS))
    assert created.status_code == 201, created.text
    body = created.json()
    assert [e["type"] for e in body["spec"]["expectations"]] == ["isolation", "reachability"]
    assert body["status"]["handlingState"] == "Received"
    run(api, engine)
    got = api.call("member", "GET", "/v1/intents/orders").json()
    compiled = got["status"]["compiled"]
    assert compiled["stitches"] == ["acme/in-orders-reach-analytics-8443"]
    assert compiled["routes"] == ["acme/in-orders-reach-analytics-8443: NYCMng→WASHng"]
    stitch = api.call("member", "GET", "/v1/stitches/in-orders-reach-analytics-8443").json()
    assert stitch["spec"]["services"] == [{"protocol": "tcp", "port": 8443}]
    assert stitch["spec"]["maxLatency"] == 0.02 and stitch["spec"]["bandwidth"] == 200e6
    assert stitch["spec"]["origin"] == "intent" and stitch["metadata"]["labels"]["vnstitch.io/intent"] == "orders"
    orders = api.call("member", "GET", "/v1/virtualnetworks/orders").json()
    assert orders["spec"]["policy"]["allowStitchTo"] == ["analytics"]  # isolated: exactly what the intent allows
    reports = api.call("member", "GET", "/v1/intents/orders/reports").json()
    assert reports["reportCount"] == 1 and reports["items"][0]["number"] == 1
    assert {e["id"] for e in reports["items"][0]["expectations"]} == {"isolate-orders", "reach-analytics-8443"}
    graph = api.call("member", "GET", "/v1/vngraph").json()
    keys = {n["key"] for n in graph["nodes"]}
    assert {"acme/orders", "acme/analytics", "globex/lake"} <= keys  # lake offers a service: visible
    lake = next(n for n in graph["nodes"] if n["key"] == "globex/lake")
    assert "cidr" not in lake and lake["services"][0]["name"] == "sql"
    assert any(e["intent"] == "orders" for e in graph["edges"])


def test_an_isolating_intent_withdraws_a_stitch_that_crosses_it(api):
    engine = seed(api)
    controller = api.app.state.ctx.controller
    controller.refresh()
    reconciler = Reconciler(controller, SimDriver(topology=[Link.model_validate(r.value)
                                                            for r in controller.cache.list("Link")]))
    crossing = {"kind": "Stitch", "metadata": {"name": "orders-web"},
                "spec": {"type": "bandwidth", "from": {"network": "orders"}, "to": {"network": "web"},
                         "bandwidth": 1e6}}
    api.call("member", "POST", "/v1/stitches", json=crossing).raise_for_status()
    reconciler.reconcile_once(controller.clock())
    api.call("member", "POST", "/v1/intents", json=intent("orders", ORDERS)).raise_for_status()
    run(api, engine)
    isolation = api.call("member", "GET", "/v1/intents/orders").json()["status"]["fulfilment"][0]
    assert isolation["status"] == "NOT_FULFILLED" and "acme/orders-web" in isolation["reason"]
    reconciler.reconcile_once(controller.clock())  # the policy no longer consents: re-planning withdraws it
    crossed = api.call("member", "GET", "/v1/stitches/orders-web").json()["status"]
    assert crossed["state"] == "FAILED" and crossed["path"] == [] and "withdrawn" in crossed["message"]
    run(api, engine)
    status = api.call("member", "GET", "/v1/intents/orders").json()["status"]
    assert status["fulfilment"][0]["status"] == "FULFILLED"
    assert status["reportCount"] == 2 and status["reports"][0]["verdict"] == "Degraded"


def test_a_contradicting_intent_is_refused_with_both_names_and_changes_nothing(api):
    seed(api)
    api.call("member", "POST", "/v1/intents", json=intent("orders", ORDERS)).raise_for_status()
    before = api.call("member", "GET", "/v1/intents").json()["items"]
    second = api.call("member", "POST", "/v1/intents",
                      json=intent("web-access", "for group('acme/orders') allow service('acme/web:80')"))
    assert second.status_code == 409, second.text
    message = second.json()["message"]
    assert "'web-access'" in message and "'orders'" in message
    assert api.call("member", "GET", "/v1/intents").json()["items"] == before


def test_impossible_targets_are_clear_errors_naming_the_field(api):
    seed(api)
    too_fast = api.call("member", "POST", "/v1/intents", json=intent(
        "fast", "for group('acme/orders') allow service('acme/analytics:8443') latency < 0.1ms"))
    assert too_fast.status_code == 422, too_fast.text
    assert too_fast.json()["field"].startswith("spec.expectations[0]") and "cannot be met" in too_fast.json()["message"]
    too_much = api.call("member", "POST", "/v1/intents", json=intent(
        "wide", "for group('acme/orders') allow service('acme/analytics:8443') bandwidth >= 500Gbps"))
    assert too_much.status_code == 422 and "cannot be met" in too_much.json()["message"]
    for text, field, words in (
            ("for group('acme/nope') isolate", "spec.expectations[0].object.group", "unknown group"),
            ("for group('acme/orders') allow service('acme/analytics:9999')", "spec.expectations[0].service",
             "unknown service"),
            ("for group('acme/orders') expect nosuch()", "spec.expectations[0].type", "no translator"),
            ("for group('acme/orders') isolat", "spec.text", "line 1, column 26")):
        answer = api.call("member", "POST", "/v1/intents", json=intent("bad", text))
        assert answer.status_code == 422, (text, answer.text)
        assert answer.json()["field"] == field and words in answer.json()["message"], answer.json()
    expired = intent("old", "for group('acme/orders') isolate")
    expired["spec"]["validity"] = {"end": "2020-01-01T00:00:00Z"}
    answer = api.call("member", "POST", "/v1/intents", json=expired)
    assert answer.status_code == 422 and answer.json()["field"] == "spec.validity.end"
    assert api.call("member", "GET", "/v1/intents").json()["items"] == []


def test_over_subscription_between_two_intents_is_reported_with_both_names(api):
    seed(api)
    engine = IntentEngine(api.app.state.ctx.controller)
    # NYC–WASH is 9.92 Gbps on Abilene: 6 + 6 Gbps does not fit within a latency only that link meets
    first = "for group('acme/orders') allow service('acme/analytics:8443') latency < 2ms bandwidth >= 6Gbps"
    api.call("member", "POST", "/v1/intents", json=intent("first", first)).raise_for_status()
    run(api, engine)
    api.call("member", "POST", "/v1/virtualnetworks",
             json=vnet("billing", 203, "10.4.0.0/24", [("b1", "NYCMng", "10.4.0.11")])).raise_for_status()
    second = "for group('acme/billing') allow service('acme/analytics:8443') latency < 2ms bandwidth >= 6Gbps"
    answer = api.call("member", "POST", "/v1/intents", json=intent("second", second))
    assert answer.status_code == 409, answer.text
    assert "'second'" in answer.json()["message"] and "'first'" in answer.json()["message"]


def test_another_tenants_service_needs_its_consent_and_only_it_may_answer(api):
    engine = seed(api)
    api.call("member", "POST", "/v1/intents",
             json=intent("lake", "for group('acme/orders') allow service('globex/lake/sql')")).raise_for_status()
    run(api, engine)
    status = api.call("member", "GET", "/v1/intents/lake").json()["status"]
    assert status["compiled"]["stitches"] == []  # nothing crosses until both agree
    assert status["fulfilment"][0]["notFulfilledState"] == "ACKNOWLEDGED"
    sent = api.call("member", "GET", "/v1/proposals").json()["items"]
    assert [p["metadata"]["tenant"] for p in sent] == ["globex"]
    name = sent[0]["metadata"]["name"]
    refused = api.call("member", "POST", f"/v1/proposals/{name}/accept")  # acme asked, it cannot answer
    assert refused.status_code == 403, refused.text
    assert api.call("other", "GET", f"/v1/proposals/{name}").json()["status"]["state"] == "Pending"
    accepted = api.call("other", "POST", f"/v1/proposals/{name}/accept", json={"note": "ok for Q1"})
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["status"]["granted"] == "acme/orders"
    again = api.call("other", "POST", f"/v1/proposals/{name}/accept")
    assert again.status_code == 409
    lake = api.call("other", "GET", "/v1/virtualnetworks/lake").json()
    assert "acme/orders" in lake["spec"]["policy"]["allowStitchTo"]
    run(api, engine)
    status = api.call("member", "GET", "/v1/intents/lake").json()["status"]
    assert status["compiled"]["stitches"] == ["acme/in-lake-reach-sql"]
    # the intent goes: the stitch ends, the proposal is withdrawn and its grant taken back
    api.call("member", "DELETE", "/v1/intents/lake").raise_for_status()
    run(api, engine)
    proposal = api.call("other", "GET", f"/v1/proposals/{name}").json()
    assert proposal["status"]["state"] == "Withdrawn"
    assert [h["state"] for h in proposal["status"]["history"]] == ["Pending", "Accepted", "Withdrawn"]
    lake = api.call("other", "GET", "/v1/virtualnetworks/lake").json()
    assert "acme/orders" not in (lake["spec"].get("policy") or {}).get("allowStitchTo", [])


def test_probe_answers_and_changes_nothing(api):
    seed(api)
    revision = api.app.state.ctx.store.revision()
    answer = api.call("member", "POST", "/v1/probeintents", json=intent("p", ORDERS.replace("20ms", "1ms")))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    reach = next(e for e in body["expectations"] if e["expectation"] == "reach-analytics-8443")
    assert body["feasible"] is False and reach["feasible"] is False and reach["bestLatency"] > 0.001
    assert api.app.state.ctx.store.revision() == revision


def test_parse_route_and_proposals_cannot_be_made_or_deleted_by_hand(api):
    parsed = api.call("member", "POST", "/v1/parsedintents", json={"text": ORDERS})
    assert parsed.status_code == 200 and len(parsed.json()["expectations"]) == 2
    bad = api.call("member", "POST", "/v1/parsedintents", json={"text": "for group('a') allow"})
    assert bad.status_code == 422 and "line 1" in bad.json()["message"]


def test_one_apply_may_bring_the_service_and_the_intent_that_uses_it(api):
    seed(api)
    lake = vnet("warehouse", 302, "10.8.0.0/24", [("h1", "LOSAng", "10.8.0.11")], )
    lake["metadata"]["tenant"] = "globex"
    lake["spec"]["services"] = [{"name": "dw", "port": 1521}]
    body = {"items": [lake, {**intent("dw", "for group('globex/lake') allow service('globex/warehouse:1521')"),
                             "metadata": {"name": "dw", "tenant": "globex"}}]}
    answer = api.call("other", "POST", "/v1/apply", json=body)
    assert answer.status_code == 200, answer.text
    bad = {"items": [{**lake, "spec": {**lake["spec"], "services": []}},
                     {**intent("dw2", "for group('globex/lake') allow service('globex/warehouse/dw')"),
                      "metadata": {"name": "dw2", "tenant": "globex"}}]}
    refused = api.call("other", "POST", "/v1/apply", json=bad)  # the same apply removes the service it names
    assert refused.status_code == 422 and "unknown service 'dw'" in refused.json()["message"], refused.text
