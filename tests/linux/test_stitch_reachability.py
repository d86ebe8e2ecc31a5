"""Reachability and isolation before/after an encrypted direct stitch, and idempotent re-apply."""

from __future__ import annotations

from tests.linux.conftest import lab_processes, lab_root_devices, lab_sockets
from vnstitch.drivers.linux.layout import short_hash
from vnstitch.planning.ops import RemoveStitch


def test_direct_stitch_connects_exactly_its_two_vms(lab):
    assert lab.pings("blue-1", "10.1.0.12"), "blue-1 reaches blue-2 over the network's VXLAN"
    assert not lab.pings("blue-1", "10.2.0.21"), "no stitch yet: blue-1 must not reach red-1"

    op = lab.stitch_op("b1-r1", "direct", {"network": "blue", "member": "blue-1"},
                       {"network": "red", "member": "red-1"})
    assert lab.driver.apply(op) is True
    assert lab.pings("blue-1", "10.2.0.21", count=3)
    assert lab.tcp_works("red-1", "10.2.0.21", "blue-1")
    assert lab.driver.apply(op) is False, "re-applying the same op changes nothing"
    assert lab.pings("blue-1", "10.1.0.12"), "traffic inside blue still flows under the default-deny policy"

    # Still isolated: other VMs, other networks, and a forged route through the stitch gateway.
    assert not lab.pings("blue-2", "10.2.0.21")
    assert not lab.pings("blue-1", "10.2.0.22")
    assert not lab.pings("blue-1", "10.3.0.31")
    record = lab.driver.state["stitches"]["acme/b1-r1"]
    from vnstitch.drivers.linux.layout import StitchNames
    names = StitchNames(record["hash"], record["index"])
    forged = lab.run("blue-1", "ip", "route", "add", "10.2.0.22/32", "via", names.gateway_address("a"),
                     "dev", names.peer_if("a"), "onlink")
    assert forged.returncode == 0, forged.stderr
    assert not lab.pings("blue-1", "10.2.0.22"), "nftables drops what the stitch does not allow"

    seen = lab.driver.observe().stitches["acme/b1-r1"]
    assert seen.healthy and seen.encrypted and seen.path == op.path and seen.tx_bytes > 0

    assert lab.driver.apply(RemoveStitch("acme/b1-r1")) is True
    assert lab.driver.apply(RemoveStitch("acme/b1-r1")) is False
    assert not lab.pings("blue-1", "10.2.0.21")
    assert "acme/b1-r1" not in lab.driver.observe().stitches


def test_segment_stitch_unencrypted_vxlan_joins_whole_networks(lab):
    op = lab.stitch_op("blue-green", "segment", {"network": "blue"}, {"network": "green"}, encryption="none")
    assert op.encrypted is False
    assert lab.driver.apply(op) is True
    assert lab.pings("blue-2", "10.3.0.31", count=2), "a member on another node reaches through the gateway"
    assert lab.pings("green-1", "10.1.0.11", count=2)
    assert not lab.pings("blue-1", "10.2.0.21"), "red is still not stitched"
    seen = lab.driver.observe().stitches["acme/blue-green"]
    assert seen.healthy and not seen.encrypted
    links = lab.run("n1", "ip", "-o", "link").stdout
    assert "vt" in links and "vw" not in links


def test_failed_stitch_is_rolled_back(lab):
    from vnstitch.errors import DriverError
    op = lab.stitch_op("broken", "direct", {"network": "blue", "member": "blue-1"},
                       {"network": "red", "member": "red-1"}, path=("n1", "n3", "nowhere"))
    try:
        lab.driver.apply(op)
    except DriverError as exc:
        assert exc.errno is not None
    else:
        raise AssertionError("a path ending at an unknown node must fail")
    assert "acme/broken" not in lab.driver.state["stitches"]
    for node in ("n1", "n3"):
        links = lab.run(node, "ip", "-o", "link").stdout
        assert " vg" not in links and " vw" not in links, links
        assert "lookup 1000" not in lab.run(node, "ip", "rule").stdout
    # No wireguard-go, UAPI socket or root-namespace device of the rolled-back stitch: its interfaces
    # are vw<hash>a/b, the hash the driver derives from the lab and the stitch.
    broken = short_hash(lab.name, op.stitch)
    assert not [line for line in lab_processes(lab.name) if f"vw{broken}" in line]
    assert lab_sockets(lab.name, also={f"vw{broken}a", f"vw{broken}b"}) == []
    assert lab_root_devices(lab.name, also_hashes={broken}) == []
