"""etcd-only behaviour of the store and of leader election: leases on etcd's clock, history
replay for a second process, compaction, URL parsing, fenced handover."""

from __future__ import annotations

import time

import pytest

from tests.etcd.cluster import LocalEtcdCluster
from vnstitch.controller.election import LEADER_KEY, LeaderElection
from vnstitch.errors import InvalidInput
from vnstitch.store import Compacted, LeaseNotFound, Put, open_store
from vnstitch.store.etcd import EtcdStore, parse_url


def test_open_store_parses_etcd_urls(etcd_cluster_healthy, etcd_prefix):
    assert parse_url("a:1,b:2/x/y") == (["a:1", "b:2"], "x/y")
    assert parse_url("a:1") == (["a:1"], "vnstitch")
    with pytest.raises(InvalidInput):
        open_store("etcd:///p")
    store = open_store(etcd_cluster_healthy.url(etcd_prefix))
    try:
        assert isinstance(store, EtcdStore) and store.replicated
        store.put("K", "a/b", "n%1", {"v": 1})  # separators in names stay inside one key part
        assert store.get("K", "a/b", "n%1").value == {"v": 1}
        assert [r.name for r in store.list("K", "a/b")] == ["n%1"] and store.list("K", "a") == []
    finally:
        store.close()


def test_leases_expire_keepalive_and_revoke(etcd_store):
    lease = etcd_store.lease_grant(1)
    etcd_store.put("Leader", "", "x", {"id": "a"}, lease=lease)
    assert etcd_store.get("Leader", "", "x").lease == lease
    etcd_store.lease_keepalive(lease)
    deadline = time.monotonic() + 5
    while etcd_store.get("Leader", "", "x") is not None:
        assert time.monotonic() < deadline, "lease did not expire"
        time.sleep(0.1)
    with pytest.raises(LeaseNotFound):
        etcd_store.lease_keepalive(lease)
    with pytest.raises(LeaseNotFound):
        etcd_store.put("Leader", "", "y", {}, lease=lease)
    lease2 = etcd_store.lease_grant(30)
    etcd_store.put("Leader", "", "z", {}, lease=lease2)
    etcd_store.lease_revoke(lease2)
    etcd_store.lease_revoke(lease2)  # twice is fine
    assert etcd_store.get("Leader", "", "z") is None
    kinds = [(e.type, e.record.name) for e in etcd_store.events_since(0)]
    assert kinds[-1] == ("DELETE", "z") and ("DELETE", "x") in kinds


def test_second_process_replays_history_and_compaction_is_reported(tmp_path):
    # a cluster of its own: compaction is cluster-wide and would reach the other tests
    with LocalEtcdCluster(1, base_dir=str(tmp_path)) as cluster:
        store = EtcdStore(cluster.endpoints.split(","), "history")
        try:
            _replay_and_compact(cluster, store, "history")
        finally:
            store.close()


def _replay_and_compact(etcd_cluster_healthy, etcd_store, etcd_prefix):
    first = etcd_store.revision()
    for i in range(5):
        etcd_store.put("K", "", f"k{i}", {"i": i})
    etcd_store.delete("K", "", "k0")
    other = EtcdStore(etcd_cluster_healthy.endpoints.split(","), etcd_prefix)
    try:
        mine = [(e.type, e.record.name, e.revision) for e in etcd_store.events_since(first)]
        replayed = [(e.type, e.record.name, e.revision) for e in other.events_since(first)]
        assert replayed == mine and len(mine) == 6 and mine[-1][0] == "DELETE"
        etcd_store.compact(etcd_store.revision())
        with pytest.raises(Compacted):
            other.events_since(first)
        etcd_store.put("K", "", "after", {})
        assert [e.record.name for e in other.events_since(other.revision() - 1)] == ["after"]
    finally:
        other.close()


def test_election_fences_and_hands_over_on_resign(etcd_cluster_healthy, etcd_prefix):
    endpoints = etcd_cluster_healthy.endpoints.split(",")
    stores = [EtcdStore(endpoints, etcd_prefix) for _ in range(2)]
    electors = [LeaderElection(s, f"e{i}", ttl_s=2.0) for i, s in enumerate(stores)]
    try:
        electors[0].start()
        assert electors[0].wait_leading(10)
        electors[1].start()
        time.sleep(0.3)
        assert not electors[1].is_leader()
        old_fence = electors[0].fence()
        assert stores[0].txn(old_fence, [Put("Probe", "", "p", {"by": 0})]).succeeded
        assert stores[1].get(*LEADER_KEY).value["identity"] == "e0"
        t0 = time.monotonic()
        electors[0].resign()
        assert electors[1].wait_leading(5)
        handover_s = time.monotonic() - t0
        assert handover_s < 3.0, handover_s
        assert not stores[0].txn(old_fence, [Put("Probe", "", "p", {"by": "zombie"})]).succeeded
        assert electors[0].fence()[0].revision == -1  # a resigned replica's fence never holds
        assert stores[1].txn(electors[1].fence(), [Put("Probe", "", "p", {"by": 1})]).succeeded
        print(f"\ngraceful handover in {handover_s * 1000:.0f} ms")
    finally:
        for elector in electors:
            elector.resign()
        for store in stores:
            store.close()
