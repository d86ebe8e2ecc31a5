"""Self-healing: what breaks under an established stitch is named in the plan and one pass repairs it."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from tests.linux.conftest import LAB_FILE, REPO
from vnstitch.drivers.linux import nft
from vnstitch.drivers.linux.layout import StitchNames

STITCH = (REPO / "examples" / "lab-stitch.yaml").read_text()   # blue-1 (n1) ⇄ red-1 (n3), encrypted


def _established(controlled, encryption: str = "required") -> StitchNames:
    if encryption == "none":  # blue and red must accept an unencrypted stitch
        text = LAB_FILE.read_text()
        for peer in ("red", "blue"):
            text = text.replace(f"allowStitchTo: [{peer}]}}", f"allowStitchTo: [{peer}], allowUnencrypted: true}}")
        controlled.apply(text)
    controlled.apply(STITCH.replace("encryption: required", f"encryption: {encryption}"))
    controlled.services.reconcile_once()
    assert controlled.stitch("blue1-red1").status.state.value == "ACTIVE"
    assert controlled.lab.pings("blue-1", "10.2.0.21")
    record = controlled.driver.state["stitches"]["acme/blue1-red1"]
    return StitchNames(record["hash"], record["index"])


def _repaired_by_one_pass(controlled, problem: str) -> None:
    """The plan names the repair; one pass rebuilds what is missing; the status tells the story."""
    lines = [str(op) for op in controlled.services.plan().ops]
    assert len(lines) == 1 and "ensure-stitch acme/blue1-red1" in lines[0] and "repair: " in lines[0], lines
    assert problem in lines[0], lines
    report = controlled.services.reconcile_once()
    assert not report.failures, report.failures
    status = controlled.stitch("blue1-red1").status
    assert status.state.value == "ACTIVE", status
    degraded, active = status.history[-2:]
    assert (degraded.to_state.value, active.to_state.value) == ("DEGRADED", "ACTIVE")
    assert problem in degraded.reason and "repaired" in active.reason and problem in active.reason
    assert controlled.lab.pings("blue-1", "10.2.0.21", count=2), "traffic flows again"
    assert not controlled.services.plan().ops, "repaired: nothing left to do"


def test_killed_wireguard_go_is_restarted_by_one_pass(controlled):
    names = _established(controlled)
    pid = controlled.driver.state["stitches"]["acme/blue1-red1"]["pids"]["b"]
    os.kill(pid, signal.SIGKILL)
    try:
        os.waitpid(pid, 0)   # ours (the driver started it): reap, so it is gone, not a zombie
    except ChildProcessError:
        pass
    assert not controlled.lab.pings("blue-1", "10.2.0.21"), "the tunnel is down"
    _repaired_by_one_pass(controlled, names.wg_if("b"))
    assert controlled.driver.state["stitches"]["acme/blue1-red1"]["pids"]["b"] != pid


BREAKAGES = {  # what breaks: (encryption, node, command, the name the problem must carry)
    "gateway veth": ("required", "n1", lambda n: ["ip", "link", "del", n.gateway_if("a")],
                     lambda n: n.gateway_if("a")),
    "nft chain": ("required", "n3", lambda n: ["nft", "flush", "chain", "inet", nft.TABLE,
                                               nft.chain_name(f"{n.hash}b")],
                  lambda n: nft.chain_name(f"{n.hash}b")),
    "vxlan tunnel": ("none", "n3", lambda n: ["ip", "link", "del", n.vxlan_if("b")], lambda n: n.vxlan_if("b")),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_deleted_device_or_flushed_chain_is_rebuilt_by_one_pass(controlled, breakage):
    encryption, node, argv, broken = BREAKAGES[breakage]
    names = _established(controlled, encryption)
    subprocess.run(["ip", "netns", "exec", controlled.lab.ns(node), *argv(names)], check=True)
    assert not controlled.lab.pings("blue-1", "10.2.0.21")
    _repaired_by_one_pass(controlled, broken(names))


def test_reapplying_an_existing_stitch_rebuilds_every_missing_piece(lab):
    """EnsureStitch over an existing record reads back and re-adds, also what observe() does not list."""
    op = lab.stitch_op("b1-r1", "direct", {"network": "blue", "member": "blue-1"},
                       {"network": "red", "member": "red-1"}, bandwidth="1Gbps", path=("n1", "n3"))
    assert lab.driver.apply(op) is True
    record = lab.driver.state["stitches"]["acme/b1-r1"]
    names = StitchNames(record["hash"], record["index"])
    _, egress, _ = lab.driver.lab.link_between("n1", "n3")
    table = str(names.table)
    for vm, argv in [
        ("blue-1", ["ip", "route", "del", "10.2.0.21/32"]),                                 # the VM's route
        ("blue-1", ["ip", "neigh", "del", names.gateway_address("a"), "dev", names.peer_if("a")]),
        ("n3", ["ip", "route", "del", "10.1.0.11/32", "table", table]),                     # end routing
        ("n3", ["ip", "rule", "del", "pref", table, "iif", names.gateway_if("b")]),
        ("n1", ["ip", "route", "del", "10.255.0.3/32", "table", table]),                    # path pinning
        ("n1", ["wg", "set", names.wg_if("a"), "peer", record["public"]["b"], "remove"]),   # the tunnel's peer
        ("n1", ["tc", "filter", "del", "dev", egress, "parent", "1:", "prio", str(names.filter_prio)]),
        ("n1", ["tc", "class", "del", "dev", egress, "classid", f"1:{names.class_minor:x}"]),  # the reservation
    ]:
        done = lab.run(vm, *argv)
        assert done.returncode == 0, (argv, done.stderr)
    assert not lab.pings("blue-1", "10.2.0.21")
    assert lab.driver.apply(op) is True
    assert lab.pings("blue-1", "10.2.0.21", count=2)
    assert f"1:{names.class_minor:x}" in lab.run("n1", "tc", "class", "show", "dev", egress).stdout
    assert lab.driver.apply(op) is False, "everything is back: a second apply changes nothing"
    assert lab.driver.observe().stitches["acme/b1-r1"].healthy
