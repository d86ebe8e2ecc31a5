"""What `vnstitch get KIND [NAME] -o yaml|json` prints applies again, unchanged, for every kind the command
prints, status and all: a stitch's first transition comes from no state (`from: null`)."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vnstitch.data import data_path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "abilene-stitches.yaml"
POLICY = "kind: ForecastPolicy\nmetadata: {name: fc, tenant: acme}\nspec: {interval: 5m, trainingWindow: 2d}\n"
ONE = {"stitches": "blue-red", "virtualnetworks": "blue", "forecastpolicies": "fc", "nodes": "CHINng",
       "links": "CHINng--IPLSng"}


@pytest.fixture
def populated(cli, tmp_path):
    """Abilene, the example's networks and stitches reconciled (each with a status history), and a
    ForecastPolicy whose status the proactive loop has written (a trained model, its last run)."""
    from vnstitch.store import open_store

    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    assert cli("substrate", "import", str(data_path("abilene.xml")))[0] == 0
    assert cli("apply", "-f", str(EXAMPLE), "-f", str(policy))[0] == 0
    assert cli("reconcile", "--once")[0] == 0
    store = open_store(cli.store)
    try:
        record = store.get("ForecastPolicy", "acme", "fc")
        record.value["status"] = {"model": {"name": "last_value", "state": "trained", "version": 1,
                                            "trainedAt": 1_796_157_720.0, "trainedOn": 576},
                                  "lastStep": 12, "lastEnd": 1_796_158_020.0, "lastRun": 1_796_158_021.5,
                                  "safeIntervals": {"blue>red": 3}, "pairs": 1, "telemetry": "ok"}
        store.put("ForecastPolicy", "acme", "fc", record.value)
    finally:
        store.close()
    return cli


def test_get_stitch_yaml_piped_into_apply(populated):
    """The issue's own command line, through a shell pipe, on the SQLite store."""
    exe = Path(sys.executable).parent / "vnstitch"
    _, shown, _ = populated("get", "stitch", "blue-red", "--tenant", "acme", "-o", "yaml")
    assert "    from: null\n" in shown, "the first transition keeps its key"
    vnstitch = f"{exe} --store {populated.store}"
    proc = subprocess.run(["bash", "-o", "pipefail", "-c",
                           f"{vnstitch} get stitch blue-red --tenant acme -o yaml | {vnstitch} apply -f -"],
                          capture_output=True, text=True, env={**os.environ}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "stitch/acme/blue-red unchanged"
    assert populated("get", "stitch", "blue-red", "--tenant", "acme", "-o", "yaml")[1] == shown


@pytest.mark.parametrize("fmt", ["yaml", "json"])
@pytest.mark.parametrize("kind", sorted(ONE))
@pytest.mark.parametrize("one", [False, True], ids=["list", "one"])
def test_get_output_applies_again_unchanged(populated, monkeypatch, kind, fmt, one):
    tenant = ["--tenant", "acme"] if one and kind not in ("nodes", "links") else []
    argv = ["get", kind, *([ONE[kind]] if one else []), *tenant, "-o", fmt]
    code, shown, err = populated(*argv)
    assert code == 0, err
    objects = json.loads(shown) if fmt == "json" else None
    if objects is not None:
        assert (isinstance(objects, dict) if one else objects), "something to apply"
    monkeypatch.setattr(sys, "stdin", io.StringIO(shown))
    code, out, err = populated("apply", "-f", "-")
    assert code == 0, err
    lines = out.splitlines()
    assert lines and all(line.endswith(" unchanged") for line in lines), out
    assert populated(*argv)[1] == shown, "nothing changed, not even a resource version"
