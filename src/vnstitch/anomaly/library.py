"""River's Half-Space Trees (an online isolation forest) behind the Detector contract (extra `anomaly`)."""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from vnstitch.errors import MissingDependency

from .base import Detector, IntervalScore
from .errors import AnomalyInputError

EXTRA = "anomaly"


def require_river():
    """river.anomaly, or MissingDependency naming the extra to install."""
    try:
        return importlib.import_module("river.anomaly")
    except ImportError:
        raise MissingDependency(f"detector 'hst' needs river, which is not installed: "
                                f"pip install 'vnstitch[{EXTRA}]'") from None


class HalfSpaceTreesDetector(Detector):
    """Each interval's log1p rates, scaled by the history's range per pair, scored by river HalfSpaceTrees.

    It learns online from every interval it scores. The alarm threshold is the (1 − alpha) quantile of
    the scores it gave the last `calibration_steps` history intervals. It names no pairs: a tree
    ensemble's score says that an interval is unusual, not which coordinate made it so.
    """

    name = "hst"
    needs_forecast = False
    names_pairs = False
    online = True

    def __init__(self, n_trees: int = 25, height: int = 10, window_size: int = 250, alpha: float = 0.002,
                 calibration_steps: int = 576, seed: int = 7, min_history_steps: int = 288):
        if not 0 < alpha < 1:
            raise AnomalyInputError(f"alpha must lie in (0, 1); got {alpha}")
        super().__init__(max(min_history_steps, window_size + 2))
        self.n_trees, self.height, self.window_size = int(n_trees), int(height), int(window_size)
        self.alpha, self.calibration_steps, self.seed = float(alpha), int(calibration_steps), int(seed)

    def get_config(self) -> dict[str, Any]:
        return {"n_trees": self.n_trees, "height": self.height, "window_size": self.window_size,
                "alpha": self.alpha, "seed": self.seed}

    def _features(self, values: np.ndarray) -> dict[int, float]:
        x = (np.log1p(values) - self.low) / self.width
        return {i: float(v) for i, v in enumerate(x) if np.isfinite(v)}   # a gap is an absent feature

    def _fit(self, values, timestamps):
        anomaly = require_river()
        logs = np.log1p(values)
        low, high = np.nanmin(logs, axis=0), np.nanmax(logs, axis=0)
        low, high = np.nan_to_num(low), np.nan_to_num(high)
        margin = np.maximum(0.25 * (high - low), 0.05)
        self.low, self.width = low - margin, (high - low) + 2 * margin
        self.model = anomaly.HalfSpaceTrees(n_trees=self.n_trees, height=self.height,
                                            window_size=self.window_size, seed=self.seed)
        cal_start = max(values.shape[0] - self.calibration_steps, self.window_size)
        scores = []
        for t, row in enumerate(values):
            x = self._features(row)
            if t >= cal_start:
                scores.append(self.model.score_one(x))
            self.model.learn_one(x)
        self.threshold = float(np.quantile(scores, 1.0 - self.alpha)) if scores else 1.0

    def _score(self, values, timestamp):
        x = self._features(values)
        score = float(self.model.score_one(x))
        self.model.learn_one(x)
        alarm = score > self.threshold
        return IntervalScore(True, alarm, score / self.threshold if self.threshold > 0 else 0.0, (),
                             "spike" if alarm else "", {"hst_score": score, "threshold": self.threshold})
