"""Labelled anomaly injection: spikes, ramps, outages and level shifts on one pair or several, sized in
multiples of each pair's own robust spread; deterministic for a seed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .base import robust_scale
from .errors import AnomalyInputError

INJECT_KINDS = ("spike", "ramp", "outage", "level_shift")
DURATION_STEPS = {"spike": 1, "ramp": 12, "outage": 6, "level_shift": 24}


@dataclass(frozen=True)
class InjectedEvent:
    """Ground truth: steps [start, end] inclusive of `kind` on column indices `pairs`; size × spread Mbit/s
    (size is 0 for outages, where the pair drops to zero); sign +1 up, −1 down."""

    start: int
    end: int
    kind: str
    pairs: tuple[int, ...]
    size: float
    sign: int = 1

    def to_dict(self) -> dict:
        return {"start": self.start, "end": self.end, "kind": self.kind, "pairs": list(self.pairs),
                "size": self.size, "sign": self.sign}


def pair_spread(history: np.ndarray) -> np.ndarray:
    """Each pair's robust spread in Mbit/s: 1.4826 × MAD of its one-step differences (σ for Gaussian
    noise), NaN-aware; 0 for pairs that never change."""
    diffs = np.diff(np.asarray(history, float), axis=0)
    return robust_scale(diffs, floor=0.0)


def make_events(n_steps: int, live_pairs: Sequence[int], seed: int, kinds: Sequence[str] = INJECT_KINDS,
                sizes: Sequence[float] = (1, 2, 4, 8), pairs_per_event: Sequence[int] = (1,),
                slot_steps: int = 36, grace_steps: int = 3, margin_steps: int = 0) -> list[InjectedEvent]:
    """One event per slot of `slot_steps` in [margin_steps, n_steps), kinds × sizes × pair counts cycled in a
    seeded random order; each event ends grace_steps before its slot does, so windows never overlap."""
    bad = [k for k in kinds if k not in INJECT_KINDS]
    if bad:
        raise AnomalyInputError(f"unknown injection kind {bad[0]!r}; valid: {', '.join(INJECT_KINDS)}")
    live = np.asarray(list(live_pairs), int)
    if live.size < max(pairs_per_event):
        raise AnomalyInputError(f"{live.size} live pairs; events need {max(pairs_per_event)}")
    if slot_steps < max(DURATION_STEPS[k] for k in kinds) + grace_steps + 1:
        raise AnomalyInputError(f"slot_steps {slot_steps} is too short for the longest event plus grace")
    rng = np.random.default_rng(seed)
    combos = [(k, float(s if k != "outage" else 0), int(n)) for k in kinds for s in sizes for n in pairs_per_event]
    combos = list(dict.fromkeys(combos))
    n_slots = (n_steps - margin_steps) // slot_steps
    order = rng.permutation(max(n_slots, len(combos)))
    events = []
    for slot in range(n_slots):
        kind, size, n_pairs = combos[order[slot] % len(combos)]
        length = DURATION_STEPS[kind]
        room = slot_steps - length - grace_steps
        start = margin_steps + slot * slot_steps + int(rng.integers(0, room + 1))
        pairs = tuple(int(p) for p in rng.choice(live, size=n_pairs, replace=False))
        sign = int(rng.choice([-1, 1])) if kind == "level_shift" else (-1 if kind == "outage" else 1)
        events.append(InjectedEvent(start, start + length - 1, kind, pairs, size, sign))
    return events


def apply_events(values: np.ndarray, events: Sequence[InjectedEvent], spread: np.ndarray) -> np.ndarray:
    """A copy of `values` (steps, pairs) with the events added; gaps (NaN) stay gaps, rates stay >= 0."""
    out = np.array(values, dtype=float, copy=True)
    spread = np.asarray(spread, float)
    for ev in events:
        rows = np.arange(ev.start, ev.end + 1)
        if rows[-1] >= out.shape[0]:
            raise AnomalyInputError(f"event at steps {ev.start}..{ev.end} runs past the {out.shape[0]} steps")
        for p in ev.pairs:
            amount = ev.size * spread[p]
            if ev.kind == "spike":
                out[rows, p] += amount
            elif ev.kind == "ramp":   # rises linearly to size × spread over the event
                out[rows, p] += amount * np.arange(1, rows.size + 1) / rows.size
            elif ev.kind == "level_shift":
                out[rows, p] += ev.sign * amount
            elif ev.kind == "outage":
                out[rows, p] = 0.0
    return np.where(np.isnan(out), np.nan, np.maximum(out, 0.0))


def inject_anomalies(values: np.ndarray, spread: np.ndarray, seed: int, **kw) -> tuple[np.ndarray, list[InjectedEvent]]:
    """make_events over the pairs with a positive spread, applied to `values`: (injected copy, ground truth)."""
    spread = np.asarray(spread, float)
    live = np.flatnonzero(spread > 0)
    events = make_events(np.asarray(values).shape[0], live, seed, **kw)
    return apply_events(values, events, spread), events
