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
    from vnstitch.cli.main import driver_state_path, store_url
    from vnstitch.units import parse_bandwidth

    settings = Settings(store_url=store_url(args) if args.store else None, driver=args.driver,
                        driver_state=driver_state_path(args),
                        dev=args.dev, tick_s=args.tick, max_body_bytes=args.max_body,
                        rate_limit_per_s=args.rate_limit, rate_limit_burst=args.rate_burst,
                        quota_stitches=args.quota_stitches, quota_bandwidth_bps=parse_bandwidth(args.quota_bandwidth),
                        reconcile=not args.no_reconcile,
                        leader_election={"auto": None, "on": True, "off": False}[args.leader_election],
                        leader_ttl_s=args.leader_ttl, replica_id=args.replica_id, gc_freeze=True,
                        proactive=args.proactive, telemetry_url=args.telemetry_store, model_dir=args.model_dir,
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
    from vnstitch.api.auth import create_token

    token, token_id = create_token(_store(args), args.tenant, args.role, description=args.description or "")
    print(token)
    print(f"token {token_id}: tenant {args.tenant}, role {args.role} (store it now: it is not shown again)",
          file=sys.stderr)
    return EXIT_OK


def cmd_token_list(args) -> int:
    from vnstitch.api.auth import list_tokens

    rows = [["ID", "TENANT", "ROLE", "DESCRIPTION"]] + [
        [t["id"], t["tenant"], t["role"], t["description"]] for t in list_tokens(_store(args))]
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
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8470)
    p.add_argument("--dev", action="store_true", help="make and print an admin token when none exists")
    p.add_argument("--tick", type=float, default=5.0, help="seconds between reconcile passes (default 5)")
    p.add_argument("--no-reconcile", action="store_true", help="API only (another process reconciles)")
    p.add_argument("--proactive", action="store_true",
                   help="run the proactive loop: every ForecastPolicy forecasts its pairs from telemetry and "
                        "stitches them before congestion (the leader runs it)")
    p.add_argument("--telemetry-store", help="telemetry samples (default: beside the state store)")
    p.add_argument("--model-dir", help="trained model artifacts (default: beside the state store)")
    p.add_argument("--max-body", type=int, default=1 << 20, help="largest request body in bytes (default 1 MiB)")
    p.add_argument("--rate-limit", type=float, default=200.0, help="requests/s per token (0: off; default 200)")
    p.add_argument("--rate-burst", type=int, default=400, help="burst per token (default 400)")
    p.add_argument("--quota-stitches", type=int, default=1000, help="stitches per tenant (default 1000)")
    p.add_argument("--quota-bandwidth", default="1Tbps", help="reserved bandwidth per tenant (default 1Tbps)")
    p.add_argument("--leader-election", choices=["auto", "on", "off"], default="auto",
                   help="only the elected replica reconciles (auto: on for an etcd:// store)")
    p.add_argument("--leader-ttl", type=float, default=10.0,
                   help="lease TTL of the leader key in seconds (default 10; failover takes about this long)")
    p.add_argument("--replica-id", help="this replica's name in /readyz and /metrics (default host:pid:random)")
    p.add_argument("--advertise-url", metavar="URL",
                   help="with several replicas (etcd://): where the others reach this replica's API, to keep "
                        "a full copy of the telemetry each (default http://HOST:PORT; 'none': telemetry stays "
                        "replica-local)")
    p.set_defaults(func=cmd_serve)

    p = subparsers.add_parser("token", help="API tokens (stored hashed in the store)")
    tsub = p.add_subparsers(dest="token_command", metavar="SUBCOMMAND")
    q = tsub.add_parser("create", help="make a token; prints it once")
    q.add_argument("--tenant", required=True)
    q.add_argument("--role", required=True, choices=["reader", "member", "admin"])
    q.add_argument("--description")
    q.set_defaults(func=cmd_token_create)
    q = tsub.add_parser("list", help="token ids, tenants and roles (never the tokens)")
    q.set_defaults(func=cmd_token_list)
    q = tsub.add_parser("revoke", help="delete a token by id (prefix of at least 6 characters)")
    q.add_argument("id")
    q.set_defaults(func=cmd_token_revoke)
