"""The detectors' core methods on data whose answer is known: PCA names the flow, CUSUM sees a level
shift, conformal p-values are uniform on clean data, the Q-statistic holds its false-alarm rate."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from vnstitch.anomaly import get_detector
from vnstitch.anomaly.pca import q_statistic
from vnstitch.errors import MissingDependency


def low_rank(steps: int, pairs: int = 30, rank: int = 3, noise: float = 0.05, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(steps)
    factors = np.stack([np.sin(2 * np.pi * t / 288 * (i + 1) + i) for i in range(rank)], axis=1)
    loadings = rng.uniform(0.5, 2.0, (rank, pairs))
    return 40 + 3 * factors @ loadings + rng.normal(0, noise, (steps, pairs))


def test_pca_names_the_responsible_flow():
    values = low_rank(288 * 3)
    det = get_detector("pca", k=3, alpha=1e-4, transform="none", scale="none").fit(values[:576])
    named = []
    for flow in (4, 17, 29):
        row = values[600].copy()
        row[flow] += 2.0                     # 40 × the noise, far below the normal variation of the level
        verdict = det.score(row)
        assert verdict.alarm, verdict
        named.append(verdict.pairs[0])
    assert named == [4, 17, 29]
    assert not det.score(values[600]).alarm


def test_pca_q_statistic_holds_its_false_alarm_rate():
    values = low_rank(288 * 6, noise=1.0, seed=2)
    det = get_detector("pca", k=3, alpha=0.01, transform="none", scale="none").fit(values[:288 * 3])
    alarms = np.mean([s.alarm for s in det.score_block(values[288 * 3:])])
    assert 0.002 <= alarms <= 0.03
    assert q_statistic(np.ones(10), 0.01) > q_statistic(np.ones(10), 0.1) > 0


def test_pca_sees_more_with_fewer_components_left_in_the_residual():
    values = low_rank(288 * 3, rank=3, noise=0.05)
    too_few = get_detector("pca", k=1, transform="none", scale="none").fit(values[:576])
    right = get_detector("pca", k=3, transform="none", scale="none").fit(values[:576])
    assert too_few.threshold > 100 * right.threshold   # unmodelled structure inflates the SPE threshold


def test_cusum_catches_a_level_shift_and_names_the_pair():
    rng = np.random.default_rng(4)
    values = 100 * rng.lognormal(0, 0.02, (288 * 4, 8))
    det = get_detector("residual", cusum_h=20.0, cusum_k=0.5, scan_h=None).fit(values[:288 * 3])
    test = values[288 * 3:].copy()
    test[100:, 6] *= 1.06                    # +6 %: about 2 σ of one step, too small for one interval's p-value
    scores = det.score_block(test)
    assert not any(s.alarm for s in scores[:100])
    hits = [t for t, s in enumerate(scores) if s.alarm]
    assert hits and 100 <= hits[0] <= 124, hits[:5]
    first = scores[hits[0]]
    assert first.pairs[0] == 6 and first.kind in ("level_shift", "ramp")
    assert first.evidence["cusum_pairs"][0] == 6 and first.evidence["pvalue_pairs"] == []


def test_conformal_p_values_are_uniform_on_clean_data():
    rng = np.random.default_rng(5)
    values = 50 * rng.lognormal(0, 0.05, (288 * 5, 20))
    det = get_detector("residual").fit(values[:288 * 3])
    p = np.array([det.p_values(row)[0] for row in values[288 * 3:288 * 4]]).ravel()
    for level in (0.05, 0.1, 0.5):
        assert abs(np.mean(p <= level) - level) < 0.03, (level, np.mean(p <= level))
    spiked = values[288 * 4].copy()
    spiked[3] *= 3
    assert det.p_values(spiked)[0][3] < 1e-3


def test_hst_without_river_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "river", None)          # None in sys.modules: import fails
    monkeypatch.setitem(sys.modules, "river.anomaly", None)
    with pytest.raises(MissingDependency, match=r"vnstitch\[anomaly\]"):
        get_detector("hst").fit(np.ones((300, 4)))
