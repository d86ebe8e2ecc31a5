"""Adaptive refinement benchmark (issue 11): `auto` against each model of its pool on held-out Abilene
days, and a replay with an injected regime shift (a pair's traffic doubles) with refinement off and on.

    python bench/refinement.py [--part auto|shift|both] [--models ...] [--model last_value] [--json FILE]

Part `auto`: every model is fitted on days 0–9 of the bundled 14 (2004-03-01..10); one-step and 12-step
forecasts from every origin of the held-out days 10 and 13 (rolling origin, no refit) are scored. Days
11 and 12 are the ones the allocator's defaults were tuned on; `auto`'s own choice is made on the last
25% of its training days (days 7.5–10), never on a scored day.

Part `shift`: the replay of day 10 (×10) with the proactive strategy, the pair with the most traffic
that day multiplied by 2 from 06:00 on; once without the shift, then with it with refinement off and
on. Reported per run: overloaded link-intervals over the day and in each hour after the shift, and the
loop's rolling 90% coverage (window 24) after the shift.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench.common when run as a script

STEPS_PER_DAY = 288
TRAIN_DAYS = 10
HELD_OUT_DAYS = (10, 13)


def part_auto(models: list[str], threads: int, aggregate: int = 1, auto_pool: list[str] | None = None) -> dict:
    """`aggregate` 3: 15-minute steps (the mean of three 5-minute matrices), horizons 1 and 4 (1 h)."""
    from vnstitch.forecast import get_forecaster, load_bundled_abilene
    from vnstitch.forecast.backtest import score

    series = load_bundled_abilene().aggregate(aggregate)
    per_day = STEPS_PER_DAY // aggregate
    horizons = (1, 12 // aggregate)
    train = series.slice(0, TRAIN_DAYS * per_day)
    mask = (train.values_mbps * train.observed).sum(axis=0) > 0
    mask &= np.array([a != b for a, b in series.pairs])
    out = {}
    for name in models:
        options = {"num_threads": threads} if name in ("lstm", "gru") else {}
        if name == "auto" and auto_pool:
            options = {"pool": auto_pool}
        started = time.perf_counter()
        try:
            model = get_forecaster(name, **options).fit(train)
        except Exception as exc:  # noqa: BLE001 - a model that fails is reported, the others still scored
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
            print(f"{name}: {out[name]['error']}", file=sys.stderr)
            continue
        fit_s = time.perf_counter() - started
        row = {"fit_s": round(fit_s, 1)}
        for day in HELD_OUT_DAYS:
            origins = np.arange(day * per_day - 1, (day + 1) * per_day - 1)
            origins = origins[origins + horizons[-1] < series.n_steps]
            mean, quant = model.predict_origins(series, origins, horizons[-1])
            for h in horizons:
                figures = score(series, origins, mean, quant, model.quantile_levels, h, mask)
                row[f"day{day}_h{h}"] = {k: round(v, 4) for k, v in figures.items() if k in ("nmae", "coverage90")}
        if name == "auto":
            row["chosen"] = {k: round(v, 3) for k, v in model.chosen().items()}
        out[name] = row
        print(name, json.dumps(row), file=sys.stderr)
    return out


SETTINGS = ("off", "calibration", "refinement + calibration")


def part_calibration(model_names: list[str], workdir: Path, days: tuple[int, ...] = (10, 11, 12, 13),
                     only: tuple[str, ...] = SETTINGS) -> dict:
    """One replay of `days` (×10, proactive) per model and setting: nothing, online calibration alone, and
    the whole refinement (level correction, adjust, calibration); per day the published bands' coverage,
    reserved/used and overloaded link-intervals."""
    from vnstitch.experiments.replay import ReplayConfig, load_inputs, run_replay

    if list(days) != list(range(days[0], days[0] + len(days))):
        raise SystemExit(f"--days must be consecutive (one replay covers them): got {','.join(map(str, days))}")
    inputs = load_inputs()
    start = days[0] * STEPS_PER_DAY
    out = {"days": list(days), "fit_before_step": start}
    settings = {"off": dict(refine=False, calibrate=False), "calibration": dict(refine=False, calibrate=True),
                "refinement + calibration": dict(refine=True, calibrate=True)}
    for name in model_names:
        out[name] = {}
        for label, kwargs in settings.items():
            if label not in only:
                continue
            config = ReplayConfig(start_step=start, strategies=("proactive",), **kwargs)
            # to the end of the last day, less the forecast's horizon where that is the end of the data
            config.steps = min(len(days) * STEPS_PER_DAY, inputs[0].n_steps - start - config.horizon)
            started = time.perf_counter()
            report = run_replay(config, model_name=name, model_path=str(workdir / f"{name}-before-day{days[0]}.npz"),
                                show_progress=False, inputs=inputs, log=lambda *a: None)
            summary = report["strategies"]["proactive"]
            out[name][label] = {**summary, "wall_s": round(time.perf_counter() - started, 1)}
            print(name, label, json.dumps({k: summary.get(k) for k in (
                "coverage_by_day", "overloaded_link_intervals", "reserved_over_used", "reserved_over_used_by_day",
                "overloaded_by_day")}), file=sys.stderr)
    return out


def part_retrain(model_names: list[str], workdir: Path, days: int = 14) -> dict:
    """A retrain as the controller's trainer runs it (a child process at the lowest priority with one compute
    thread; fit on all but the last 24 intervals, judged there against the champion, saved if it wins) on
    `days` days × every pair of the bundled Abilene data: wall time per model, first with no champion,
    then against the model it just made (so the judging is timed too)."""
    import threading

    from vnstitch.controller.proactive import ModelStore, Trainer
    from vnstitch.forecast import load_bundled_abilene

    series = load_bundled_abilene()
    steps = min(series.n_steps, days * STEPS_PER_DAY)
    values, observed = series.values_mbps[:steps], series.observed[:steps]
    stamps = series.timestamps[:steps]
    models = ModelStore(str(workdir / "retrain"))
    done: dict[str, dict] = {}
    finished = threading.Event()

    def on_done(key: str, record: dict) -> None:
        done[key] = record
        finished.set()
    trainer = Trainer(models, on_done)
    out = {"intervals": steps, "pairs": len(series.pairs), "cpus": os.cpu_count()}
    try:
        for name in model_names:
            row = {}
            champion = ("", "")
            for version, label in ((1, "first"), (2, "against the champion")):
                finished.clear()
                started = time.perf_counter()
                trainer.submit(name, name, version, lambda: (values, observed, stamps), list(series.pairs),
                               series.interval_seconds, 0.0, reason="bench", champion=champion, held_back=24)
                finished.wait()
                record = done[name].get("retrain", {})
                row[label] = {"wall_s": round(time.perf_counter() - started, 1), "decision": record.get("decision"),
                              "message": record.get("message", "")}
                if record.get("decision") == "promoted":
                    path = models.path_for(name, version)
                    champion = (path, models.checksum(path))
                print(name, label, json.dumps(row[label]), file=sys.stderr)
            out[name] = row
    finally:
        trainer.close()
    return out


def _busiest_other(series, nodes, src: str, dst: str, start: int) -> str:
    values = series.values_mbps[start:start + STEPS_PER_DAY]
    return max((n for n in nodes if n not in (src, dst)),
               key=lambda n: float(values[:, series.pairs.index((src, n))].sum()))


def part_shift(model_name: str, workdir: Path, pair_text: str = "", factor: float = 2.0, kind: str = "scale") -> dict:
    from vnstitch.experiments.replay import ReplayConfig, demand_cube, load_inputs, run_replay

    from vnstitch.pathing.paths import PathFinder

    inputs = load_inputs()
    series, topology, nodes = inputs
    day = 10
    start = day * STEPS_PER_DAY
    demand = demand_cube(series, nodes)[start:start + STEPS_PER_DAY].mean(axis=0)
    finder = PathFinder(topology.nodes, topology.links)
    thin = min(topology.links, key=lambda link: link.spec.capacity)  # the OC-48 ATLAng–IPLSng
    ends = set(thin.spec.endpoints)
    crossing = []  # pairs whose default route crosses the thin link: a doubling there overloads it
    for a in nodes:
        for b, path in finder.lowest_latency_from(a, [n for n in nodes if n != a]).items():
            if path is not None and any({x, y} == ends for x, y in zip(path.nodes, path.nodes[1:])):
                crossing.append((demand[nodes.index(a), nodes.index(b)], a, b))
    _, *pair = max(crossing)
    pair = tuple(pair_text.split("->")) if pair_text else tuple(pair)
    shift_at = start + 72  # 06:00
    factor = 1.0 if kind == "move" else factor
    to = _busiest_other(series, nodes, *pair, start) if kind == "move" else ""
    shift = (*pair, shift_at, factor, kind, to)
    out = {"pair": f"{pair[0]}->{pair[1]}", "shift_at_step": shift_at, "factor": factor, "model": model_name,
           "kind": kind, **({"moved_to": to} if to else {})}
    runs = {"no shift": (None, False), "shift, refinement off": (shift, False), "shift, refinement on": (shift, True)}
    for label, (shift, refine) in runs.items():
        config = ReplayConfig(start_step=start, steps=STEPS_PER_DAY, strategies=("proactive",), shift=shift,
                              refine=refine)
        # a shifted series is fitted afresh (a 'new' pair must be unseen by the model), under its own name
        artifact = f"{model_name}-before-day{day}" + (f"-{kind}-{'-'.join(pair)}" if shift else "") + ".npz"
        report = run_replay(config, model_name=model_name, model_path=str(workdir / artifact),
                            show_progress=False, inputs=inputs, log=lambda *a: None, with_series=True)
        series_of = report["series"]["proactive"]
        after = 72
        overload = series_of["overloaded"]
        coverage = series_of["coverage90"]
        hourly = [sum(overload[k:k + 12]) for k in range(after, len(overload), 12)]
        pair_cov = series_of["pair_coverage90"]
        recovered = next((k for k in range(after, len(pair_cov)) if all(
            c is not None and c >= 0.88 for c in pair_cov[k:])), None) if shift else None
        out[label] = {"summary": report["strategies"]["proactive"], "overloaded_after_shift_by_hour": hourly,
                      "intervals_until_pair_coverage_holds_088": None if recovered is None else recovered - after,
                      "overloaded_before_shift": sum(overload[:after]),
                      "coverage90_after_shift": [None if c is None else round(c, 3) for c in coverage[after::6]],
                      "pair_coverage90_after_shift": [None if c is None else round(c, 3)
                                                      for c in series_of["pair_coverage90"][after::6]]}
        print(label, json.dumps(out[label]["summary"]), file=sys.stderr)
    base = out["no shift"]["overloaded_after_shift_by_hour"]
    for label in ("shift, refinement off", "shift, refinement on"):
        hourly = out[label]["overloaded_after_shift_by_hour"]
        back = next((h for h in range(len(hourly)) if all(x <= y for x, y in zip(hourly[h:], base[h:]))), None)
        out[label]["hours_until_overloads_at_no_shift_level"] = back
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("auto", "shift", "calibration", "retrain", "both"), default="both")
    parser.add_argument("--kind", default="scale", choices=("scale", "new", "move"),
                        help="part shift: the pair × factor (scale), a pair that appears (new), or the source's "
                             "traffic to the pair's destination moving to its busiest other one (move)")
    parser.add_argument("--days", default="10,11,12,13", help="part calibration: the replayed days")
    parser.add_argument("--settings", default=",".join(SETTINGS),
                        help="part calibration: which of " + ", ".join(SETTINGS) + " (default: all)")
    parser.add_argument("--models", default="last_value,seasonal_naive_day,seasonal_naive_week,ets,arima,auto",
                        help="models of part auto (default: the pool and auto; add gru,lstm for the neural ones)")
    parser.add_argument("--model", default="seasonal_naive_day,last_value",
                        help="forecasters of part shift, comma-separated (default: seasonal_naive_day,last_value)")
    parser.add_argument("--pair", default="", help="SRC->DST to shift (default: the busiest pair across the "
                                                   "thin ATLAng-IPLSng link on day 10)")
    parser.add_argument("--factor", type=float, default=2.0, help="the shift's factor (default: 2)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--auto-pool", default="", metavar="A,B,...",
                        help="the members auto chooses from (default: auto's own pool)")
    parser.add_argument("--aggregate", type=int, default=1,
                        help="part auto at this many 5-minute steps per step: 3 = 15 minutes, horizons 1 and 4 "
                             "(default: 1, horizons 1 and 12)")
    parser.add_argument("--workdir", type=Path, default=Path("out/refinement"))
    parser.add_argument("--json", type=Path, default=Path("out/refinement/refinement.json"))
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args.workdir.mkdir(parents=True, exist_ok=True)
    report: dict = {"command": "python bench/refinement.py " + " ".join(sys.argv[1:] if argv is None else argv)}
    started = time.perf_counter()
    if args.part in ("auto", "both"):
        report["auto"] = part_auto(args.models.split(","), args.threads, args.aggregate,
                                   [m for m in args.auto_pool.split(",") if m] or None)
    if args.part in ("shift", "both"):
        report["shift"] = {name: part_shift(name, args.workdir, args.pair, args.factor, args.kind)
                           for name in args.model.split(",")}
    if args.part == "retrain":
        report["retrain"] = part_retrain(args.models.split(","), args.workdir)
    if args.part == "calibration":
        report["calibration"] = part_calibration(args.model.split(","), args.workdir,
                                                 tuple(int(d) for d in args.days.split(",")),
                                                 tuple(x.strip() for x in args.settings.split(",")))
    report["wall_s"] = round(time.perf_counter() - started, 1)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
