"""Idempotency-Key: retried and concurrent creates with one key make exactly one object."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx

from vnstitch.domain.ledger import LEDGER_KIND, held_by
from tests.api.payloads import stitch, vnet

CONCURRENT = 20


def _seed(live) -> None:
    with httpx.Client(base_url=live.url, headers=live.headers("member")) as client:
        for body in (vnet("web", 100, "10.0.0.0/24", [("w1", "NYCMng", "10.0.0.1")]),
                     vnet("db", 101, "10.1.0.0/24", [("d1", "LOSAng", "10.1.0.1")])):
            client.post("/v1/virtualnetworks", json=body).raise_for_status()


def _reserved_once(store) -> bool:
    """The ledger holds exactly the one stitch's reservation: once per arc of its path, not twice."""
    (only,) = store.list("Stitch", "acme")
    expected = {arc: bps for arc, bps in held_by(only.value).items()}
    totals = {}
    for record in store.list(LEDGER_KIND):
        a, b = store.get("Link", "", record.name).value["spec"]["endpoints"]
        for arc, bps in (((a, b), record.value["forward"]), ((b, a), record.value["reverse"])):
            if bps:
                totals[arc] = bps
    return bool(expected) and totals == expected


def _fire(live, body, headers) -> list[httpx.Response]:
    barrier = threading.Barrier(CONCURRENT)

    def one(_):
        with httpx.Client(base_url=live.url, headers={**live.headers("member"), **headers}, timeout=30) as client:
            barrier.wait()
            return client.post("/v1/stitches", json=body)

    with ThreadPoolExecutor(CONCURRENT) as pool:
        return list(pool.map(one, range(CONCURRENT)))


def test_twenty_concurrent_requests_with_one_key_create_one_stitch_and_one_reservation(live):
    _seed(live)
    responses = _fire(live, stitch("burst", "web", "db", "100Mbps"), {"Idempotency-Key": "burst-1"})
    assert [r.status_code for r in responses] == [201] * CONCURRENT, [r.text for r in responses if r.status_code != 201]
    bodies = {r.json()["metadata"]["resourceVersion"] for r in responses}
    assert len(bodies) == 1, "every duplicate replays the first answer"
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in responses) == CONCURRENT - 1
    assert [r.name for r in live.store.list("Stitch", "acme")] == ["burst"]
    assert _reserved_once(live.store)


def test_twenty_concurrent_creates_without_a_key_still_make_one(live):
    _seed(live)
    responses = _fire(live, stitch("plain", "web", "db", "100Mbps"), {})
    codes = sorted(r.status_code for r in responses)
    assert codes == [201] + [409] * (CONCURRENT - 1)
    assert _reserved_once(live.store)


def test_key_reused_with_another_body_is_refused_and_failures_are_not_remembered(seeded):
    key = {"Idempotency-Key": "k-1"}
    first = seeded.call("member", "POST", "/v1/stitches", json=stitch("s1", "web", "db"), headers=key)
    assert first.status_code == 201
    again = seeded.call("member", "POST", "/v1/stitches", json=stitch("s1", "web", "db"), headers=key)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    other = seeded.call("member", "POST", "/v1/stitches", json=stitch("s2", "web", "db"), headers=key)
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
    # A failed create frees its key: the retry runs again (and succeeds once the cause is fixed).
    missing = stitch("s3", "web", "nowhere")
    failed = seeded.call("member", "POST", "/v1/stitches", json=missing, headers={"Idempotency-Key": "k-2"})
    assert failed.status_code == 422
    seeded.call("member", "POST", "/v1/virtualnetworks",
                json=vnet("nowhere", 102, "10.2.0.0/24", [("n1", "STTLng", "10.2.0.1")])).raise_for_status()
    retried = seeded.call("member", "POST", "/v1/stitches", json=missing, headers={"Idempotency-Key": "k-2"})
    assert retried.status_code == 201


def _lost_answer_setup(api, mutate):
    """Create with a key, then make it look as if the server died before recording the answer."""
    from vnstitch.api.idempotency import KEY_KIND

    for body in (vnet("web", 100, "10.0.0.0/24", [("w1", "NYCMng", "10.0.0.1")]),
                 vnet("db", 101, "10.1.0.0/24", [("d1", "LOSAng", "10.1.0.1")])):
        assert api.call("member", "POST", "/v1/virtualnetworks", json=body).status_code == 201
    headers = {"Idempotency-Key": "lost-1"}
    first = api.call("member", "POST", "/v1/stitches", json=stitch("lost", "web", "db", "100Mbps"), headers=headers)
    assert first.status_code == 201
    store = api.app.state.ctx.controller.store
    (record,) = store.list(KEY_KIND)
    mutate(store, record)
    again = api.call("member", "POST", "/v1/stitches", json=stitch("lost", "web", "db", "100Mbps"), headers=headers)
    return first, again, store


def test_retry_after_the_answer_was_lost_with_the_key_still_pending(api):
    pending = lambda store, r: store.put(r.kind, r.namespace, r.name,
                                         {"state": "pending", "fingerprint": r.value["fingerprint"],
                                          "created": r.value["created"]})
    first, again, store = _lost_answer_setup(api, pending)
    assert again.status_code == 201 and again.headers.get("Idempotent-Replayed") == "true"
    assert again.json()["metadata"]["name"] == first.json()["metadata"]["name"]
    assert [r.name for r in store.list("Stitch", "acme")] == ["lost"]
    assert _reserved_once(store)


def test_retry_after_the_key_record_vanished_finds_the_object_by_its_mark(api):
    gone = lambda store, r: store.delete(r.kind, r.namespace, r.name)
    first, again, store = _lost_answer_setup(api, gone)
    assert again.status_code == 201  # the stitch carries the key's hash: same request, same answer
    assert again.json()["metadata"]["annotations"]["vnstitch.io/idempotency-key"] != "lost-1"  # a hash, not the key
    assert [r.name for r in store.list("Stitch", "acme")] == ["lost"]
    assert _reserved_once(store)
    other = api.call("member", "POST", "/v1/stitches", json=stitch("lost", "web", "db", "100Mbps"),
                     headers={"Idempotency-Key": "another-key"})
    assert other.status_code == 409  # a different key is a different request
