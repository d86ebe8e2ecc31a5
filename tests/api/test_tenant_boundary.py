"""The tenant boundary leaks nothing: another tenant's objects answer exactly as if they did not
exist, unless that tenant's policy lets the caller see them, and errors name only the caller's own
objects. Stitches that land in a tenant's network are that tenant's to read and end.

Every oracle test asks the same question twice, once while the other tenant's object is absent
and once while it exists, and wants the two answers byte for byte equal.
"""

from __future__ import annotations

import copy
import json

import pytest

from vnstitch.api.auth import create_token

from tests.api.payloads import stitch, vnet

MERGE = {"Content-Type": "application/merge-patch+json"}


def _answer(response) -> tuple[int, dict]:
    return response.status_code, response.json()


def _partner(labels: dict | None = None, policy: dict | None = None) -> dict:
    body = vnet("partner", 300, "10.3.0.0/24", [("p1", "STTLng", "10.3.0.1")])
    if labels:
        body["metadata"]["labels"] = labels
    if policy is not None:
        body["spec"]["policy"] = policy
    return body


def _set_policy(api, who: str, network: str, spec: dict) -> None:
    api.call(who, "PUT", f"/v1/policies/{network}",
             json={"kind": "Policy", "metadata": {"name": network}, "spec": spec}).raise_for_status()


def _cross(name: str = "to-partner", member: str | None = None) -> dict:
    body = stitch(name, "web", "partner", "1Mbps")
    body["spec"]["to"]["tenant"] = "globex"
    if member is not None:
        body["spec"].update(type="direct", bandwidth=0)
        body["spec"]["from"]["member"], body["spec"]["to"]["member"] = "w1", member
    return body


# Every way a caller can name another tenant's network in a request body.
SUBMIT = {
    "create": lambda api, body: api.call("member", "POST", "/v1/stitches", json=body),
    "dry-run": lambda api, body: api.call("member", "POST", "/v1/stitches", json=body, params={"dryRun": "true"}),
    "replace": lambda api, body: api.call("member", "PUT", f"/v1/stitches/{body['metadata']['name']}", json=body),
    "apply": lambda api, body: api.call("member", "POST", "/v1/apply", json={"items": [body]}),
    "availability": lambda api, body: api.call("member", "POST", "/v1/availability",
                                               json={"from": body["spec"]["from"], "to": body["spec"]["to"],
                                                     "bandwidth": "1Mbps"}),
}

# (acme web's policy, the globex network that appears, the request body)
HIDDEN = {
    "own side refuses": (None, _partner(), _cross()),
    "peer has no policy": ({"allowStitchTo": ["globex/partner"]}, _partner(), _cross()),
    "peer matches our selector but refuses us": (
        {"allowStitchTo": [{"matchLabels": {"env": "prod"}, "tenant": "globex"}]},
        _partner(labels={"env": "prod"}), _cross()),
    "peer refuses and the member is unknown": (
        {"allowStitchTo": ["globex/partner"]}, _partner(), _cross(member="p9")),
    "peer refuses and the member exists": (
        {"allowStitchTo": ["globex/partner"]}, _partner(), _cross(member="p1")),
    "peer allows someone else": (
        {"allowStitchTo": ["globex/partner"]}, _partner(policy={"allowStitchTo": ["acme/db"]}), _cross()),
}


def _both_foreign() -> dict:
    body = _cross("both-foreign")
    body["spec"]["from"] = {"network": "partner", "tenant": "globex"}
    body["spec"]["to"] = {"network": "partner2", "tenant": "globex"}
    return body


HIDDEN["both endpoints in another tenant"] = (
    {"allowStitchTo": ["globex/*"]}, _partner(policy={"allowStitchTo": [{"matchLabels": {}, "tenant": "acme"}]}),
    _both_foreign())


@pytest.mark.parametrize("submit", SUBMIT, ids=str)
@pytest.mark.parametrize("case", HIDDEN, ids=str)
def test_a_network_that_refuses_us_answers_as_if_it_did_not_exist(seeded, case, submit):
    web_policy, partner, body = HIDDEN[case]
    if web_policy is not None:
        _set_policy(seeded, "member", "web", web_policy)
    absent = _answer(SUBMIT[submit](seeded, copy.deepcopy(body)))
    seeded.call("other", "POST", "/v1/virtualnetworks", json=partner).raise_for_status()
    present = _answer(SUBMIT[submit](seeded, copy.deepcopy(body)))
    assert present == absent
    assert absent[0] in (403, 422), absent
    assert "10.3.0" not in json.dumps(present) and "STTLng" not in json.dumps(present)


def test_a_refusal_by_our_own_side_names_our_network(seeded):
    seeded.call("other", "POST", "/v1/virtualnetworks",
                json=_partner(policy={"allowStitchTo": ["acme/web"]})).raise_for_status()
    refused = seeded.call("member", "POST", "/v1/stitches", json=_cross())
    assert refused.status_code == 403 and refused.json()["code"] == "policy_denied"
    assert refused.json()["field"] == "spec.from" and "acme/web" in refused.json()["message"]


def test_a_peer_that_allows_us_is_seen_and_stitched(seeded):
    _set_policy(seeded, "member", "web", {"allowStitchTo": ["globex/partner"]})
    seeded.call("other", "POST", "/v1/virtualnetworks",
                json=_partner(policy={"allowStitchTo": ["acme/web"]})).raise_for_status()
    unknown_member = seeded.call("member", "POST", "/v1/stitches", json=_cross(member="p9"))
    assert unknown_member.status_code == 422 and unknown_member.json()["field"] == "spec.to.member"
    created = seeded.call("member", "POST", "/v1/stitches", json=_cross())
    assert created.status_code == 201, created.text
    assert created.json()["status"]["path"][-1] == "STTLng"


def test_availability_honours_both_policies(seeded):
    query = {"from": {"network": "web"}, "to": {"network": "partner", "tenant": "globex"}, "bandwidth": "1Mbps"}
    seeded.call("other", "POST", "/v1/virtualnetworks",
                json=_partner(policy={"allowStitchTo": ["acme/web"]})).raise_for_status()
    own_refuses = seeded.call("member", "POST", "/v1/availability", json=query)
    assert own_refuses.status_code == 403 and own_refuses.json()["field"] == "from"
    _set_policy(seeded, "member", "web", {"allowStitchTo": ["globex/partner"]})
    answer = seeded.call("member", "POST", "/v1/availability", json=query)
    assert answer.status_code == 200 and answer.json()["feasible"] is True
    assert answer.json()["path"]["nodes"][-1] == "STTLng"
    # Encryption and trust zones count as they would for the stitch itself.
    plain = seeded.call("member", "POST", "/v1/availability", json={**query, "encryption": "none"})
    assert plain.status_code == 403 and "requires encryption" in plain.json()["message"]
    _set_policy(seeded, "other", "partner", {"allowStitchTo": ["acme/web"], "allowedTrustZones": ["vault"]})
    zoned = seeded.call("member", "POST", "/v1/availability", json=query)
    assert zoned.status_code == 200 and zoned.json()["feasible"] is False and zoned.json()["path"] is None


def test_availability_towards_a_refusing_member_looks_like_a_missing_one(seeded):
    _set_policy(seeded, "member", "web", {"allowStitchTo": ["globex/partner"]})
    query = {"from": {"network": "web", "member": "w1"},
             "to": {"network": "partner", "tenant": "globex", "member": "p1"}, "bandwidth": "1Mbps"}
    absent = _answer(seeded.call("member", "POST", "/v1/availability", json=query))
    seeded.call("other", "POST", "/v1/virtualnetworks", json=_partner()).raise_for_status()
    present = _answer(seeded.call("member", "POST", "/v1/availability", json=query))
    assert present == absent
    assert absent == (422, {"code": "invalid", "message": "unknown network 'globex/partner'",
                            "field": "to.network"})


# Routes that take a name: globex asks about acme's existing object and about one that does not exist.
NAMED = [
    ("GET", "/v1/virtualnetworks/{name}", None),
    ("PUT", "/v1/virtualnetworks/{name}", lambda name: vnet(name, 100, "10.0.0.0/24", [])),
    ("PATCH", "/v1/virtualnetworks/{name}", lambda name: {"metadata": {"labels": {"x": "y"}}}),
    ("DELETE", "/v1/virtualnetworks/{name}", None),
    ("GET", "/v1/policies/{name}", None),
    ("PUT", "/v1/policies/{name}", lambda name: {"kind": "Policy", "metadata": {"name": name}, "spec": {}}),
    ("PATCH", "/v1/policies/{name}", lambda name: {"spec": {"allowUnencrypted": True}}),
    ("DELETE", "/v1/policies/{name}", None),
    ("GET", "/v1/stitches/{stitch}", None),
    ("PUT", "/v1/stitches/{stitch}", lambda name: stitch(name, "web", "db", "1Mbps")),
    ("PATCH", "/v1/stitches/{stitch}", lambda name: {"spec": {"bandwidth": "2Mbps"}}),
    ("DELETE", "/v1/stitches/{stitch}", None),
    ("GET", "/v1/stitches/{stitch}/status", None),
    ("GET", "/v1/stitches/{stitch}/history", None),
]


# The tenant is named by ?tenant= on every route, and by metadata.tenant where a full body is sent.
CASES = [(*route, "query") for route in NAMED] + \
        [(*route, "body") for route in NAMED if route[2] is not None and route[0] != "PATCH"]


@pytest.mark.parametrize("method,template,body,how", CASES, ids=lambda v: v if isinstance(v, str) else "")
def test_another_tenants_object_answers_like_a_missing_one(seeded, method, template, body, how):
    answers = []
    for name in ("web", "ghost") if "{name}" in template else ("web-db", "ghost"):
        path = template.format(name=name, stitch=name)
        kwargs: dict = {"headers": MERGE if method == "PATCH" else {}}
        if body is not None:
            kwargs["json"] = body(name)
        if how == "query":
            kwargs["params"] = {"tenant": "acme"}
        else:
            kwargs["json"]["metadata"]["tenant"] = "acme"
        answers.append(_answer(seeded.call("other", method, path, **kwargs)))
    assert answers[0] == answers[1]
    assert answers[0][0] == 404 and "web" not in json.dumps(answers[0][1])
    assert seeded.call("member", "GET", "/v1/stitches/web-db").json()["spec"]["bandwidth"] == 10e6


def test_deleting_a_network_in_use_names_only_our_own_stitches(seeded):
    _set_policy(seeded, "member", "web", {"allowStitchTo": ["globex/partner"]})
    seeded.call("other", "POST", "/v1/virtualnetworks",
                json=_partner(policy={"allowStitchTo": ["acme/web"]})).raise_for_status()
    inbound = stitch("g-in", "partner", "web", "1Mbps")
    inbound["spec"]["to"]["tenant"] = "acme"
    seeded.call("other", "POST", "/v1/stitches", json=inbound).raise_for_status()
    refused = seeded.call("member", "DELETE", "/v1/virtualnetworks/web")
    assert refused.status_code == 409 and refused.json()["code"] == "conflict"
    message = refused.json()["message"]
    assert "web-db" in message and "1 of them in other tenants" in message
    assert "globex" not in message and "g-in" not in message
    # globex deleting its own network sees its stitch, and a count of nothing else.
    theirs = seeded.call("other", "DELETE", "/v1/virtualnetworks/partner").json()["message"]
    assert "g-in" in theirs and "acme" not in theirs and "other tenants" not in theirs


@pytest.fixture
def landing(seeded):
    """globex stitch g-in lands in acme/web; globex stitch g-own stays inside globex."""
    _set_policy(seeded, "member", "web", {"allowStitchTo": ["globex/partner"]})
    seeded.call("other", "POST", "/v1/virtualnetworks",
                json=_partner(policy={"allowStitchTo": ["acme/web", "lab"]})).raise_for_status()
    seeded.call("other", "POST", "/v1/virtualnetworks",
                json=vnet("lab", 301, "10.4.0.0/24", [("l1", "DNVRng", "10.4.0.1")])).raise_for_status()
    inbound = stitch("g-in", "partner", "web", "1Mbps")
    inbound["spec"]["to"]["tenant"] = "acme"
    seeded.call("other", "POST", "/v1/stitches", json=inbound).raise_for_status()
    seeded.call("other", "POST", "/v1/stitches", json=stitch("g-own", "partner", "lab", "1Mbps")).raise_for_status()
    seeded.tokens["acme-reader"] = seeded.tokens["reader"]
    seeded.tokens["globex-reader"] = create_token(seeded.app.state.ctx.store, "globex", "reader")[0]
    return seeded


def test_the_owner_of_a_network_lists_the_stitches_that_land_in_it(landing):
    listed = landing.call("reader", "GET", "/v1/stitches", params={"landing": "true"})
    assert listed.status_code == 200
    assert [(i["metadata"]["tenant"], i["metadata"]["name"]) for i in listed.json()["items"]] == [("globex", "g-in")]
    # Without `landing`, a list shows the tenant's own stitches only, as before.
    own = landing.call("reader", "GET", "/v1/stitches").json()["items"]
    assert [i["metadata"]["name"] for i in own] == ["web-db"]
    # Nothing lands in globex's networks; its landing list is empty.
    assert landing.call("other", "GET", "/v1/stitches", params={"landing": "true"}).json()["items"] == []
    events = landing.call("reader", "GET", "/v1/stitches",
                          params={"landing": "true", "watch": "true", "timeoutSeconds": 0}).text.splitlines()
    assert [json.loads(e)["object"]["metadata"]["name"] for e in events] == ["g-in"]


def test_the_owner_of_a_network_reads_a_landing_stitch(landing):
    for path in ("/v1/stitches/g-in", "/v1/stitches/g-in/status", "/v1/stitches/g-in/history"):
        answer = landing.call("reader", "GET", path, params={"tenant": "globex"})
        assert answer.status_code == 200, (path, answer.text)
    got = landing.call("reader", "GET", "/v1/stitches/g-in", params={"tenant": "globex"}).json()
    assert got["metadata"]["tenant"] == "globex"
    assert (got["spec"]["to"]["tenant"], got["spec"]["to"]["network"]) == ("acme", "web")


def test_a_stitch_that_does_not_land_in_our_network_answers_like_a_missing_one(landing):
    for method in ("GET", "DELETE", "PATCH"):
        kwargs = {"params": {"tenant": "globex"}}
        if method == "PATCH":
            kwargs.update(headers=MERGE, json={"spec": {"bandwidth": "2Mbps"}})
        answers = [_answer(landing.call("member", method, f"/v1/stitches/{name}", **kwargs))
                   for name in ("g-own", "ghost")]
        assert answers[0] == answers[1] and answers[0][0] == 404, answers


def test_the_owner_of_a_network_ends_a_landing_stitch_but_cannot_change_it(landing):
    where = {"params": {"tenant": "globex"}}
    patch = landing.call("member", "PATCH", "/v1/stitches/g-in", headers=MERGE,
                         json={"spec": {"bandwidth": "500Mbps"}}, **where)
    assert patch.status_code == 403 and patch.json()["code"] == "forbidden"
    body = stitch("g-in", "partner", "web", "500Mbps")
    body["spec"]["to"]["tenant"] = "acme"
    put = landing.call("member", "PUT", "/v1/stitches/g-in", json=body, **where)
    assert put.status_code == 403 and put.json()["code"] == "forbidden"
    assert landing.call("other", "GET", "/v1/stitches/g-in").json()["spec"]["bandwidth"] == 1e6
    assert landing.call("reader", "DELETE", "/v1/stitches/g-in", **where).status_code == 403  # readers read
    ended = landing.call("member", "DELETE", "/v1/stitches/g-in", **where)
    assert ended.status_code == 200, ended.text
    assert ended.json() == {"kind": "Stitch", "tenant": "globex", "name": "g-in", "action": "deleting"}
    status = landing.call("other", "GET", "/v1/stitches/g-in/status").json()
    assert status["state"] == "TERMINATING"
    # The stitch's own tenant still may not touch acme's other stitches.
    assert landing.call("other", "DELETE", "/v1/stitches/web-db", **{"params": {"tenant": "acme"}}).status_code == 404
