"""`vnstitch forecast eval|train|predict|status|retrain|rollback`: backtest, train and use traffic
forecasters; see how a ForecastPolicy's forecast does against what happened, retrain it, roll it back."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers) -> argparse.ArgumentParser:
    """Add the `forecast` command group to an argparse subparsers object."""
    parser = subparsers.add_parser("forecast", help="traffic forecasting: eval, train, predict",
                                   description="Backtest, train and run traffic forecasters.")
    sub = parser.add_subparsers(dest="forecast_command", metavar="{eval,train,predict,status,retrain,rollback}")
    sub.required = True

    ev = sub.add_parser("eval", help="rolling-origin backtest (60%% train, 15%% calibrate, 25%% test)")
    _data_args(ev)
    ev.add_argument("--horizon", default="1,12", metavar="STEPS",
                    help="comma-separated intervals ahead to score (default: 1,12 = 5 min and 1 h at 5-minute data)")
    ev.add_argument("--models", default=None,
                    help="comma-separated model names (default: the pool without auto: last_value, "
                         "seasonal_naive_day, seasonal_naive_week, ets, arima, lstm, gru)")
    ev.add_argument("--option", action="append", default=[], metavar="MODEL.KEY=VALUE",
                    help="model option, e.g. lstm.epochs=4 (repeatable; default: none)")
    ev.add_argument("--json", type=Path, metavar="FILE", help="write results as JSON to this file (default: none)")
    ev.add_argument("--plot", type=Path, metavar="FILE",
                    help="write a PNG of forecast vs actual for the largest pairs (default: none)")
    ev.add_argument("--no-calibrate", action="store_true", help="skip conformal calibration")
    ev.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    _device_arg(ev)
    ev.add_argument("--quiet", action="store_true", help="no progress bars")
    ev.set_defaults(func=cmd_eval)

    tr = sub.add_parser("train", help="fit a model (and calibrate it) and save it to a file")
    _data_args(tr)
    tr.add_argument("--model", required=True, help="model name, e.g. gru, seasonal_naive_day (required)")
    tr.add_argument("--out", required=True, type=Path, metavar="FILE", help="model file to write (.npz) (required)")
    tr.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                    help="model option (repeatable; default: none)")
    tr.add_argument("--calibration-fraction", type=float, default=0.2, metavar="FRACTION",
                    help="last fraction of the data kept for conformal calibration (0 = none; default: 0.2)")
    tr.add_argument("--calendar", type=Path, metavar="FILE",
                    help="YAML list of scheduled events (name, start, duration_seconds, repeat) (default: none)")
    tr.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    _device_arg(tr)
    tr.set_defaults(func=cmd_train)

    pr = sub.add_parser("predict", help="load a saved model and forecast from the end of a history")
    _data_args(pr)
    pr.add_argument("--model-file", required=True, type=Path, metavar="FILE",
                    help="file written by `forecast train` (required)")
    pr.add_argument("--horizon", type=int, default=12, metavar="STEPS",
                    help="intervals ahead (default: 12 = 1 h at 5-minute data)")
    pr.add_argument("--origin", type=int, default=None, metavar="INDEX",
                    help="index of the last history interval (default: the last)")
    pr.add_argument("--pairs", default=None, help="comma-separated SRC->DST pairs to print (default: the 5 largest)")
    pr.add_argument("--out", type=Path, metavar="FILE",
                    help="write all pairs to .csv or .json instead of printing (default: print)")
    pr.add_argument("--destinations", action="store_true", help="also print destination shares per source")
    pr.set_defaults(func=cmd_predict)

    st = sub.add_parser("status", help="a forecast policy's forecast against what happened, its model and retrains",
                        epilog="example:\n  vnstitch forecast status orders --tenant acme --pairs")
    st.add_argument("policy", help="ForecastPolicy name (required)")
    st.add_argument("--tenant", help="the policy's tenant (default: 'default', or the token's)")
    st.add_argument("--pairs", action="store_true", help="every pair's rolling figures (default: the worst 5)")
    from vnstitch.cli.output import add_output_argument

    add_output_argument(st, ("table", "json", "yaml"))
    st.set_defaults(func=cmd_status)

    rt = sub.add_parser("retrain", help="ask the proactive loop to retrain a policy's model now (in the background; "
                                        "the new model replaces the current one only if it does better)",
                        epilog="example:\n  vnstitch forecast retrain orders --tenant acme")
    rt.add_argument("policy", help="ForecastPolicy name (required)")
    rt.add_argument("--tenant", help="the policy's tenant (default: 'default', or the token's)")
    rt.set_defaults(func=cmd_retrain)

    rb = sub.add_parser("rollback", help="ask the proactive loop to forecast with an earlier model version",
                        epilog="example:\n  vnstitch forecast rollback orders --tenant acme --version 2")
    rb.add_argument("policy", help="ForecastPolicy name (required)")
    rb.add_argument("--version", type=int, default=None, metavar="N",
                    help="the version to use (default: the one before the current)")
    rb.add_argument("--tenant", help="the policy's tenant (default: 'default', or the token's)")
    rb.set_defaults(func=cmd_rollback)
    return parser


def _device_arg(parser) -> None:
    parser.add_argument("--device", default="cpu", metavar="DEVICE",
                        help="where LSTM/GRU training runs: cpu, cuda or cuda:N (predictions stay on the CPU; "
                             "an absent GPU is an error, not a silent CPU run) (default: cpu)")


def _neural_options(options: dict, args, names=("lstm", "gru")) -> None:
    """--threads and --device into the neural models' options (an explicit --option wins)."""
    for name in names:
        if args.threads:
            options.setdefault(name, {}).setdefault("num_threads", args.threads)
        if args.device != "cpu":
            options.setdefault(name, {}).setdefault("device", args.device)


def _data_args(parser) -> None:
    parser.add_argument("--dataset", default="abilene",
                        help="abilene (bundled 14 days), abilene-full (needs --data-dir) or a data file path "
                             "(default: abilene)")
    parser.add_argument("--data-dir", type=Path, default=None, metavar="DIR",
                        help="folder that relative dataset paths are read from (default: the current directory)")
    parser.add_argument("--nodes", default=None, metavar="A,B,...",
                        help="node order of a .hist file's matrices (required there; also AbileneTM and SNDlib "
                             "XML) (default: none)")
    parser.add_argument("--interval", default=None, metavar="DURATION",
                        help="time between matrices, e.g. 300s or 15m (required for .hist; overrides a table's "
                             "or SNDlib files' timestamps) (default: the data's)")


def load_data(args):
    """The dataset named by --dataset/--data-dir/--nodes/--interval."""
    return load_named(args.dataset, args.nodes, args.interval, args.data_dir)


def load_named(dataset: str, nodes: str | None = None, interval: str | None = None, data_dir=None):
    """A dataset from the CLI's words: `nodes` 'A,B,…', `interval` a duration ('15m'); shared with
    `telemetry push`."""
    from vnstitch.forecast import load_dataset
    from vnstitch.units import parse_duration

    order = [n.strip() for n in nodes.split(",") if n.strip()] if nodes else None
    seconds = parse_duration(interval) if interval else None
    return load_dataset(dataset, data_dir, nodes=order, interval_seconds=seconds)


def _options(items, prefix: str | None = None) -> dict:
    """'model.key=value' (or 'key=value') strings → {model: {key: value}}, values parsed as YAML scalars."""
    import yaml

    out: dict = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"option '{item}' is not KEY=VALUE")
        value = yaml.safe_load(raw)
        if prefix is None:
            model, dot, name = key.partition(".")
            if not dot:
                raise ValueError(f"option '{item}' must be MODEL.KEY=VALUE")
            out.setdefault(model, {})[name] = value
        else:
            out[key] = value
    return out


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def cmd_eval(args) -> int:
    """Run the backtest and print a table; optionally write JSON and a PNG."""
    from vnstitch.forecast import ForecastInputError, available_forecasters
    from vnstitch.forecast.backtest import DEFAULT_MODELS, plot_runs, results_table, run_backtest

    try:
        horizons = [int(h) for h in str(args.horizon).split(",") if h.strip()]
        models = [m.strip() for m in args.models.split(",")] if args.models else list(DEFAULT_MODELS)
        unknown = [m for m in models if m not in available_forecasters()]
        if unknown:
            return _fail(f"unknown model(s) {unknown}; valid: {', '.join(available_forecasters())}")
        options = _options(args.option)
        if args.plot:
            from vnstitch.optional import pyplot

            pyplot()  # a missing `plots` extra fails now, not after the backtest
        _neural_options(options, args)
        series = load_data(args)
        runs = run_backtest(series, models, horizons, options, calibrate=not args.no_calibrate,
                            progress=not args.quiet)
    except (ForecastInputError, ValueError) as exc:
        return _fail(str(exc))
    rows = [row for run in runs for row in run.results]
    scored = [run for run in runs if not run.error]
    print(f"dataset {args.dataset}: {series.n_steps} steps x {series.n_pairs} pairs, "
          f"interval {series.interval_seconds:g} s; split 60/15/25; "
          f"{'conformal-calibrated' if not args.no_calibrate else 'uncalibrated'} intervals")
    print(results_table(rows))
    if args.json:
        args.json.write_text(json.dumps({"dataset": args.dataset, "results": rows}, indent=2) + "\n")
    for run in runs:
        if run.error:
            print(f"error: {run.model} failed: {run.error}", file=sys.stderr)
    if not scored:
        return 1
    if args.plot:
        hmax = max(horizons)
        best = min(scored, key=lambda r: next(x["nmae"] for x in r.results if x["horizon"] == hmax))
        plot_runs(series, best, hmax, args.plot)
    return 0


def cmd_train(args) -> int:
    """Fit a model on the dataset (minus the calibration tail), calibrate and save it."""
    from vnstitch.forecast import ConformalForecaster, EventCalendar, ForecastInputError, get_forecaster

    try:
        options = _options(args.option, prefix="")
        if args.model in ("lstm", "gru"):
            wrapped = {args.model: options}
            _neural_options(wrapped, args, names=(args.model,))
            options = wrapped[args.model]
        model = get_forecaster(args.model, **options)
        series = load_data(args)
        calendar = EventCalendar.from_yaml(args.calendar) if args.calendar else None
        if not 0 <= args.calibration_fraction < 1:
            return _fail("--calibration-fraction must be in [0, 1)")
        stop = series.n_steps - int(series.n_steps * args.calibration_fraction)
        model.fit(series.slice(0, stop), calendar=calendar)
        if args.calibration_fraction > 0:
            model = ConformalForecaster(model).calibrate(series, stop, series.n_steps,
                                                         getattr(model, "max_horizon", 12))
        path = model.save(args.out)
    except (ForecastInputError, ValueError, TypeError) as exc:
        return _fail(str(exc))
    print(f"saved {args.model} fitted on {stop} steps x {series.n_pairs} pairs to {path}")
    return 0


def cmd_predict(args) -> int:
    """Forecast from the end of the history (or --origin) and print or write the result."""
    import numpy as np

    from vnstitch.forecast import ForecastInputError, destination_shares, load_forecaster
    from vnstitch.forecast.series import pair_label, parse_pair

    try:
        model = load_forecaster(args.model_file)
        series = load_data(args)
        origin = series.n_steps - 1 if args.origin is None else args.origin
        if not 0 <= origin < series.n_steps:
            return _fail(f"--origin {origin} outside 0..{series.n_steps - 1}")
        history = series.slice(max(0, origin + 1 - model.context_steps), origin + 1)
        forecast = model.predict(history, args.horizon)
        chosen = [parse_pair(p) for p in args.pairs.split(",")] if args.pairs else None
        missing = [p for p in chosen or [] if p not in forecast.pairs]
        if missing:
            return _fail(f"unknown pair {pair_label(missing[0])} (not in the model)")
    except (ForecastInputError, ValueError) as exc:
        return _fail(str(exc))
    if args.out:
        if args.out.suffix == ".json":
            args.out.write_text(json.dumps(forecast.to_dict()) + "\n")
        else:
            forecast.to_frame().to_csv(args.out, index=False)
        print(f"wrote {forecast.mean.shape[0]} pairs x {forecast.horizon} steps to {args.out}")
    else:
        shown = chosen or [forecast.pairs[i] for i in np.argsort(-forecast.mean[:, 0])[:5]]
        frame = forecast.select(shown).to_frame().rename(columns=_column_label)
        print(f"model {model.name}; history ends {series.timestamps[origin]}; rates in Mbit/s "
              f"(median: the 50% quantile; pN: the N% quantile)")
        print(frame.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    if args.destinations:
        for src, shares in destination_shares(forecast).items():
            top = np.argsort(-shares.mean[:, 0])[:3]
            parts = [f"{shares.destinations[i]} {shares.mean[i, 0]:.2f} [{shares.quantile(0.05)[i, 0]:.2f}, "
                     f"{shares.quantile(0.95)[i, 0]:.2f}]" for i in top]
            print(f"{src}: " + "; ".join(parts))
    return 0


def _policy(args):
    from vnstitch.cli.main import services

    return services(args).get("forecastpolicy", args.policy, args.tenant)


def _figure(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def cmd_status(args) -> int:
    """The policy's discrepancy (rolling NMAE, bias, 80/90% coverage), its model and its last retrains."""
    from vnstitch.cli.main import services
    from vnstitch.errors import VnstitchError

    try:
        policy = _policy(args)
        graph = services(args).predicted_graph(policy.metadata.tenant, None, policy.metadata.name) if args.pairs \
            else None
    except VnstitchError as exc:
        return _fail(str(exc))
    status = policy.status
    pairs = ((graph or {}).get("discrepancy") or {}).get("rolling", {}).get("pairs", []) if args.pairs else None
    if args.output in ("json", "yaml"):
        from vnstitch.cli.output import dump_structured

        out = {"policy": policy.metadata.name, "tenant": policy.metadata.tenant,
               **status.model_dump(by_alias=True, mode="json", include={"model", "discrepancy", "retrains",
                                                                         "versions", "last_step", "message"})}
        if pairs is not None:
            out["pairs"] = pairs
        print(dump_structured(out, args.output), end="" if args.output == "yaml" else "\n")
        return 0
    d, m = status.discrepancy, status.model
    print(f"policy {policy.metadata.tenant}/{policy.metadata.name}: model {m.name or policy.spec.model} "
          f"v{m.version} ({m.state}); last interval {status.last_step}")
    print(f"discrepancy over the last {d.window} intervals ({d.intervals} scored, {d.samples} pair-intervals): "
          f"NMAE {_figure(d.nmae)}, bias {_figure(d.bias, 3)}, coverage 80% {_figure(d.coverage80, 2)}, "
          f"90% {_figure(d.coverage90, 2)}; {d.breach_intervals} interval(s) in a row outside the bounds")
    shared = d.calibration.get("global") or {}
    if shared:
        print("online calibration: bands widened by " + ", ".join(
            f"{theta:+.2f} of their width ({band}%)" for band, theta in sorted(shared.items())))
    if d.adjusted:
        print(f"resized from the observed rate this interval: {', '.join(d.adjusted)}")
    rows = pairs if pairs is not None else [w.model_dump(by_alias=True) for w in d.worst]
    if rows:
        print(f"{'PAIR':<28} {'N':>4} {'NMAE':>7} {'BIAS':>7} {'COV80':>6} {'COV90':>6}")
        for r in rows:
            print(f"{r['from'] + '>' + r['to']:<28} {r['samples']:>4} {_figure(r['nmae']):>7} {_figure(r['bias']):>7} "
                  f"{_figure(r['coverage80'], 2):>6} {_figure(r['coverage90'], 2):>6}")
    for r in status.retrains[-5:]:
        before, after = r.before.get("nmae"), r.after.get("nmae")
        print(f"retrain v{r.version} {r.name}: {r.decision} ({r.reason}); NMAE before {_figure(before)} after "
              f"{_figure(after)}; {r.message}")
    if status.versions:
        print("versions kept: " + ", ".join(f"v{v.version} {v.name}" for v in status.versions))
    return 0


def _request(args, annotation: str, value: str) -> int:
    import time

    from vnstitch.cli.main import services
    from vnstitch.errors import VnstitchError

    try:
        policy = _policy(args)
        metadata = policy.metadata.model_copy(update={"annotations": {**policy.metadata.annotations,
                                                                      annotation: f"{value}@{time.time():.3f}"}})
        services(args).apply([policy.model_copy(update={"metadata": metadata})])
    except VnstitchError as exc:
        return _fail(str(exc))
    return 0


def cmd_retrain(args) -> int:
    from vnstitch.controller.proactive import RETRAIN_ANNOTATION

    code = _request(args, RETRAIN_ANNOTATION, "now")
    if code == 0:
        print(f"retrain of {args.policy} requested: the proactive loop starts it at its next interval "
              "(`vnstitch forecast status` shows the outcome)")
    return code


def cmd_rollback(args) -> int:
    from vnstitch.controller.proactive import ROLLBACK_ANNOTATION

    if args.version is not None:
        try:
            kept = {v.version for v in _policy(args).status.versions}
        except Exception as exc:  # noqa: BLE001 - reported like the request's own errors
            return _fail(str(exc))
        if args.version not in kept:
            return _fail(f"version {args.version} is not kept for {args.policy} "
                         f"(kept: {', '.join(f'v{v}' for v in sorted(kept)) or 'none'})")
    code = _request(args, ROLLBACK_ANNOTATION, "previous" if args.version is None else str(args.version))
    if code == 0:
        print(f"rollback of {args.policy} to {'the previous version' if args.version is None else f'v{args.version}'} "
              "requested: the proactive loop switches at its next interval")
    return code


def _column_label(name: str) -> str:
    """to_frame's column → what the table prints: q0.5_mbps is the median, q0.9_mbps is p90."""
    if name == "mean_mbps":
        return "mean"
    if name.startswith("q") and name.endswith("_mbps"):
        level = float(name[1:-len("_mbps")])
        return "median" if level == 0.5 else f"p{level * 100:g}"
    return name


def main(argv=None) -> int:
    """Stand-alone entry point: python -m vnstitch.cli.forecast_cmd forecast eval ..."""
    parser = argparse.ArgumentParser(prog="vnstitch")
    register(parser.add_subparsers(dest="command", required=True))
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] != "forecast" and argv[0] not in ("-h", "--help"):
        argv = ["forecast", *argv]
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
