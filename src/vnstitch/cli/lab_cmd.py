"""`vnstitch lab up|down|status|exec|stitch|unstitch`: a namespace lab for the linux driver (root)."""

from __future__ import annotations

import argparse
import os
import sys

from vnstitch.errors import VnstitchError


def _up(args) -> int:
    from vnstitch.lab import builder

    layout = builder.up(args.file, name=args.name, scale=args.scale, directory=args.state_dir)
    print(f"lab {layout.name} up: {len(layout.nodes)} nodes, {len(layout.links)} links, {len(layout.vms)} VMs "
          f"(scale {layout.scale:g}; namespaces vns-{layout.name}-*)")
    return 0


def _down(args) -> int:
    from vnstitch.lab import builder

    removed = builder.down(args.state_dir, name=args.name)
    print(f"removed {len(removed)} objects" if removed else "nothing to remove")
    return 0


def _status(args) -> int:
    from vnstitch.lab import builder

    report = builder.status(args.state_dir)
    if args.output in ("json", "yaml"):
        from vnstitch.cli.output import dump_structured

        print(dump_structured(report, args.output))
        return 0
    if report["lab"] is None:
        print(f"no lab in {report['stateDir']}")
        return 1
    print(f"lab {report['lab']}  scale {report['scale']:g}  state {report['stateDir']}")
    for name, node in report["nodes"].items():
        print(f"  node {name:<12} {node['netns']:<28} {node['address']:<14} {'ok' if node['exists'] else 'MISSING'}")
    for link in report["links"]:
        print(f"  link {'–'.join(link['endpoints']):<12} {link['labRateBps'] / 1e6:8.1f} Mbit/s"
              f"  {'ok' if link['exists'] else 'MISSING'}")
    for key, net in report["networks"].items():
        print(f"  network {key:<18} vnid {net['vnid']:<8} nodes {','.join(net['nodes'])}  "
              f"members {','.join(net['members'])}")
    for key, st in report["stitches"].items():
        rate = f"{st['rateBps'] / 1e6:.1f} Mbit/s" if st["rateBps"] else "unshaped"
        print(f"  stitch {key:<18} {st['type']:<9} {'→'.join(st['path'])}  {rate}  "
              f"{'encrypted' if st['encrypted'] else 'plain'}  {'healthy' if st['healthy'] else 'UNHEALTHY'}  "
              f"tx {st['txBytes']} B rx {st['rxBytes']} B")
    return 0


def _exec(args) -> int:
    from vnstitch.lab import builder

    argv = list(args.command)
    if argv and argv[0] == "--":
        argv = argv[1:]
    return builder.exec_in(args.vm, argv, args.state_dir)


def _stitch(args) -> int:
    from vnstitch.drivers.linux import create_driver
    from vnstitch.lab.stitching import stitch_op
    from vnstitch.lab.topology import parse
    from vnstitch.planning.ops import describe

    driver = create_driver(args.state_dir)
    try:
        for stitch in parse(args.file).stitches:
            op = stitch_op(driver.lab, driver.state["networks"], stitch)
            changed = driver.apply(op)
            print(f"{describe(op)}: {'changed' if changed else 'unchanged'}")
    finally:
        driver.close()
    return 0


def _unstitch(args) -> int:
    from vnstitch.drivers.linux import create_driver
    from vnstitch.planning.ops import RemoveStitch

    driver = create_driver(args.state_dir)
    try:
        changed = driver.apply(RemoveStitch(args.stitch, reason="lab unstitch"))
    finally:
        driver.close()
    print(f"remove-stitch {args.stitch}: {'removed' if changed else 'not present'}")
    return 0


def register(subparsers) -> argparse.ArgumentParser:
    """Add `lab` with its subcommands to an argparse subparsers object."""
    from vnstitch.cli.output import add_output_argument

    lab = subparsers.add_parser("lab", help="namespace lab for the linux driver (root)")
    lab.add_argument("--state-dir", default=None,
                     metavar="DIR", help="lab state directory (default: $VNSTITCH_LAB_DIR, else /run/vnstitch/lab)")
    sub = lab.add_subparsers(dest="lab_command", required=True)

    p = sub.add_parser("up", help="build the lab from a topology file (Node, Link, VirtualNetwork)")
    p.add_argument("file", help="YAML file of Node, Link and VirtualNetwork documents")
    p.add_argument("--name", default=None, help="lab name, prefix of every namespace (default: 'lab')")
    p.add_argument("--scale", type=float, default=0.01, metavar="FACTOR",
                   help="lab link rate in bit/s = link capacity × FACTOR (default: 0.01: 10 Gbps → 100 Mbit/s)")
    p.set_defaults(func=_up)

    p = sub.add_parser("down", help="remove everything the lab made, and nothing else")
    p.add_argument("--name", default=None,
                   help="lab name when the state directory is gone (default: the name the state directory records)")
    p.set_defaults(func=_down)

    p = sub.add_parser("status", help="what exists in the kernel")
    add_output_argument(p, ("table", "json", "yaml"))
    p.set_defaults(func=_status)

    p = sub.add_parser("exec", help="run a command inside a VM: lab exec VM -- CMD...")
    p.add_argument("vm", help="the VM (member) name")
    p.add_argument("command", nargs=argparse.REMAINDER, help="the command and its arguments, after --")
    p.set_defaults(func=_exec)

    p = sub.add_parser("stitch", help="apply the Stitch documents of a file directly through the driver")
    p.add_argument("file", help="YAML file of Stitch documents")
    p.set_defaults(func=_stitch)

    p = sub.add_parser("unstitch", help="remove a stitch by key (tenant/name)")
    p.add_argument("stitch", help="the stitch's key, TENANT/NAME")
    p.set_defaults(func=_unstitch)
    return lab


def run(args) -> int:
    """Call a parsed command; errors become one line and exit 1."""
    if os.geteuid() != 0 and getattr(args, "lab_command", "") not in ("status",):
        print("vnstitch lab: needs root (network namespaces)", file=sys.stderr)
        return 1
    try:
        return args.func(args)
    except VnstitchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vnstitch")
    register(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
