"""`vnstitch telemetry push FILE`: samples from any file the forecast loaders read, to a server or a local store."""

from __future__ import annotations

import argparse
import re
import sys
import time

import numpy as np

BATCH = 5_000
_FIELD = re.compile(r"^samples\[(\d+)\](.*)$")


def register(subparsers) -> argparse.ArgumentParser:
    """Add the `telemetry` command group to an argparse subparsers object."""
    parser = subparsers.add_parser("telemetry", help="telemetry in: push samples from data files",
                                   description="Push traffic samples between virtual networks.")
    sub = parser.add_subparsers(dest="telemetry_command", metavar="{push}")
    sub.required = True
    p = sub.add_parser("push", help="push a traffic data file as samples (CSV/Parquet, SNDlib XML, .hist, .npz)",
                       description="Each (interval, pair) value of the file becomes one sample from network "
                                   "PREFIX+source to network PREFIX+destination, stamped at the end of its "
                                   "interval. Batches are stored whole or not at all; pushing again is harmless.")
    p.add_argument("file", metavar="FILE", help="abilene (bundled), .npz, .csv, .parquet, SNDlib .xml or a folder "
                                                "of them, AbileneTM*, or .hist with --nodes and --interval")
    p.add_argument("--tenant", help="tenant the networks belong to (default: the token's; locally 'default')")
    p.add_argument("--server", default=argparse.SUPPRESS, help="API server (default: $VNSTITCH_URL; none: local)")
    p.add_argument("--token", default=argparse.SUPPRESS, help="API bearer token (default: $VNSTITCH_TOKEN)")
    p.add_argument("--nodes", help="comma-separated node order of a .hist file's matrices (default: none)")
    p.add_argument("--interval", metavar="DURATION",
                   help="time between matrices, in seconds or with a unit, e.g. 300 or 15m (.hist; overrides "
                        "the file's) (default: the file's)")
    p.add_argument("--network-prefix", default="", metavar="PREFIX",
                   help="network name = PREFIX + node name, e.g. pop- (default: '', the node name)")
    p.add_argument("--shift-to-now", action="store_true",
                   help="move the data in time so its last interval ends now (data older than the 14-day "
                        "retention is refused otherwise)")
    p.add_argument("--last", type=int, metavar="N", help="only the last N intervals (default: all)")
    p.add_argument("--include-self", action="store_true",
                   help="also push node-to-itself pairs (skipped by default: traffic inside one network "
                        "needs no stitch, and .hist files zero them)")
    p.add_argument("--batch-size", type=int, default=BATCH, metavar="N", help=f"samples per request (default: {BATCH})")
    p.add_argument("--telemetry-store", metavar="URL",
                   help="local mode: sqlite:///PATH or memory:// (default: $VNSTITCH_TELEMETRY, else beside a "
                        "SQLite state store)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_push)
    return parser


def load_samples(args, tenant: str, now: float):
    """The file as a list of Samples (observed cells only: a gap in the file stays a gap)."""
    from vnstitch.cli.forecast_cmd import load_named
    from vnstitch.errors import InvalidInput
    from vnstitch.forecast import ForecastInputError
    from vnstitch.telemetry import Sample

    try:
        series = load_named(args.file, args.nodes, args.interval)   # --interval is the series' own interval now
    except ForecastInputError as exc:
        field = "--nodes" if "--nodes" in str(exc) else "--interval" if "--interval" in str(exc) else "FILE"
        raise InvalidInput(str(exc), field=field) from None
    if args.last:
        series = series.slice(max(0, series.n_steps - args.last), None)
    step_s = float(series.interval_seconds)
    ends = series.timestamps.astype("datetime64[s]").astype(np.int64).astype(float) + step_s
    if args.shift_to_now:
        ends += (now // step_s) * step_s - ends[-1]
    prefix = args.network_prefix
    observed = series.observed.copy()
    if not args.include_self:
        observed[:, [i for i, (a, b) in enumerate(series.pairs) if a == b]] = False
    rows, cols = np.nonzero(observed)
    values = series.values_mbps[rows, cols] * 1e6
    names = [(prefix + a, prefix + b) for a, b in series.pairs]
    return [Sample(tenant, names[c][0], names[c][1], float(ends[r]), float(v))
            for r, c, v in zip(rows.tolist(), cols.tolist(), values.tolist())]


def cmd_push(args) -> int:
    now = time.time()
    server = getattr(args, "server", None)
    tenant = args.tenant or ("" if server else "default")
    samples = load_samples(args, tenant, now)
    if not samples:
        print("nothing to push: the file has no observed values", file=sys.stderr)
        return 0
    batch = max(1, int(args.batch_size))
    if server:
        accepted, changed = _push_remote(args, server, samples, batch)
    else:
        accepted, changed = _push_local(args, tenant, samples, batch, now)
    where = server or "the local telemetry store"
    pairs = len({(s.src, s.dst) for s in samples})
    print(f"pushed {accepted} samples of {pairs} pairs to {where}: {changed} new or changed")
    return 0


def _progress(total: int, quiet: bool):
    from vnstitch.optional import progress_bar

    return progress_bar(total, unit="sample", unit_scale=True, disable=quiet, leave=False)


def _push_local(args, tenant, samples, batch, now) -> tuple[int, int]:
    """Validated whole against the local store's networks first, then written batch by batch."""
    from vnstitch.domain.vnet import VirtualNetwork
    from vnstitch.cli.main import store_url
    from vnstitch.store import open_store
    from vnstitch.telemetry import validate_batch
    from vnstitch.telemetry.store import open_telemetry_store
    from vnstitch.telemetry.validate import endpoints_of

    store = open_store(store_url(args))
    try:
        networks = {}
        for record in store.list("VirtualNetwork", tenant):
            vnet = VirtualNetwork.model_validate(record.value)
            networks[vnet.name] = [m.name for m in vnet.spec.members]
        kept = validate_batch(samples, now, {tenant: endpoints_of(networks)})
        telemetry = open_telemetry_store(args.telemetry_store, state_store=store)
        changed = 0
        try:
            with _progress(len(kept), args.quiet) as bar:
                for first in range(0, len(kept), batch):
                    chunk = kept[first:first + batch]
                    changed += telemetry.insert(chunk)
                    bar.update(len(chunk))
        finally:
            telemetry.close()
        return len(samples), changed
    finally:
        store.close()


def _push_remote(args, server, samples, batch) -> tuple[int, int]:
    import httpx

    from vnstitch.api.client import raise_for_error
    from vnstitch.api.errors import ServerUnreachable
    from vnstitch.errors import VnstitchError

    token = getattr(args, "token", None)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    params = {"tenant": args.tenant} if args.tenant else {}
    accepted = changed = 0
    with httpx.Client(base_url=server.rstrip("/"), headers=headers, timeout=60.0) as http, \
            _progress(len(samples), args.quiet) as bar:
        for first in range(0, len(samples), batch):
            chunk = samples[first:first + batch]
            body = {"samples": [{"from": s.src, "to": s.dst, "time": s.time, "rateBps": s.rate_bps}
                                for s in chunk]}
            try:
                response = http.post("/v1/telemetry", json=body, params=params)
            except httpx.HTTPError as exc:
                raise ServerUnreachable(f"cannot reach {server}: {exc}") from None
            try:
                raise_for_error(response)
            except VnstitchError as exc:
                raise _in_file(exc, first, chunk, accepted) from None
            answer = response.json()
            accepted += answer["accepted"]
            changed += answer["changed"]
            bar.update(len(chunk))
    return accepted, changed


def _in_file(exc, offset: int, chunk, stored: int):
    """A batch's error, with the sample's index in the whole file and what it was."""
    match = _FIELD.match(exc.field or "")
    if match:
        index = int(match.group(1))
        s = chunk[index] if index < len(chunk) else None
        exc.field = f"samples[{offset + index}]{match.group(2)}"
        if s is not None:
            exc.message += f" (sample {s.src}→{s.dst} at {s.time:.0f})"
    exc.message += f"; the {stored} samples before this batch are stored, this batch is not"
    return exc
