"""Failover under load: 3 replicas, a client creating and deleting stitches at 50/s, SIGKILL the
leader again and again. No acknowledged stitch lost or duplicated, no link over-reserved (checked
after each kill), failover time measured (last write of the old leader → first of the new one).

TTL is 2 s here (the default is 10 s) to keep the suite short; VNSTITCH_ETCD_KILLS sets the kills
(default 5; bench/etcd_failover.py measures the figures over more)."""

from __future__ import annotations

import os
import signal
import statistics
import time

import pytest

from tests.etcd.harness import Churn, Fleet, check_consistency, seed

TTL_S = 2.0
KILLS = int(os.environ.get("VNSTITCH_ETCD_KILLS", "5"))


def failover_gap(writes: list[dict], old_fence: int, killed_at: float) -> tuple[float, float] | None:
    """(last accepted write of the old leader, first accepted write of a newer one)."""
    old = [w["t"] for w in writes if w["ok"] and w["fence"] == old_fence]
    new = [w["t"] for w in writes if w["ok"] and w["fence"] > old_fence and w["t"] > killed_at]
    if not old or not new:
        return None
    return max(old), min(new)


def wait_for(condition, timeout_s: float, message: str):
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(0.05)


@pytest.mark.slow
def test_sigkill_the_leader_under_load(etcd_cluster_healthy, etcd_store, etcd_prefix, tmp_path):
    token = seed(etcd_store)
    fleet = Fleet(etcd_cluster_healthy.url(etcd_prefix), str(tmp_path), count=3, ttl_s=TTL_S).start()
    churn = Churn(fleet, token, rate_per_s=50.0)
    gaps, elected = [], []
    try:
        leader = fleet.leader()
        churn.start()
        wait_for(lambda: churn.stats.created >= 30, 60, "the client never got going")
        for kill in range(KILLS):
            state = leader.ready()
            old_fence = int(etcd_store.get("Leader", "", "reconciler").create_revision)
            killed_at = time.time()
            leader.send(signal.SIGKILL)
            leader.process.wait(10)
            new_leader = fleet.leader(timeout_s=4 * TTL_S + 10, exclude=leader)
            record = etcd_store.get("Leader", "", "reconciler")
            elected.append(record.value["electedAt"] - killed_at)
            leader.start()  # back as a follower: three replicas again
            wait_for(lambda: failover_gap(fleet.writes(), old_fence, killed_at), 30,
                     f"kill {kill + 1}: no accepted writes around it ({state})")
            gap = failover_gap(fleet.writes(), old_fence, killed_at)
            gaps.append(gap[1] - gap[0])
            with churn.paused():
                problems = check_consistency(etcd_store, churn.stats)
            assert not problems, f"after kill {kill + 1}: {problems}"
            leader.wait_up()
            leader = new_leader
        time.sleep(1.0)
    finally:
        churn.stop()
        fleet.stop()
    problems = check_consistency(etcd_store, churn.stats)
    assert not problems, problems
    stats = churn.stats
    print(f"\nfailover over {KILLS} SIGKILLs (TTL {TTL_S:g} s): last→first write p50 "
          f"{statistics.median(gaps):.2f} s max {max(gaps):.2f} s; kill→elected p50 "
          f"{statistics.median(elected):.2f} s max {max(elected):.2f} s; created {stats.created}, "
          f"deleted {stats.deleted}, refused {stats.refused}, unreachable {stats.unreachable}, "
          f"answers {dict(stats.statuses)}")
    assert stats.created > 20 * KILLS
    # the goal (p99 ≤ 2 × TTL + 3 s) is measured by bench/etcd_failover.py; on a loaded CI
    # machine a single slow first pass may exceed it, so the test bounds the median and the worst
    assert statistics.median(gaps) <= 2 * TTL_S + 3.0, gaps
    assert max(gaps) <= 4 * TTL_S + 5.0, gaps
