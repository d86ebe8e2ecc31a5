"""`vnstitch replay`: play real traffic matrices through the controller and simulator, per strategy."""

from __future__ import annotations

import argparse
import sys

from vnstitch.errors import InvalidInput
from vnstitch.experiments.demo import DEMO_DAY, TUNING_DAYS

# Days (0-based) of the bundled Abilene 14 that chose no default (docs/BENCHMARKS.md): a replay of one of
# them measures the allocator on data it was not tuned on. The default, DEMO_DAY, is one of them.
HELD_OUT_DAYS = (10, 13)


def _strategies(values: list[str] | None) -> tuple[str, ...]:
    from vnstitch.experiments.replay import STRATEGIES

    if not values:
        return STRATEGIES
    out = []
    for value in values:
        out.extend(v.strip() for v in value.split(",") if v.strip())
    for name in out:
        if name not in STRATEGIES:
            raise InvalidInput(f"unknown strategy '{name}' (valid: {', '.join(STRATEGIES)})", field="--strategy")
    return tuple(dict.fromkeys(out))


def load_inputs(args):
    """The series and substrate named on the command line (bundled Abilene by default)."""
    from vnstitch.cli.main import quantity_flag
    from vnstitch.experiments.replay import load_inputs as load

    return load(args.dataset, args.topology, args.nodes, quantity_flag(args.interval, "--interval", "duration", "m"),
                quantity_flag(args.default_capacity, "--default-capacity", "bandwidth", "Gbps"),
                quantity_flag(args.aggregate, "--aggregate", "duration", "m"))


def replay_config(args, interval_s: float = 300.0):
    from vnstitch.planning.allocator import AllocatorConfig
    from vnstitch.experiments.replay import ReplayConfig

    steps_per_day = max(1, round(86400 / interval_s))
    if not 0 < args.quantile < 1:
        raise InvalidInput("quantile must lie between 0 and 1", field="--quantile")
    steps = steps_per_day if args.steps is None else args.steps
    if args.horizon < 1 or steps < 1:
        raise InvalidInput("horizon and steps must be at least 1", field="--horizon")
    return ReplayConfig(scale=args.scale, start_step=args.day * steps_per_day if args.start is None else args.start,
                        steps=steps, horizon=args.horizon, quantile=args.quantile, interval_s=interval_s,
                        strategies=_strategies(args.strategy),
                        allocator=AllocatorConfig(quantile=args.quantile, congestion_threshold=args.threshold))


def cmd_replay(args) -> int:
    from vnstitch.experiments.replay import render_table, run_replay

    inputs = load_inputs(args)
    report = run_replay(replay_config(args, inputs[0].interval_seconds), model_name=args.model,
                        model_path=args.model_file, epochs=args.epochs,
                        json_path=args.json, plot_dir=args.plot, store_url=args.record_store,
                        decisions_path=args.decisions, inputs=inputs,
                        log=lambda msg: print(msg, file=sys.stderr))
    window = report["window"]
    name = "Abilene" if args.dataset == "abilene" else args.dataset
    print(f"{name} replay: {window['hours']:g} h from {window['start']} at {report['interval_s']:g} s intervals, "
          f"scale {report['scale']:g}, "
          f"forecaster {report['model'] or '-'} (p{report['quantile'] * 100:.0f}, {report['horizon']} steps ahead)")
    print(render_table(report))
    if args.json:
        print(f"results: {args.json}")
    if args.decisions:
        print(f"decisions: {args.decisions}")
    for path in report.get("plots", []):
        print(f"plot: {path}")
    return 0


def add_replay_arguments(p) -> None:
    p.add_argument("--dataset", default="abilene",
                   help="traffic matrices: abilene (bundled 14 days), or a .npz, .csv/.parquet, SNDlib .xml or "
                        ".hist file (default: abilene)")
    p.add_argument("--nodes", help=".hist: the node names, comma-separated, in the file's order (default: none)")
    p.add_argument("--interval", metavar="DURATION",
                   help=".hist: the interval of the matrices with a unit, e.g. 5m (default: none)")
    p.add_argument("--aggregate", metavar="DURATION",
                   help="replay at a coarser interval (a multiple of the data's) with a unit, e.g. 15m "
                        "(default: the data's own)")
    p.add_argument("--topology", default="abilene",
                   help="substrate: abilene (bundled, SNDlib capacities) or a file `substrate import` reads "
                        "(default: abilene)")
    p.add_argument("--default-capacity", metavar="BANDWIDTH",
                   help="capacity for topology links whose file gives none, e.g. 10Gbps (default: none)")
    p.add_argument("--scale", type=float, default=10.0, metavar="FACTOR",
                   help="traffic multiplier (default: 10: static shortest paths overload links)")
    p.add_argument("--strategy", action="append",
                   help="static, reactive, proactive, oracle (repeat or comma-separate; default: all four)")
    p.add_argument("--day", type=int, default=DEMO_DAY,
                   help=f"replay this day of the data, 0-based (default: {DEMO_DAY}, as `vnstitch demo`). Of the "
                        f"bundled 14, days {' and '.join(map(str, TUNING_DAYS))} tuned the allocator's defaults; "
                        f"days {' and '.join(map(str, HELD_OUT_DAYS))} are held out (not used for tuning; a "
                        "whole day 13 leaves no intervals for the horizon: give it --steps 286)")
    p.add_argument("--start", type=int, metavar="INTERVAL", help="or: first replayed interval (default: --day's first)")
    p.add_argument("--steps", type=int, metavar="N",
                   help="intervals to replay (default: one day at the data's interval, 288 at 5 minutes)")
    p.add_argument("--horizon", type=int, default=2, metavar="STEPS",
                   help="forecast intervals ahead (default: 2 = 10 min at 5-minute data)")
    p.add_argument("--quantile", type=float, default=0.9,
                   help="forecast quantile that sizes stitches, between 0 and 1 (default: 0.9)")
    p.add_argument("--threshold", type=float, default=0.8, metavar="FRACTION",
                   help="predicted link utilisation (fraction of capacity) that counts as congestion (default: 0.8)")
    p.add_argument("--model", default="gru", help="forecaster for the proactive strategy (default: gru)")
    p.add_argument("--model-file", metavar="FILE",
                   help="load the model from here if it exists, else train and save it here (default: train, "
                        "do not save)")
    p.add_argument("--epochs", type=int, help="training epochs for gru/lstm (default: 4)")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON here (default: none)")
    p.add_argument("--plot", metavar="DIR", help="write PNG plots into DIR (default: none)")
    p.add_argument("--decisions", metavar="FILE",
                   help="log every allocator decision, with its reason and forecast, as JSON lines (default: none)")
    p.add_argument("--record-store", help=argparse.SUPPRESS)  # the demo records the predicted graph here


def register(subparsers) -> None:
    p = subparsers.add_parser("replay", help="replay real traffic through the controller under each strategy")
    add_replay_arguments(p)
    p.set_defaults(func=cmd_replay)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="vnstitch")
    register(parser.add_subparsers())
    parsed = parser.parse_args()
    sys.exit(parsed.func(parsed))
