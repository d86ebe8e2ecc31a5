"""What a member sends where no stitch leads (drivers/linux/guard.py): it never reaches the wire, and it is
counted per destination, so telemetry sees the member's traffic to a network it may not reach (the anomaly
engine's forbidden flows) while stitched traffic is untouched and not counted there; an anomaly's filter on
that member sits in front of the guard with its own counter and goes when the filter is removed."""

from __future__ import annotations

import json
import subprocess
import time

from tests.linux.test_service_rules import _listen, udp_echoes
from vnstitch.planning.ops import EnsureFilter, EnsureNetwork, MemberPlacement, RemoveFilter

GREEN_1 = "10.3.0.31"


def _run(lab, vm: str, *argv: str):
    """A command in a VM namespace, also one the lab file does not list (another tenant's, made by a test)."""
    return subprocess.run(["ip", "netns", "exec", lab.driver.lab.vm_ns(vm), *argv], capture_output=True, text=True,
                          timeout=30)


def _flood(lab, vm: str, address: str, port: int, count: int = 40) -> None:
    script = ("import socket,sys; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
              "for _ in range(int(sys.argv[3])):\n"
              "    try: s.sendto(b'x' * 100, (sys.argv[1], int(sys.argv[2])))\n"
              "    except OSError: pass\n")
    assert _run(lab, vm, "python3", "-c", script, address, str(port), str(count)).returncode == 0


def test_unstitched_traffic_is_dropped_at_the_vm_and_counted_per_destination_network(lab):
    from vnstitch.telemetry.linux import LinuxCountersSource

    listener = _listen(lab, "green-1", "8443", 9999)
    try:
        source = LinuxCountersSource(lab.driver)
        source.collect(0.0)   # baseline
        _flood(lab, "blue-1", GREEN_1, 9999)
        assert not udp_echoes(lab, "blue-1", GREEN_1, 9999), "no stitch: nothing crosses"
        seen = lab.driver.unstitched_bytes()
        mine = {k[1:]: v for k, v in seen.items() if k[0].endswith(f":{GREEN_1}")}
        assert set(mine) == {("acme/blue", "acme/green"), ("acme/blue/blue-1", "acme/green")}, seen
        assert mine[("acme/blue", "acme/green")][1] == 40 * 128 + 32, "every datagram: 20 + 8 + 100 bytes, and the echo's 4"
        time.sleep(0.3)
        samples = {(s.src, s.dst): s.rate_bps for s in source.collect(1.0)}
        assert samples.get(("blue", "green"), 0) > 0 and samples.get(("blue/blue-1", "green"), 0) > 0, samples
        listed = json.loads(lab.run("green-1", "nft", "-j", "list", "set", "inet", "vnstitch_guard",
                                    "unstitched").stdout)
        assert not [e for i in listed["nftables"] for e in (i.get("set") or {}).get("elem", [])], \
            "green-1 neither got nor answered anything"

        # a guard that cannot be read: its destinations are unreadable (None), not gone, so telemetry keeps
        # their last count and gives no sample (neither zero nor the whole count again when it comes back)
        assert lab.run("blue-1", "nft", "delete", "table", "inet", "vnstitch_guard").returncode == 0
        gone = {k[1:]: v for k, v in lab.driver.unstitched_bytes().items() if k[0].endswith(f":{GREEN_1}")}
        assert gone == {("acme/blue", "acme/green"): None, ("acme/blue/blue-1", "acme/green"): None}, gone
        samples = {(s.src, s.dst) for s in source.collect(2.0)}
        assert ("blue", "green") not in samples and ("blue/blue-1", "green") not in samples, samples
        blue = lab.driver.state["networks"]["acme/blue"]
        assert lab.driver.apply(EnsureNetwork("acme/blue", blue["vnid"], blue["cidr"], tuple(
            MemberPlacement(m["name"], m["node"], m["address"]) for m in blue["members"]))) is True
        assert "chain filters" in lab.run("blue-1", "nft", "list", "table", "inet", "vnstitch_guard").stdout, \
            "re-applying the network puts the guard back"

        # a stitch between them: its traffic takes the stitch's route, not the guard, and is not counted there
        op = lab.stitch_op("bg", "segment", {"network": "blue"}, {"network": "green"}, encryption="none")
        assert lab.driver.apply(op) is True
        before = lab.driver.unstitched_bytes()
        assert udp_echoes(lab, "blue-1", GREEN_1, 9999) and udp_echoes(lab, "blue-2", GREEN_1, 9999)
        assert lab.driver.unstitched_bytes() == before
    finally:
        listener.kill()
        listener.wait()


def test_a_filter_on_a_member_sits_in_front_of_its_guard_and_leaves_with_it(lab):
    # another tenant with the same address space and a VM at blue-1's address on the same node: tenants'
    # addresses may overlap, so neither acme's filter nor acme's networks may reach into it
    other = EnsureNetwork("beta/blue", 2001, "10.1.0.0/24", (MemberPlacement("beta-1", "n1", "10.1.0.11"),))
    assert lab.driver.apply(other) is True
    name = "acme/an-guard/0"
    block = EnsureFilter(name, "n1", "10.1.0.11/32", "10.3.0.0/24", "drop", reason="anomaly acme/an-guard")
    assert lab.driver.apply(block) is True and lab.driver.apply(block) is False   # idempotent
    listed = lab.run("blue-1", "nft", "list", "chain", "inet", "vnstitch_guard", "filters").stdout
    assert f'comment "{name}#' in listed, listed
    for vm in ("blue-2", "beta-1"):   # blue-2 is on n2; beta-1 is another tenant's VM at the same address
        listed = _run(lab, vm, "nft", "list", "table", "inet", "vnstitch_guard").stdout
        assert "chain filters" in listed and name not in listed, (vm, listed)
    _flood(lab, "beta-1", GREEN_1, 9999, count=5)   # beta has no network at 10.3.0.0/24: nothing to report
    assert not [k for k in lab.driver.unstitched_bytes() if "beta-1" in k[0]]
    before = lab.driver.unstitched_bytes()
    _flood(lab, "blue-1", GREEN_1, 9999, count=25)
    assert lab.driver.filters()[name].dropped_packets >= 25, "the filter's own counter took them"
    assert lab.driver.unstitched_bytes() == before, "they stopped before the guard"
    assert lab.driver.apply(RemoveFilter(name)) is True
    assert name not in lab.run("blue-1", "nft", "list", "chain", "inet", "vnstitch_guard", "filters").stdout
    assert lab.driver.filters() == {}
    _flood(lab, "blue-1", GREEN_1, 9999, count=5)
    assert lab.driver.unstitched_bytes() != before, "the guard counts again"
