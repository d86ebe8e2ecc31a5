"""The injection generator: deterministic per seed, sized by each pair's spread, gaps kept, windows apart."""

from __future__ import annotations

import numpy as np
import pytest

from vnstitch.anomaly import AnomalyInputError
from vnstitch.anomaly.inject import DURATION_STEPS, InjectedEvent, apply_events, inject_anomalies, make_events, pair_spread


@pytest.fixture
def day():
    rng = np.random.default_rng(1)
    return 50 + np.cumsum(rng.normal(0, 1.0, (288, 10)), axis=0).clip(-40)


def test_spread_is_the_sigma_of_one_step_changes():
    rng = np.random.default_rng(0)
    walk = 100 + np.cumsum(rng.normal(0, 2.0, (5000, 3)), axis=0)
    assert np.allclose(pair_spread(walk), 2.0, rtol=0.05)
    assert pair_spread(np.full((10, 2), 7.0)).tolist() == [0.0, 0.0]


def test_same_seed_same_injection_other_seed_differs(day):
    spread = pair_spread(day)
    a, ev_a = inject_anomalies(day, spread, seed=5)
    b, ev_b = inject_anomalies(day, spread, seed=5)
    c, ev_c = inject_anomalies(day, spread, seed=6)
    assert ev_a == ev_b and np.array_equal(a, b)
    assert ev_a != ev_c


def test_events_fit_their_slots_and_never_overlap(day):
    events = make_events(288, range(10), seed=3, pairs_per_event=(1, 3), slot_steps=36, grace_steps=3)
    assert len(events) == 8
    for i, ev in enumerate(events):
        assert ev.end - ev.start + 1 == DURATION_STEPS[ev.kind]
        assert i * 36 <= ev.start and ev.end + 3 < (i + 1) * 36
        assert len(set(ev.pairs)) == len(ev.pairs)
    kinds = {ev.kind for ev in make_events(288 * 4, range(10), seed=3)}
    assert kinds == {"spike", "ramp", "outage", "level_shift"}


def test_each_kind_changes_exactly_its_window_by_its_size(day):
    spread = np.full(10, 2.0)
    events = [InjectedEvent(10, 10, "spike", (1,), 4.0), InjectedEvent(40, 51, "ramp", (2, 3), 8.0),
              InjectedEvent(80, 85, "outage", (4,), 0.0, -1), InjectedEvent(120, 143, "level_shift", (5,), 2.0, -1)]
    out = apply_events(day, events, spread)
    diff = out - day
    assert diff[10, 1] == pytest.approx(8.0) and np.count_nonzero(diff[:, 1]) == 1
    assert diff[51, 2] == pytest.approx(16.0) and diff[40, 2] == pytest.approx(16.0 / 12)
    assert np.all(out[80:86, 4] == 0) and np.all(diff[:80, 4] == 0) and np.all(diff[86:, 4] == 0)
    assert np.allclose(diff[120:144, 5], -4.0) and np.count_nonzero(diff[:, 5]) == 24
    assert np.count_nonzero(diff[:, [0, 6, 7, 8, 9]]) == 0


def test_gaps_stay_gaps_and_rates_stay_non_negative(day):
    values = day.copy()
    values[10, 1] = np.nan
    out = apply_events(values, [InjectedEvent(10, 10, "spike", (1,), 4.0),
                                InjectedEvent(20, 43, "level_shift", (2,), 1e6, -1)], np.ones(10))
    assert np.isnan(out[10, 1])
    assert out[20:44, 2].min() == 0.0


def test_bad_requests_fail_clearly():
    with pytest.raises(AnomalyInputError, match="unknown injection kind 'burst'"):
        make_events(288, range(5), seed=0, kinds=("burst",))
    with pytest.raises(AnomalyInputError, match="too short"):
        make_events(288, range(5), seed=0, slot_steps=10)
    with pytest.raises(AnomalyInputError, match="runs past"):
        apply_events(np.ones((5, 2)), [InjectedEvent(4, 7, "outage", (0,), 0.0)], np.ones(2))
