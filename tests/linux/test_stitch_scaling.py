"""What keeps a new stitch's cost flat however many there are: wireguard-go's rtnetlink listeners out of
their groups, X's veth without IPv6 addresses, three rules per tunnel end, and no traffic that falls
through a stitch table to the main one."""

from __future__ import annotations

import subprocess

from vnstitch.drivers.linux.layout import StitchNames


def _rtnetlink_groups(pid: int) -> list[str]:
    """The Groups column of each NETLINK_ROUTE socket in the process's namespace (X holds only its own)."""
    with open(f"/proc/{pid}/net/netlink") as handle:
        rows = [line.split() for line in handle.read().splitlines()[1:]]
    return [row[3] for row in rows if row[1] == "0"]


def test_wireguard_go_listeners_are_muted_and_each_end_adds_three_rules(lab):
    rules_before = {node: len(lab.run(node, "ip", "rule").stdout.splitlines()) for node in ("n1", "n3")}
    op = lab.stitch_op("b1-r1", "direct", {"network": "blue", "member": "blue-1"},
                       {"network": "red", "member": "red-1"})
    assert lab.driver.apply(op) is True
    assert lab.pings("blue-1", "10.2.0.21", count=2)
    record = lab.driver.state["stitches"]["acme/b1-r1"]
    pids = list(record["pids"].values())
    assert len(pids) == 2
    for pid in pids:
        groups = _rtnetlink_groups(pid)
        assert len(groups) >= 2, groups        # its TUN listener and its route listener
        assert set(groups) == {"00000000"}, f"wireguard-go {pid} still in rtnetlink groups: {groups}"
        inner = subprocess.run(["nsenter", "-t", str(pid), "-n", "ip", "-6", "addr"], capture_output=True,
                               text=True, check=True).stdout
        assert inner.strip() == "", f"X's veth has an IPv6 address: {inner}"

    names = StitchNames(record["hash"], record["index"])
    for node, side in (("n1", "a"), ("n3", "b")):
        rules = lab.run(node, "ip", "rule").stdout.splitlines()
        # iif vg…, iif vw…, and the uplink's `to NODE ipproto udp dport PORT` (no unreachable twins)
        assert len(rules) - rules_before[node] == 3, rules
        table = lab.run(node, "ip", "route", "show", "table", str(names.table)).stdout
        assert "unreachable default" in table, table
        # from the end's gateway veth to a destination the stitch does not carry: stopped by T's
        # unreachable route (EHOSTUNREACH; a rule's `unreachable` would say ENETUNREACH, main would route it)
        probe = lab.run(node, "ip", "route", "get", "10.3.0.31", "from", "10.1.0.11" if side == "a" else "10.2.0.21",
                        "iif", names.gateway_if(side))
        assert probe.returncode != 0 and "No route to host" in probe.stderr, (probe.stdout, probe.stderr)

    assert lab.driver.apply(op) is False, "re-applying changes nothing"
    for pid in pids:
        assert set(_rtnetlink_groups(pid)) == {"00000000"}

    # without T's unreachable default the stitch leaks into main: observe says so, a re-apply restores it
    deleted = lab.run("n1", "ip", "route", "del", "unreachable", "default", "table", str(names.table))
    assert deleted.returncode == 0, deleted.stderr
    seen = lab.driver.observe().stitches["acme/b1-r1"]
    assert not seen.healthy and f"unreachable default of table {names.table} missing on n1" in seen.problem, seen
    assert lab.driver.apply(op) is True
    assert "unreachable default" in lab.run("n1", "ip", "route", "show", "table", str(names.table)).stdout
    assert lab.driver.observe().stitches["acme/b1-r1"].healthy
