"""The test helper tests/linux/impair.py really delays a device: ping over a veth sees its RTT rise by
about the delay, and fall back once it is cleared, with no process left behind."""

from __future__ import annotations

import os
import re
import statistics
import subprocess

import pytest

from vnstitch.lab import impair
from vnstitch.drivers.linux.kernel import list_netns

DELAY_S = 0.05


def _ip(*argv: str) -> None:
    done = subprocess.run(["ip", *argv], capture_output=True, text=True)
    assert done.returncode == 0, (argv, done.stderr)


@pytest.fixture
def veth_pair():
    """Two namespaces joined by a veth: (ns a, ns b, device in a), b at 192.0.2.2."""
    prefix = f"vns-imp{os.getpid() % 10000}-"
    a, b = prefix + "a", prefix + "b"
    try:
        for ns in (a, b):
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", a, "link", "add", "imp0", "type", "veth", "peer", "name", "imp1", "netns", b)
        _ip("-n", a, "addr", "add", "192.0.2.1/24", "dev", "imp0")
        _ip("-n", b, "addr", "add", "192.0.2.2/24", "dev", "imp1")
        _ip("-n", a, "link", "set", "imp0", "up")
        _ip("-n", b, "link", "set", "imp1", "up")
        yield a, b, "imp0"
    finally:
        impair.clear_all()
        for ns in (a, b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        assert list_netns(prefix) == []


def _rtt_s(ns: str, address: str, count: int = 10) -> float:
    out = subprocess.run(["ip", "netns", "exec", ns, "ping", "-n", "-c", str(count), "-i", "0.05", "-W", "1",
                          address], capture_output=True, text=True).stdout
    rtts = [float(m) / 1000 for m in re.findall(r"time=([\d.]+) ms", out)]
    assert len(rtts) >= count // 2, out
    return statistics.median(rtts)


def test_ping_rtt_rises_by_the_delay_and_returns(veth_pair):
    a, _, ifname = veth_pair
    before = _rtt_s(a, "192.0.2.2")
    how = impair.add_delay(a, ifname, DELAY_S)
    flood = impair._floods.get((a, ifname))
    delayed = _rtt_s(a, "192.0.2.2", count=20)
    print(f"{how}: rtt {before * 1000:.2f} ms → {delayed * 1000:.1f} ms with {DELAY_S * 1000:.0f} ms added")
    assert 0.8 * DELAY_S <= delayed - before <= 1.3 * DELAY_S, (before, delayed)
    impair.clear(a, ifname)
    after = _rtt_s(a, "192.0.2.2")
    assert after < before + 0.005, (before, after)
    if flood is not None:
        assert flood.poll() is not None, "the flood process is gone"
    assert "tbf" not in subprocess.run(["ip", "netns", "exec", a, "tc", "qdisc", "show", "dev", ifname],
                                       capture_output=True, text=True).stdout
