"""`vnstitch serve` (the API server with the reconciler inside) and `vnstitch token ...`."""

from __future__ import annotations

import sys

from vnstitch.errors import InvalidInput

EXIT_OK = 0


def _store(args):
    """The store the token commands work on: they write it directly, never through --server."""
    from vnstitch.cli.main import store_url
    from vnstitch.store import open_store

    if getattr(args, "server", None):
        raise InvalidInput("token commands work on the store itself (--store or $VNSTITCH_STORE), on the "
                           "machine that holds it; they do not go through --server / $VNSTITCH_URL",
                           field="--server")
    return open_store(store_url(args))


def cmd_serve(args) -> int:
    import uvicorn

    from vnstitch.api.app import create_app
    from vnstitch.api.settings import Settings
    from vnstitch.cli.main import driver_state_path, quantity_flag, store_url

    if args.prometheus and not args.proactive:
        raise InvalidInput("--prometheus feeds the proactive loop: give --proactive too", field="--prometheus")
    settings = Settings(store_url=store_url(args) if args.store else None, driver=args.driver,
                        driver_state=driver_state_path(args),
                        dev=args.dev, tick_s=args.tick, max_body_bytes=args.max_body,
                        rate_limit_per_s=args.rate_limit, rate_limit_burst=args.rate_burst,
                        quota_stitches=args.quota_stitches, quota_bandwidth_bps=quantity_flag(
                            args.quota_bandwidth, "--quota-bandwidth", "bandwidth", "Gbps"),
                        reconcile=not args.no_reconcile,
                        leader_election={"auto": None, "on": True, "off": False}[args.leader_election],
                        leader_ttl_s=args.leader_ttl, replica_id=args.replica_id, gc_freeze=True,
                        proactive=args.proactive, telemetry_url=args.telemetry_store, model_dir=args.model_dir,
                        prometheus_config=args.prometheus,
                        advertise_url=advertise_url(args))
    app = create_app(settings)
    if app.state.dev_token:
        print(f"--dev: admin token for tenant 'default' (shown once): {app.state.dev_token}", file=sys.stderr)
    election = getattr(app.state.ctx.worker, "election", None)
    print(f"serving on http://{args.host}:{args.port} (reconcile every {args.tick:g} s and on changes"
          + (f"; replica {election.identity}, leader TTL {election.ttl_s:g} s)" if election else ")"),
          file=sys.stderr)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="info" if args.verbose else "warning",
                            timeout_keep_alive=30, timeout_graceful_shutdown=10)
    _run_resigning(config, app.state.ctx.worker)
    return EXIT_OK


def advertise_url(args) -> str | None:
    """Where the other replicas reach this one: --advertise-url, else http://HOST:PORT (the host name
    when listening on every address); 'none' keeps telemetry replica-local."""
    if args.advertise_url:
        return None if args.advertise_url == "none" else args.advertise_url
    host = args.host
    if host in ("0.0.0.0", "::", ""):
        import socket

        host = socket.getfqdn()
    return f"http://[{host}]:{args.port}" if ":" in host else f"http://{host}:{args.port}"


def _run_resigning(config, worker) -> None:
    """Run uvicorn; on SIGTERM/SIGINT first stop reconciling and resign leadership at once
    (graceful handover), then let uvicorn drain connections (long watches would delay the lifespan exit)."""
    import threading

    import uvicorn

    class ResigningServer(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            if worker is not None:
                threading.Thread(target=worker.stop, name="vnstitch-resign", daemon=True).start()
            super().handle_exit(sig, frame)

    ResigningServer(config).run()


def cmd_token_create(args) -> int:
    from vnstitch.api.auth import create_token, rfc3339
    from vnstitch.cli.main import quantity_flag

    ttl_s = quantity_flag(args.ttl, "--ttl", "duration", "d")
    if ttl_s is not None and ttl_s <= 0:
        raise InvalidInput("--ttl must be positive (leave it out for a token that never expires)", field="--ttl")
    now = _now()
    token, token_id = create_token(_store(args), args.tenant, args.role, description=args.description or "",
                                   now=now, ttl_s=ttl_s)
    print(token)
    expiry = "never expires" if ttl_s is None else "expires " + rfc3339(now + ttl_s)
    print(f"token {token_id}: tenant {args.tenant}, role {args.role}, {expiry} (store it now: it is not shown "
          "again)", file=sys.stderr)
    return EXIT_OK


def _now() -> float:
    import time

    return time.time()


def cmd_token_list(args) -> int:
    from vnstitch.api.auth import list_tokens, rfc3339

    now = _now()

    def expiry(expires_at) -> str:
        if expires_at is None:
            return "never"
        return rfc3339(expires_at) + (" (expired)" if now >= expires_at else "")

    rows = [["ID", "TENANT", "ROLE", "EXPIRES", "DESCRIPTION"]] + [
        [t["id"], t["tenant"], t["role"], expiry(t["expiresAt"]), t["description"]] for t in list_tokens(_store(args))]
    if len(rows) == 1:
        print("No tokens.")
        return EXIT_OK
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return EXIT_OK


def cmd_token_revoke(args) -> int:
    from vnstitch.api.auth import revoke_token

    count = revoke_token(_store(args), args.id)
    print(f"revoked {count} token(s)")
    return EXIT_OK


def register(subparsers) -> None:
    p = subparsers.add_parser("serve", help="run the REST API server (reconciler included)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8470, help="TCP port (default: 8470)")
    p.add_argument("--dev", action="store_true", help="make and print an admin token when none exists")
    p.add_argument("--tick", type=float, default=5.0, metavar="SECONDS",
                   help="seconds between reconcile passes (default: 5)")
    p.add_argument("--no-reconcile", action="store_true", help="API only (another process reconciles)")
    p.add_argument("--proactive", action="store_true",
                   help="run the proactive loop: every ForecastPolicy forecasts its pairs from telemetry and "
                        "stitches them before congestion (the leader runs it)")
    p.add_argument("--telemetry-store", metavar="URL",
                   help="telemetry samples: sqlite:///PATH or memory:// (default: $VNSTITCH_TELEMETRY, else "
                        "beside a SQLite state store)")
    p.add_argument("--model-dir", metavar="DIR", help="trained model artifacts (default: beside the state store)")
    p.add_argument("--prometheus", metavar="FILE",
                   help="with --proactive: also pull telemetry from Prometheus, with the URL and PromQL queries "
                        "per tenant in FILE (YAML; see docs/TELEMETRY.md; default: no Prometheus source)")
    p.add_argument("--max-body", type=int, default=1 << 20, metavar="BYTES",
                   help="largest request body in bytes (default: 1048576 = 1 MiB)")
    p.add_argument("--rate-limit", type=float, default=200.0, metavar="PER_SECOND",
                   help="requests per second per token (0: off; default: 200)")
    p.add_argument("--rate-burst", type=int, default=400, metavar="REQUESTS",
                   help="requests a token may send at once above the rate (default: 400)")
    p.add_argument("--quota-stitches", type=int, default=1000, metavar="N", help="stitches per tenant (default: 1000)")
    p.add_argument("--quota-bandwidth", default="1Tbps", metavar="BANDWIDTH",
                   help="reserved bandwidth per tenant, with a unit (default: 1Tbps)")
    p.add_argument("--leader-election", choices=["auto", "on", "off"], default="auto",
                   help="only the elected replica reconciles (default: auto: on for an etcd:// store)")
    p.add_argument("--leader-ttl", type=float, default=10.0, metavar="SECONDS",
                   help="lease TTL of the leader key in seconds (default: 10; failover takes about this long)")
    p.add_argument("--replica-id", help="this replica's name in /readyz and /metrics (default: host:pid:random)")
    p.add_argument("--advertise-url", metavar="URL",
                   help="with several replicas (etcd://): where the others reach this replica's API, to keep "
                        "a full copy of the telemetry each (default: http://HOST:PORT; 'none': telemetry stays "
                        "replica-local)")
    p.set_defaults(func=cmd_serve)

    p = subparsers.add_parser("token", help="API tokens (stored hashed in the store)")
    tsub = p.add_subparsers(dest="token_command", metavar="SUBCOMMAND")
    q = tsub.add_parser("create", help="make a token; prints it once")
    q.add_argument("--tenant", required=True, help="the tenant the token acts for (required)")
    q.add_argument("--role", required=True, choices=["reader", "member", "admin"],
                   help="reader: reads; member: also writes the tenant's objects; admin: everything (required)")
    q.add_argument("--description", help="free text shown by `token list` (default: none)")
    q.add_argument("--ttl", metavar="DURATION",
                   help="the token expires this long after now, with a unit: 12h, 30d, 1w (default: never expires)")
    q.set_defaults(func=cmd_token_create)
    q = tsub.add_parser("list", help="token ids, tenants, roles and expiry (never the tokens)")
    q.set_defaults(func=cmd_token_list)
    q = tsub.add_parser("revoke", help="delete a token by id (prefix of at least 6 characters)")
    q.add_argument("id", help="the token's id as `token list` shows it (a prefix of at least 6 characters)")
    q.set_defaults(func=cmd_token_revoke)
