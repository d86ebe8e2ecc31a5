"""Group commit of creates: requests that share one transaction still get their own answers."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.api.payloads import stitch, vnet


def _seed(live) -> None:
    with httpx.Client(base_url=live.url, headers=live.headers("member")) as client:
        for body in (vnet("web", 100, "10.0.0.0/24", [("w1", "NYCMng", "10.0.0.1")]),
                     vnet("db", 101, "10.1.0.0/24", [("d1", "LOSAng", "10.1.0.1")])):
            client.post("/v1/virtualnetworks", json=body).raise_for_status()
    with httpx.Client(base_url=live.url, headers=live.headers("other")) as client:
        client.post("/v1/virtualnetworks",
                    json=vnet("partner", 300, "10.3.0.0/24", [("p1", "STTLng", "10.3.0.1")])).raise_for_status()


def _one_batch(live, bodies: list[dict]) -> tuple[list[httpx.Response], int]:
    """POST every body while the committer is held, so that they queue up and are decided
    together; the responses in order, and how many transactions deciding them took."""
    context = live.app.state.ctx
    batcher = context.creates
    hold = context.write_lock("acme")
    hold.acquire()  # the committer stops at the tenant lock with the plug below
    released = False
    try:
        with ThreadPoolExecutor(len(bodies) + 1) as pool:
            def post(body):
                with httpx.Client(base_url=live.url, headers=live.headers("member"), timeout=30) as client:
                    return client.post("/v1/stitches", json=body)

            plug = pool.submit(post, stitch("plug", "web", "db", "1Mbps"))
            deadline = time.monotonic() + 10
            while batcher.deciding != 1:
                assert time.monotonic() < deadline, "the committer did not take the plug"
                time.sleep(0.01)
            futures = []
            for body in bodies:  # one at a time, so that the queue has them in this order
                futures.append(pool.submit(post, body))
                while len(batcher._queue) < len(futures):
                    assert time.monotonic() < deadline, "the creates did not queue up"
                    time.sleep(0.005)
            before = batcher.batches
            hold.release()
            released = True
            assert plug.result().status_code == 201
            responses = [f.result() for f in futures]
            return responses, batcher.batches - before - 1
    finally:
        if not released:
            hold.release()


def test_one_batch_answers_each_request_on_its_own_merits(live):
    _seed(live)
    cross = stitch("to-partner", "web", "partner")
    cross["spec"]["to"]["tenant"] = "globex"
    bodies = [stitch("ok-1", "web", "db", "10Mbps"),
              stitch("too-big", "web", "db", "100Gbps"),       # no path has the capacity
              cross,                                             # acme's policy refuses it
              stitch("twin", "web", "db", "1Mbps"),
              stitch("twin", "web", "db", "2Mbps"),              # same name: one wins, one 409
              stitch("bad-ref", "web", "nowhere"),               # unknown network
              stitch("ok-2", "web", "db", "20Mbps")]
    responses, transactions = _one_batch(live, bodies)
    codes = [r.status_code for r in responses]
    assert codes[0] == 201 and codes[6] == 201, [r.text for r in responses]
    assert responses[1].status_code == 409 and responses[1].json()["code"] == "insufficient_capacity"
    assert responses[2].status_code == 403 and responses[2].json()["code"] == "policy_denied"
    assert responses[2].json()["field"] == "spec.from"
    assert sorted(codes[3:5]) == [201, 409]
    loser = responses[3] if codes[3] == 409 else responses[4]
    assert loser.json()["code"] == "conflict" and "'twin' already exists" in loser.json()["message"]
    assert responses[5].status_code == 422 and "nowhere" in responses[5].json()["message"]
    assert transactions == 1, "one transaction; the duplicate name is decided after it, without one"
    # Each answer speaks of its own request only.
    names = ["ok-1", "too-big", "to-partner", "twin", "twin", "bad-ref", "ok-2"]
    for response, name in zip(responses, names):
        others = set(names) - {name} - ({"twin"} if name == "twin" else set())
        assert not any(f"'{other}'" in response.text or f'"{other}"' in response.text for other in others), \
            response.text
        if response.status_code == 201:
            assert response.json()["metadata"]["name"] == name
    stored = sorted(r.name for r in live.store.list("Stitch", "acme"))
    assert stored == ["ok-1", "ok-2", "plug", "twin"]
    twin = live.store.get("Stitch", "acme", "twin").value
    winner = responses[3] if codes[3] == 201 else responses[4]
    assert winner.json()["spec"]["bandwidth"] == twin["spec"]["bandwidth"]
    # A GET right after a 201 sees the object.
    with httpx.Client(base_url=live.url, headers=live.headers("member")) as client:
        assert client.get("/v1/stitches/ok-2").json()["metadata"]["name"] == "ok-2"


def test_quota_is_decided_as_if_the_batch_ran_one_by_one(live):
    _seed(live)
    settings = live.app.state.ctx.settings
    settings.quota_stitches = 3  # the plug plus two
    bodies = [stitch("too-big", "web", "db", "100Gbps"),  # refused: takes no quota
              stitch("a", "web", "db"), stitch("b", "web", "db"), stitch("c", "web", "db")]
    responses, _ = _one_batch(live, bodies)
    assert [r.status_code for r in responses] == [409, 201, 201, 403], [r.text for r in responses]
    assert responses[3].json()["code"] == "quota_exceeded"
    assert sorted(r.name for r in live.store.list("Stitch", "acme")) == ["a", "b", "plug"]


def test_a_failed_transaction_answers_every_request_without_leaking(live, monkeypatch):
    _seed(live)
    controller = live.app.state.ctx.controller

    def broken(resources):
        raise RuntimeError("disk on fire while writing " + ",".join(r.name for r in resources))

    monkeypatch.setattr(controller, "apply_each", broken)
    barrier = threading.Barrier(4)

    def post(i):
        with httpx.Client(base_url=live.url, headers=live.headers("member"), timeout=30) as client:
            barrier.wait()
            return client.post("/v1/stitches", json=stitch(f"secret-{i}", "web", "db"))

    with ThreadPoolExecutor(4) as pool:
        errors = list(pool.map(post, range(4)))
    for response in errors:
        assert response.status_code == 500 and response.json()["code"] == "internal", response.text
        assert "secret" not in response.text and "disk" not in response.text
    assert live.store.list("Stitch", "acme") == []
    monkeypatch.undo()
    with httpx.Client(base_url=live.url, headers=live.headers("member")) as client:
        assert client.post("/v1/stitches", json=stitch("after", "web", "db")).status_code == 201
