"""`vnstitch stitch rotate-keys NAME`: actions on one stitch beyond apply/get/delete, over the Services."""

from __future__ import annotations

import argparse


def register(subparsers) -> argparse.ArgumentParser:
    """Add the `stitch` command group to an argparse subparsers object."""
    parser = subparsers.add_parser("stitch", help="act on one stitch: rotate-keys",
                                   description="Actions on one stitch that are not a change of its spec.")
    sub = parser.add_subparsers(dest="stitch_command", metavar="{rotate-keys}")
    sub.required = True
    p = sub.add_parser("rotate-keys", help="replace the stitch's WireGuard keys on both ends (no packet lost)",
                       description="Records the request on the stitch; the reconciler's next pass gives both ends "
                                   "new key pairs, one end at a time, while traffic keeps flowing. `vnstitch get "
                                   "stitch NAME` shows status.keysRotatedAt once done. Periodic rotation: "
                                   "spec.keyRotation (e.g. 24h).")
    p.add_argument("name", metavar="NAME", help="the stitch")
    p.add_argument("--tenant", help="the stitch's tenant (default: 'default', or the token's)")
    p.add_argument("--server", default=argparse.SUPPRESS, help="API server (default: $VNSTITCH_URL; none: local)")
    p.add_argument("--token", default=argparse.SUPPRESS, help="API bearer token ($VNSTITCH_TOKEN)")
    p.set_defaults(func=cmd_rotate_keys)
    return parser


def cmd_rotate_keys(args) -> int:
    from vnstitch.cli.main import services
    from vnstitch.domain.resources import format_timestamp

    requested = services(args).rotate_keys(args.name, args.tenant)
    where = "the server's reconciler" if getattr(args, "server", None) else "the next `vnstitch reconcile` pass"
    print(f"key rotation of stitch {args.name} requested at {format_timestamp(requested)}; {where} replaces "
          "the keys (status.keysRotatedAt)")
    return 0
