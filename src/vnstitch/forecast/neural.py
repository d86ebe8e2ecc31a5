"""LSTM/GRU forecasters trained across all pairs at once, with quantile outputs (torch imported lazily)."""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from .base import Forecaster, log_values
from .errors import ForecastInputError
from .features import time_features
from .result import tidy_quantiles
from .series import TrafficSeries

DAY_SECONDS = 86400
WEEK_SECONDS = 7 * DAY_SECONDS


class RNNForecaster(Forecaster):
    """Global LSTM/GRU over masked, variable-length windows of log1p rates; pinball loss on all levels.

    Each pair is scaled by its own typical one-step log change and the network predicts the
    change from the last observed value; inputs are the window, its mask, time-of-day and
    day-of-week, calendar events, and the same-time values one day and one week earlier.
    """

    supports_exogenous = True
    supports_calendar = True
    supports_variable_length = True

    def __init__(self, cell: str = "lstm", window: int = 72, min_window: int = 12, hidden_size: int = 64,
                 head_size: int = 128, max_horizon: int = 12, epochs: int = 4, batch_size: int = 512,
                 samples_per_epoch: int = 30000, learning_rate: float = 2e-3, weight_power: float = 1.0,
                 truncate_probability: float = 0.3, validation_fraction: float = 0.1, seed: int = 0,
                 num_threads: int | None = None, predict_threads: int = 1, week_lag: bool = False,
                 node_totals: bool = True, median_weight: float = 0.0, device: str = "cpu",
                 quantile_levels=None):
        super().__init__(**({"quantile_levels": quantile_levels} if quantile_levels else {}))
        if cell not in ("lstm", "gru"):
            raise ForecastInputError(f"cell must be 'lstm' or 'gru'; got '{cell}'")
        if not 1 <= int(min_window) <= int(window):
            raise ForecastInputError(f"need 1 <= min_window <= window; got {min_window}, {window}")
        self.cell, self.name = cell, cell
        self.window, self.min_window = int(window), int(min_window)
        self.hidden_size, self.head_size = int(hidden_size), int(head_size)
        self.max_horizon, self.epochs, self.batch_size = int(max_horizon), int(epochs), int(batch_size)
        self.samples_per_epoch, self.learning_rate = int(samples_per_epoch), float(learning_rate)
        self.weight_power, self.truncate_probability = float(weight_power), float(truncate_probability)
        self.validation_fraction, self.seed, self.num_threads = float(validation_fraction), int(seed), num_threads
        self.week_lag, self.predict_threads = bool(week_lag), int(predict_threads)
        self.node_totals = bool(node_totals)
        if not float(median_weight) >= 0:  # also refuses NaN
            raise ForecastInputError(f"median_weight must be >= 0; got {median_weight}")
        self.median_weight = float(median_weight)
        if device not in ("cpu", "cuda") and not str(device).startswith("cuda:"):
            raise ForecastInputError(f"device must be 'cpu', 'cuda' or 'cuda:N'; got {device!r}")
        self.device = str(device)   # where training runs; predictions always run on the CPU
        self.show_progress = False  # a tqdm bar over training batches on stderr (set by the backtest CLI)
        self.scale = np.zeros(0)       # per pair: typical |one-step change| in log1p space
        self.level = np.zeros(0)       # per pair: mean log1p rate over the fit data
        self.network_state: dict[str, np.ndarray] = {}
        self.training_log: list[dict[str, float]] = []
        self._net = None

    def get_config(self) -> dict[str, Any]:
        keys = ("cell", "window", "min_window", "hidden_size", "head_size", "max_horizon", "epochs", "batch_size",
                "samples_per_epoch", "learning_rate", "weight_power", "truncate_probability",
                "validation_fraction", "seed", "num_threads", "predict_threads", "week_lag", "node_totals",
                "median_weight", "device")
        return {**super().get_config(), **{k: getattr(self, k) for k in keys}}

    @property
    def min_history_steps(self) -> int:
        return self.min_window

    @property
    def context_steps(self) -> int:
        return self.window + (self._week_steps if self.week_lag else self._day_steps)

    @property
    def _day_steps(self) -> int:
        return int(round(DAY_SECONDS / (self.interval_seconds or 300.0)))

    @property
    def _week_steps(self) -> int:
        return int(round(WEEK_SECONDS / (self.interval_seconds or 300.0)))

    @property
    def _n_time(self) -> int:
        return 4 + (len(self.calendar.names) if self.calendar else 0)

    # ------------------------------------------------------------------ features
    def _totals(self, values_mbps: np.ndarray, observed: np.ndarray) -> np.ndarray:
        """(steps, pairs, 2): log1p of the pair's source total and destination total rates."""
        vals = np.where(observed, values_mbps, 0.0)
        srcs = sorted({p[0] for p in self.pairs})
        dsts = sorted({p[1] for p in self.pairs})
        src_idx = np.array([srcs.index(p[0]) for p in self.pairs])
        dst_idx = np.array([dsts.index(p[1]) for p in self.pairs])
        src_tot = vals @ np.eye(len(srcs))[src_idx]     # (steps, sources) via one-hot membership
        dst_tot = vals @ np.eye(len(dsts))[dst_idx]
        return np.log1p(np.stack([src_tot[:, src_idx], dst_tot[:, dst_idx]], axis=2))

    def _inputs(self, log_vals, observed, feats, origins, pair_idx, horizon, lengths=None, totals=None):
        """Arrays for the network from padded history arrays; origins index the last history step."""
        w, hmax = self.window, self.max_horizon
        offsets = np.arange(-w + 1, 1)
        rows = origins[:, None] + offsets[None, :]                      # (B, W)
        lv, ob = log_vals[rows, pair_idx[:, None]], observed[rows, pair_idx[:, None]]
        if lengths is not None:
            ob = ob & (offsets[None, :] > -lengths[:, None])
        last_pos = w - 1 - np.argmax(ob[:, ::-1], axis=1)
        last = lv[np.arange(len(origins)), last_pos]
        scale = self.scale[pair_idx]
        seq = np.where(ob, (lv - last[:, None]) / scale[:, None], 0.0)
        seq_time = feats[rows]                                           # (B, W, F)
        steps = np.arange(1, hmax + 1)
        lag_feats = []
        for period in (self._day_steps, self._week_steps) if self.week_lag else (self._day_steps,):
            past_now = origins - period
            past_future = origins[:, None] + steps[None, :] - period
            ok = (past_now >= 0)[:, None] & (past_future >= 0)
            pn, pf = np.maximum(past_now, 0), np.maximum(past_future, 0)
            ok &= observed[pn, pair_idx][:, None] & observed[pf, pair_idx[:, None]]
            change = (log_vals[pf, pair_idx[:, None]] - log_vals[pn, pair_idx][:, None]) / scale[:, None]
            lag_feats += [np.where(ok, np.clip(change, -20, 20), 0.0), ok.astype(float)]
        future_rows = np.minimum(origins[:, None] + steps[None, :], len(feats) - 1)
        future_time = feats[future_rows][:, :, 4:].reshape(len(origins), -1)  # calendar flags of target steps
        static = np.stack([(self.level[pair_idx] - 3.0) / 2.0, np.log(scale), (last - 3.0) / 2.0], axis=1)
        head = np.concatenate([static, feats[origins], *lag_feats, future_time], axis=1)
        parts = [seq[..., None], ob[..., None].astype(float), seq_time]
        if self.node_totals:
            tot = totals[rows, pair_idx[:, None]]                        # (B, W, 2)
            parts.append(np.clip((tot - tot[:, -1:, :]) * 10.0, -20, 20))
        x = np.concatenate(parts, axis=2)
        return x.astype(np.float32), head.astype(np.float32), last, scale

    @property
    def _n_seq(self) -> int:
        return 2 + self._n_time + (2 if self.node_totals else 0)

    def _head_size_in(self) -> int:
        lags = 2 if self.week_lag else 1
        return 3 + self._n_time + 2 * lags * self.max_horizon + (self._n_time - 4) * self.max_horizon

    # ------------------------------------------------------------------ fit
    def _fit(self, series: TrafficSeries) -> None:
        torch = _torch(self.num_threads)
        device = _training_device(torch, self.device)
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        log_vals = log_values(series.values_mbps)
        obs = series.observed
        steps = np.abs(np.diff(log_vals, axis=0))
        both = obs[1:] & obs[:-1]
        with np.errstate(all="ignore"):
            typical = np.nanmean(np.where(both, steps, np.nan), axis=0)
            level = np.nanmean(np.where(obs, log_vals, np.nan), axis=0)
        self.scale = np.maximum(np.nan_to_num(typical, nan=0.05), 0.01)
        self.level = np.nan_to_num(level)
        feats = time_features(series.timestamps, self.calendar)
        pad = self.window
        log_p = np.vstack([np.zeros((pad, series.n_pairs)), log_vals])
        obs_p = np.vstack([np.zeros((pad, series.n_pairs), bool), obs])
        feats_p = np.vstack([np.repeat(feats[:1], pad, axis=0), feats])
        totals_p = np.concatenate([np.zeros((pad, series.n_pairs, 2)), self._totals(series.values_mbps, obs)])
        origin_lo = pad + self.min_window - 1
        origin_hi = pad + series.n_steps - 1 - self.max_horizon
        if origin_hi <= origin_lo:
            raise ForecastInputError(f"{self.name}: fit data of {series.n_steps} steps is too short for "
                                     f"min_window {self.min_window} and max_horizon {self.max_horizon}")
        split = origin_hi - int((origin_hi - origin_lo) * self.validation_fraction)
        active = np.flatnonzero(obs.any(axis=0) & (self.level > 1e-4))
        weight = np.expm1(self.level) * self.scale
        weight = (weight / weight[active].mean()) ** self.weight_power if active.size else np.ones_like(weight)
        self._net = _build_network(self.cell, self._n_seq, self.hidden_size, self._head_size_in(),
                                   self.head_size, self.max_horizon, self.quantile_levels).to(device)
        opt = torch.optim.Adam(self._net.parameters(), lr=self.learning_rate)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, self.epochs))
        levels = torch.tensor(self.quantile_levels, dtype=torch.float32, device=device)
        median = int(np.argmin(np.abs(np.asarray(self.quantile_levels) - 0.5)))

        def batch(origins, pairs, truncate):
            lengths = None
            if truncate:
                cut = rng.random(len(origins)) < self.truncate_probability
                lengths = np.where(cut, rng.integers(self.min_window, self.window + 1, len(origins)), self.window)
            x, head, last, scale = self._inputs(log_p, obs_p, feats_p, origins, pairs, self.max_horizon, lengths,
                                                totals_p)
            rows = origins[:, None] + np.arange(1, self.max_horizon + 1)[None, :]
            target = (log_p[rows, pairs[:, None]] - last[:, None]) / scale[:, None]
            ok = obs_p[rows, pairs[:, None]]
            w = weight[pairs][:, None] * ok
            return (torch.from_numpy(x).to(device), torch.from_numpy(head).to(device),
                    torch.from_numpy(np.clip(target, -50, 50).astype(np.float32)).to(device),
                    torch.from_numpy(w.astype(np.float32)).to(device))

        def loss_of(out, target, w):
            err = target[:, :, None] - out                              # (B, H, Q)
            pinball = torch.maximum(levels * err, (levels - 1) * err)
            # the median (the point forecast) gets extra weight: its absolute error is what NMAE scores
            loss = pinball.mean(dim=2) + self.median_weight * pinball[:, :, median]
            return (loss * w).sum() / w.sum().clamp_min(1e-6)

        val_o = np.repeat(np.arange(split, origin_hi + 1), len(active))
        val_p = np.tile(active, origin_hi + 1 - split)
        if len(val_o) > 20000:
            pick = rng.choice(len(val_o), 20000, replace=False)
            val_o, val_p = val_o[pick], val_p[pick]
        best, best_state = np.inf, None
        self.training_log = []
        from vnstitch.optional import progress_bar

        bar = progress_bar(self.epochs * self.samples_per_epoch, desc=f"{self.name} train", unit="sample",
                   disable=not self.show_progress, leave=False)
        for epoch in range(self.epochs):
            started = time.perf_counter()
            self._net.train()
            n = self.samples_per_epoch
            origins = rng.integers(origin_lo, max(origin_lo + 1, split - self.max_horizon), n)
            pairs = active[rng.integers(0, len(active), n)]
            total = 0.0
            for lo in range(0, n, self.batch_size):
                x, head, target, w = batch(origins[lo:lo + self.batch_size], pairs[lo:lo + self.batch_size], True)
                loss = loss_of(self._net(x, head), target, w)
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self._net.parameters(), 1.0)
                opt.step()
                total += loss.item() * len(x)
                bar.update(len(x))
            sched.step()
            val = self._evaluate_loss(batch, loss_of, val_o, val_p, torch)
            self.training_log.append({"epoch": epoch + 1, "train_loss": total / n, "val_loss": val,
                                      "seconds": time.perf_counter() - started})
            if val < best or best_state is None:
                best = val
                best_state = {k: v.detach().to("cpu", copy=True) for k, v in self._net.state_dict().items()}
        bar.close()
        self._net = self._net.to("cpu")   # predictions (small batches, every interval) run on the CPU
        self._net.load_state_dict(best_state)
        self._net.eval()
        self.network_state = {k: v.numpy().copy() for k, v in best_state.items()}

    def _evaluate_loss(self, batch, loss_of, origins, pairs, torch) -> float:
        if len(origins) == 0:
            return 0.0
        self._net.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for lo in range(0, len(origins), 4096):
                x, head, target, w = batch(origins[lo:lo + 4096], pairs[lo:lo + 4096], False)
                total += float(loss_of(self._net(x, head), target, w)) * len(x)
                count += len(x)
        return total / count

    # ------------------------------------------------------------------ predict
    def _predict_arrays(self, values_mbps, observed, timestamps, horizon):
        mean, quant = self._predict_many(log_values(values_mbps), observed, timestamps,
                                         np.array([values_mbps.shape[0] - 1]), horizon)
        return mean[0], quant[0]

    def predict_origins(self, series, origins, horizon, progress=None):
        """Batched backtest: many origins per network call."""
        self._check_fitted()
        series = self._align(series)
        log_vals = log_values(series.values_mbps)
        origins = np.asarray(origins)
        means, quants = [], []
        for lo in range(0, len(origins), 64):
            chunk = origins[lo:lo + 64]
            mean, quant = self._predict_many(log_vals, series.observed, series.timestamps, chunk, horizon)
            means.append(mean)
            quants.append(quant)
            if progress is not None:
                progress.update(len(chunk))
        return np.maximum(np.concatenate(means), 0.0), tidy_quantiles(np.concatenate(quants), axis=1)

    def _predict_many(self, log_vals, observed, timestamps, origins, horizon):
        """mean (N, P, H) and quantiles (N, Q, P, H) for origins into the given arrays."""
        torch = _torch(None)
        net = self._network()
        n_pairs = log_vals.shape[1]
        pad = self.window
        step = np.timedelta64(int(round(self.interval_seconds)), "s")
        log_p = np.vstack([np.zeros((pad, n_pairs)), log_vals])
        obs_p = np.vstack([np.zeros((pad, n_pairs), bool), observed])
        future = timestamps[-1] + step * np.arange(1, self.max_horizon + 1)
        feats = time_features(np.concatenate([timestamps, future]), self.calendar)
        feats_p = np.vstack([np.repeat(feats[:1], pad, axis=0), feats])
        orig = np.repeat(np.asarray(origins) + pad, n_pairs)
        pairs = np.tile(np.arange(n_pairs), len(origins))
        totals_p = np.concatenate([np.zeros((pad, n_pairs, 2)), self._totals(np.expm1(log_vals), observed)])
        x, head, last, scale = self._inputs(log_p, obs_p, feats_p, orig, pairs, self.max_horizon, None, totals_p)
        threads = torch.get_num_threads()
        torch.set_num_threads(self.predict_threads)  # one small batch: extra threads only add sync cost
        try:
            with torch.no_grad():
                out = net(torch.from_numpy(x), torch.from_numpy(head)).numpy().astype(float)  # (B, Hmax, Q)
        finally:
            torch.set_num_threads(threads)
        out = _extend(out, horizon)
        log_q = last[:, None, None] + scale[:, None, None] * out
        quant = np.expm1(log_q).reshape(len(origins), n_pairs, horizon, -1).transpose(0, 3, 1, 2)
        median = int(np.argmin(np.abs(np.asarray(self.quantile_levels) - 0.5)))
        return quant[:, median], quant

    def _network(self):
        if self._net is None:
            torch = _torch(self.num_threads)
            self._net = _build_network(self.cell, self._n_seq, self.hidden_size, self._head_size_in(),
                                       self.head_size, self.max_horizon, self.quantile_levels)
            self._net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in self.network_state.items()})
            self._net.eval()
        return self._net

    # ------------------------------------------------------------------ state
    def _state(self):
        arrays = {"scale": self.scale, "level": self.level}
        arrays.update({f"net.{k}": v for k, v in self.network_state.items()})
        return {"training_log": self.training_log}, arrays

    def _restore(self, params, arrays):
        self.scale = np.asarray(arrays["scale"], float)
        self.level = np.asarray(arrays["level"], float)
        self.network_state = {k[4:]: np.asarray(v) for k, v in arrays.items() if k.startswith("net.")}
        self.training_log = list(params.get("training_log", []))
        self._net = None
        try:
            self._network()  # fail at load, not at the first predict, if the file is from another layout
        except RuntimeError as exc:
            raise ForecastInputError(f"saved {self.name} network does not fit this version's layout: "
                                     f"{str(exc).splitlines()[0]}") from None


def _extend(out: np.ndarray, horizon: int) -> np.ndarray:
    """Steps past the trained horizon repeat the last step's median and widen like sqrt(step)."""
    hmax = out.shape[1]
    if horizon <= hmax:
        return out[:, :horizon]
    extra = np.arange(hmax + 1, horizon + 1)
    last = out[:, -1:, :]
    centre = np.median(last, axis=2, keepdims=True)
    grown = centre + (last - centre) * np.sqrt(extra / hmax)[None, :, None]
    return np.concatenate([out, grown], axis=1)


def _training_device(torch, wanted: str):
    """torch.device for training; a GPU asked for but absent is an error that says why, not a silent CPU run."""
    if wanted == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        why = ("this torch is a CPU-only build" if torch.version.cuda is None
               else f"torch (CUDA {torch.version.cuda}) sees no GPU")
        raise ForecastInputError(f"device {wanted!r} asked for, but {why}; use device 'cpu' (the default)")
    index = int(wanted.split(":", 1)[1]) if ":" in wanted else 0
    if index >= torch.cuda.device_count():
        raise ForecastInputError(f"device {wanted!r} asked for, but only {torch.cuda.device_count()} GPU(s) are visible")
    return torch.device(wanted)


def _torch(num_threads: int | None):
    # Idle OpenMP threads sleep instead of spinning (torch's default spins): on a small shared machine
    # spinning took about half the CPU of a training run. Only effective before torch's first import;
    # a value the user set wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    if num_threads:
        torch.set_num_threads(int(num_threads))
    return torch


def _build_network(cell, n_inputs, hidden_size, n_head_inputs, head_size, horizon, levels):
    """The torch module: RNN over the window, MLP head giving non-crossing quantiles per step."""
    import torch
    from torch import nn

    median = int(np.argmin(np.abs(np.asarray(levels) - 0.5)))
    n_levels = len(levels)

    class QuantileRNN(nn.Module):
        def __init__(self):
            super().__init__()
            rnn = nn.LSTM if cell == "lstm" else nn.GRU
            self.rnn = rnn(n_inputs, hidden_size, batch_first=True)
            self.head = nn.Sequential(nn.Linear(hidden_size + n_head_inputs, head_size), nn.ReLU(),
                                      nn.Linear(head_size, head_size), nn.ReLU(),
                                      nn.Linear(head_size, horizon * n_levels))

        def forward(self, x, head):
            _, state = self.rnn(x)
            hidden = state[0][-1] if isinstance(state, tuple) else state[-1]
            raw = self.head(torch.cat([hidden, head], dim=1)).view(-1, horizon, n_levels)
            centre = raw[:, :, median:median + 1]
            gaps = nn.functional.softplus(raw) + 1e-4
            up = torch.cumsum(gaps[:, :, median + 1:], dim=2)
            down = torch.flip(torch.cumsum(torch.flip(gaps[:, :, :median], [2]), dim=2), [2])
            return torch.cat([centre - down, centre, centre + up], dim=2)

    return QuantileRNN()
