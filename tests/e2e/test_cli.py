"""The CLI end to end on a real SQLite file: import, apply, get, plan, reconcile, delete, bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vnstitch.cli.main import main
from vnstitch.data import data_path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "abilene-stitches.yaml"


@pytest.fixture
def cli(tmp_path, capsys):
    store = f"sqlite://{tmp_path}/state.db"

    def run(*argv):
        code = main(["--store", store, *argv])
        out, err = capsys.readouterr()
        return code, out, err

    assert run("substrate", "import", str(data_path("abilene.xml")))[0] == 0
    return run


def test_apply_reconcile_get_json(cli):
    code, out, _ = cli("apply", "-f", str(EXAMPLE))
    assert code == 0 and "stitch/acme/blue-red created" in out
    code, out, _ = cli("plan")
    assert "ensure-stitch acme/blue-red (bandwidth, encrypted)" in out
    assert cli("reconcile", "--once")[0] == 0
    code, out, _ = cli("get", "stitches", "-o", "json")
    stitches = {s["metadata"]["name"]: s for s in json.loads(out)}
    assert stitches["blue-red"]["status"]["state"] == "ACTIVE"
    assert stitches["blue-red"]["status"]["reservedBandwidth"] == 2e9
    assert stitches["blue-red"]["status"]["path"][0] == "CHINng"  # blue's members tie: first node by name
    assert stitches["vm-tunnel"]["status"]["path"][0] == "CHINng"
    code, out, _ = cli("plan")
    assert "No changes" in out
    code, out, _ = cli("get", "stitch", "blue-red", "--tenant", "acme", "-o", "yaml")
    assert "state: ACTIVE" in out
    assert cli("delete", "stitch", "blue-red", "--tenant", "acme")[0] == 0
    assert cli("reconcile", "--once")[0] == 0
    code, out, _ = cli("get", "stitches")
    assert "blue-red" not in out and "vm-tunnel" in out


BAD = {
    "malformed YAML": ("kind: VirtualNetwork\nmetadata: {name: x\n", "malformed YAML at line"),
    "unknown key": ("kind: VirtualNetwork\nmetadata: {name: x}\nspec: {vnid: 5, cidr: 10.0.0.0/24, colour: red}\n",
                    "spec.colour: unknown key"),
    "unknown node": ("kind: VirtualNetwork\nmetadata: {name: x}\nspec: {vnid: 5, cidr: 10.0.0.0/24, members: "
                     "[{name: a, node: XYZ, address: 10.0.0.2}]}\n", "spec.members[0].node: unknown node 'XYZ'"),
    "negative bandwidth": ("kind: Stitch\nmetadata: {name: s}\nspec: {type: bandwidth, from: {network: a}, "
                           "to: {network: b}, bandwidth: -5Mbps}\n", "spec.bandwidth"),
    "absurd bandwidth": ("kind: Stitch\nmetadata: {name: s}\nspec: {type: bandwidth, from: {network: a}, "
                         "to: {network: b}, bandwidth: 900Tbps}\n", "spec.bandwidth: bandwidth"),
    "bad unit": ("kind: Stitch\nmetadata: {name: s}\nspec: {type: bandwidth, from: {network: a}, "
                 "to: {network: b}, bandwidth: 5 furlongs}\n", "spec.bandwidth"),
    "unknown kind": ("kind: Router\nmetadata: {name: r}\n", "kind: unknown kind 'Router'"),
    "host bits in cidr": ("kind: VirtualNetwork\nmetadata: {name: x}\nspec: {vnid: 5, cidr: 10.0.0.1/24}\n", "spec.cidr"),
    "vnid too large": ("kind: VirtualNetwork\nmetadata: {name: x}\nspec: {vnid: 16777216, cidr: 10.0.0.0/24}\n", "spec.vnid"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_naming_the_field_and_changes_nothing(cli, tmp_path, case):
    text, expected = BAD[case]
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    cli("apply", "-f", str(EXAMPLE))
    _, before, _ = cli("get", "virtualnetworks", "-o", "json")
    code, out, err = cli("apply", "-f", str(bad))
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert expected in err, err
    assert cli("get", "virtualnetworks", "-o", "json")[1] == before
    assert cli("validate", str(bad))[0] == 1


def test_duplicate_vnid_and_policy_refusal(cli, tmp_path):
    cli("apply", "-f", str(EXAMPLE))
    dup = tmp_path / "dup.yaml"
    dup.write_text("kind: VirtualNetwork\nmetadata: {name: other, tenant: acme}\nspec: {vnid: 1001, cidr: 10.7.0.0/24}\n")
    code, _, err = cli("apply", "-f", str(dup))
    assert code == 1 and "spec.vnid: VNID 1001 is already used by acme/blue" in err
    cross = tmp_path / "cross.yaml"
    cross.write_text("kind: VirtualNetwork\nmetadata: {name: ext, tenant: globex}\nspec: {vnid: 7, cidr: 10.1.0.0/24, "
                     "members: [{name: e1, node: DNVRng, address: 10.1.0.9}]}\n---\nkind: Stitch\nmetadata: {name: x, "
                     "tenant: acme}\nspec: {type: bandwidth, from: {network: blue}, to: {network: ext, tenant: globex}, "
                     "bandwidth: 1Gbps}\n")
    code, _, err = cli("apply", "-f", str(cross))
    assert code == 1 and "spec.from: network 'acme/blue' does not allow stitching to 'globex/ext'" in err
    assert "ext" not in cli("get", "virtualnetworks")[1]  # all or nothing: the network was not created either


def test_latency_no_path_can_meet(cli, tmp_path):
    cli("apply", "-f", str(EXAMPLE))
    tight = tmp_path / "tight.yaml"
    tight.write_text("kind: Stitch\nmetadata: {name: t, tenant: acme}\nspec: {type: bandwidth, from: {network: blue}, "
                     "to: {network: red}, bandwidth: 1Gbps, maxLatency: 2ms}\n")
    code, _, err = cli("apply", "-f", str(tight))
    assert code == 1 and err.startswith("error: spec.maxLatency: no path from CHINng to LOSAng: no path within 2 ms")


def test_unknown_store_scheme_and_missing_file(cli, capsys):
    assert main(["--store", "postgres://x", "get", "nodes"]) == 1
    assert "unknown store 'postgres://x'" in capsys.readouterr().err
    code, _, err = cli("apply", "-f", "/nonexistent.yaml")
    assert code == 1 and "cannot read /nonexistent.yaml" in err


def test_console_script_runs(tmp_path):
    exe = Path(sys.executable).parent / "vnstitch"
    proc = subprocess.run([str(exe), "--store", f"sqlite://{tmp_path}/s.db", "get", "nodes"],
                          capture_output=True, text=True, env={**os.environ})
    assert proc.returncode == 0 and "No nodes found." in proc.stdout
