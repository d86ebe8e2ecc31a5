"""`vnstitch audit`: the writes made through the API, with who made them and how they ended."""

from __future__ import annotations

import sys

from vnstitch.errors import InvalidInput

EXIT_OK = 0


def _entries(args, since: float | None) -> list[dict]:
    """The wire form of the matching entries: from the server (GET /v1/audit, admins) or the local file."""
    filters = {"since": since, "tenant": args.tenant, "principal": args.principal}
    if getattr(args, "server", None):
        import httpx

        from vnstitch.api.client import raise_for_error
        from vnstitch.api.errors import ServerUnreachable

        params = {k: v for k, v in filters.items() if v is not None}
        params["limit"] = args.limit
        headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
        try:
            response = httpx.get(args.server.rstrip("/") + "/v1/audit", params=params, headers=headers, timeout=30.0)
        except httpx.HTTPError as exc:
            raise ServerUnreachable(f"cannot reach {args.server}: {exc}") from None
        raise_for_error(response)
        return response.json()["items"]
    from vnstitch.api.audit import audit_path_for_url, read_audit_file
    from vnstitch.cli.main import store_url

    url = store_url(args)
    path = audit_path_for_url(url)
    if path is None:
        raise InvalidInput(f"a server on {url} keeps its audit log in memory: ask it with --server",
                           field="--store")
    return [e.wire() for e in read_audit_file(path, limit=args.limit, **filters)]


def cmd_audit(args) -> int:
    import time

    from vnstitch.cli.output import dump_structured

    since = time.time() - args.since if args.since is not None else None
    items = _entries(args, since)
    if args.output in ("json", "yaml"):
        print(dump_structured({"items": items}, args.output))
        return EXIT_OK
    if not items:
        print("No audit entries.", file=sys.stderr)
        return EXIT_OK
    rows = [["TIME", "TOKEN", "TENANT", "ROLE", "METHOD", "PATH", "RESOURCE", "STATUS", "OUTCOME"]]
    for item in items:
        who, res = item["principal"], item["resource"]
        resource = "/".join(p for p in (res.get("tenant"), res.get("name")) if p)
        resource = f"{res.get('kind') or ''} {resource}".strip() or "-"
        outcome = item["outcome"] + (f" ({item['error']})" if item.get("error") else "")
        rows.append([item["time"], who.get("tokenId") or "-", who.get("tenant") or "-", who.get("role") or "-",
                     item["method"], item["path"], resource, str(item["status"]), outcome])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return EXIT_OK


def register(subparsers) -> None:
    from vnstitch.cli.main import duration_arg
    from vnstitch.cli.output import add_output_argument

    p = subparsers.add_parser("audit", help="writes made through the API: who, what, outcome (admins; from the "
                                            "store's audit file, or the server's with --server)")
    p.add_argument("--since", type=duration_arg, metavar="DURATION",
                   help="only entries this recent, with a unit: 30m, 1h, 7d (default: all that is kept)")
    p.add_argument("--tenant", help="writes by this tenant's tokens or on its objects")
    p.add_argument("--principal", metavar="ID", help="a token id (or a prefix of one), as `vnstitch token list` shows")
    p.add_argument("--limit", type=int, default=1000, metavar="ENTRIES",
                   help="at most this many entries, the newest (default: 1000)")
    add_output_argument(p, ("table", "json", "yaml"))
    p.set_defaults(func=cmd_audit)
