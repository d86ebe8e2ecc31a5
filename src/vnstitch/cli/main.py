"""`vnstitch` command line: thin commands over the controller services."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import TYPE_CHECKING, Sequence

from vnstitch import __version__
from vnstitch.errors import InvalidInput, VnstitchError

if TYPE_CHECKING:
    from vnstitch.controller.services import Services

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
EXIT_OPS_FAILED = 2  # `reconcile --once`: the pass ran, some ops failed


# composition root helpers -------------------------------------------------------------------
def _store_url(args) -> str:
    """--store (or $VNSTITCH_STORE), else the default store under the user data dir. A SQLite file
    named explicitly must exist unless --create is given: a typo must not silently start an empty store."""
    from vnstitch.store import default_store_url

    url = args.store or default_store_url()
    if args.store and not getattr(args, "create", False):
        scheme, _, rest = url.partition("://")
        if scheme == "sqlite" and rest and not os.path.exists(rest):
            raise InvalidInput(f"store {url} does not exist (check the path, or give --create to make a new "
                               "store there)", field="--store")
    return url


store_url = _store_url  # for the command modules (serve, token, telemetry)


def open_services(args) -> "Services":
    """The one choice every command goes through: the HTTP client with --server, else local services."""
    if getattr(args, "server", None):
        from vnstitch.api.client import RemoteController

        return RemoteController(args.server, token=args.token)
    from vnstitch.controller.services import open_local

    return open_local(_store_url(args), args.driver, driver_state_path(args))


def services(args) -> "Services":
    """The services of this invocation, opened on first use (main closes them)."""
    if getattr(args, "_services", None) is None:
        args._services = open_services(args)
    return args._services


def _close_services(args) -> None:
    opened = getattr(args, "_services", None)
    if opened is not None:
        args._services = None
        opened.close()


def driver_state_path(args) -> str | None:
    """Where the driver keeps its state: --driver-state; else the simulator's file beside the SQLite
    store, and for linux the lab's directory ($VNSTITCH_LAB_DIR or /run/vnstitch/lab)."""
    if getattr(args, "driver_state", None):
        return args.driver_state
    url = _store_url(args)
    if args.driver == "sim" and url.startswith("sqlite://"):
        return url[len("sqlite://"):] + ".sim.json"
    return None


def read_input(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}", field="FILE") from None


MAX_OBJECT_BYTES = 1 << 20  # as the API's --max-body


def _documents(path: str, max_object_bytes: int = MAX_OBJECT_BYTES, progress: "_Progress | None" = None,
               known: "_Known | None" = None) -> list:
    """The resources of one file; a file with none is an error (an empty or all-comment file is a mistake),
    and so is a document (or an item of a JSON list) over `max_object_bytes`, checked before YAML parses it.
    `progress`: told how many documents are read and parsed (a large file takes a while). `known`: documents
    an earlier apply recorded stand unparsed as KnownDocuments (see _Known)."""
    import json
    import re

    from vnstitch.domain.registry import document_chunks, parse_documents, parse_documents_known

    text = read_input(path)
    where = "standard input" if path == "-" else path
    chunks = document_chunks(text) if known is not None else None  # each holds at least one piece below
    pieces = [] if len(text.encode()) <= max_object_bytes \
        or (chunks is not None and 4 * max(map(len, chunks)) <= max_object_bytes) \
        else re.split(r"^(?:---|\.\.\.)(?=\s|$)", text, flags=re.M)
    if pieces and 4 * max(map(len, pieces)) > max_object_bytes:  # a piece may be over (UTF-8: ≤ 4 bytes a character)
        documents = [c for c in pieces if re.sub(r"(?m)^\s*#.*$", "", c).strip()]
        for number, chunk in enumerate(documents, 1):
            size = len(chunk.removeprefix("\n").encode())  # the text after its '---' line
            if size <= max_object_bytes:
                continue
            try:
                items = json.loads(chunk)  # `get -o json` prints a list: its objects count one by one
            except ValueError:
                items = None
            sizes = [len(json.dumps(i, separators=(",", ":")).encode()) for i in items] \
                if isinstance(items, list) else [size]
            for index, item_size in enumerate(sizes, 1):
                if item_size > max_object_bytes:
                    what = f"document {number}" + (f", item {index}," if isinstance(items, list) else "")
                    raise InvalidInput(f"{where}: {what} is {item_size} bytes, over the limit of {max_object_bytes} "
                                       "bytes per object (--max-object-bytes)", field="FILE")
    del pieces  # not kept while the file is parsed
    def parsing(done: int, total: int | None) -> None:
        if progress is not None:
            progress.update(f"{where}: parsed {done}{'' if total is None else f'/{total}'} documents", done == total)

    if known is None:
        resources = parse_documents(text, source=path, progress=parsing)
    else:
        resources, digests = parse_documents_known(text, known.by_digest, known.salt, source=path, progress=parsing,
                                                   prepare=known.prepare, chunks=chunks)
        known.recorded.update(digests)
    if not resources:
        raise InvalidInput(f"no resources in {where}", field="FILE")
    return resources


def _quantity(text: str, kind: str, usual_unit: str) -> float:
    """A flag's bandwidth (bit/s) or duration (seconds): the unit is required, as in resource files; a bare
    number is refused with the number written in the flag's usual unit ('100' → '100Mbps')."""
    from vnstitch.units import BANDWIDTH_UNITS, DURATION_UNITS, parse_bandwidth, parse_duration

    parse, units = (parse_bandwidth, BANDWIDTH_UNITS) if kind == "bandwidth" else (parse_duration, DURATION_UNITS)
    try:
        return parse(text, require_unit=True)
    except ValueError as exc:
        refusal = exc
    number, suggestion = str(text).strip(), f"{str(text).strip()}{usual_unit}"
    try:
        float(number)
        parse(suggestion)
    except ValueError:  # not a bare number, or one that reads as no sensible quantity in that unit
        raise refusal from None
    raise ValueError(f"{number} has no unit: write the {kind} with one, e.g. '{suggestion}' ({units})")


def quantity_flag(text: str | None, flag: str, kind: str = "bandwidth", usual_unit: str = "Mbps") -> float | None:
    """A quantity flag read by its command (None when not given); a bad one is an error naming the flag."""
    if text is None:
        return None
    try:
        return _quantity(text, kind, usual_unit)
    except ValueError as exc:
        raise InvalidInput(str(exc), field=flag) from None


def _quantity_arg(kind: str, usual_unit: str):
    """argparse type of a quantity flag: anything but a number with its unit is a usage error."""
    def convert(text: str) -> float:
        try:
            return _quantity(text, kind, usual_unit)
        except (ValueError, VnstitchError) as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return convert


bandwidth_arg = _quantity_arg("bandwidth", "Mbps")  # '2Gbps'; a bare 100 suggests '100Mbps'
duration_arg = _quantity_arg("duration", "s")       # '20ms', '5m'; a bare 30 suggests '30s'
latency_arg = _quantity_arg("duration", "ms")       # a bare 30 suggests '30ms'


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad value of one argument is one line that names it (exit 2); the usage is noise
    there. Other usage errors (a missing argument) still show the usage."""

    def error(self, message: str):
        if message.startswith("argument "):
            self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")
        super().error(message)


# commands ----------------------------------------------------------------------------------
PROGRESS_AFTER_S = 2.0  # a bulk validate or apply says how far it got once it has run this long
PROGRESS_EVERY_S = 10.0  # in a log (stderr not a terminal): a line this often at most, besides one per phase


class _Progress:
    """How far a long validate or apply got, on stderr, once it has run PROGRESS_AFTER_S: on a terminal one
    line per phase rewritten in place; in a log one line per phase (and one per PROGRESS_EVERY_S within it)."""

    def __init__(self, stream=None):
        import time

        self._now = time.monotonic
        self.stream = stream if stream is not None else sys.stderr
        self.started = self.shown_at = self._now()
        self.terminal = getattr(self.stream, "isatty", lambda: False)()
        self.shown = False  # anything written yet

    def update(self, text: str, phase_done: bool = False) -> None:
        now = self._now()
        if now - self.started < PROGRESS_AFTER_S:
            return
        if not phase_done and now - self.shown_at < (0.2 if self.terminal else PROGRESS_EVERY_S):
            return
        line = f"{text} ({now - self.started:.0f} s)"
        if self.terminal:
            self.stream.write(f"\r{line}\x1b[K" + ("\n" if phase_done else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self.shown, self.shown_at = True, now

    def done(self, text: str) -> None:
        """The last line, only where progress was shown (a quick command says nothing on stderr)."""
        if self.shown:
            self.update(text, phase_done=True)


class _Known:
    """What lets `apply -f` skip parsing documents an earlier apply recorded (vnstitch.store.applied): the
    recorded digests, the salt they were made with (the parser's code and --tenant), the tenant rewrite
    every resource gets, and the digests of the documents parsed now (key → digest), recorded by this apply."""

    def __init__(self, controller, tenant: str | None):
        from vnstitch.domain.registry import parser_fingerprint
        from vnstitch.store.applied import AppliedTable

        self.by_digest = AppliedTable.read(controller.store).by_digest
        self.salt = parser_fingerprint() + f"|tenant={tenant or ''}|".encode()
        self.tenant = tenant
        self.recorded: dict[tuple[str, str, str], str] = {}

    def prepare(self, res):
        if self.tenant and res.NAMESPACED and "tenant" not in res.model_fields_set and res.metadata.tenant == "default":
            res.metadata.tenant = self.tenant
        return res


def _local_controller(args):
    """The controller of local services (None with --server: a server parses what it is sent)."""
    return getattr(services(args), "controller", None) if not getattr(args, "server", None) else None


def _apply(args, resources: list, dry_run: bool, progress: _Progress, known: _Known | None = None) -> list:
    """services(args).apply, telling `progress` how many resources are checked (local services only: a
    server checks the whole request before it answers). `known`: documents recognised or to record."""
    verb = "checked" if dry_run else "admitted"

    def staged(done: int, total: int) -> None:
        progress.update(f"{verb} {done}/{total} resources" + ("; committing" if done == total and not dry_run else ""),
                        done == total)

    if known is not None:  # LocalServices.apply, with the digests to record beside the change
        return _local_controller(args).apply(resources, dry_run=dry_run, progress=staged, applied=known.recorded)
    return services(args).apply(resources, dry_run=dry_run, progress=staged)


class _BulkGC:
    """Cyclic garbage collection off while a file is parsed and applied: parsing and admission make
    millions of objects that all stay alive, and the collector's full passes over them took a third of
    a bulk apply's time; they make no reference cycles worth collecting (memory is the same)."""

    def __enter__(self):
        import gc

        self.enabled = gc.isenabled()
        gc.disable()
        return self

    def __exit__(self, *exc) -> None:
        import gc

        if self.enabled:
            gc.enable()


def cmd_validate(args) -> int:
    with _BulkGC():
        return _validate(args)


def _validate(args) -> int:
    progress = _Progress()
    resources = []
    for path in args.files:
        parsed = _documents(path, args.max_object_bytes, progress)
        resources.extend(parsed)
        for res in parsed:
            print(f"{path}: {res.KIND} {res.namespace + '/' if res.namespace else ''}{res.name} ok")
    if not args.offline:  # references, policies and capacity, as the server would check them now
        _apply(args, resources, True, progress)
    print(f"{len(resources)} resource(s) valid" + (" (syntax only)" if args.offline else " against the store"))
    progress.done(f"validated {len(resources)} resources")
    return EXIT_OK


def cmd_apply(args) -> int:
    with _BulkGC():
        return _apply_files(args)


def _apply_files(args) -> int:
    progress = _Progress()
    try:
        controller = _local_controller(args)
        known = _Known(controller, args.tenant) if controller is not None else None
    except VnstitchError:  # a store that does not open: the file's own errors come first, as before
        known = None
    resources = []
    for path in args.filename:
        resources.extend(_documents(path, args.max_object_bytes, progress, known))
    if args.tenant and known is None:
        for res in resources:
            if res.NAMESPACED and "tenant" not in res.model_fields_set and res.metadata.tenant == "default":
                res.metadata.tenant = args.tenant
    changes = _apply(args, resources, args.dry_run, progress, known)
    for change in changes:
        print(f"{change}{' (dry run)' if args.dry_run else ''}")
    progress.done(f"{'checked' if args.dry_run else 'applied'} {len(changes)} resources")
    return EXIT_OK


def cmd_get(args) -> int:
    from vnstitch.cli.output import render

    if args.kind.lower() in ("vngraph", "virtualnetworkgraph"):
        return _print_vngraph(args)
    if args.name:
        objects = [services(args).get(args.kind, args.name, args.tenant)]
    else:
        objects = services(args).list(args.kind, None if args.all_tenants or not args.tenant else args.tenant)
    print(render(args.kind, objects, args.output, single=bool(args.name)))
    return EXIT_OK


def _print_vngraph(args) -> int:
    """`vnstitch get vngraph`: the networks this tenant knows, their services, and the stitches between them."""
    from vnstitch.cli.output import dump_structured, table

    graph = services(args).vngraph(None if args.all_tenants else args.tenant)
    if args.output in ("json", "yaml"):
        print(dump_structured(graph, args.output), end="")
        return EXIT_OK
    rows = [["NETWORK", "OWN", "TRUST", "SERVICES", "CAPABILITIES", "STITCHED TO"]]
    for node in graph["nodes"]:
        peers = sorted({e["to"] if e["from"] == node["key"] else e["from"] for e in graph["edges"]
                        if node["key"] in (e["from"], e["to"])})
        services_text = ", ".join(f"{s['name']}({s.get('protocol', 'tcp')}/{s.get('port', '*')})"
                                  for s in node["services"])
        rows.append([node["key"] + (" (external)" if node["external"] else ""), "yes" if node["own"] else "no",
                     node["trustLevel"], services_text or "-", ", ".join(node["capabilities"]) or "-",
                     ", ".join(peers) or "-"])
    print(table(rows))
    return EXIT_OK


def cmd_delete(args) -> int:
    print(services(args).delete(args.kind, args.name, args.tenant))
    return EXIT_OK


def cmd_plan(args) -> int:
    if args.predicted:
        return _print_predicted(args)
    report = services(args).plan()
    if not report.leading:
        print("note: this replica is a standby: the leader's data plane may differ", file=sys.stderr)
    if args.output in ("json", "yaml"):
        from vnstitch.cli.output import dump_structured

        print(dump_structured({"leading": report.leading, "ops": [
            {"action": op.action, "target": op.target, "summary": op.summary, "reason": op.reason}
            for op in report.ops]}, args.output))
    else:
        print(report.render())
    return EXIT_OK


def _when(text: str | None) -> float | None:
    """--at: unix seconds, or an ISO date-time (UTC unless it names a zone)."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    from datetime import datetime, timezone

    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"'{text}' is neither unix seconds nor an ISO date-time", field="--at") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def cmd_approve(args) -> int:
    result = services(args).approve(args.tenant, args.name)
    print(f"suggestion {args.name}: {result['applied']} stitch part(s) applied"
          + (f", refused: {'; '.join(result['refused'])}" if result["refused"] else ""))
    return EXIT_OK


def _print_predicted(args) -> int:
    """The allocator's predicted network graph for the next horizon (written by the proactive loop)."""
    from vnstitch.units import format_bandwidth

    graph = services(args).predicted_graph(args.tenant, _when(args.at), args.policy)
    if graph is None:
        print("error: no predicted graph yet: the proactive allocator has not run against this store "
              "(run `vnstitch demo`, or a replay with the proactive strategy)", file=sys.stderr)
        return EXIT_ERROR
    if args.output in ("json", "yaml"):
        from vnstitch.cli.output import dump_structured

        print(dump_structured(graph, args.output))
        return EXIT_OK
    print(f"predicted stitches for the horizon after interval {graph['step']}:")
    for s in graph["stitches"]:
        print(f"  {s['from']} → {s['to']}  {format_bandwidth(s['bandwidthBps'])}  over {'→'.join(s['path'])}")
    hot = sorted(graph["links"], key=lambda l: -l["predictedLoadBps"])[:5]
    print("busiest links (predicted mean load): " + ", ".join(
        f"{'→'.join(l['arc'])} {format_bandwidth(l['predictedLoadBps'])}" for l in hot))
    for d in graph["decisions"]:
        print(f"  decision: {d['action']} {'→'.join(d['pair'])}: {d['reason']}")
    return EXIT_OK


def cmd_reconcile(args) -> int:
    """One pass (--once; exit 2 when ops failed) or the server's loop until SIGTERM / Ctrl-C.
    Over --server both answer one line: the server reconciles on its own."""
    if args.once:
        result = services(args).reconcile_once()
        print(result.plan.render())
        for key, why, outcome in result.replanned:
            print(f"  {key}: re-planned ({why}): {outcome}")
        for line in result.transitions:
            print(f"  {line}")
        for key in result.released:
            print(f"  {key}: teardown confirmed, reservation released")
        for op, error in result.failures:
            print(f"failed: {op.summary}: {error}", file=sys.stderr)
        if result.failures:
            print(f"{len(result.failures)} op(s) failed", file=sys.stderr)
            return EXIT_OPS_FAILED
        return EXIT_OK
    import signal
    import threading

    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def started() -> None:
        print(f"reconciling every {args.interval:g} s and on store changes (Ctrl-C to stop)", file=sys.stderr)

    try:
        services(args).reconcile_forever(stop, interval_s=args.interval, started=started)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    return EXIT_OK


def cmd_substrate_import(args) -> int:
    from vnstitch.topology.importers import load_topology

    kwargs = {}  # no capacity is assumed: a file that lacks some needs --default-capacity
    if args.default_capacity is not None:
        kwargs["default_capacity_bps"] = quantity_flag(args.default_capacity, "--default-capacity", "bandwidth", "Gbps")
    if args.default_latency is not None:
        kwargs["default_latency_s"] = quantity_flag(args.default_latency, "--default-latency", "duration", "ms")
    topology = load_topology(args.path, args.format, **kwargs)
    for note in topology.notes:
        print(f"note: {note}", file=sys.stderr)
    changes = services(args).apply(list(topology.nodes) + list(topology.links), dry_run=args.dry_run)
    created = sum(c.action == "created" for c in changes)
    configured = sum(c.action == "configured" for c in changes)
    print(f"imported {len(topology.nodes)} nodes and {len(topology.links)} links from {topology.source}: "
          f"{created} created, {configured} updated, {len(changes) - created - configured} unchanged"
          + (" (dry run)" if args.dry_run else ""))
    return EXIT_OK


def _endpoint(text: str):
    from vnstitch.domain.stitch import Endpoint

    network, _, member = text.partition("/")
    return Endpoint(network=network, member=member or None)


def cmd_availability(args) -> int:
    from vnstitch.units import format_bandwidth

    answer = services(args).availability(args.tenant, _endpoint(args.src), _endpoint(args.dst),
                                         args.bandwidth, args.max_latency)
    result = {
        "feasible": answer.feasible,
        "path": list(answer.path.nodes) if answer.path else None,
        "latency_ms": round(answer.path.latency_s * 1e3, 3) if answer.path else None,
        "best_bandwidth_bps": answer.best_bandwidth_bps,
        "best_latency_ms": round(answer.best_latency_s * 1e3, 3) if answer.best_latency_s is not None else None,
        "reason": answer.reason,
    }
    if args.output in ("json", "yaml"):
        from vnstitch.cli.output import dump_structured

        print(dump_structured(result, args.output))
    else:
        print(("yes" if answer.feasible else "no") + (f": {answer.reason}" if answer.reason else ""))
        if answer.path:
            print(f"path: {' → '.join(answer.path.nodes)} ({result['latency_ms']} ms)")
        print(f"best bandwidth within the latency bound: {format_bandwidth(answer.best_bandwidth_bps)}")
        if answer.best_latency_s is not None:
            print(f"best latency at that bandwidth: {result['best_latency_ms']} ms")
    return EXIT_OK if answer.feasible else EXIT_ERROR


def cmd_demo(args) -> int:
    from vnstitch.experiments.demo import run_demo

    return run_demo(args)


# parser ------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from vnstitch.cli.help import DRIVER_HELP, STORE_HELP
    from vnstitch.cli.output import add_output_argument

    parser = _Parser(prog="vnstitch", description=__doc__)
    parser.add_argument("--version", action="version", version=f"vnstitch {__version__}")
    parser.add_argument("--store", metavar="URL", help=STORE_HELP, default=os.environ.get("VNSTITCH_STORE"))
    parser.add_argument("--server", metavar="URL", default=os.environ.get("VNSTITCH_URL"),
                        help="talk to a vnstitch API server (http://HOST:PORT) instead of a local store "
                             "(default: $VNSTITCH_URL, else none: local)")
    parser.add_argument("--token", default=os.environ.get("VNSTITCH_TOKEN"),
                        help="API bearer token for --server (default: $VNSTITCH_TOKEN, else none)")
    parser.add_argument("--driver", choices=["sim", "linux"], default=os.environ.get("VNSTITCH_DRIVER", "sim"),
                        help=DRIVER_HELP)
    parser.add_argument("--create", action="store_true",
                        help="make the store named by --store if it does not exist yet (without it, a SQLite "
                             "path that does not exist is an error: a typo does not start an empty store)")
    parser.add_argument("--driver-state", metavar="PATH",
                        help="driver state file (sim) or lab directory (linux) (default: sim: STORE.sim.json "
                             "beside a SQLite store; linux: $VNSTITCH_LAB_DIR, else /run/vnstitch/lab)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log INFO messages to stderr")
    parser.add_argument("--max-object-bytes", type=int, metavar="BYTES",
                        default=os.environ.get("VNSTITCH_MAX_OBJECT_BYTES", str(MAX_OBJECT_BYTES)),
                        help="refuse a document of a resource file (-f) larger than this, as the API refuses a "
                             "body over --max-body (default: $VNSTITCH_MAX_OBJECT_BYTES, else 1048576 = 1 MiB)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("validate", help="parse resource files exactly as the server does")
    p.add_argument("files", nargs="+", metavar="FILE", help="YAML or JSON resource files, or - for stdin")
    p.add_argument("--offline", action="store_true", help="check syntax and schema only, not references to the store")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("apply", help="create or update resources from files (all or nothing)")
    p.add_argument("-f", "--filename", action="append", required=True, metavar="FILE",
                   help="file, or - for stdin (repeatable; required)")
    p.add_argument("--dry-run", action="store_true", help="validate against the store, change nothing")
    p.add_argument("--tenant", help="tenant for documents that name none (default: 'default')")
    p.set_defaults(func=cmd_apply)

    p = sub.add_parser("get", help="list or show resources")
    p.add_argument("kind", help="nodes, links, virtualnetworks, stitches, forecastpolicies, intents, proposals (or "
                                "the singular), or vngraph")
    p.add_argument("name", nargs="?", help="one object (default: list them all)")
    add_output_argument(p)
    p.add_argument("--tenant", help="only this tenant (default: all tenants when listing; 'default' for one object)")
    p.add_argument("-A", "--all-tenants", action="store_true", help="list every tenant's objects")
    p.set_defaults(func=cmd_get)

    p = sub.add_parser("delete", help="delete a resource (stitches are torn down by the reconciler)")
    p.add_argument("kind", help="node, link, virtualnetwork, stitch, forecastpolicy (or the plural)")
    p.add_argument("name", help="the object's name")
    p.add_argument("--tenant", help="the object's tenant (default: 'default', or the token's)")
    p.set_defaults(func=cmd_delete)

    p = sub.add_parser("plan", help="print what the reconciler would do, without doing it")
    p.add_argument("--predicted", action="store_true", help="the predicted network graph for the next horizon")
    p.add_argument("--tenant", help="with --predicted: this tenant's graph (default: the latest / the token's)")
    p.add_argument("--at", metavar="TIME",
                   help="with --predicted: the graph in force then, as unix seconds or an ISO/RFC 3339 date-time "
                        "(UTC unless it names a zone) (default: now)")
    p.add_argument("--policy", help="with --predicted: this ForecastPolicy's graph (default: the latest)")
    add_output_argument(p, ("table", "json", "yaml"))
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("approve", help="apply one decision a ForecastPolicy in suggest mode recorded")
    p.add_argument("name", help="the suggestion (GET /v1/suggestions)")
    p.add_argument("--tenant", help="the suggestion's tenant (default: 'default', or the token's)")
    p.set_defaults(func=cmd_approve)

    p = sub.add_parser("reconcile", help="run the reconcile loop (or one pass with --once; exit 2 when ops fail)")
    p.add_argument("--once", action="store_true", help="one pass; exit 2 when some ops failed")
    p.add_argument("--interval", type=float, default=5.0, metavar="SECONDS",
                   help="seconds between passes (default: 5)")
    p.set_defaults(func=cmd_reconcile)

    p = sub.add_parser("substrate", help="substrate topology: import")
    ssub = p.add_subparsers(dest="substrate_command", metavar="SUBCOMMAND")
    q = ssub.add_parser("import", help="import SNDlib XML, Topology Zoo GraphML, CFR-RL or networkx node-link "
                                       "JSON (DOTE, FIGRET, Teal) topology files")
    q.add_argument("path", help="the topology file")
    q.add_argument("--format", choices=["sndlib", "graphml", "cfr-rl", "node-link"],
                   help="the file's format (default: detect from content)")
    q.add_argument("--default-capacity", metavar="BANDWIDTH",
                   help="capacity for links whose file gives none, with a unit, e.g. 10Gbps (default: none: "
                        "required when any link lacks one)")
    q.add_argument("--default-latency", metavar="DURATION",
                   help="latency for links without coordinates, with a unit, e.g. 2ms (default: 1ms)")
    q.add_argument("--dry-run", action="store_true", help="validate against the store, change nothing")
    q.set_defaults(func=cmd_substrate_import)

    p = sub.add_parser("availability", help="could X bit/s at ≤ Y ms be stitched between two endpoints? (reserves nothing)")
    p.add_argument("src", metavar="FROM", help="network or network/vm")
    p.add_argument("dst", metavar="TO", help="network or network/vm")
    p.add_argument("--bandwidth", required=True, type=bandwidth_arg,
                   help="bit/s with a unit: 200Mbps, 2Gbps, 1.5Tbps (bytes: MB/s) (required)")
    p.add_argument("--max-latency", type=latency_arg, metavar="DURATION",
                   help="one-way bound with a unit: 20ms, 1s (default: none)")
    p.add_argument("--tenant", help="whose endpoints (default: the token's tenant, or 'default' locally)")
    add_output_argument(p, ("table", "json", "yaml"))
    p.set_defaults(func=cmd_availability)

    p = sub.add_parser("demo", help="the end-to-end demo on bundled real data (simulator, no root)")
    p.add_argument("--workdir", metavar="DIR", help="where to write the store and outputs (default: ./out/demo)")
    p.add_argument("--model", default="gru",
                   help="forecaster of the proactive strategy (default: gru; last_value is instant)")
    p.add_argument("--steps", type=int, metavar="N",
                   help="replay only the first N five-minute intervals of the day (default: 288, the whole day)")
    p.set_defaults(func=cmd_demo)

    for module in ("vnstitch.cli.audit_cmd", "vnstitch.cli.forecast_cmd", "vnstitch.cli.lab_cmd", "vnstitch.cli.replay_cmd",
                   "vnstitch.cli.serve_cmd", "vnstitch.cli.telemetry_cmd"):
        _register_optional(sub, module)
    _register_optional(sub, "vnstitch.cli.stitch_cmd")
    _register_optional(sub, "vnstitch.cli.site_cmd")
    _register_optional(sub, "vnstitch.cli.intent_cmd")
    _register_optional(sub, "vnstitch.cli.anomaly_cmd")
    from vnstitch.cli.help import finish

    finish(parser)
    return parser


def _register_optional(sub, module: str) -> None:
    """Command groups that live in their own modules register themselves when present."""
    import importlib

    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            return
        raise
    mod.register(sub)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):  # a command group without its subcommand: that group's help
        from vnstitch.cli.help import chosen_group

        (chosen_group(parser, args) or parser).print_help()
        return EXIT_USAGE
    from vnstitch.cli.output import unsupported_output

    refused = unsupported_output(args)
    if refused:
        print(f"{parser.prog} {args.command}: error: {refused}", file=sys.stderr)
        return EXIT_USAGE
    try:
        try:
            return args.func(args)
        finally:
            _close_services(args)
    except VnstitchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # noqa: BLE001 - last line of defence: one line, never a traceback
        if os.environ.get("VNSTITCH_DEBUG"):
            raise
        print(f"internal error: {type(exc).__name__}: {exc} (set VNSTITCH_DEBUG=1 for a traceback)", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
