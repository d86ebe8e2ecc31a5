"""One contract suite for every store backend."""

import threading

import pytest

from vnstitch.errors import Conflict
from vnstitch.store import Compacted, Compare, Delete, LeaseNotFound, Put
from vnstitch.store.memory import MemoryStore
from vnstitch.store.sqlite import SQLiteStore


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture(params=["memory", "sqlite"])
def store(request, tmp_path):
    s = MemoryStore() if request.param == "memory" else SQLiteStore(str(tmp_path / "state.db"))
    yield s
    s.close()


def test_put_get_list_and_revisions(store):
    base = store.revision()  # 0 on a fresh store; a shared etcd cluster starts wherever it is
    r1 = store.put("Stitch", "acme", "a", {"x": 1})
    r2 = store.put("Stitch", "acme", "b", {"x": 2})
    r3 = store.put("Stitch", "other", "a", {"x": 3})
    assert (r1, r2, r3) == (base + 1, base + 2, base + 3)
    got = store.get("Stitch", "acme", "a")
    assert got.value == {"x": 1} and got.revision == r1 and got.create_revision == r1
    assert [r.name for r in store.list("Stitch", "acme")] == ["a", "b"]
    assert [(r.namespace, r.name) for r in store.list("Stitch")] == [("acme", "a"), ("acme", "b"), ("other", "a")]
    assert store.list("VirtualNetwork") == []
    store.put("Stitch", "acme", "a", {"x": 10})
    got = store.get("Stitch", "acme", "a")
    assert got.revision == base + 4 and got.create_revision == r1


def test_compare_and_swap(store):
    store.put("K", "", "n", {"v": 1}, expect_revision=0)
    with pytest.raises(Conflict):
        store.put("K", "", "n", {"v": 2}, expect_revision=0)
    with pytest.raises(Conflict):
        store.put("K", "", "n", {"v": 2}, expect_revision=99)
    rev = store.get("K", "", "n").revision
    store.put("K", "", "n", {"v": 2}, expect_revision=rev)
    assert store.get("K", "", "n").value == {"v": 2}


def test_txn_is_all_or_nothing(store):
    r1 = store.put("L", "", "l1", {"r": 0})
    before = store.revision()
    result = store.txn([Compare("L", "", "l1", r1), Compare("S", "", "s", 5)],
                       [Put("S", "", "s", {}), Put("L", "", "l1", {"r": 5})])
    assert not result.succeeded and result.failed == [Compare("S", "", "s", 5)]
    assert store.get("S", "", "s") is None and store.get("L", "", "l1").value == {"r": 0}
    assert store.revision() == before
    result = store.txn([Compare("L", "", "l1", r1), Compare("S", "", "s", 0)],
                       [Put("S", "", "s", {}), Put("L", "", "l1", {"r": 5}), Delete("X", "", "nope")])
    assert result.succeeded and result.revision == before + 1
    assert store.get("S", "", "s").revision == store.get("L", "", "l1").revision == before + 1


def test_delete_and_events(store):
    base = store.revision()
    store.put("K", "t", "a", {"v": 1})
    store.put("K", "t", "b", {"v": 2})
    store.put("J", "t", "c", {"v": 3})
    assert store.delete("K", "t", "a") is True
    assert store.delete("K", "t", "a") is False
    events = store.events_since(0)
    assert [(e.type, e.record.name, e.revision - base) for e in events] == [
        ("PUT", "a", 1), ("PUT", "b", 2), ("PUT", "c", 3), ("DELETE", "a", 4)]
    assert events[-1].record.value == {"v": 1}
    assert [e.record.name for e in store.events_since(base + 2, kinds=["K"])] == ["a"]
    assert store.events_since(store.revision()) == []


def test_wait_wakes_on_change(store):
    rev = store.revision()
    assert store.wait(rev, 0.05) is False
    timer = threading.Timer(0.1, lambda: store.put("K", "", "x", {}))
    timer.start()
    assert store.wait(rev, 5.0) is True
    timer.join()


def test_concurrent_cas_increments_lose_no_update(store):
    store.put("C", "", "counter", {"n": 0})

    def worker():
        for _ in range(50):
            while True:
                rec = store.get("C", "", "counter")
                ok = store.txn([Compare("C", "", "counter", rec.revision)],
                               [Put("C", "", "counter", {"n": rec.value["n"] + 1})]).succeeded
                if ok:
                    break

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.get("C", "", "counter").value == {"n": 200}


def test_leases_expire_and_revoke(tmp_path):
    for store in (MemoryStore(clock=FakeClock()), SQLiteStore(str(tmp_path / "l.db"))):
        lease = store.lease_grant(0.2)
        store.put("Leader", "", "reconciler", {"id": "a"}, lease=lease)
        store.lease_keepalive(lease)
        assert store.get("Leader", "", "reconciler") is not None
        if isinstance(store, MemoryStore):
            store._clock.now += 1.0
        else:
            import time
            time.sleep(0.35)
        assert store.get("Leader", "", "reconciler") is None
        with pytest.raises(LeaseNotFound):
            store.lease_keepalive(lease)
        with pytest.raises(LeaseNotFound):
            store.put("Leader", "", "x", {}, lease=lease)
        lease2 = store.lease_grant(30)
        store.put("Leader", "", "reconciler", {"id": "b"}, lease=lease2)
        store.lease_revoke(lease2)
        assert store.get("Leader", "", "reconciler") is None
        assert store.events_since(0)[-1].type == "DELETE"
        store.close()


def test_compaction_is_reported(tmp_path):
    store = MemoryStore(history_limit=5)
    for i in range(20):
        store.put("K", "", f"k{i}", {})
    with pytest.raises(Compacted):
        store.events_since(1)
    assert len(store.events_since(store.revision() - 3)) == 3


def test_sqlite_persists_across_reopen(tmp_path):
    path = str(tmp_path / "p.db")
    s = SQLiteStore(path)
    s.put("K", "ns", "a", {"deep": {"list": [1, 2]}})
    s.close()
    s2 = SQLiteStore(path)
    assert s2.get("K", "ns", "a").value == {"deep": {"list": [1, 2]}}
    assert s2.revision() == 1
    assert s2.integrity_check() == "ok"
    s2.close()
