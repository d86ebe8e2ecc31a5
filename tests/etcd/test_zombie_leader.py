"""Zombie leader: SIGSTOP the leader past its lease, let another take over, SIGCONT it.
Zero writes from the old leader may be accepted (the store refuses them on the fence)."""

from __future__ import annotations

import signal
import time

import pytest

from tests.etcd.harness import Churn, Fleet, check_consistency, seed
from tests.etcd.test_failover import wait_for

TTL_S = 2.0


@pytest.mark.slow
def test_paused_leader_writes_nothing_after_its_lease(etcd_cluster_healthy, etcd_store, etcd_prefix, tmp_path):
    token = seed(etcd_store)
    fleet = Fleet(etcd_cluster_healthy.url(etcd_prefix), str(tmp_path), count=3, ttl_s=TTL_S).start()
    churn = Churn(fleet, token, rate_per_s=20.0)
    try:
        zombie = fleet.leader()
        churn.start()
        old_fence = etcd_store.get("Leader", "", "reconciler").create_revision
        wait_for(lambda: any(w["ok"] and w["fence"] == old_fence for w in fleet.writes()), 60,
                 "the leader never wrote")
        zombie.send(signal.SIGSTOP)
        successor = fleet.leader(timeout_s=4 * TTL_S + 10, exclude=zombie)
        new_fence = etcd_store.get("Leader", "", "reconciler").create_revision
        assert new_fence > old_fence and successor is not zombie
        wait_for(lambda: any(w["ok"] and w["fence"] == new_fence for w in fleet.writes()), 30,
                 "the new leader never wrote")
        resumed_at = time.time()
        zombie.send(signal.SIGCONT)
        time.sleep(2 * TTL_S)  # the zombie's threads run on with what they believed, then notice
        state = zombie.ready()
        with churn.paused():
            problems = check_consistency(etcd_store, churn.stats)
    finally:
        churn.stop()
        fleet.stop()
    writes = fleet.writes()
    stale = [w for w in writes if w["replica"] == zombie.name and w["fence"] == old_fence and w["t"] >= resumed_at]
    assert any(w.get("probe") for w in stale), "the zombie never tried its stale fence"
    assert [w for w in stale if w["ok"]] == [], "a write of the deposed leader was accepted"
    # from the store's side: nothing fenced on the old key landed after the new key existed
    assert all(w["revision"] < new_fence for w in writes if w["ok"] and w["fence"] == old_fence)
    assert state is not None and state["leading"] is False and state["leader"] == successor.name
    assert not problems, problems
    print(f"\nzombie: {len(stale)} stale write(s) tried after SIGCONT, 0 accepted; "
          f"leader {zombie.name} → {successor.name}")
