"""`leftovers()` finds what a botched teardown leaves: each of its checks is shown to fail."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from tests.linux.conftest import LAB_FILE, Lab, leftovers, remember
from vnstitch.drivers.linux.kernel import list_netns
from vnstitch.drivers.linux.layout import StitchNames
from vnstitch.drivers.linux.wireguard import socket_path


def _gone(pid: int, timeout_s: float = 5.0) -> bool:
    """Reap our child `pid` (or wait for a stranger's) until it no longer exists."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        if not os.path.exists(f"/proc/{pid}"):
            return True
        time.sleep(0.01)
    return False


def test_leftovers_reports_namespaces_processes_sockets_and_root_devices(tmp_path):
    from vnstitch.lab import builder

    name, directory = f"lo{os.getpid() % 10000}", str(tmp_path / "lab")
    stray_ns = f"vns-{name}-stray"
    pids: list[int] = []
    names = None
    try:
        builder.up(str(LAB_FILE), name=name, scale=0.01, directory=directory)
        lab = Lab(name, directory)
        op = lab.stitch_op("leak", "direct", {"network": "blue", "member": "blue-1"},
                           {"network": "red", "member": "red-1"})
        assert lab.driver.apply(op) is True
        record = lab.driver.state["stitches"][op.stitch]
        names = StitchNames(record["hash"], record["index"])
        pids = sorted(record["pids"].values())
        lab.close()
        remember(name, directory)
        up = leftovers(name)
        assert f"netns vns-{name}-n1" in up, up
        assert [p for p in pids if any(line.startswith(f"process {p} ") for line in up)] == pids, up

        # A teardown that removes the namespaces' names and stops nothing: each wireguard-go, in a namespace
        # of its own, keeps running and its UAPI socket stays; a stitch veth sits in the root namespace.
        for ns in list_netns(f"vns-{name}-"):
            subprocess.run(["ip", "netns", "del", ns], check=True)
        subprocess.run(["ip", "link", "add", names.peer_if("a"), "type", "veth", "peer", "name",
                        names.gateway_if("a")], check=True)
        found = leftovers(name)
        assert not [line for line in found if line.startswith("netns ")], found
        for pid in pids:   # each wireguard-go runs in a namespace of its own: found by the device it serves
            assert [line for line in found if line.startswith(f"process {pid} wireguard-go")], (pid, found)
        for side in ("a", "b"):
            assert f"socket {socket_path(names.wg_if(side))}" in found, found
        assert f"root-namespace device {names.peer_if('a')}" in found, found
        assert f"root-namespace device {names.gateway_if('a')}" in found, found

        # kill -9: the processes go, their sockets stay (nobody unlinked them).
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
            assert _gone(pid)
        found = leftovers(name)
        assert not [line for line in found if line.startswith("process ")], found
        assert f"socket {socket_path(names.wg_if('b'))}" in found, found

        # A namespace of the lab, empty: reported by name.
        subprocess.run(["ip", "netns", "add", stray_ns], check=True)
        assert f"netns {stray_ns}" in leftovers(name)
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _gone(pid)
        if names is not None:
            subprocess.run(["ip", "link", "del", names.peer_if("a")], capture_output=True)
            for side in ("a", "b"):
                if os.path.exists(socket_path(names.wg_if(side))):
                    os.unlink(socket_path(names.wg_if(side)))
        subprocess.run(["ip", "netns", "del", stray_ns], capture_output=True)
        builder.down(directory, name=name)
    assert leftovers(name) == []
