"""Telemetry with 3 replicas on etcd: a sample accepted by any replica is in every replica's own
store (never in etcd), the leader's proactive loop uses samples pushed to a follower, a replica
that was down catches up when it restarts, and nothing is lost when the leader is SIGKILLed."""

from __future__ import annotations

import signal
import threading
import time

import httpx
import pytest

from tests.etcd.harness import Fleet, seed

TTL_S = 2.0
FORECASTING = ("baseline", "trained")  # (each replica keeps its own model files: a new leader on
# another host that lacks the artifact forecasts with the baseline and retrains)


def wait_for(condition, timeout_s: float, message):
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, message() if callable(message) else message
        time.sleep(0.1)


def series_times(replica, headers, since: float) -> set[float]:
    r = httpx.get(replica.url + "/v1/telemetry", params={"from": "web", "to": "db", "since": since, "limit": 100_000},
                  headers=headers, timeout=5.0)
    assert r.status_code == 200, r.text
    return {round(item["time"], 3) for item in r.json()["items"]}


def push(replica, headers, times: list[float], rate: float = 5e8) -> dict:
    r = httpx.post(replica.url + "/v1/telemetry", headers=headers, timeout=10.0,
                   json={"samples": [{"from": "web", "to": "db", "time": t, "rateBps": rate} for t in times]})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.slow
def test_a_sample_accepted_by_any_replica_reaches_the_leader_and_survives_failover(
        etcd_cluster_healthy, etcd_store, etcd_prefix, tmp_path):
    token = seed(etcd_store)
    headers = {"Authorization": f"Bearer {token}"}
    fleet = Fleet(etcd_cluster_healthy.url(etcd_prefix), str(tmp_path), count=3, ttl_s=TTL_S,
                  extra=("--telemetry", str(tmp_path / "{name}.telemetry.db"), "--proactive")).start()
    stop_feed = threading.Event()
    try:
        leader = fleet.leader()
        first, second = [r for r in fleet.replicas if r is not leader]
        wait_for(lambda: len(etcd_store.list("Replica")) == 3, 10, "three replicas registered")

        # 1. pushed to a follower: confirmed by both others before the answer, readable on the leader
        now = time.time()
        batch_a = [round(now - 60 + k, 3) for k in range(10)]
        body = push(first, headers, batch_a)
        assert body["replicatedTo"] == 2, body
        for replica in fleet.replicas:
            assert set(batch_a) <= series_times(replica, headers, now - 120), replica.name
        assert not [r for r in etcd_store.list("Telemetry")], "no sample lives in etcd"

        # 2. the leader's proactive loop forecasts from samples that only ever reached a follower
        r = httpx.post(leader.url + "/v1/forecastpolicies", headers=headers, timeout=10.0, json={
            "kind": "ForecastPolicy", "metadata": {"name": "fc"},
            "spec": {"pairs": [{"from": "web", "to": "db"}], "interval": "1s", "mode": "suggest"}})
        assert r.status_code == 201, r.text

        def feed():  # one sample every 0.25 s to the followers only, round robin
            k = 0
            while not stop_feed.is_set():
                target = (first, second)[k % 2]
                try:
                    push(target, headers, [round(time.time(), 3)], rate=4e8 + 1e6 * k)
                except (AssertionError, httpx.HTTPError):
                    pass  # a replica being killed or restarted below
                k += 1
                stop_feed.wait(0.25)
        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()

        def policy_on(replica):
            r = httpx.get(replica.url + "/v1/forecastpolicies/fc", headers=headers, timeout=5.0)
            return r.json().get("status", {}) if r.status_code == 200 else {}
        status = wait_for(lambda: (lambda s: s if s.get("model", {}).get("state") in FORECASTING else None)(
            policy_on(leader)), 30, lambda: f"the leader never forecast: {policy_on(leader)}")
        assert status["pairs"] == 1 and not status["message"].startswith("waiting for telemetry"), status

        # 3. a follower that was down when a batch came catches up when it comes back
        second.stop(signal.SIGKILL)
        batch_b = [round(now - 40 + k, 3) for k in range(10)]
        push(first, headers, batch_b)
        second.start()
        second.wait_up()
        assert set(batch_a + batch_b) <= series_times(second, headers, now - 120), "catch-up on restart"

        # 4. SIGKILL the leader; what a follower accepted while it died is in the new leader's store
        leader.send(signal.SIGKILL)
        leader.process.wait(10)
        batch_c = [round(now - 20 + k, 3) for k in range(10)]
        push(first, headers, batch_c)
        new_leader = fleet.leader(timeout_s=4 * TTL_S + 10, exclude=leader)
        kept = series_times(new_leader, headers, now - 120)
        assert set(batch_a + batch_b + batch_c) <= kept, sorted(set(batch_a + batch_b + batch_c) - kept)[:5]
        # and the new leader goes on forecasting the pair from the history it holds
        before = policy_on(new_leader).get("lastStep") or 0
        wait_for(lambda: (policy_on(new_leader).get("lastStep") or 0) > before + 2
                 and policy_on(new_leader).get("model", {}).get("state") in FORECASTING, 30,
                 lambda: f"the new leader does not forecast: {policy_on(new_leader)}")
        leader.start()  # back as a follower: it catches up on what it missed while dead
        leader.wait_up()
        assert set(batch_c) <= series_times(leader, headers, now - 120)
    finally:
        stop_feed.set()
        fleet.stop()
