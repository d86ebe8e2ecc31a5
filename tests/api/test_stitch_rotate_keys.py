"""POST /v1/stitches/{name}/rotate-keys: who may ask, what it records, and that the reconciler carries it
to the data plane (the simulator here; tests/linux/test_key_rotation.py on the real kernel)."""

from __future__ import annotations

from tests.api.payloads import stitch, vnet
from vnstitch.domain.resources import parse_timestamp
from vnstitch.planning.desired import ROTATE_KEYS_ANNOTATION

ROTATE = "/v1/stitches/{}/rotate-keys"


def _reconciler(api, clock):
    from vnstitch.controller.reconciler import Reconciler
    from vnstitch.drivers.sim import SimDriver

    return Reconciler(api.app.state.ctx.controller, SimDriver(clock=clock))


def test_a_member_asks_and_the_next_pass_rotates_the_keys(seeded):
    now = [1000.0]
    reconciler = _reconciler(seeded, lambda: now[0])
    reconciler.reconcile_once(now[0])
    before = seeded.call("member", "GET", "/v1/stitches/web-db").json()
    assert parse_timestamp(before["status"]["keysRotatedAt"]) == 1000.0  # made when it was established

    answer = seeded.call("member", "POST", ROTATE.format("web-db"))
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["kind"] == "KeyRotation" and body["metadata"] == {"name": "web-db", "tenant": "acme"}
    requested = parse_timestamp(body["status"]["requestedAt"])
    stored = seeded.call("member", "GET", "/v1/stitches/web-db").json()
    assert abs(float(stored["metadata"]["annotations"][ROTATE_KEYS_ANNOTATION]) - requested) < 1e-5
    assert stored["metadata"]["generation"] == before["metadata"]["generation"], "the spec did not change"
    assert stored["status"]["path"] == before["status"]["path"], "nothing was admitted again"

    now[0] = 2000.0
    result = reconciler.reconcile_once(now[0])
    ((op, changed),) = result.applied
    assert changed and op.reason == "rotate keys: requested after they were made"
    assert op.keys_after == float(stored["metadata"]["annotations"][ROTATE_KEYS_ANNOTATION])
    after = seeded.call("member", "GET", "/v1/stitches/web-db/status").json()
    assert parse_timestamp(after["keysRotatedAt"]) >= requested
    assert after["state"] == "ACTIVE" and [t["to"] for t in after["history"]][-1] == "ACTIVE"
    assert len(after["history"]) == len(before["status"]["history"]), "a rotation is no transition"
    assert not reconciler.reconcile_once(3000.0).applied, "one request, one rotation"


def test_who_may_ask(seeded):
    assert seeded.call("reader", "POST", ROTATE.format("web-db")).status_code == 403
    assert seeded.call("none", "POST", ROTATE.format("web-db")).status_code == 401
    unknown = seeded.call("member", "POST", ROTATE.format("ghost"))
    assert unknown.status_code == 404 and unknown.json()["code"] == "not_found"
    # another tenant's member naming acme: as if acme had no such stitch
    hidden = seeded.call("other", "POST", ROTATE.format("web-db"), params={"tenant": "acme"})
    assert hidden.status_code == 404 and "web" not in hidden.json()["message"].replace("web-db", "")
    assert seeded.call("other", "POST", ROTATE.format("web-db")).status_code == 404  # globex has none
    assert seeded.call("admin", "POST", ROTATE.format("web-db"), params={"tenant": "acme"}).status_code == 202


def test_the_owner_of_a_network_a_stitch_lands_in_may_not_rotate_its_keys(seeded):
    """globex's stitch g-in lands in acme/web: acme may read and end it, not change it (403)."""
    seeded.call("member", "PUT", "/v1/policies/web", json={"kind": "Policy", "metadata": {"name": "web"},
                                                          "spec": {"allowStitchTo": ["globex/partner"]}})
    partner = vnet("partner", 300, "10.3.0.0/24", [("p1", "STTLng", "10.3.0.1")])
    partner["spec"]["policy"] = {"allowStitchTo": ["acme/web"]}
    seeded.call("other", "POST", "/v1/virtualnetworks", json=partner).raise_for_status()
    inbound = stitch("g-in", "partner", "web", "1Mbps")
    inbound["spec"]["to"]["tenant"] = "acme"
    seeded.call("other", "POST", "/v1/stitches", json=inbound).raise_for_status()
    refused = seeded.call("member", "POST", ROTATE.format("g-in"), params={"tenant": "globex"})
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    assert seeded.call("other", "POST", ROTATE.format("g-in")).status_code == 202  # its owner may


def test_an_unencrypted_stitch_has_no_keys_and_keyrotation_needs_a_unit(seeded):
    seeded.call("member", "PUT", "/v1/policies/web", json={"kind": "Policy", "metadata": {"name": "web"},
                                                          "spec": {"allowUnencrypted": True}})
    seeded.call("member", "PUT", "/v1/policies/db", json={"kind": "Policy", "metadata": {"name": "db"},
                                                         "spec": {"allowUnencrypted": True}})
    plain = seeded.call("member", "POST", "/v1/stitches", json=stitch("plain", "web", "db", "1Mbps",
                                                                      encryption="none"))
    assert plain.status_code == 201, plain.text
    refused = seeded.call("member", "POST", ROTATE.format("plain"))
    assert refused.status_code == 422 and "not encrypted" in refused.json()["message"]
    for period, why in ((24, "needs a unit"), ("24", "needs a unit"), ("10s", "at least 1min")):
        bad = seeded.call("member", "POST", "/v1/stitches", json=stitch("p", "web", "db", "1Mbps", keyRotation=period))
        assert bad.status_code == 422 and why in bad.json()["message"], bad.text
    bad = seeded.call("member", "POST", "/v1/stitches",
                      json=stitch("p", "web", "db", "1Mbps", keyRotation="24h", encryption="none"))
    assert bad.status_code == 422 and "no keys to rotate" in bad.json()["message"]
    good = seeded.call("member", "POST", "/v1/stitches", json=stitch("p", "web", "db", "1Mbps", keyRotation="24h"))
    assert good.status_code == 201 and good.json()["spec"]["keyRotation"] == "24h"


def test_the_http_client_asks_over_the_route(seeded):
    from vnstitch.api.client import RemoteController

    remote = RemoteController("http://testserver", token=seeded.tokens["member"], transport=seeded.client._transport)
    try:
        requested = remote.rotate_keys("web-db")
    finally:
        remote.close()
    stored = seeded.call("member", "GET", "/v1/stitches/web-db").json()
    assert abs(float(stored["metadata"]["annotations"][ROTATE_KEYS_ANNOTATION]) - requested) < 1e-5
