"""`vnstitch intent parse|apply|probe|reports` and `vnstitch proposal list|accept|reject`, over the Services."""

from __future__ import annotations

import argparse
import sys

EXAMPLE = "for group('acme/orders') isolate; allow service('acme/analytics:8443') latency < 20ms bandwidth >= 200Mbps"


def _remote(p) -> None:
    p.add_argument("--server", default=argparse.SUPPRESS, help="API server (default: $VNSTITCH_URL; none: local)")
    p.add_argument("--token", default=argparse.SUPPRESS, help="API bearer token ($VNSTITCH_TOKEN)")


def register(subparsers) -> argparse.ArgumentParser:
    """Add the `intent` and `proposal` command groups to an argparse subparsers object."""
    from vnstitch.cli.output import add_output_argument

    parser = subparsers.add_parser(
        "intent", help="state what the network must achieve: parse, apply, probe, reports",
        description="Intents in the compact language (docs/INTENTS.md), e.g.\n  " + EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="intent_command", metavar="{parse,apply,probe,reports}")
    sub.required = True
    p = sub.add_parser("parse", help="print the structured Intent of a text (changes nothing)",
                       description="Parses TEXT (or - for stdin) as the server does; errors give the line and column.")
    p.add_argument("text", metavar="TEXT", help="the intent text, or - for stdin")
    p.add_argument("--name", default="intent", help="metadata.name of the printed Intent (default: intent)")
    p.add_argument("--tenant", help="metadata.tenant of the printed Intent")
    add_output_argument(p, ("yaml", "json"), default="yaml")
    p.set_defaults(func=cmd_parse)

    p = sub.add_parser("apply", help="create or update an intent from a text",
                       description="Creates (or updates) Intent NAME from TEXT; the intent engine compiles it into "
                                   "stitches, policies and proposals and reports on it (`vnstitch get intent NAME`).")
    p.add_argument("name", metavar="NAME", help="the intent's name")
    p.add_argument("text", metavar="TEXT", help="the intent text, or - for stdin")
    p.add_argument("--tenant", help="the intent's tenant (default: 'default', or the token's)")
    p.add_argument("--dry-run", action="store_true", help="run every check, store nothing")
    _remote(p)
    p.set_defaults(func=cmd_apply)

    p = sub.add_parser("probe", help="could an intent be met now? the best on offer if not (changes nothing)",
                       description="TMF921 ProbeIntent: feasibility of each expectation on the substrate as it is.")
    p.add_argument("text", metavar="TEXT", help="the intent text, or - for stdin")
    p.add_argument("--tenant", help="the intent's tenant (default: 'default', or the token's)")
    add_output_argument(p, ("table", "yaml", "json"))
    _remote(p)
    p.set_defaults(func=cmd_probe)

    p = sub.add_parser("reports", help="an intent's numbered reports: verdict, measured values, actions")
    p.add_argument("name", metavar="NAME", help="the intent's name")
    p.add_argument("--tenant", help="the intent's tenant")
    add_output_argument(p, ("table", "yaml", "json"))
    _remote(p)
    p.set_defaults(func=cmd_reports)

    parser = subparsers.add_parser("proposal", help="answer what other tenants' intents ask of your networks",
                                   description="A proposal asks this tenant to let another tenant's group reach one "
                                               "of its networks' services; nothing crosses until it is accepted.")
    sub = parser.add_subparsers(dest="proposal_command", metavar="{list,accept,reject}")
    sub.required = True
    p = sub.add_parser("list", help="proposals sent to this tenant and the ones it sent")
    p.add_argument("--tenant", help="the tenant (default: 'default', or the token's)")
    add_output_argument(p, ("table", "yaml", "json"))
    _remote(p)
    p.set_defaults(func=cmd_proposals)
    for verb, words in (("accept", "agree: the requester's group may reach the network's service"),
                        ("reject", "refuse: nothing crosses")):
        p = sub.add_parser(verb, help=words)
        p.add_argument("name", metavar="NAME", help="the proposal (vnstitch proposal list)")
        p.add_argument("--tenant", help="the asked tenant (default: 'default', or the token's)")
        p.add_argument("--note", default="", help="why (kept in the proposal's history; default: none)")
        _remote(p)
        p.set_defaults(func=cmd_answer, accept=verb == "accept")
    return parser


def _text(arg: str) -> str:
    return sys.stdin.read() if arg == "-" else arg


def _intent(name: str, text: str, tenant: str | None):
    from vnstitch.domain.registry import parse_resource

    metadata = {"name": name}
    if tenant:
        metadata["tenant"] = tenant
    return parse_resource({"apiVersion": "vnstitch.io/v1", "kind": "Intent", "metadata": metadata,
                           "spec": {"text": text}}, user_input=True)


def cmd_parse(args) -> int:
    from vnstitch.cli.output import dump_structured

    from vnstitch.cli.output import wire_dict

    intent = _intent(args.name, _text(args.text), args.tenant)
    body = wire_dict(intent)
    body.pop("status", None)
    body["spec"].pop("text", None)
    for key in ("generation", "labels", "annotations"):
        if not body["metadata"].get(key):
            body["metadata"].pop(key, None)
    for exp in body["spec"]["expectations"]:
        for key in ("targets", "contexts", "parameters"):
            if not exp.get(key):
                exp.pop(key, None)
    print(dump_structured(body, args.output).rstrip("\n"))
    return 0


def cmd_apply(args) -> int:
    from vnstitch.cli.main import services

    text = _text(args.text)
    for change in services(args).apply([_intent(args.name, text, args.tenant)], dry_run=args.dry_run):
        print(f"intent/{change.name} {change.action}" + (" (dry run)" if args.dry_run else ""))
    return 0


def cmd_probe(args) -> int:
    from vnstitch.cli.main import services
    from vnstitch.cli.output import dump_structured, table
    from vnstitch.units import format_bandwidth

    answer = services(args).probe_intent(_intent("probe", _text(args.text), args.tenant))
    if args.output != "table":
        print(dump_structured(answer, args.output), end="")
    else:
        rows = [["EXPECTATION", "FEASIBLE", "BEST BANDWIDTH", "BEST LATENCY", "PATH", "REASON"]]
        for e in answer["expectations"]:
            rows.append([e["expectation"], "yes" if e["feasible"] else "no",
                         format_bandwidth(e["bestBandwidth"]) if e.get("bestBandwidth") is not None else "-",
                         f"{e['bestLatency'] * 1e3:.2f} ms" if e.get("bestLatency") is not None else "-",
                         "→".join(e.get("path") or []) or "-", e["reason"] or "-"])
        print(table(rows))
        for conflict in answer["conflicts"]:
            print(f"conflict: {conflict}")
        print("feasible now" if answer["feasible"] else "not feasible now")
    return 0 if answer["feasible"] else 1


def cmd_reports(args) -> int:
    from vnstitch.cli.main import services
    from vnstitch.cli.output import dump_structured, table
    from vnstitch.domain.resources import WIRE_TIMES, format_timestamp

    intent = services(args).get("Intent", args.name, args.tenant)
    reports = intent.status.reports
    if args.output != "table":
        print(dump_structured([r.model_dump(by_alias=True, mode="json", context=WIRE_TIMES) for r in reports],
                              args.output), end="")
        return 0
    rows = [["#", "TIME", "VERDICT", "NOT FULFILLED", "ACTIONS"]]
    for r in reports:
        bad = [f"{e.id}: {e.reason}" for e in r.expectations if e.verdict != "FULFILLED"]
        rows.append([str(r.number), format_timestamp(int(r.time)), r.verdict, "; ".join(bad) or "-",
                     "; ".join(r.actions) or "-"])
    print(table(rows))
    return 0


def cmd_proposals(args) -> int:
    from vnstitch.cli.main import services
    from vnstitch.cli.output import render

    print(render("Proposal", services(args).list("Proposal", args.tenant), args.output))
    return 0


def cmd_answer(args) -> int:
    from vnstitch.cli.main import services

    answered = services(args).answer_proposal(args.tenant, args.name, args.accept, args.note)
    granted = f"; {answered.spec.network} now allows {answered.status.granted}" if answered.status.granted else ""
    print(f"proposal/{args.name} {answered.status.state.lower()}{granted}")
    return 0
