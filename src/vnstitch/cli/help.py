"""Help text every command shares: an example per command, the environment, group help."""

from __future__ import annotations

import argparse

ENVIRONMENT = """environment:
  VNSTITCH_STORE      state store URL, as --store
  VNSTITCH_URL        API server, as --server
  VNSTITCH_TOKEN      API bearer token, as --token
  VNSTITCH_DRIVER     data plane, as --driver (sim or linux)
  VNSTITCH_LAB_DIR    the linux driver's lab state directory (default /run/vnstitch/lab)
  VNSTITCH_TELEMETRY  telemetry store URL (default: beside a SQLite state store)
  VNSTITCH_DEBUG      set to 1: a traceback instead of the one-line internal error"""

STORE_HELP = ("state store URL: sqlite:///ABS/PATH.db or sqlite://REL/PATH.db (a file), memory:// (gone at exit), "
              "etcd://HOST:PORT[,HOST:PORT...]/PREFIX (shared by replicas) (default: $VNSTITCH_STORE, else "
              "sqlite:///<user data dir>/vnstitch/state.db)")
DRIVER_HELP = ("data plane: sim (a simulator, no root; state beside the store) or linux (network namespaces of "
               "`vnstitch lab`, root; $VNSTITCH_LAB_DIR) (default: $VNSTITCH_DRIVER, else sim)")

# An example per command, by its path below `vnstitch` ("" is vnstitch itself).
EXAMPLES = {
    "": "vnstitch --store sqlite://state.db --create substrate import src/vnstitch/data/abilene.xml\n"
        "  vnstitch --store sqlite://state.db apply -f examples/abilene-stitches.yaml\n"
        "  vnstitch --store sqlite://state.db get stitches",
    "validate": "vnstitch validate --offline examples/abilene-stitches.yaml",
    "intent": "vnstitch intent apply orders \"for group('acme/orders') isolate; allow service('acme/analytics:8443') "
              "latency < 20ms\" --tenant acme\n  vnstitch get intent orders --tenant acme -o yaml",
    "intent parse": "vnstitch intent parse \"for group('acme/orders') isolate; allow service('acme/analytics:8443') "
                    "latency < 20ms bandwidth >= 200Mbps between 08:00-20:00\" --name orders --tenant acme",
    "intent apply": "vnstitch intent apply orders \"for group('acme/orders') isolate\" --tenant acme --dry-run",
    "intent probe": "vnstitch intent probe \"for group('acme/orders') allow service('acme/analytics:8443') "
                    "latency < 5ms bandwidth >= 1Gbps\" --tenant acme",
    "intent reports": "vnstitch intent reports orders --tenant acme",
    "anomaly": "vnstitch get anomalies --tenant acme\n  vnstitch anomaly keep block-blue-to-green-1796157720 --tenant acme",
    "anomaly list": "vnstitch anomaly list --tenant acme --state Open -o wide",
    "anomaly approve": "vnstitch anomaly approve surge-blue-to-red-1796157720 --tenant acme",
    "anomaly keep": "vnstitch anomaly keep forbidden-flow-blue-to-green-1796157720 --tenant acme",
    "proposal": "vnstitch proposal list --tenant globex\n  vnstitch proposal accept acme-lake-reach-sql --tenant globex",
    "proposal list": "vnstitch proposal list --tenant globex -o yaml",
    "proposal accept": "vnstitch proposal accept acme-lake-reach-sql --tenant globex --note 'until Q2'",
    "proposal reject": "vnstitch proposal reject acme-lake-reach-sql --tenant globex --note 'no PII leaves'",
    "apply": "vnstitch apply -f examples/abilene-stitches.yaml --dry-run\n  cat stitch.yaml | vnstitch apply -f -",
    "get": "vnstitch get stitches -o wide\n  vnstitch get stitch blue-red --tenant acme -o yaml",
    "delete": "vnstitch delete stitch blue-red --tenant acme",
    "plan": "vnstitch plan\n  vnstitch plan --predicted --tenant backbone -o json",
    "approve": "vnstitch approve fc-1234-washng-iplsng --tenant acme",
    "reconcile": "vnstitch reconcile --once\n  vnstitch reconcile --interval 2",
    "substrate": "vnstitch substrate import src/vnstitch/data/abilene.xml",
    "substrate import": "vnstitch substrate import topology.graphml --default-capacity 10Gbps --dry-run",
    "availability": "vnstitch availability blue red --bandwidth 200Mbps --max-latency 20ms --tenant acme",
    "demo": "vnstitch demo --workdir out/demo",
    "forecast": "vnstitch forecast eval --models seasonal_naive_day,gru --horizon 1,12",
    "forecast eval": "vnstitch forecast eval --models last_value,seasonal_naive_day --horizon 1,12 --json eval.json",
    "forecast train": "vnstitch forecast train --model gru --out gru.npz --option epochs=4",
    "forecast predict": "vnstitch forecast predict --model-file gru.npz --horizon 12 --pairs ATLAng->IPLSng",
    "lab": "sudo vnstitch lab up examples/lab.yaml && sudo vnstitch lab status",
    "lab up": "sudo vnstitch lab up examples/lab.yaml --scale 0.01",
    "lab down": "sudo vnstitch lab down",
    "lab status": "vnstitch lab status -o json",
    "lab exec": "sudo vnstitch lab exec blue-1 -- ping -c 3 10.1.0.12",
    "lab stitch": "sudo vnstitch lab stitch examples/lab-stitch.yaml",
    "lab unstitch": "sudo vnstitch lab unstitch acme/blue1-red1",
    "replay": "vnstitch replay --day 10 --strategy static,reactive,proactive --json out/replay.json",
    "serve": "vnstitch --store sqlite://state.db --create serve --dev --port 8470",
    "token": "vnstitch token create --tenant acme --role member",
    "token create": "vnstitch token create --tenant acme --role member --description 'CI'",
    "token list": "vnstitch token list",
    "token revoke": "vnstitch token revoke 3f2a9c",
    "audit": "vnstitch audit --since 1h --tenant acme -o json",
    "route-manager": "sudo vnstitch route-manager --site site-a -f sites.yaml --netns site-a --state-dir /run/vnstitch/site-a\n"
                     "  sudo vnstitch --store sqlite:///var/lib/vnstitch/state.db route-manager --site site-a --netns site-a "
                     "--state-dir /run/vnstitch/site-a   # the view from the store",
    "stitch": "vnstitch stitch rotate-keys blue-red --tenant acme",
    "stitch rotate-keys": "vnstitch stitch rotate-keys blue-red --tenant acme\n  vnstitch get stitch blue-red --tenant acme -o yaml",
    "telemetry": "vnstitch telemetry push abilene --shift-to-now --tenant backbone --network-prefix pop-",
    "telemetry push": "vnstitch --server http://127.0.0.1:8470 telemetry push abilene --shift-to-now --last 288",
}


def subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    """(path, parser) of every command below `parser`, depth first ("get", "substrate import", ...)."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found.append((name, child))
                found.extend((f"{name} {sub}", grandchild) for sub, grandchild in subcommands(child))
    return found


def finish(parser: argparse.ArgumentParser) -> None:
    """Examples as epilogs (kept as written), and groups that need a subcommand print their own help."""
    for path, command in [("", parser)] + subcommands(parser):
        example = EXAMPLES.get(path)
        if example and not command.epilog:
            command.epilog = f"example:\n  {example}" + (f"\n\n{ENVIRONMENT}" if not path else "")
        if command.formatter_class is argparse.HelpFormatter:
            command.formatter_class = argparse.RawDescriptionHelpFormatter
        for action in command._actions:
            if isinstance(action, argparse._SubParsersAction):
                action.required = False  # main() prints the group's help instead of a bare usage error


def chosen_group(parser: argparse.ArgumentParser, args) -> argparse.ArgumentParser | None:
    """The deepest command group named on the command line whose subcommand is missing."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            name = getattr(args, action.dest, None) if action.dest != argparse.SUPPRESS else None
            if name is None:
                return parser
            return chosen_group(action.choices[name], args)
    return None
