"""The simulator's pair counters give rates from deltas: first collect, resets, restarts."""

from __future__ import annotations

import pytest

from vnstitch.drivers.sim import SimDriver
from vnstitch.telemetry.sim import SimCountersSource
from tests.contract.test_driver_contract import BLUE, GREEN, RED

T0 = 1_700_000_000.0


@pytest.fixture
def sim(abilene):
    driver = SimDriver(topology=abilene.links)
    for op in (BLUE, RED, GREEN):
        driver.apply(op)
    return driver


def by_pair(samples):
    return {(s.tenant, s.src, s.dst): s for s in samples}


def test_rates_are_offered_bit_per_s_and_loss_is_what_did_not_arrive(sim):
    source = SimCountersSource(sim)
    assert source.collect(T0) == []  # a baseline: no rate yet
    sim.carry({("acme/blue", "acme/red"): 4e9, ("acme/blue", "acme/green"): 1e9}, interval_s=300,
              default_route=True)
    got = by_pair(source.collect(T0 + 300))
    blue_red = got[("acme", "blue", "red")]
    assert blue_red.rate_bps == pytest.approx(4e9) and blue_red.time == T0 + 300
    assert blue_red.loss == pytest.approx(0.0, abs=1e-9)
    sim.carry({("acme/blue", "acme/red"): 12e9}, interval_s=300, default_route=True)  # beyond 9.92 Gbit/s links
    got = by_pair(source.collect(T0 + 600))
    assert got[("acme", "blue", "red")].rate_bps == pytest.approx(12e9)
    assert got[("acme", "blue", "red")].loss == pytest.approx(1 - 9.92 / 12, rel=1e-3)
    assert got[("acme", "blue", "green")].rate_bps == 0.0 and got[("acme", "blue", "green")].loss is None


def test_unrouted_traffic_is_offered_and_all_lost(sim):
    source = SimCountersSource(sim)
    source.collect(T0)
    sim.carry({("acme/blue", "acme/green"): 1e9}, interval_s=60)  # no stitch, no default route
    [sample] = source.collect(T0 + 60)
    assert sample.rate_bps == pytest.approx(1e9) and sample.loss == 1.0


def test_a_counter_reset_counts_from_zero_and_a_repeat_collect_waits(sim):
    source = SimCountersSource(sim)
    sim.carry({("acme/blue", "acme/red"): 2e9}, interval_s=300, default_route=True)
    source.collect(T0)
    assert source.collect(T0) == []  # no time passed: no rate, baseline kept
    sim.pair_bytes.clear()  # the data plane restarted: its counters start again at 0
    sim.carry({("acme/blue", "acme/red"): 1e9}, interval_s=300, default_route=True)
    [sample] = source.collect(T0 + 300)
    assert sample.rate_bps == pytest.approx(1e9) and source.resets == 1


def test_counters_survive_a_simulator_restart(tmp_path, abilene):
    path = str(tmp_path / "sim.json")
    sim = SimDriver(state_path=path, topology=abilene.links)
    for op in (BLUE, RED):
        sim.apply(op)
    sim.carry({("acme/blue", "acme/red"): 1e9}, interval_s=300, default_route=True)
    sim.close()
    again = SimDriver(state_path=path, topology=abilene.links)
    assert again.pair_bytes == {("acme/blue", "acme/red"): [int(1e9 * 300 / 8)] * 2}


def test_a_pair_of_two_tenants_is_skipped(sim):
    source = SimCountersSource(sim)
    source.collect(T0)
    sim.pair_bytes[("acme/blue", "globex/shop")] = [100, 100]
    assert source.collect(T0 + 10) == [] and source.skipped_cross_tenant == 1
