"""`auto`: per pair and horizon step, the model of a pool with the lowest recent validation error.

Fit: every pool member is fitted on the series minus its last `validation_fraction`, each one's mean
absolute error per (pair, step ahead) is measured on rolling origins of that tail; per step the member
best over all pairs is the default, and a pair takes another eligible member (one within 25% of the best
over all pairs) only where it beats the default by 2%; the chosen members are refitted on the whole series. Predict: each chosen
member forecasts, and each (pair, step) takes its chosen member's mean and quantiles. A member that
cannot fit (too little history for its season) is left out and named in `skipped`.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .base import Forecaster
from .errors import ForecastInputError
from .series import TrafficSeries

DEFAULT_POOL = ("last_value", "seasonal_naive_day", "seasonal_naive_week", "ets")


class AutoForecaster(Forecaster):
    """Model selection per (pair, step) by validation MAE over a pool of registered forecasters."""

    name = "auto"
    supports_exogenous = False

    def __init__(self, pool: Sequence[str] = DEFAULT_POOL, validation_fraction: float = 0.25,
                 max_horizon: int = 12, max_validation_origins: int = 400, refit: bool = True,
                 member_options: dict[str, dict] | None = None, eligible_margin: float = 0.25,
                 switch_margin: float = 0.02, **kw):
        super().__init__(**kw)
        from .registry import available_forecasters

        unknown = [m for m in pool if m not in available_forecasters() or m == "auto"]
        if unknown or not pool:
            raise ForecastInputError(f"auto: unknown pool model(s) {unknown or '(empty)'}; valid: "
                                     f"{', '.join(m for m in available_forecasters() if m != 'auto')}")
        if not 0 < float(validation_fraction) < 1:
            raise ForecastInputError("auto: validation_fraction must be in (0, 1)")
        self.pool = tuple(pool)
        self.validation_fraction = float(validation_fraction)
        self.max_horizon = int(max_horizon)
        self.max_validation_origins = int(max_validation_origins)
        self.refit = bool(refit)
        self.member_options = {k: dict(v) for k, v in (member_options or {}).items()}  # model → its options
        self.eligible_margin, self.switch_margin = float(eligible_margin), float(switch_margin)
        self.members: list[Forecaster] = []
        self.member_names: list[str] = []
        self.choice = np.zeros((0, 0), dtype=int)        # (pairs, steps) → index into members
        self.validation_mae = np.zeros((0, 0, 0))        # (members, pairs, steps), Mbit/s
        self.skipped: dict[str, str] = {}

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "pool": list(self.pool), "validation_fraction": self.validation_fraction,
                "max_horizon": self.max_horizon, "max_validation_origins": self.max_validation_origins,
                "refit": self.refit, "member_options": self.member_options,
                "eligible_margin": self.eligible_margin, "switch_margin": self.switch_margin}

    @property
    def min_history_steps(self) -> int:
        return max([m.min_history_steps for m in self.members] or [1])

    @property
    def context_steps(self) -> int:
        return max([max(m.context_steps, m.min_history_steps) for m in self.members] or [1])

    def chosen(self) -> dict[str, float]:
        """Share of (pair, step) cells each member was chosen for."""
        if not self.choice.size:
            return {}
        return {name: float((self.choice == i).mean()) for i, name in enumerate(self.member_names)}

    def _fit(self, series: TrafficSeries) -> None:
        from .registry import get_forecaster

        n = series.n_steps
        validation = max(self.max_horizon + 2, int(n * self.validation_fraction))
        stop = n - validation
        fitted, names, self.skipped = [], [], {}
        for name in self.pool:
            model = get_forecaster(name, **self.member_options.get(name, {}))
            try:
                if stop < 2:
                    raise ForecastInputError(f"{n} steps leave no room for a validation window")
                model.fit(series.slice(0, stop))
            except ForecastInputError as exc:  # too short for its season, and the like
                self.skipped[name] = str(exc)
                continue
            fitted.append(model)
            names.append(name)
        if not fitted:
            raise ForecastInputError(f"auto: no model of the pool could be fitted ({self.skipped})")
        horizon = self.max_horizon
        first = max(stop - 1, max(m.min_history_steps for m in fitted) - 1)
        origins = np.arange(first, n - 1)
        if origins.size > self.max_validation_origins:
            origins = np.unique(np.linspace(first, n - 2, self.max_validation_origins).astype(int))
        mae = np.full((len(fitted), series.n_pairs, horizon), np.inf)
        for i, model in enumerate(fitted):
            mean, _ = model.predict_origins(series, origins, horizon)  # (N, P, H)
            err = np.zeros((series.n_pairs, horizon))
            count = np.zeros((series.n_pairs, horizon))
            for h in range(horizon):
                keep = origins + h + 1 < n
                rows = origins[keep] + h + 1
                ok = series.observed[rows]
                diff = np.abs(mean[keep][:, :, h] - series.values_mbps[rows])
                err[:, h] = np.where(ok, diff, 0.0).sum(axis=0)
                count[:, h] = ok.sum(axis=0)
            with np.errstate(invalid="ignore", divide="ignore"):
                mae[i] = np.where(count > 0, err / np.maximum(count, 1), np.inf)
            mae[i][~np.isfinite(mae[i])] = np.inf
        # Guard against choosing by noise: a member far worse over all pairs (more than `eligible_margin`
        # above the best) is not eligible, and a pair leaves the step's best member overall only for one
        # that beats it there by `switch_margin` (a pair without validation data keeps that member).
        pooled = np.array([np.nanmean(np.where(np.isfinite(m), m, np.nan)) if np.isfinite(m).any() else np.inf
                           for m in mae])
        eligible = pooled <= (1 + self.eligible_margin) * pooled.min()
        masked = np.where(eligible[:, None, None], mae, np.inf)
        step_pooled = np.array([[np.nanmean(np.where(np.isfinite(masked[i, :, h]), masked[i, :, h], np.nan))
                                 if np.isfinite(masked[i, :, h]).any() else np.inf for h in range(horizon)]
                                for i in range(len(fitted))])
        default = np.argmin(step_pooled, axis=0)  # (steps,)
        best = np.argmin(masked, axis=0)          # (pairs, steps)
        base = np.take_along_axis(masked, np.broadcast_to(default[None, None, :], (1,) + masked.shape[1:]), 0)[0]
        better = np.take_along_axis(masked, best[None], 0)[0] < (1 - self.switch_margin) * base
        choice = np.where(better, best, default[None, :])
        used = sorted(set(choice.ravel().tolist()))
        remap = {old: new for new, old in enumerate(used)}
        members = []
        for old in used:
            model = fitted[old]
            if self.refit:
                try:
                    model = get_forecaster(names[old], **self.member_options.get(names[old], {})).fit(series)
                except ForecastInputError:
                    pass  # the validation fit stays
            members.append(model)
        self.members = members
        self.member_names = [names[i] for i in used]
        self.choice = np.vectorize(remap.get)(choice).astype(int) if choice.size else choice
        self.validation_mae = mae[used]
        for name in names:
            if names.index(name) not in used:
                self.skipped.setdefault(name, "never the best in validation")

    def _predict_arrays(self, values_mbps, observed, timestamps, horizon):
        n_pairs = values_mbps.shape[1]
        mean = np.zeros((n_pairs, horizon))
        quant = np.zeros((len(self.quantile_levels), n_pairs, horizon))
        steps = np.minimum(np.arange(horizon), self.choice.shape[1] - 1)
        pick = self.choice[:, steps]  # (pairs, horizon)
        for i, model in enumerate(self.members):
            if not (pick == i).any():
                continue
            context = max(model.context_steps, model.min_history_steps)
            tail = slice(max(0, values_mbps.shape[0] - context), values_mbps.shape[0])
            m, q = model._predict_arrays(values_mbps[tail], observed[tail], timestamps[tail], horizon)
            q = _levels(q, model.quantile_levels, self.quantile_levels)
            mask = pick == i
            mean = np.where(mask, m, mean)
            quant = np.where(mask[None], q, quant)
        return mean, quant

    def to_state(self):
        meta, arrays = super().to_state()
        meta["members"] = []
        for i, model in enumerate(self.members):
            member_meta, member_arrays = model.to_state()
            meta["members"].append(member_meta)
            arrays.update({f"m{i}/{k}": v for k, v in member_arrays.items()})
        return meta, arrays

    def _state(self):
        return ({"member_names": self.member_names, "skipped": self.skipped},
                {"auto_choice": self.choice, "auto_validation_mae": self.validation_mae})

    def _restore(self, params, arrays):
        self.member_names = list(params["member_names"])
        self.skipped = dict(params.get("skipped") or {})
        self.choice = np.asarray(arrays["auto_choice"], int)
        self.validation_mae = np.asarray(arrays["auto_validation_mae"], float)

    @classmethod
    def from_saved(cls, meta, arrays) -> "AutoForecaster":
        """Rebuild the selector and its members from one saved file (every member a registered class)."""
        from .registry import forecaster_from_state

        model = cls(**meta["config"])
        members = []
        for i, member_meta in enumerate(meta.get("members") or []):
            prefix = f"m{i}/"
            members.append(forecaster_from_state(member_meta, {k[len(prefix):]: v for k, v in arrays.items()
                                                               if k.startswith(prefix)}))
        model.from_state(meta, arrays)
        if len(members) != len(model.member_names) or model.choice.max(initial=0) >= max(len(members), 1):
            raise ForecastInputError("auto model file: its members do not match its choices")
        model.members = members
        return model


def _levels(quant: np.ndarray, have: Sequence[float], want: Sequence[float]) -> np.ndarray:
    """Quantiles at `want` levels from ones at `have` levels (nearest; the pool shares the default levels)."""
    if tuple(have) == tuple(want):
        return quant
    have = np.asarray(have)
    return quant[[int(np.argmin(np.abs(have - w))) for w in want]]


__all__ = ["AutoForecaster", "DEFAULT_POOL"]
