"""POST/GET /v1/telemetry: batches stored whole or not at all, tenant-scoped, idempotent."""

from __future__ import annotations

import json
import math
import os
import time

from tests.api.payloads import vnet


def samples(*rows) -> dict:
    return {"samples": [dict(zip(("from", "to", "time", "rateBps"), row)) for row in rows]}


def series(api, who="member", **params):
    response = api.call(who, "GET", "/v1/telemetry", params=params)
    assert response.status_code == 200, response.text
    return [(s["from"], s["to"], s["time"], s["rateBps"]) for s in response.json()["items"]]


def test_push_then_read_back_in_time_order(seeded):
    now = time.time()
    body = samples(("web", "db", now - 60, 2e6), ("web", "db", now - 120, 1e6), ("db", "web/w1", now - 60, 5e5))
    body["samples"][0].update(latency=0.012, loss=0.001)
    response = seeded.call("member", "POST", "/v1/telemetry", json=body)
    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": 3, "changed": 3}
    assert series(seeded, **{"from": "web", "to": "db", "since": now - 3600}) == [
        ("web", "db", round(now - 120, 3), 1e6), ("web", "db", round(now - 60, 3), 2e6)]
    got = seeded.call("reader", "GET", "/v1/telemetry").json()
    assert got["kind"] == "TelemetryList" and got["tenant"] == "acme"
    assert [(s["from"], s["to"], s["latency"], s["loss"]) for s in got["items"]] == [
        ("db", "web/w1", None, None), ("web", "db", 0.012, 0.001)]
    # where it lives: a SQLite file beside the state store, never the state store itself
    state_path = seeded.app.state.ctx.store.path
    assert os.path.exists(os.path.splitext(state_path)[0] + ".telemetry.db")


def test_resending_changes_nothing_and_a_correction_replaces(seeded):
    now = round(time.time()) - 30
    body = samples(("web", "db", now, 1e6))
    assert seeded.call("member", "POST", "/v1/telemetry", json=body).json()["changed"] == 1
    assert seeded.call("member", "POST", "/v1/telemetry", json=body).json() == {"accepted": 1, "changed": 0}
    corrected = samples(("web", "db", now, 3e6))
    assert seeded.call("member", "POST", "/v1/telemetry", json=corrected).json()["changed"] == 1
    assert series(seeded, **{"from": "web", "to": "db", "since": now - 1}) == [("web", "db", now, 3e6)]


def test_a_bad_sample_is_named_and_the_batch_stores_nothing(seeded):
    now = time.time()
    cases = [
        (("web", "db", now, math.nan), "samples[1].rateBps", "finite"),
        (("web", "db", now, -5.0), "samples[1].rateBps", ">= 0"),
        (("web", "db", now, 1e14), "samples[1].rateBps", "10 Tbit/s"),
        (("web", "db", now + 3600, 1.0), "samples[1].time", "future"),
        (("web", "db", now - 30 * 86400, 1.0), "samples[1].time", "retention"),
        (("web", "cache", now, 1.0), "samples[1].to", "unknown virtual network 'cache'"),
        (("web/vm-404", "db", now, 1.0), "samples[1].from", "unknown VM"),
        (("web", "db", now, "fast"), "samples[1].rateBps", ""),
    ]
    for bad, field, words in cases:
        body = samples(("web", "db", now - 10, 1e6), bad)
        raw = json.dumps(body)  # NaN goes out as the NaN literal, as a careless sender would send it
        response = seeded.call("member", "POST", "/v1/telemetry", content=raw,
                               headers={"Content-Type": "application/json"})
        assert response.status_code == 422, (bad, response.text)
        error = response.json()
        assert error["field"] == field and words in error["message"], (bad, error)
    body = samples(("web", "db", now, 1.0))
    body["samples"][0]["speed"] = 3
    error = seeded.call("member", "POST", "/v1/telemetry", json=body).json()
    assert error == {"code": "invalid", "message": "is not a known field (known: from, to, time, rateBps, latency, loss)",
                     "field": "samples[0].speed"}
    loss = samples(("web", "db", now, 1.0))
    loss["samples"][0]["loss"] = 2
    assert seeded.call("member", "POST", "/v1/telemetry", json=loss).json()["field"] == "samples[0].loss"
    assert series(seeded, **{"from": "web", "to": "db", "since": 0}) == []  # the good first samples: not stored


def test_another_tenants_networks_look_unknown(seeded):
    now = time.time()
    # globex has no network 'web': acme's is exactly as unknown as one that exists nowhere
    theirs = seeded.call("other", "POST", "/v1/telemetry", json=samples(("web", "db", now, 1.0))).json()
    nowhere = seeded.call("other", "POST", "/v1/telemetry", json=samples(("nowhere", "db", now, 1.0))).json()
    assert theirs["field"] == nowhere["field"] == "samples[0].from"
    assert theirs["message"].replace("'web'", "X") == nowhere["message"].replace("'nowhere'", "X")
    assert seeded.call("other", "POST", "/v1/telemetry", params={"tenant": "acme"},
                       json=samples(("web", "db", now, 1.0))).status_code == 404
    assert seeded.call("other", "GET", "/v1/telemetry", params={"tenant": "acme"}).status_code == 404
    seeded.call("member", "POST", "/v1/telemetry", json=samples(("web", "db", now, 1.0))).raise_for_status()
    assert series(seeded, "other") == []


def test_readers_read_and_only_members_write(seeded):
    now = time.time()
    assert seeded.call("reader", "POST", "/v1/telemetry", json=samples(("web", "db", now, 1.0))).status_code == 403
    assert seeded.call("admin", "POST", "/v1/telemetry", params={"tenant": "acme"},
                       json=samples(("web", "db", now, 1.0))).status_code == 200
    assert len(series(seeded, "reader", **{"from": "web", "to": "db"})) == 1


def test_a_series_needs_both_ends(seeded):
    response = seeded.call("member", "GET", "/v1/telemetry", params={"from": "web"})
    assert response.status_code == 422 and response.json()["field"] == "to"
    response = seeded.call("member", "GET", "/v1/telemetry", params={"from": "web", "to": "db", "since": "inf"})
    assert response.status_code == 422


def test_samples_of_a_network_created_a_moment_ago_are_accepted(seeded):
    seeded.call("member", "POST", "/v1/virtualnetworks",
                json=vnet("cache", 102, "10.2.0.0/24", [("c1", "CHINng", "10.2.0.1")])).raise_for_status()
    response = seeded.call("member", "POST", "/v1/telemetry", json=samples(("cache/c1", "db", time.time(), 1.0)))
    assert response.status_code == 200, response.text


def test_cli_pushes_a_file_to_a_live_server_in_batches(live, tmp_path, capsys):
    import httpx

    from vnstitch.cli.main import main

    auth = live.headers("member")
    for i, name in enumerate(("pop-a", "pop-b")):
        httpx.post(f"{live.url}/v1/virtualnetworks", headers=auth,
                   json=vnet(name, 300 + i, f"10.{60 + i}.0.0/24", [])).raise_for_status()
    hist = tmp_path / "tm.hist"
    hist.write_text("".join(f"0 {k}e6 {k + 1}e6 0\n" for k in range(1, 8)))  # 7 matrices, 2 pairs each
    token = live.tokens["member"]
    code = main(["--server", live.url, "--token", token, "telemetry", "push", str(hist), "--nodes", "a,b",
                 "--interval", "300", "--network-prefix", "pop-", "--shift-to-now", "--batch-size", "5",
                 "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert "pushed 14 samples of 2 pairs" in capsys.readouterr().out
    got = httpx.get(f"{live.url}/v1/telemetry", headers=auth,
                    params={"from": "pop-a", "to": "pop-b", "since": time.time() - 86400}).json()["items"]
    assert [s["rateBps"] for s in got] == [k * 1e6 for k in range(1, 8)]
    # a bad sample in the third batch: named by its index in the file, earlier batches stay stored
    code = main(["--server", live.url, "--token", token, "telemetry", "push", str(hist), "--nodes", "a,b",
                 "--interval", "300", "--network-prefix", "pop-", "--shift-to-now", "--batch-size", "5",
                 "--include-self", "--quiet"])  # with the self pairs: 28 samples
    assert code == 0, capsys.readouterr().err
    assert "pushed 28 samples of 4 pairs" in capsys.readouterr().out
    # a bad sample in the second batch: named by its index in the file; the first batch stays stored
    csv = tmp_path / "long.csv"
    csv.write_text("timestamp,source,destination,value\n"
                   + "".join(f"2024-01-01T00:{5 * k:02d},a,b,{k}\n" for k in range(6)) + "2024-01-01T00:25,a,c,1\n")
    code = main(["--server", live.url, "--token", token, "telemetry", "push", str(csv), "--network-prefix", "pop-",
                 "--shift-to-now", "--batch-size", "4", "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "samples[6].to: unknown virtual network 'pop-c'" in err, err
    assert "pop-a→pop-c" in err and "the 4 samples before this batch are stored" in err


def test_retention_runs_after_a_push_off_the_request(seeded):
    now = time.time()
    old = now - 8 * 86400  # beyond the 7-day raw window, inside the 14-day retention
    seeded.call("member", "POST", "/v1/telemetry", json=samples(("web", "db", old, 4e6))).raise_for_status()
    deadline = time.monotonic() + 5
    while series(seeded, **{"from": "web", "to": "db", "since": 0}) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert series(seeded, **{"from": "web", "to": "db", "since": 0}) == []  # folded into its hour
    store = seeded.app.state.telemetry
    assert store.rates("acme", [("web", "db")], end=old + 1, steps=1, interval_s=300)[0, 0] == 4e6
