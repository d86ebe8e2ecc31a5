"""The subspace method (Lakhina, Crovella, Diot, SIGCOMM 2004): normal subspace of the top-k principal
components, SPE against the Jackson–Mudholkar Q-statistic, responsible flows by greedy removal."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import norm

from .base import Detector, IntervalScore, robust_scale
from .errors import AnomalyInputError

OUTAGE_FRACTION = 0.05


def q_statistic(residual_eigenvalues: np.ndarray, alpha: float) -> float:
    """Jackson–Mudholkar threshold δ²_α on the SPE, from the eigenvalues of the residual subspace."""
    lam = np.asarray(residual_eigenvalues, float)
    phi1, phi2, phi3 = lam.sum(), (lam ** 2).sum(), (lam ** 3).sum()
    if phi1 <= 0 or phi2 <= 0:
        return 0.0
    h0 = 1.0 - 2.0 * phi1 * phi3 / (3.0 * phi2 ** 2)
    c = norm.isf(alpha)   # isf, not ppf(1 − alpha): alpha below 1e-16 would round to 1
    return float(phi1 * (c * np.sqrt(2.0 * phi2 * h0 ** 2) / phi1 + 1.0 + phi2 * h0 * (h0 - 1.0) / phi1 ** 2) ** (1.0 / h0))


class PCADetector(Detector):
    """SPE of each interval outside the normal subspace; names the flows whose removal explains it.

    `scale`: 'std' divides each pair's centred series by its standard deviation over the history
    (every pair weighs the same; Lakhina et al. work on raw counts, where large pairs dominate the
    residual), 'none' keeps Mbit/s. `transform`: 'log1p' or 'none' before centring. `detrend`: 0 for
    the classic method; w > 0 subtracts from each interval the mean of the previous w intervals per pair
    (fit and score alike), so a pair that changes level from one day to the next leaves the SPE after w
    intervals instead of alarming all day (it then keeps that short window as running state).
    """

    name = "pca"
    needs_forecast = False
    names_pairs = True
    online = False

    def __init__(self, k: int = 4, alpha: float = 0.001, scale: str = "std", transform: str = "log1p",
                 max_flows: int = 4, detrend: int = 0, min_history_steps: int = 288):
        if int(k) < 1:
            raise AnomalyInputError(f"k must be >= 1; got {k}")
        if not 0 < alpha < 1:
            raise AnomalyInputError(f"alpha must lie in (0, 1); got {alpha}")
        if scale not in ("std", "none") or transform not in ("log1p", "none"):
            raise AnomalyInputError("scale must be 'std' or 'none'; transform 'log1p' or 'none'")
        if int(detrend) < 0:
            raise AnomalyInputError(f"detrend must be >= 0 intervals; got {detrend}")
        self.detrend = int(detrend)
        self.online = bool(self.detrend)   # detrending keeps the last w intervals as running state
        super().__init__(max(min_history_steps, 2 * int(k) + 2 + self.detrend))
        self.k, self.alpha, self.scale, self.transform = int(k), float(alpha), scale, transform
        self.max_flows = int(max_flows)

    def get_config(self) -> dict[str, Any]:
        return {"k": self.k, "alpha": self.alpha, "scale": self.scale, "transform": self.transform,
                "detrend": self.detrend}

    def _prepare(self, values: np.ndarray) -> np.ndarray:
        return np.log1p(values) if self.transform == "log1p" else values

    def _local_level(self, x: np.ndarray) -> np.ndarray:
        """Mean of the previous `detrend` rows per pair (NaN-aware), for rows detrend..end of x."""
        w = self.detrend
        seen = np.isfinite(x)
        csum = np.concatenate([np.zeros((1, x.shape[1])), np.cumsum(np.nan_to_num(x), axis=0)])
        ccount = np.concatenate([np.zeros((1, x.shape[1])), np.cumsum(seen, axis=0)])
        with np.errstate(all="ignore"):
            return (csum[w:-1] - csum[:-w - 1]) / (ccount[w:-1] - ccount[:-w - 1])

    def _fit(self, values, timestamps):
        x = self._prepare(values)
        if self.detrend:
            raw = x
            level = self._local_level(raw)
            x = raw[self.detrend:] - np.where(np.isfinite(level), level, np.nanmean(raw, axis=0))
            self.window = raw[-self.detrend:].copy()   # running state: the last w prepared rows
        if self.k >= x.shape[1]:
            raise AnomalyInputError(f"k={self.k} must be below the number of pairs ({x.shape[1]})")
        self.center = np.nan_to_num(np.nanmean(x, axis=0))
        x = np.where(np.isnan(x), self.center, x) - self.center
        std = x.std(axis=0)
        self.col_scale = np.where(std > 1e-9, std, 1.0) if self.scale == "std" else np.ones(x.shape[1])
        self.live = std > 1e-9
        z = x / self.col_scale
        _, sing, vt = np.linalg.svd(z, full_matrices=False)
        eig = sing ** 2 / max(z.shape[0] - 1, 1)
        self.components = vt[:self.k].T                          # (pairs, k), the normal subspace
        self.eigenvalues = eig
        self.threshold = q_statistic(eig[self.k:], self.alpha)
        # diagonal of the residual projector C̃ = I − P Pᵀ: what a unit change of one flow leaves in the residual
        self.residual_diag = np.maximum(1.0 - (self.components ** 2).sum(axis=1), 1e-12)
        self.spread = robust_scale(np.diff(z, axis=0))

    def spe(self, values: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """SPE of one interval, its residual vector and the standardised vector (gaps filled from the subspace)."""
        z = (np.nan_to_num(self._prepare(values) - self._reference()) - self.center) / self.col_scale
        missing = np.isnan(values)
        if missing.any():   # gaps take the values the normal subspace predicts from the observed pairs
            p_obs = self.components[~missing]
            coef, *_ = np.linalg.lstsq(p_obs, z[~missing], rcond=None)
            z = np.where(missing, self.components @ coef, z)
        resid = z - self.components @ (self.components.T @ z)
        return float(resid @ resid), resid, z

    def _reference(self) -> np.ndarray | float:
        """What is subtracted before centring: the recent per-pair level when detrending, else 0."""
        if not self.detrend:
            return 0.0
        with np.errstate(all="ignore"):
            level = np.nanmean(self.window, axis=0) if np.isfinite(self.window).any() else np.zeros(self.window.shape[1])
        return np.nan_to_num(level)

    def _score(self, values, timestamp):
        verdict = self._judge(values)
        if self.detrend:   # the interval joins the window (a gap stays a gap)
            self.window = np.roll(self.window, -1, axis=0)
            self.window[-1] = self._prepare(values)
        return verdict

    def _judge(self, values):
        missing = np.isnan(values)
        if missing.sum() > values.size // 2:
            return IntervalScore.not_ready(f"{int(missing.sum())} of {values.size} pairs unobserved")
        spe, resid, z = self.spe(values)
        alarm = spe > self.threshold
        flows: list[int] = []
        if alarm:
            # greedy removal: the flow i with the largest ỹ_i² / C̃_ii explains most of the residual
            remaining, left = resid.copy(), spe
            gain = np.where(missing | ~self.live, -np.inf, remaining ** 2 / self.residual_diag)
            for _ in range(self.max_flows):
                i = int(np.argmax(gain))
                if not np.isfinite(gain[i]) or gain[i] <= 0:
                    break
                flows.append(i)
                # remove flow i: subtract its optimal multiple of C̃ e_i from the residual
                f = remaining[i] / self.residual_diag[i]
                col = -self.components @ self.components[i]
                col[i] += 1.0
                remaining = remaining - f * col
                left = float(remaining @ remaining)
                gain[i] = -np.inf
                gain = np.where(np.isfinite(gain), remaining ** 2 / self.residual_diag, gain)
                if left <= self.threshold:
                    break
        kind = ""
        if flows:
            top = flows[0]
            expected = self._expected_mbps(z, top, resid)
            if resid[top] < 0:
                kind = "outage" if values[top] <= OUTAGE_FRACTION * expected else "drop"
            else:
                kind = "spike"
        score = spe / self.threshold if self.threshold > 0 else 0.0
        return IntervalScore(True, bool(alarm), float(score), tuple(flows), kind,
                             {"spe": spe, "threshold": self.threshold, "k": self.k})

    def _expected_mbps(self, z, i, resid) -> float:
        normal = (z[i] - resid[i]) * self.col_scale[i] + self.center[i] + np.asarray(self._reference() + np.zeros(z.shape))[i]
        return float(np.expm1(normal)) if self.transform == "log1p" else float(normal)
