"""The replay's injected regime shifts (issue 11): a pair × factor, a pair that appears, a node's traffic that
moves to another destination; bad shifts are refused with the reason."""

import numpy as np
import pytest

from vnstitch.errors import InvalidInput
from vnstitch.experiments.replay import shifted
from vnstitch.forecast.errors import UnknownPairError
from vnstitch.forecast.series import TrafficSeries

PAIRS = [("a", "b"), ("a", "c"), ("b", "a")]


@pytest.fixture
def series():
    values = np.arange(1, 31, dtype=float).reshape(10, 3)
    observed = np.ones_like(values, bool)
    observed[7, 1] = False   # a gap on a→c
    stamps = np.datetime64("2004-03-01T00:00") + np.arange(10) * np.timedelta64(300, "s")
    return TrafficSeries.from_array(values, stamps, PAIRS, observed, 300.0)


def test_scale_new_and_move(series):
    scaled = shifted(series, "a", "b", 4, 2.0)
    assert np.array_equal(scaled.values_mbps[:4, 0], series.values_mbps[:4, 0])
    assert np.array_equal(scaled.values_mbps[4:, 0], 2 * series.values_mbps[4:, 0])
    new = shifted(series, "a", "b", 4, 1.0, "new")
    assert (new.values_mbps[:4, 0] == 0).all() and np.array_equal(new.values_mbps[4:, 0], series.values_mbps[4:, 0])
    moved = shifted(series, "a", "b", 4, 1.0, "move", "c")
    assert (moved.values_mbps[4:, 0] == 0).all(), "a→b carries nothing after the move"
    want = series.values_mbps[4:, 1] + series.values_mbps[4:, 0]
    want[3] = series.values_mbps[7, 0]   # the gap on a→c held no traffic of its own: only the moved part
    assert np.array_equal(moved.values_mbps[4:, 1], want) and moved.observed[4:, 1].all()
    assert np.array_equal(moved.values_mbps[:, 2], series.values_mbps[:, 2]), "other pairs untouched"
    assert moved.values_mbps.sum() == pytest.approx(series.values_mbps.sum() - series.values_mbps[7, 1]), \
        "the move keeps the traffic (less the gap's unobserved value)"


def test_bad_shifts_are_refused_with_the_reason(series):
    with pytest.raises(InvalidInput, match="unknown shift kind 'swap' \\(valid: scale, new, move\\)"):
        shifted(series, "a", "b", 4, 1.0, "swap")
    with pytest.raises(UnknownPairError, match="pair a->d is not in the data"):
        shifted(series, "a", "b", 4, 1.0, "move", "d")
