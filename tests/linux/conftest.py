"""Real-kernel fixtures: a lab per test in a temporary state dir, torn down even on failure, then
checked for leftovers (namespaces, processes, wireguard-go sockets, root-namespace devices)."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.tiers import require_tier

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
    print(f"\ntests/linux cannot run: {SKIP_REASON}")


@pytest.fixture(autouse=True)
def _linux_tier():
    """Every test here needs root, the tools, veth and TUN: skip (developer machine) or fail (CI=true)
    with the reason (tests/tiers.py)."""
    require_tier("linux", SKIP_REASON)


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


@dataclass
class LabTrace:
    """What a lab was seen to own while it was up: after `lab down` its namespaces have no names and
    its state file is gone, so these are what attribute a leftover to it."""

    netns: dict[tuple[int, int], str] = field(default_factory=dict)   # (st_dev, st_ino) → netns name
    wg_ifnames: set[str] = field(default_factory=set)
    stitch_hashes: set[str] = field(default_factory=set)
    member_ports: set[str] = field(default_factory=set)


_TRACES: dict[str, LabTrace] = {}
OUR_DEVICE = re.compile(r"^v[gpwt]([0-9a-f]{8})r?[ab]$")   # StitchNames: vg/vp/vw/vt + hash (+ r: slot 1) + side


def _netns_inodes(prefix: str = "") -> dict[tuple[int, int], str]:
    """(st_dev, st_ino) → name of the named network namespaces (`ip netns list`) starting with prefix."""
    from vnstitch.drivers.linux.kernel import NETNS_DIR, list_netns
    out = {}
    for ns in list_netns(prefix):
        try:
            st = os.stat(os.path.join(NETNS_DIR, ns))
        except OSError:
            continue
        out[(st.st_dev, st.st_ino)] = ns
    return out


def remember(name: str, directory: str) -> LabTrace:
    """Record lab `name`'s namespaces and, from its state file, its stitches' interface names (call it
    while the lab is up: the `lab` fixture does after `lab up` and before `lab down`)."""
    from vnstitch.drivers.linux.layout import StitchNames, member_ifname
    from vnstitch.drivers.linux.statefile import read_state
    trace = _TRACES.setdefault(name, LabTrace())
    trace.netns.update(_netns_inodes(f"vns-{name}-"))
    try:
        state = read_state(directory)
    except (OSError, ValueError):
        return trace
    for record in state.get("stitches", {}).values():
        names = StitchNames(record["hash"], record["index"])
        trace.stitch_hashes.add(names.hash)
        for slot in (0, 1):  # both key-rotation slots (layout.StitchNames.slot)
            trace.wg_ifnames.update(names.in_slot(slot).wg_if(side) for side in ("a", "b"))
    for key, network in state.get("networks", {}).items():
        trace.member_ports.update(member_ifname(name, key, m["name"]) for m in network.get("members", []))
    return trace


def _processes() -> list[tuple[int, list[str], tuple[int, int]]]:
    """(pid, argv, netns inode) of every live process but this one (zombies have neither)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                argv = [a.decode(errors="replace") for a in handle.read().split(b"\0") if a]
            st = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue
        if argv:
            out.append((int(entry), argv, (st.st_dev, st.st_ino)))
    return out


def _wg_ifname(argv: list[str]) -> str | None:
    """The interface a wireguard-go command line serves (`wireguard-go [-f] IFNAME`), else None."""
    if not argv or os.path.basename(argv[0]) != "wireguard-go":
        return None
    names = [a for a in argv[1:] if not a.startswith("-")]
    return names[-1] if names else None


def _lab_processes(name: str) -> list[tuple[int, list[str], str]]:
    """(pid, argv, where) of lab `name`'s processes: any process in one of its named namespaces, and
    wireguard-go serving one of its interfaces or living in one of its namespaces after that lost its name."""
    trace = _TRACES.get(name, LabTrace())
    ours, named = _netns_inodes(f"vns-{name}-"), _netns_inodes()
    found = []
    for pid, argv, inode in _processes():
        ifname = _wg_ifname(argv)
        if inode in ours:
            found.append((pid, argv, f"in netns {ours[inode]}"))
        elif ifname is None:
            continue
        elif inode not in named and inode in trace.netns:  # alive, so the inode has not been reused
            found.append((pid, argv, f"in netns {trace.netns[inode]}, deleted"))
        elif ifname in trace.wg_ifnames or (OUR_DEVICE.match(ifname) and ifname[2:10] in trace.stitch_hashes):
            found.append((pid, argv, "serving one of its stitches"))
    return found


def lab_processes(name: str) -> list[str]:
    """What `_lab_processes` finds, one line each."""
    return [f"process {pid} {' '.join(argv)} ({where})" for pid, argv, where in _lab_processes(name)]


def lab_sockets(name: str, also: set[str] = frozenset()) -> list[str]:
    """wireguard-go UAPI sockets (/var/run/wireguard/IFNAME.sock) of lab `name`'s interfaces or of `also`."""
    from vnstitch.drivers.linux.wireguard import SOCKET_DIR
    trace = _TRACES.get(name, LabTrace())
    try:
        entries = sorted(os.listdir(SOCKET_DIR))
    except FileNotFoundError:
        return []
    found = []
    for entry in entries:
        ifname = entry.removesuffix(".sock")
        match = OUR_DEVICE.match(ifname)
        if ifname in trace.wg_ifnames or ifname in also or (match and match.group(1) in trace.stitch_hashes):
            found.append(f"socket {os.path.join(SOCKET_DIR, entry)}")
    return found


def lab_root_devices(name: str, also_hashes: set[str] = frozenset()) -> list[str]:
    """Devices of lab `name` (its stitches' vg/vp/vw/vt interfaces, its member ports) in the root
    namespace; `also_hashes` adds stitches its state no longer records."""
    import json

    trace = _TRACES.get(name, LabTrace())
    listed = subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True)
    found = []
    for link in json.loads(listed.stdout or "[]"):
        ifname = link.get("ifname", "")
        match = OUR_DEVICE.match(ifname)
        if ifname in trace.member_ports or (match and match.group(1) in trace.stitch_hashes | also_hashes):
            found.append(f"root-namespace device {ifname}")
    return found


def leftovers(name: str) -> list[str]:
    """Namespaces, processes, wireguard-go sockets and root-namespace devices of lab `name` that still exist."""
    from vnstitch.drivers.linux.kernel import list_netns
    processes = _lab_processes(name)
    serving = {ifname for _, argv, _ in processes if (ifname := _wg_ifname(argv))}
    return ([f"netns {n}" for n in list_netns(f"vns-{name}-")]
            + [f"process {pid} {' '.join(argv)} ({where})" for pid, argv, where in processes]
            + lab_sockets(name, also=serving) + lab_root_devices(name))


@pytest.fixture
def lab(tmp_path, request):
    """A fresh lab from examples/lab.yaml (scale 0.01: 5 Gbps links → 50 Mbit/s), removed afterwards."""
    from vnstitch.lab import builder
    name = f"t{os.getpid() % 10000}-{next(_counter)}"
    directory = str(tmp_path / "lab")
    created = None
    try:
        builder.up(str(LAB_FILE), name=name, scale=0.01, directory=directory)
        remember(name, directory)
        created = Lab(name, directory)
        yield created
    finally:
        if created is not None:
            created.close()
        remember(name, directory)  # the stitches the test made, before `lab down` forgets them
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
