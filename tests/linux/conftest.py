"""Real-kernel fixtures: a lab per test in a temporary state dir, torn down even on failure."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAB_FILE = REPO / "examples" / "lab.yaml"
TOOLS = ("ip", "tc", "nft", "wg", "wireguard-go", "iperf3", "ping")


def _why_skip() -> str | None:
    if os.geteuid() != 0:
        return "tests/linux need root (network namespaces); run as root or in CI"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"missing tools: {', '.join(missing)} (run scripts/system-deps.sh)"
    try:
        import pyroute2  # noqa: F401
    except ImportError:
        return "pyroute2 is not installed (pip install -e '.[linux]')"
    probe = subprocess.run(["ip", "link", "add", "vnsprobe0", "type", "veth", "peer", "name", "vnsprobe1"],
                           capture_output=True)
    if probe.returncode != 0:
        return f"cannot create veth pairs here: {probe.stderr.decode().strip()}"
    subprocess.run(["ip", "link", "del", "vnsprobe0"], capture_output=True)
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun (wireguard-go needs TUN)"
    return None


SKIP_REASON = _why_skip()
if SKIP_REASON:
    print(f"\ntests/linux skipped: {SKIP_REASON}")


def pytest_collection_modifyitems(config, items):
    if SKIP_REASON:
        for item in items:
            if "tests/linux" in str(item.fspath):
                item.add_marker(pytest.mark.skip(reason=SKIP_REASON))


_counter = itertools.count()


class Lab:
    """A running lab plus helpers to run commands in its VMs."""

    def __init__(self, name: str, directory: str):
        from vnstitch.drivers.linux import create_driver
        self.name, self.directory = name, directory
        self.create_driver = lambda: create_driver(directory)
        self.driver = self.create_driver()
        self.background: list[subprocess.Popen] = []

    def ns(self, vm: str) -> str:
        return self.driver.lab.vm_ns(vm) if vm in self.driver.lab.vms else self.driver.lab.node_ns(vm)

    def run(self, vm: str, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.ns(vm), *argv], capture_output=True, text=True,
                              timeout=timeout)

    def spawn(self, vm: str, *argv: str) -> subprocess.Popen:
        proc = subprocess.Popen(["ip", "netns", "exec", self.ns(vm), *argv], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        self.background.append(proc)
        return proc

    def pings(self, vm: str, address: str, count: int = 1) -> bool:
        return self.run(vm, "ping", "-n", "-q", "-c", str(count), "-i", "0.05", "-W", "1", address).returncode == 0

    def tcp_works(self, server_vm: str, server_ip: str, client_vm: str, port: int = 5201) -> bool:
        server = self.spawn(server_vm, "iperf3", "-s", "-1", "-p", str(port))
        try:
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                client = self.run(client_vm, "iperf3", "-c", server_ip, "-p", str(port), "-t", "1", "--connect-timeout", "1000",
                                  timeout=20)
                if client.returncode == 0:
                    return True
                if "refused" not in client.stdout + client.stderr:
                    return False
                time.sleep(0.05)
            return False
        finally:
            server.kill()
            server.wait()

    def stitch_op(self, name: str, type_: str, src: dict, dst: dict, **spec):
        from vnstitch.domain.stitch import Stitch
        from vnstitch.lab.stitching import stitch_op
        path = spec.pop("path", None)
        resource = Stitch.model_validate({"apiVersion": "vnstitch.io/v1", "kind": "Stitch",
                                          "metadata": {"name": name, "tenant": "acme"},
                                          "spec": {"type": type_, "from": src, "to": dst, **spec}})
        return stitch_op(self.driver.lab, self.driver.state["networks"], resource, path=path)

    def close(self) -> None:
        for proc in self.background:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        self.driver.close()


def leftovers(name: str) -> list[str]:
    """Namespaces, wireguard-go processes and sockets of lab `name` that still exist."""
    from vnstitch.drivers.linux.kernel import list_netns
    prefix = f"vns-{name}-"
    found = [f"netns {n}" for n in list_netns(prefix)]
    return found


@pytest.fixture
def lab(tmp_path, request):
    """A fresh lab from examples/lab.yaml (scale 0.01: 5 Gbps links → 50 Mbit/s), removed afterwards."""
    from vnstitch.lab import builder
    name = f"t{os.getpid() % 10000}-{next(_counter)}"
    directory = str(tmp_path / "lab")
    created = None
    try:
        builder.up(str(LAB_FILE), name=name, scale=0.01, directory=directory)
        created = Lab(name, directory)
        yield created
    finally:
        if created is not None:
            created.close()
        builder.down(directory, name=name)
        assert leftovers(name) == [], f"lab {name} left {leftovers(name)}"


class Controlled:
    """The controller's local services over a lab: store (SQLite) → reconciler → linux driver."""

    def __init__(self, lab: Lab, store_url: str):
        from vnstitch.controller.services import open_local
        self.lab = lab
        self.services = open_local(store_url, "linux", lab.directory)

    def apply(self, text: str) -> None:
        from vnstitch.domain.registry import parse_documents
        self.services.apply(parse_documents(text))

    def stitch(self, name: str, tenant: str = "acme"):
        return self.services.get("Stitch", name, tenant)

    @property
    def driver(self):
        return self.services.reconciler.driver


@pytest.fixture
def controlled(lab, tmp_path):
    """`lab` plus the controller over it, with the lab's own resources (examples/lab.yaml) applied."""
    created = Controlled(lab, f"sqlite://{tmp_path}/state.db")
    try:
        created.apply(LAB_FILE.read_text())
        yield created
    finally:
        created.services.close()


def iperf_server(lab, vm: str, port: int):
    """iperf3 -s -1 in a VM, returned once it listens (the tests that measure a stitch's rate use it)."""
    import time

    server = lab.spawn(vm, "iperf3", "-s", "-1", "-p", str(port))
    deadline = time.monotonic() + 3
    while f":{port}" not in lab.run(vm, "ss", "-Hltn").stdout:
        assert time.monotonic() < deadline, "iperf3 server did not start"
        time.sleep(0.02)
    return server
