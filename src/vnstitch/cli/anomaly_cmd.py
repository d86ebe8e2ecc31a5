"""`vnstitch anomaly list|approve|keep`, over the Services (`vnstitch get anomalies` lists them too)."""

from __future__ import annotations

import argparse


def _remote(p) -> None:
    p.add_argument("--server", default=argparse.SUPPRESS, help="API server (default: $VNSTITCH_URL; none: local)")
    p.add_argument("--token", default=argparse.SUPPRESS, help="API bearer token ($VNSTITCH_TOKEN)")


def register(subparsers) -> argparse.ArgumentParser:
    """Add the `anomaly` command group to an argparse subparsers object."""
    from vnstitch.cli.output import add_output_argument

    parser = subparsers.add_parser(
        "anomaly", help="what the anomaly engine found and did: list, approve suggested actions, keep actions",
        description="Anomalies are recorded by the anomaly engine under an AnomalyPolicy (docs/ANOMALIES.md); "
                    "their actions are undone when they end unless an operator keeps them.")
    sub = parser.add_subparsers(dest="anomaly_command", metavar="{list,approve,keep}")
    sub.required = True
    p = sub.add_parser("list", help="the tenant's anomalies, newest last")
    p.add_argument("--tenant", help="the tenant (default: 'default', or the token's)")
    p.add_argument("--state", choices=("Open", "Ended", "Kept"), help="only anomalies in this state (default: all)")
    add_output_argument(p, ("table", "wide", "yaml", "json"))
    _remote(p)
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("approve", help="apply an open anomaly's suggested actions (policy mode suggest)")
    p.add_argument("name", metavar="NAME", help="the anomaly (vnstitch get anomalies)")
    p.add_argument("--tenant", help="the anomaly's tenant (default: 'default', or the token's)")
    _remote(p)
    p.set_defaults(func=cmd_answer, what="approve")

    p = sub.add_parser("keep", help="keep an anomaly's actions after it ends (--release: undo them)")
    p.add_argument("name", metavar="NAME", help="the anomaly (vnstitch get anomalies)")
    p.add_argument("--tenant", help="the anomaly's tenant (default: 'default', or the token's)")
    p.add_argument("--release", action="store_true", help="stop keeping them: they are undone at the next pass")
    _remote(p)
    p.set_defaults(func=cmd_answer, what="keep")
    return parser


def cmd_list(args) -> int:
    from vnstitch.cli.main import services
    from vnstitch.cli.output import render

    items = [a for a in services(args).list("Anomaly", args.tenant) if args.state in (None, a.status.state)]
    print(render("Anomaly", items, args.output))
    return 0


def cmd_answer(args) -> int:
    from vnstitch.cli.main import services

    keep = not getattr(args, "release", False)
    anomaly = services(args).answer_anomaly(args.tenant, args.name, args.what, keep)
    if args.what == "approve":
        print(f"anomaly/{args.name} approved: its {len(anomaly.status.actions)} suggested action(s) apply at the next pass")
    else:
        print(f"anomaly/{args.name} {'kept: its actions stay after it ends' if keep else 'released: its actions are undone'}")
    return 0
