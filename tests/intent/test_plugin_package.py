"""A translator from a separate package (examples/intent-plugin), installed with pip into a folder of its
own, is found through the entry-point group and used by the CLI: its expectation validates and compiles."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "examples" / "intent-plugin"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    target = tmp_path_factory.mktemp("plugin-site")
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                           "--no-index", "--target", str(target), str(PLUGIN)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return target


def vnstitch(site: Path, store: str, *argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, "-m", "vnstitch.cli.main", "--store", store, *argv], capture_output=True,
                          text=True, env=env, cwd=site, timeout=120)


def test_the_installed_plugin_is_registered_and_its_expectation_is_put_in_force(installed, tmp_path):
    store = f"sqlite://{tmp_path}/state.db"
    from vnstitch.data import data_path

    assert vnstitch(installed, store, "--create", "substrate", "import", str(data_path("abilene.xml"))).returncode == 0
    assert vnstitch(installed, store, "apply", "-f", str(ROOT / "examples" / "intents" / "networks.yaml")).returncode == 0
    applied = vnstitch(installed, store, "intent", "apply", "core-only",
                       "for group('acme/orders') expect trustZones(zones='default')", "--tenant", "acme")
    assert applied.returncode == 0, applied.stderr
    assert vnstitch(installed, store, "reconcile", "--once").returncode in (0, 2)
    network = vnstitch(installed, store, "get", "virtualnetwork", "orders", "--tenant", "acme", "-o", "json")
    assert '"allowedTrustZones": [\n      "default"\n    ]' in network.stdout or '"default"' in network.stdout, network.stdout
    import json

    assert json.loads(network.stdout)["spec"]["policy"]["allowedTrustZones"] == ["default"]
    intent = json.loads(vnstitch(installed, store, "get", "intent", "core-only", "--tenant", "acme", "-o", "json").stdout)
    assert intent["status"]["fulfilment"][0]["status"] == "FULFILLED", intent["status"]
    # without the plugin on the path the same type is unknown, and the error lists the valid ones
    bare = subprocess.run([sys.executable, "-m", "vnstitch.cli.main", "--store", store, "intent", "apply", "x",
                           "for group('acme/orders') expect trustZones(zones='core')", "--tenant", "acme"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert bare.returncode == 1 and "no translator for expectation type 'trustZones'" in bare.stderr
    assert "isolation, qos, reachability" in bare.stderr
