"""One contract suite for every telemetry store (memory, SQLite) and every pull source that needs
no outside server (the Prometheus source runs the same source checks in tests/telemetry)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vnstitch.telemetry import Sample, TelemetryError, TelemetrySource
from vnstitch.telemetry.base import CAPABILITIES, PULL
from vnstitch.telemetry.store import MemoryTelemetryStore, SQLiteTelemetryStore, open_telemetry_store
T0 = 1_700_000_000.0  # 2023-11-14; the tests do not rely on it being aligned to an interval
T0 = 1_700_000_000.0  # a multiple of 300 s (not of 3600 s: the compaction tests pick their own hour)
HOUR = 3600.0
DAY = 86400.0


@pytest.fixture(params=["memory", "sqlite"])
def tstore(request, tmp_path):
    s = MemoryTelemetryStore() if request.param == "memory" else SQLiteTelemetryStore(str(tmp_path / "t.db"))
    yield s
    s.close()


def sample(t, rate, src="web", dst="db", tenant="acme", **extra) -> Sample:
    return Sample(tenant, src, dst, t, rate, **extra)


def test_samples_read_back_in_time_order_whatever_order_they_came_in(tstore):
    assert tstore.insert([sample(T0 + 20, 3e6), sample(T0, 1e6, latency_s=0.01, loss=0.0),
                          sample(T0 + 10, 2e6)]) == 3
    got = tstore.series("acme", "web", "db", since=T0)
    assert [(s.time, s.rate_bps) for s in got] == [(T0, 1e6), (T0 + 10, 2e6), (T0 + 20, 3e6)]
    assert got[0].latency_s == 0.01 and got[0].loss == 0.0 and got[1].latency_s is None
    assert [s.time for s in tstore.series("acme", "web", "db", since=T0 + 5, until=T0 + 10)] == [T0 + 10]
    assert len(tstore.series("acme", "web", "db", since=T0, limit=2)) == 2


def test_resending_changes_nothing_and_a_correction_replaces(tstore):
    batch = [sample(T0, 1e6), sample(T0 + 300, 2e6)]
    assert tstore.insert(batch) == 2
    assert tstore.insert(batch) == 0  # idempotent per (series, timestamp)
    assert tstore.insert([sample(T0 + 300.0004, 2e6)]) == 0  # the same millisecond is the same sample
    assert tstore.insert([sample(T0 + 300, 2.5e6)]) == 1
    assert [s.rate_bps for s in tstore.series("acme", "web", "db", since=0)] == [1e6, 2.5e6]


def test_export_pages_through_every_tenant_in_key_order(tstore):
    tstore.insert([sample(T0 + 300 * k, 1e6 + k, src=src, tenant=tenant)
                   for k in range(5) for src in ("a", "b") for tenant in ("acme", "globex")])
    everything = tstore.export(since=T0 + 300)
    assert len(everything) == 16 and {s.tenant for s in everything} == {"acme", "globex"}
    assert everything == sorted(everything, key=lambda s: (s.tenant, s.src, s.dst, s.time))
    assert min(s.time for s in everything) == T0 + 300  # since is inclusive
    pages, after = [], None
    while True:
        page = tstore.export(since=T0 + 300, after=after, limit=3)
        if not page:
            break
        pages += page
        last = page[-1]
        after = (last.tenant, last.src, last.dst, round(last.time * 1000))
    assert pages == everything


def test_a_batch_with_a_non_numeric_sample_stores_nothing(tstore):
    with pytest.raises(TelemetryError):
        tstore.insert([sample(T0, 1e6), sample(T0 + 1, "lots")])
    assert tstore.series("acme", "web", "db", since=0) == []
    assert tstore.latest("acme") == []


def test_rates_are_interval_means_with_nan_gaps(tstore):
    # intervals of 300 s ending at T0 + 900: (T0, T0+300], (T0+300, T0+600], (T0+600, T0+900]
    tstore.insert([sample(T0 + 100, 1e6), sample(T0 + 300, 3e6),     # interval 0: mean 2e6 (end inclusive)
                   sample(T0 + 900, 0.0),                             # interval 2: a measured zero
                   sample(T0, 9e9),                                   # before the window (start exclusive)
                   sample(T0 + 500, 7e6, src="db", dst="web")])
    got = tstore.rates("acme", [("web", "db"), ("db", "web"), ("web", "nowhere")], end=T0 + 900, steps=3,
                       interval_s=300)
    assert got.shape == (3, 3)
    assert got[0, 0] == 2e6 and math.isnan(got[1, 0]) and got[2, 0] == 0.0  # a gap is NaN, never 0
    assert math.isnan(got[0, 1]) and got[1, 1] == 7e6 and math.isnan(got[2, 1])
    assert np.isnan(got[:, 2]).all()
    again = tstore.rates("acme", [("db", "web"), ("web", "db"), ("db", "web")], end=T0 + 900, steps=3,
                         interval_s=300)
    np.testing.assert_array_equal(again[:, 0], got[:, 1])
    np.testing.assert_array_equal(again[:, 2], got[:, 1])
    assert tstore.rates("acme", [], end=T0, steps=4, interval_s=300).shape == (4, 0)


def test_tenants_never_see_each_other(tstore):
    tstore.insert([sample(T0, 1e6), sample(T0, 5e6, tenant="globex")])
    assert tstore.rates("globex", [("web", "db")], T0, 1, 300)[0, 0] == 5e6
    assert [s.rate_bps for s in tstore.latest("acme")] == [1e6]
    assert tstore.series("other", "web", "db", since=0) == []


def test_latest_is_the_newest_sample_of_each_series(tstore):
    tstore.insert([sample(T0 + 60, 2e6), sample(T0, 1e6), sample(T0 + 30, 4e6, src="db", dst="web")])
    tstore.insert([sample(T0 + 10, 9e6)])  # older than the newest: latest stays
    assert [(s.src, s.dst, s.time, s.rate_bps) for s in tstore.latest("acme")] == [
        ("db", "web", T0 + 30, 4e6), ("web", "db", T0 + 60, 2e6)]
    assert tstore.latest("nobody") == []


def test_compact_folds_old_samples_into_hourly_means_and_drops_beyond_retention(tstore):
    now = 1_700_002_800.0  # a whole hour
    assert now % HOUR == 0
    old_hour = now - 3 * DAY                                          # beyond a 2-day raw window
    tstore.insert([sample(old_hour + 60, 1e6), sample(old_hour + 1800, 3e6),
                   sample(now - 20 * DAY, 5e6),                       # beyond a 14-day retention
                   sample(now - 60, 8e6)])                             # recent: stays raw
    result = tstore.compact(now, retention_s=14 * DAY, raw_s=2 * DAY)
    assert result.folded == 2 and result.deleted == 1
    assert [s.time for s in tstore.series("acme", "web", "db", since=0)] == [now - 60]
    # 5-minute intervals inside the folded hour read its mean; outside it, NaN
    got = tstore.rates("acme", [("web", "db")], end=old_hour + HOUR + 300, steps=14, interval_s=300)[:, 0]
    assert math.isnan(got[0]) and (got[1:13] == 2e6).all() and math.isnan(got[13])
    # a daily interval over it: raw-free, so the hourly mean stands for it
    assert tstore.rates("acme", [("web", "db")], end=old_hour + 12 * HOUR, steps=1, interval_s=DAY)[0, 0] == 2e6
    assert tstore.compact(now, retention_s=14 * DAY, raw_s=2 * DAY).folded == 0  # nothing twice
    assert [s.time for s in tstore.latest("acme")] == [now - 60]
    later = tstore.compact(now + 12 * DAY, retention_s=14 * DAY, raw_s=2 * DAY)
    assert later.deleted >= 1
    assert np.isnan(tstore.rates("acme", [("web", "db")], end=old_hour + HOUR, steps=12, interval_s=300)).all()


def test_raw_samples_win_over_hourly_means_in_the_same_interval(tstore):
    now = 1_700_002_800.0
    tstore.insert([sample(now - 3 * DAY + 60, 1e6)])
    tstore.compact(now, raw_s=2 * DAY)
    tstore.insert([sample(now - 3 * DAY + 120, 4e6)])  # arrives late, stays raw until the next compaction
    got = tstore.rates("acme", [("web", "db")], end=now - 3 * DAY + 300, steps=1, interval_s=300)
    assert got[0, 0] == 4e6


def test_open_telemetry_store_picks_by_url(tmp_path):
    from vnstitch.errors import InvalidInput
    from vnstitch.store.memory import MemoryStore
    from vnstitch.store.sqlite import SQLiteStore

    assert isinstance(open_telemetry_store("memory://"), MemoryTelemetryStore)
    state = SQLiteStore(str(tmp_path / "state.db"))
    beside = open_telemetry_store(state_store=state)
    assert isinstance(beside, SQLiteTelemetryStore) and beside.path == str(tmp_path / "state.telemetry.db")
    same = open_telemetry_store(f"sqlite://{tmp_path / 'state.db'}")  # the state store's own file works too
    same.insert([sample(T0, 1.0)])
    assert state.revision() == 0 and same.count() == 1
    assert isinstance(open_telemetry_store(state_store=MemoryStore()), MemoryTelemetryStore)
    with pytest.raises(InvalidInput, match="memory://"):
        open_telemetry_store("influx://x")
    for s in (beside, same, state):
        s.close()


# pull sources ------------------------------------------------------------------------------------
def sim_source():
    from vnstitch.drivers.sim import SimDriver
    from vnstitch.telemetry.sim import SimCountersSource

    driver = SimDriver()
    return SimCountersSource(driver), driver


@pytest.mark.parametrize("make", [sim_source], ids=["sim"])
def test_pull_source_contract(make):
    source, _ = make()
    assert isinstance(source, TelemetrySource)
    assert source.capabilities <= CAPABILITIES and PULL in source.capabilities
    assert source.collect(T0) == []  # nothing measured yet is no samples, not zeros
    assert isinstance(source.name, str) and source.name
