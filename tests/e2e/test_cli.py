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
def cli(cli):
    """The shared `cli` (tests/e2e/conftest.py) on a store holding the bundled Abilene substrate."""
    assert cli("substrate", "import", str(data_path("abilene.xml")))[0] == 0
    return cli


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
    rows = {line.split()[1]: line for line in out.splitlines()[1:]}
    assert "TERMINATED" in rows["blue-red"] and "0 bps" in rows["blue-red"], "kept for inspection, holding nothing"
    assert "ACTIVE" in rows["vm-tunnel"]
    assert cli("delete", "stitch", "blue-red", "--tenant", "acme")[0] == 0   # purges the finished record
    code, out, _ = cli("get", "stitches")
    assert "blue-red" not in out and "vm-tunnel" in out


BAD = {
    "malformed YAML": ("kind: VirtualNetwork\nmetadata: {name: x\n", "malformed YAML at line"),
    "unknown key": ("kind: VirtualNetwork\nmetadata: {name: x}\nspec: {vnid: 5, cidr: 10.0.0.0/24, colour: red}\n",
                    "spec.colour: is not a known field (known: vnid, cidr, members, policy, services, capabilities, trustLevel, external)"),
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
    proc = subprocess.run([str(exe), "--store", f"sqlite://{tmp_path}/s.db", "--create", "get", "nodes"],
                          capture_output=True, text=True, env={**os.environ})
    assert proc.returncode == 0 and "No nodes found." in proc.stdout


def test_reconcile_once_exits_2_and_names_the_ops_that_failed(cli, tmp_path):
    # The simulated kernel already holds a stray network on VNI 1001, the VNI of acme/blue.
    stray = {"vnid": 1001, "cidr": "10.9.0.0/24", "members": {}}
    (tmp_path / "state.db.sim.json").write_text(json.dumps({"networks": {"acme/stray": stray}, "stitches": {}}))
    cli("apply", "-f", str(EXAMPLE))
    code, out, err = cli("reconcile", "--once")
    assert code == 2, err
    assert "Traceback" not in err
    failed = [line for line in err.splitlines() if line.startswith("failed: ")]
    assert failed[0] == ("failed: ensure-network acme/blue vnid=1001 on CHINng,NYCMng: "
                         "VNI 1001 already in use by acme/stray")
    assert any(line.startswith("failed: ensure-stitch acme/blue-red") for line in failed)
    assert "remove-network acme/stray" in out  # the same pass removed the stray network
    _, out, _ = cli("get", "stitch", "blue-red", "--tenant", "acme", "-o", "json")
    assert json.loads(out)["status"]["state"] == "FAILED"
    code, _, err = cli("reconcile", "--once")  # nothing stands in the way any more
    assert code == 0, err
    _, out, _ = cli("get", "stitches", "-o", "json")
    assert {s["status"]["state"] for s in json.loads(out)} == {"ACTIVE"}


@pytest.fixture
def idle_server(tmp_path):
    """A real server whose reconciler ran its first pass and then waits an hour, so that the CLI's
    writes stay unapplied until the test runs the server's pass itself."""
    import threading
    import time

    import uvicorn

    from tests.api.conftest import Live, free_port, make_store, make_tokens
    from vnstitch.api.app import create_app
    from vnstitch.api.settings import Settings

    store = make_store(tmp_path)
    tokens = make_tokens(store)
    app = create_app(Settings(tick_s=3600, reconcile_min_interval_s=3600, rate_limit_per_s=0), store=store)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not (server.started and app.state.ctx.worker.passes):
        assert time.monotonic() < deadline, "the server or its reconciler did not start"
        time.sleep(0.02)
    yield Live(f"http://127.0.0.1:{port}", tokens, app, store)
    server.should_exit = True
    thread.join(10)


def test_plan_over_server_shows_the_servers_reconciler_plan(idle_server, tmp_path, capsys):
    def run(who, *argv):
        code = main(["--server", idle_server.url, "--token", idle_server.tokens[who], *argv])
        out, err = capsys.readouterr()
        return code, out, err

    assert run("member", "apply", "-f", str(EXAMPLE))[0] == 0
    code, out, err = run("admin", "plan")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "  1. ensure-network acme/blue vnid=1001 on CHINng,NYCMng  (network has no data-plane state yet)"
    assert any("ensure-stitch acme/blue-red (bandwidth, encrypted) over CHINng→" in line
               and line.endswith("(establish stitch (pending))") for line in lines)
    code, out, _ = run("admin", "plan", "-o", "json")
    ops = json.loads(out)["ops"]
    assert [op["target"] for op in ops] == ["acme/blue", "acme/red", "acme/blue-red", "acme/vm-tunnel"]
    assert all(op["reason"] for op in ops)

    code, _, err = run("member", "plan")
    assert code == 1 and err == "error: role 'member' may not see the reconciler's plan (needs admin)\n"
    for argv in (["reconcile", "--once"], ["reconcile"]):
        code, _, err = run("admin", *argv)
        assert code == 1 and len(err.splitlines()) == 1 and "Traceback" not in err, err
        assert "the server reconciles on its own; use `vnstitch plan`" in err

    idle_server.app.state.ctx.worker.run_pass()  # the server's own pass
    code, out, _ = run("admin", "plan")
    assert code == 0 and out.strip() == "No changes: the data plane matches the desired state."


def test_reconcile_loop_converges_and_stops_on_sigterm(cli, tmp_path):
    import signal
    import time

    cli("apply", "-f", str(EXAMPLE))
    exe = Path(sys.executable).parent / "vnstitch"
    loop = subprocess.Popen([str(exe), "--store", f"sqlite://{tmp_path}/state.db", "reconcile", "--interval", "0.2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            _, out, _ = cli("get", "stitches", "-o", "json")
            if {s["status"]["state"] for s in json.loads(out)} == {"ACTIVE"}:
                break
            assert loop.poll() is None, loop.communicate()
            assert time.monotonic() < deadline, "the loop did not bring the stitches up"
            time.sleep(0.1)
        loop.send_signal(signal.SIGTERM)
        _, err = loop.communicate(timeout=20)
    finally:
        loop.kill()
    assert loop.returncode == 0, err
    assert "Traceback" not in err
    assert "No changes" in cli("plan")[1]  # the loop's driver state outlived it


def test_a_store_path_that_does_not_exist_is_refused_unless_create(tmp_path, capsys):
    typo = tmp_path / "typo" / "state.db"
    assert main(["--store", f"sqlite://{typo}", "get", "nodes"]) == 1
    err = capsys.readouterr().err
    assert f"store sqlite://{typo} does not exist" in err and "--create" in err
    assert not typo.parent.exists(), "nothing was created"
    assert main(["--store", f"sqlite://{typo}", "--create", "get", "nodes"]) == 0
    assert typo.exists()
    assert main(["--store", f"sqlite://{typo}", "get", "nodes"]) == 0  # it exists now


def test_an_empty_file_is_an_error_naming_it(cli, tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing here\n---\n")
    for command in (("apply", "-f"), ("validate",)):
        code, _, err = cli(*command, str(empty))
        assert code == 1 and f"no resources in {empty}" in err, (command, err)


def test_a_bandwidth_without_a_unit_is_a_usage_error(cli):
    with pytest.raises(SystemExit) as exited:
        cli("availability", "blue", "red", "--bandwidth", "fast")
    assert exited.value.code == 2


def test_token_commands_refuse_a_server(tmp_path, capsys):
    code = main(["--server", "http://127.0.0.1:9", "--store", f"sqlite://{tmp_path}/t.db", "--create",
                 "token", "list"])
    assert code == 1 and "do not go through --server" in capsys.readouterr().err


QUANTITY_FLAGS = {  # argv → (exit code, what stderr's one line says)
    "availability --bandwidth": (["availability", "blue", "red", "--bandwidth", "100"],
                                 2, "argument --bandwidth: 100 has no unit: write the bandwidth with one, e.g. "
                                    "'100Mbps' (bits: bps, kbps, Mbps"),
    "availability --max-latency": (["availability", "blue", "red", "--bandwidth", "1Gbps", "--max-latency", "30"],
                                   2, "argument --max-latency: 30 has no unit: write the duration with one, e.g. "
                                      "'30ms' (ns, us, ms"),
    "substrate import --default-capacity": (["substrate", "import", "ABILENE", "--default-capacity", "10"],
                                            1, "error: --default-capacity: 10 has no unit: write the bandwidth "
                                               "with one, e.g. '10Gbps'"),
    "substrate import --default-latency": (["substrate", "import", "ABILENE", "--default-latency", "2"],
                                           1, "error: --default-latency: 2 has no unit: write the duration with "
                                              "one, e.g. '2ms'"),
    "replay --default-capacity": (["replay", "--default-capacity", "10", "--steps", "1"],
                                  1, "error: --default-capacity: 10 has no unit"),
    "replay --aggregate": (["replay", "--aggregate", "15", "--steps", "1"], 1, "error: --aggregate: 15 has no unit"),
    "audit --since": (["audit", "--since", "30"], 2, "argument --since: 30 has no unit"),
    "token create --ttl": (["token", "create", "--tenant", "acme", "--role", "reader", "--ttl", "30"],
                           1, "error: --ttl: 30 has no unit: write the duration with one, e.g. '30d'"),
    "serve --quota-bandwidth": (["serve", "--quota-bandwidth", "100", "--port", "9"],
                                1, "error: --quota-bandwidth: 100 has no unit"),
    "a unit in the wrong case": (["availability", "blue", "red", "--bandwidth", "10mbps"],
                                 2, "did you mean 'Mbps'?"),
}


@pytest.mark.parametrize("case", sorted(QUANTITY_FLAGS))
def test_a_quantity_flag_needs_its_unit_as_a_resource_file_does(cli, capsys, case):
    argv, expected_code, expected = QUANTITY_FLAGS[case]
    argv = [str(data_path("abilene.xml")) if a == "ABILENE" else a for a in argv]
    try:
        code = main(["--store", cli.store, *argv])
    except SystemExit as exited:  # argparse's usage error
        code = exited.code
    err = capsys.readouterr().err
    assert code == expected_code, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and "usage:" not in err, err
    assert expected in err, err


def test_quantity_flags_with_units_are_taken(cli):
    cli("apply", "-f", str(EXAMPLE))
    code, out, err = cli("availability", "blue", "red", "--tenant", "acme", "--bandwidth", "100Mbps",
                         "--max-latency", "30ms", "-o", "json")
    assert code == 0, err
    assert json.loads(out)["feasible"] is True
    code, out, err = cli("substrate", "import", str(data_path("abilene.xml")), "--default-capacity", "10Gbps",
                         "--default-latency", "2ms", "--dry-run")
    assert code == 0 and "(dry run)" in out, err
