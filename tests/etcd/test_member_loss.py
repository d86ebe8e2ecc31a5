"""etcd member loss under load: kill 1 of 3 members (service continues), kill a second (writes
fail with a clear 503, nothing half-applied), restart both (the controller converges)."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.etcd.harness import Churn, Fleet, check_consistency, seed
from tests.etcd.test_failover import wait_for

TTL_S = 2.0


def _stitch(name: str) -> dict:
    return {"apiVersion": "vnstitch.io/v1", "kind": "Stitch", "metadata": {"name": name},
            "spec": {"type": "bandwidth", "from": {"network": "web"}, "to": {"network": "db"}, "bandwidth": "1Mbps"}}


@pytest.mark.slow
def test_member_loss_and_recovery(etcd_cluster_healthy, etcd_store, etcd_prefix, tmp_path):
    cluster = etcd_cluster_healthy
    token = seed(etcd_store)
    headers = {"Authorization": f"Bearer {token}"}
    fleet = Fleet(cluster.url(etcd_prefix), str(tmp_path), count=3, ttl_s=TTL_S).start()
    churn = Churn(fleet, token, rate_per_s=20.0)
    try:
        fleet.leader()
        churn.start()
        wait_for(lambda: churn.stats.created >= 20, 60, "the client never got going")

        cluster.kill_member(cluster.members[0])  # one of three: quorum stays
        before = churn.stats.created
        wait_for(lambda: churn.stats.created >= before + 20, 30, "service stopped after losing one member")
        with churn.paused():
            problems = check_consistency(etcd_store, churn.stats)
        assert not problems, problems

        with churn.paused():
            cluster.kill_member(cluster.members[1])  # two of three: no quorum
            answers = []
            for i in range(3):
                t0 = time.monotonic()
                response = httpx.post(fleet.replicas[i].url + "/v1/stitches", headers=headers,
                                      json=_stitch(f"noquorum{i}"), timeout=30)
                answers.append((response.status_code, response.json().get("code"), time.monotonic() - t0))
        assert all(status == 503 and code == "store_unavailable" for status, code, _ in answers), answers
        assert max(seconds for _, _, seconds in answers) < 15, answers
        time.sleep(1.0)  # the client meets the outage too (and waits to learn its outcomes)

        for member in cluster.members[:2]:
            cluster.start_member(member, wait=False)
        cluster.wait_healthy(30)
        fleet.leader(timeout_s=30)
        before = churn.stats.created
        wait_for(lambda: churn.stats.created >= before + 20, 60, "service did not come back")
        with churn.paused():
            # converge: every stitch established, deleted ones torn down (kept as TERMINATED, holding nothing)
            def converged():
                stitches = etcd_store.list("Stitch")
                return all((r.value.get("status") or {}).get("state") in ("ACTIVE", "TERMINATED") for r in stitches)
            wait_for(converged, 60, "the controller did not converge after the members came back")
            problems = check_consistency(etcd_store, churn.stats)
            noquorum = [etcd_store.get("Stitch", "acme", f"noquorum{i}") for i in range(3)]
    finally:
        churn.stop()
        fleet.stop()
    assert not problems, problems
    assert noquorum == [None, None, None]  # refused with 503, not applied later
    print(f"\nmember loss: 503 answers in {[round(s, 1) for _, _, s in answers]} s; "
          f"created {churn.stats.created}, answers {dict(churn.stats.statuses)}")
