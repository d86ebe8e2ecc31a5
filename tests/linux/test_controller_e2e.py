"""The controller end to end on the real kernel: store → reconciler → linux driver, through the CLI."""

from __future__ import annotations

import json

from tests.linux.conftest import LAB_FILE as LAB, REPO
from vnstitch.cli.main import main

STITCH = REPO / "examples" / "lab-stitch.yaml"


def test_apply_reconcile_delete_drive_the_kernel(lab, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VNSTITCH_LAB_DIR", lab.directory)
    store = f"sqlite://{tmp_path}/state.db"

    def cli(*argv):
        code = main(["--store", store, "--create", "--driver", "linux", *argv])
        out, err = capsys.readouterr()
        assert code == 0, err
        return out

    cli("apply", "-f", str(LAB))
    cli("apply", "-f", str(STITCH))
    assert not lab.pings("blue-1", "10.2.0.21"), "networks are isolated before the stitch"
    assert "ensure-stitch acme/blue1-red1 (direct, encrypted)" in cli("plan")
    cli("reconcile", "--once")
    (stitch,) = json.loads(cli("get", "stitches", "-o", "json"))
    assert stitch["status"]["state"] == "ACTIVE"
    assert lab.pings("blue-1", "10.2.0.21", count=2)
    assert not lab.pings("blue-2", "10.2.0.21"), "the direct stitch joins exactly its two VMs"
    assert "No changes" in cli("reconcile", "--once"), "a second pass changes nothing in the kernel"
    cli("delete", "stitch", "blue1-red1", "--tenant", "acme")
    assert "teardown confirmed" in cli("reconcile", "--once")
    (finished,) = json.loads(cli("get", "stitches", "-o", "json"))
    assert finished["status"]["state"] == "TERMINATED" and finished["status"]["reservedBandwidth"] == 0
    assert not lab.pings("blue-1", "10.2.0.21")
