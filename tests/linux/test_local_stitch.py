"""Stitches whose two ends attach to the same substrate node (a path of one node): routed inside the
node's namespace, with the stitch's nftables chain as the only way across, and no tunnel."""

from __future__ import annotations

import subprocess

from tests.linux.conftest import LAB_FILE
from vnstitch.drivers.linux.layout import StitchNames

DIRECT = """apiVersion: vnstitch.io/v1
kind: Stitch
metadata: {name: blue2-red2, tenant: acme}
spec:
  type: direct
  from: {network: blue, member: blue-2}
  to: {network: red, member: red-2}
  encryption: required
"""
# green gains a member on n2, next to blue-2 and red-2: the third network the stitch must not open
GREEN_ON_N2 = LAB_FILE.read_text().replace(
    "    - {name: green-1, node: n3, address: 10.3.0.31}",
    "    - {name: green-1, node: n3, address: 10.3.0.31}\n    - {name: green-2, node: n2, address: 10.3.0.32}")


def _ping(lab, vm: str, address: str) -> bool:
    return subprocess.run(["ip", "netns", "exec", lab.driver.lab.vm_ns(vm), "ping", "-n", "-q", "-c", "2", "-i",
                           "0.05", "-W", "1", address], capture_output=True).returncode == 0


def test_direct_stitch_between_two_vms_on_one_node(controlled):
    lab = controlled.lab
    controlled.apply(GREEN_ON_N2)
    controlled.apply(DIRECT)
    report = controlled.services.reconcile_once()
    assert not report.failures, report.failures
    status = controlled.stitch("blue2-red2").status
    assert status.state.value == "ACTIVE" and status.path == ["n2"], status
    assert _ping(lab, "blue-2", "10.2.0.22") and _ping(lab, "red-2", "10.1.0.12")
    assert lab.tcp_works("red-2", "10.2.0.22", "blue-2")
    assert "No changes" in controlled.services.reconcile_once().plan.render(), "a second pass changes nothing"

    # Exactly its two VMs: not the third network on the same node, not the ends' other members.
    assert _ping(lab, "green-2", "10.3.0.31"), "green's own traffic flows"
    for src, dst in (("blue-2", "10.3.0.32"), ("green-2", "10.1.0.12"), ("green-2", "10.2.0.22"),
                     ("blue-2", "10.2.0.21"), ("blue-1", "10.2.0.22")):
        assert not _ping(lab, src, dst), f"{src} must not reach {dst}"
    record = controlled.driver.state["stitches"]["acme/blue2-red2"]
    names = StitchNames(record["hash"], record["index"])
    vm_ns = lab.driver.lab.vm_ns("blue-2")
    forged = subprocess.run(["ip", "netns", "exec", vm_ns, "ip", "route", "add", "10.3.0.32/32", "via",
                             names.gateway_address("a"), "dev", names.peer_if("a"), "onlink"], capture_output=True)
    assert forged.returncode == 0, forged.stderr
    assert not _ping(lab, "blue-2", "10.3.0.32"), "the node drops what the stitch does not allow"

    # Nothing leaves n2, so no tunnel: encryption is satisfied by the traffic never leaving the host.
    links = lab.run("n2", "ip", "-o", "link").stdout
    assert names.gateway_if("a") in links and names.gateway_if("b") in links
    assert "vw" not in links and " vt" not in links
    seen = controlled.driver.observe().stitches["acme/blue2-red2"]
    assert seen.healthy and seen.encrypted and seen.tx_bytes > 0 and seen.rx_bytes > 0

    controlled.services.delete("Stitch", "blue2-red2", "acme")
    assert controlled.services.reconcile_once().released == ("acme/blue2-red2",)
    assert not _ping(lab, "blue-2", "10.2.0.22")
    assert f"lookup {names.table}" not in lab.run("n2", "ip", "rule").stdout
    assert names.gateway_if("a") not in lab.run("n2", "ip", "-o", "link").stdout


def test_segment_stitch_between_networks_attached_on_one_node(lab):
    op = lab.stitch_op("red-green", "segment", {"network": "red"}, {"network": "green"})
    assert op.path == ("n3",) and op.encrypted
    assert lab.driver.apply(op) is True
    assert lab.pings("red-1", "10.3.0.31", count=2), "red-1 and green-1 share n3"
    assert lab.pings("red-2", "10.3.0.31", count=2), "red-2 (on n2) reaches the gateway over red's VXLAN"
    assert lab.pings("green-1", "10.2.0.22", count=2)
    assert not lab.pings("blue-1", "10.3.0.31") and not lab.pings("green-1", "10.1.0.11"), "blue stays apart"
    assert lab.driver.apply(op) is False, "re-applying changes nothing"
    assert lab.driver.observe().stitches["acme/red-green"].healthy
