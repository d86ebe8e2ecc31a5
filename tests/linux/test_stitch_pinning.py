"""Path pinning where the path leaves the underlay's next hop; nothing of a removed stitch remains."""

from __future__ import annotations

import json
import subprocess

from vnstitch.drivers.linux.layout import StitchNames
from vnstitch.planning.ops import RemoveStitch


def _udp_packets_forwarded(lab, node: str) -> int:
    out = lab.run(node, "nft", "-j", "list", "chain", "inet", "vnspin", "transit").stdout
    return sum(expr["counter"]["packets"] for item in json.loads(out)["nftables"] if "rule" in item
               for expr in item["rule"]["expr"] if "counter" in expr)


def test_stitch_off_the_underlay_path_is_pinned_to_it(lab):
    # The underlay routes n1→n3 via n2 (2 ms < 3 ms); this stitch must take the direct n1–n3 link.
    op = lab.stitch_op("b1-r1", "direct", {"network": "blue", "member": "blue-1"},
                       {"network": "red", "member": "red-1"}, path=("n1", "n3"))
    assert lab.driver.apply(op) is True
    record = lab.driver.state["stitches"]["acme/b1-r1"]
    names = StitchNames(record["hash"], record["index"])
    ports = (names.port("a"), names.port("b"))
    table = f"""table inet vnspin {{
        chain transit {{ type filter hook forward priority raw; policy accept;
            udp dport {{ {ports[0]}, {ports[1]} }} counter
        }}
    }}"""
    subprocess.run(["ip", "netns", "exec", lab.ns("n2"), "nft", "-f", "-"], input=table, text=True, check=True)
    try:
        assert lab.pings("blue-1", "10.2.0.21", count=5)
        assert _udp_packets_forwarded(lab, "n2") == 0, "pinned: the tunnel does not cross n2"
    finally:
        subprocess.run(["ip", "netns", "exec", lab.ns("n2"), "nft", "delete", "table", "inet", "vnspin"])
    for node in ("n1", "n3"):
        rules = lab.run(node, "ip", "rule").stdout
        assert f"dport {ports[0]}-{ports[1]} lookup {names.table}" in rules, rules
        # what T does not route stops there (no rule of its own for that)
        assert "unreachable default" in lab.run(node, "ip", "route", "show", "table", str(names.table)).stdout
    assert f"lookup {names.table}" not in lab.run("n2", "ip", "rule").stdout, "n2 is not on this path"
    assert lab.driver.apply(op) is False, "re-applying the pinned stitch changes nothing"
    assert lab.driver.observe().stitches["acme/b1-r1"].healthy

    assert lab.driver.apply(RemoveStitch("acme/b1-r1")) is True
    for node in ("n1", "n2", "n3"):
        rules = lab.run(node, "ip", "rule").stdout
        assert f"lookup {names.table}" not in rules and "unreachable" not in rules, rules
        assert lab.run(node, "ip", "route", "show", "table", str(names.table)).stdout.strip() == ""


def test_stitch_on_the_underlay_path_adds_no_pinning(lab):
    op = lab.stitch_op("b1-r1", "direct", {"network": "blue", "member": "blue-1"},
                       {"network": "red", "member": "red-1"})
    assert op.path == ("n1", "n2", "n3")
    lab.driver.apply(op)
    record = lab.driver.state["stitches"]["acme/b1-r1"]
    names = StitchNames(record["hash"], record["index"])
    rules = lab.run("n1", "ip", "rule").stdout
    # no pin rule (`ipproto udp dport A-B lookup T`); the one `dport` rule sends the tunnel's own port to
    # the uplink of its wireguard-go (drivers/linux/uplink.py)
    assert not [line for line in rules.splitlines() if "dport" in line and f"lookup {names.table}" in line], rules
    assert f"ipproto udp dport {names.port('a')} lookup {names.port('a')}" in rules, rules
    assert f"lookup {names.table}" not in lab.run("n2", "ip", "rule").stdout
    # The gateway is reached through permanent neighbours, not an address on the node.
    assert names.gateway_address("a") not in lab.run("n1", "ip", "-o", "addr").stdout
    assert "PERMANENT" in lab.run("blue-1", "ip", "neigh", "show", names.gateway_address("a")).stdout
    assert lab.pings("blue-1", "10.2.0.21", count=2)
