"""A tier that cannot run skips with its reason on a developer machine and fails with it under CI=true:
the helper (tests/tiers.py), each tier's conftest wired to it, and scripts/system-deps.sh."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tiers import FORCE_MISSING_ENV

REPO = Path(__file__).resolve().parents[2]

TINY = '''
from tests.tiers import require_tier

def test_needs_the_tool():
    require_tier("gizmo", "gizmo is not installed: apt-get install gizmo")

def test_needs_nothing():
    require_tier("always", None)
'''


def _pytest(args: list[str], ci: bool, cwd: Path, missing: str = "") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", FORCE_MISSING_ENV, "PYTEST_ADDOPTS")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # none is needed here, and loading them takes seconds
    if ci:
        env["CI"] = "true"
    if missing:
        env[FORCE_MISSING_ENV] = missing
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("ci", [False, True], ids=["developer", "ci"])
def test_the_helper_skips_on_a_developer_machine_and_fails_under_ci(tmp_path, ci):
    (tmp_path / "test_tiny.py").write_text(TINY)
    run = _pytest(["test_tiny.py"], ci, tmp_path)
    out = run.stdout + run.stderr
    assert "gizmo is not installed: apt-get install gizmo" in out, out
    if ci:
        assert run.returncode == 1 and "1 failed, 1 passed" in out, out
        assert "CI=true, so a tier that cannot run fails" in out, out
    else:
        assert run.returncode == 0 and "1 passed, 1 skipped" in out, out


def test_a_tier_can_be_forced_missing(tmp_path):
    (tmp_path / "test_tiny.py").write_text(TINY)
    run = _pytest(["test_tiny.py"], True, tmp_path, missing="always")
    assert run.returncode == 1 and "2 failed" in run.stdout, run.stdout
    assert f"{FORCE_MISSING_ENV} lists 'always'" in run.stdout, run.stdout


# One test of each tier, whose conftest must refuse to pass silently when its tool is missing.
TIERS = {
    "linux": "tests/linux/test_local_stitch.py",
    "etcd": "tests/etcd/test_etcd_store.py",
    "prometheus": "tests/telemetry/test_prometheus.py::test_a_stopped_server_is_unavailable_not_a_crash",
    "schemathesis": "tests/api/test_schemathesis.py::test_enough_cases_ran",  # alone: zero cases ran
}


@pytest.mark.slow  # imports each tier's conftest (and the API app) in a fresh interpreter
@pytest.mark.parametrize("ci", [False, True], ids=["developer", "ci"])
def test_every_tier_fails_under_ci_when_it_cannot_run(ci):
    run = _pytest(list(TIERS.values()), ci, REPO, missing="linux,etcd,prometheus")
    out = run.stdout + run.stderr
    for tier in TIERS:
        assert f"tier {tier!r}" in out, (tier, out)
    assert "the generated tests did not run in this session" in out, out
    summary = run.stdout.strip().splitlines()[-1]
    if ci:
        assert run.returncode == 1 and "failed" in summary and "skipped" not in summary, out
    else:
        assert run.returncode == 0 and "skipped" in summary and "failed" not in summary, out


@pytest.mark.parametrize("ci", [False, True], ids=["developer", "ci"])
def test_system_deps_not_root_fails_only_under_ci(tmp_path, ci):
    """Not root and packages missing (fake `id` and `dpkg-query` first on PATH)."""
    (tmp_path / "id").write_text("#!/bin/sh\necho 1000\n")
    (tmp_path / "dpkg-query").write_text("#!/bin/sh\nexit 1\n")
    for tool in ("id", "dpkg-query"):
        (tmp_path / tool).chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PATH"] = f"{tmp_path}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
    if ci:
        env["CI"] = "true"
    run = subprocess.run(["sh", str(REPO / "scripts" / "system-deps.sh")], env=env, capture_output=True,
                         text=True, timeout=60)
    assert "not root" in run.stderr and "etcd-server" in run.stderr, run.stderr
    if ci:
        assert run.returncode != 0 and "CI=true" in run.stderr, run.stderr
    else:
        assert run.returncode == 0 and "apt-get install" in run.stderr, run.stderr
