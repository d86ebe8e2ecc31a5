"""A real 3-member etcd cluster on 127.0.0.1 for the whole session (free ports, tmp dirs),
stopped afterwards: TLS with client certificates, etcd auth on, and the tests' etcd user limited
to the keys under ROLE_PREFIX (every test's prefix lives there). Without etcd the tests skip with
the reason, except under CI=true, where they fail with it (tests/tiers.py)."""

from __future__ import annotations

import itertools
import os

import pytest

from tests.etcd.cluster import ETCD_BINARY, LocalEtcdCluster
from tests.tiers import require_tier

MISSING_REASON = "etcd is not installed: run scripts/system-deps.sh (Debian package etcd-server)"

_prefixes = itertools.count()
ROOT = "vnstitch-test"          # every test's store prefix is under it...
ROLE_PREFIX = f"/{ROOT}/"       # ...and the etcd role of the tests' user may touch nothing else


@pytest.fixture(autouse=True)
def _etcd_tier():
    """Every test here needs etcd: skip (developer machine) or fail (CI=true) with the reason."""
    require_tier("etcd", MISSING_REASON if ETCD_BINARY is None else None)


@pytest.fixture(scope="session")
def etcd_cluster(tmp_path_factory):
    require_tier("etcd", MISSING_REASON if ETCD_BINARY is None else None)
    cluster = LocalEtcdCluster(3, base_dir=str(tmp_path_factory.mktemp("etcd")), role_prefix=ROLE_PREFIX)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def etcd_cluster_healthy(etcd_cluster):
    """The session cluster with every member running (a test that killed members restarts them)."""
    for member in etcd_cluster.members:
        if member.process is None or member.process.poll() is not None:
            etcd_cluster.start_member(member)
    etcd_cluster.wait_healthy(30.0)
    return etcd_cluster


@pytest.fixture
def etcd_prefix(request):
    """A key prefix of its own for each test (under ROOT, where the etcd role lets the tests write)."""
    name = f"t{os.getpid()}-{next(_prefixes)}-{request.node.name[:40]}".replace("[", "-").replace("]", "")
    return f"{ROOT}/{name}"


@pytest.fixture
def etcd_store(etcd_cluster_healthy, etcd_prefix):
    from vnstitch.store.etcd import EtcdStore

    store = EtcdStore(etcd_cluster_healthy.endpoints.split(","), etcd_prefix)
    yield store
    store.close()
