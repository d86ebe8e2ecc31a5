"""Measured latency and loss: pings through each stitch see the delay and loss a delay line puts on its
path, the status and /metrics report them, and a stitch that misses its maxLatency or maxLoss goes
DEGRADED (and moves to another path where one meets the bound)."""

from __future__ import annotations

import collections
import fcntl
import os
import random
import select
import struct
import threading
import time
from contextlib import contextmanager

import pytest

from tests.linux.conftest import REPO
from vnstitch.api.metrics import state_lines
from vnstitch.drivers.linux.driver import LinuxDriver
from vnstitch.drivers.linux.kernel import in_netns
from vnstitch.drivers.linux.probe import Prober

STITCH = (REPO / "examples" / "lab-stitch.yaml").read_text()   # blue-1 (n1) ⇄ red-1 (n3), encrypted
KEY = "acme/blue1-red1"


TUNSETIFF, IFF_TUN, IFF_NO_PI = 0x400454CA, 0x0001, 0x1000
DELAY_IF, DELAY_TABLE = "subdly", 900   # "sub*": the lab's nft forward chain accepts it like a substrate port


class _DelayLine:
    """A TUN device in a node that holds each packet `delay_s` (dropping a `loss` share at random)
    before handing it back to the kernel, which forwards it on as if it had just arrived."""

    def __init__(self, ns: str, delay_s: float, loss: float):
        def open_tun() -> int:  # in the node's namespace: the device is created there
            fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
            fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", DELAY_IF.encode(), IFF_TUN | IFF_NO_PI))
            return fd

        self.fd = in_netns(ns, open_tun)
        self.delay_s, self.loss, self.random = delay_s, loss, random.Random(7)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"delay-{ns}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        held: collections.deque[tuple[float, bytes]] = collections.deque()
        while not self.stopping.is_set():
            wait = max(0.0, held[0][0] - time.monotonic()) if held else 0.05
            readable, _, _ = select.select([self.fd], [], [], wait)
            while readable:
                try:
                    packet = os.read(self.fd, 65535)
                except BlockingIOError:
                    break
                if self.random.random() >= self.loss:
                    held.append((time.monotonic() + self.delay_s, packet))
            while held and held[0][0] <= time.monotonic():
                os.write(self.fd, held.popleft()[1])

    def close(self) -> None:
        self.stopping.set()
        self.thread.join()
        os.close(self.fd)   # the device goes with its last fd, and its routes with it


@contextmanager
def impaired(lab, node: str, delay_s: float = 0.0, loss: float = 0.0):
    """Delay and/or loss on everything a node forwards between its substrate links, each way: the
    kernel here has no netem, so a delay line (above) takes the place of `tc qdisc ... netem`, and the
    lab's and the driver's HTB are untouched. Packets arriving on a substrate port are routed into the
    line (`ip rule add pref 900 iif subX lookup 900`, `ip route add default dev subdly table 900`); what
    comes back out arrives on subdly, so those rules do not take it again and it goes on its way."""
    line = _DelayLine(lab.ns(node), delay_s, loss)
    ports = sorted({link.ifname_a if link.a == node else link.ifname_b for link in lab.driver.lab.links
                    if node in (link.a, link.b)})
    try:
        for argv in (["ip", "link", "set", DELAY_IF, "mtu", "1500", "up"],
                     ["ip", "route", "add", "default", "dev", DELAY_IF, "table", str(DELAY_TABLE)],
                     *[["ip", "rule", "add", "pref", str(DELAY_TABLE), "iif", port, "lookup", str(DELAY_TABLE)]
                       for port in ports]):
            done = lab.run(node, *argv)
            assert done.returncode == 0, (argv, done.stderr)
        yield
    finally:
        for port in ports:
            lab.run(node, "ip", "rule", "del", "pref", str(DELAY_TABLE), "iif", port)
        line.close()


def _transit(path) -> str:
    assert len(path) == 3, f"expected a path through one transit node, got {path}"
    return path[1]


def _established(controlled, **spec: str):
    """The example stitch with extra spec lines, ACTIVE, probed on every observe."""
    text = STITCH + "".join(f"  {key}: {value}\n" for key, value in spec.items())
    controlled.apply(text)
    controlled.services.reconcile_once()
    status = controlled.stitch("blue1-red1").status
    assert status.state.value == "ACTIVE", status
    controlled.driver.prober = Prober(interval_s=0.0, count=controlled.driver.prober.count)  # no rate limit
    return status


def _metric(controlled, name: str) -> float | None:
    for line in state_lines(controlled.services.controller):
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def test_measured_latency_is_the_delay_on_the_path(controlled):
    path = _established(controlled, path="[n1, n2, n3]").path
    controlled.services.reconcile_once()
    base = controlled.stitch("blue1-red1").status.measured
    assert base.latency is not None and base.latency < 0.005 and base.loss == 0.0, base
    with impaired(controlled.lab, _transit(path), delay_s=0.020):   # 20 ms each way
        controlled.services.reconcile_once()
        status = controlled.stitch("blue1-red1").status
        assert 0.015 <= status.measured.latency <= 0.040, status.measured
        assert status.measured.loss == 0.0 and status.state.value == "ACTIVE", status  # no bound was set
        assert _metric(controlled, "vnstitch_stitch_latency_max_seconds") == pytest.approx(status.measured.latency, rel=1e-4)
        assert _metric(controlled, "vnstitch_stitch_loss_max_ratio") == 0.0
    controlled.services.reconcile_once()
    assert controlled.stitch("blue1-red1").status.measured.latency < 0.005, "the delay is gone"


def test_loss_above_max_loss_degrades_the_stitch(controlled):
    path = _established(controlled, maxLoss="0.05", path="[n1, n2, n3]").path
    controlled.driver.prober = Prober(interval_s=0.0, count=30, spacing_s=0.01)  # 30 echoes: ~50% is not 5%
    with impaired(controlled.lab, _transit(path), loss=0.3):   # 0.3 each way: 1 - 0.7² = 51% of round trips
        controlled.services.reconcile_once()
        status = controlled.stitch("blue1-red1").status
    assert 0.2 <= status.measured.loss <= 0.85, status.measured
    assert status.state.value == "DEGRADED", status
    assert status.message.startswith("loss ") and "above 5.000%" in status.message, status.message
    assert _metric(controlled, "vnstitch_stitch_loss_max_ratio") == pytest.approx(status.measured.loss, rel=1e-4)


def test_latency_above_max_latency_moves_the_stitch_to_a_path_that_meets_it(controlled):
    lab = controlled.lab
    first = _established(controlled, maxLatency="10ms").path   # both lab paths are admissible (2 ms, 3 ms)
    with impaired(lab, _transit(first), delay_s=0.020):
        controlled.services.reconcile_once()
        status = controlled.stitch("blue1-red1").status
        assert status.state.value == "DEGRADED", status
        assert status.message.startswith("latency ") and "above 10.0 ms" in status.message, status.message
        report = controlled.services.reconcile_once()   # the breach re-plans the stitch once
        assert [(key, outcome) for key, _, outcome in report.replanned] == [(KEY, "rerouted")], report.replanned
        status = controlled.stitch("blue1-red1").status
        assert status.state.value == "ACTIVE", status
        assert _transit(first) not in status.path, status.path
        assert status.measured.latency < 0.010, status.measured   # measured afresh on the new path
        assert any(t.to_state.value == "ADJUSTING" and "rerouted (SLO breach: latency" in t.reason
                   for t in status.history), status.history
        assert lab.pings("blue-1", "10.2.0.21", count=2)
        controlled.services.reconcile_once()
        assert controlled.stitch("blue1-red1").status.state.value == "ACTIVE", "settled: no flapping back"


def test_latency_breach_on_a_pinned_path_stays_degraded_until_the_delay_goes(controlled):
    path = _established(controlled, maxLatency="10ms", path="[n1, n2, n3]").path
    with impaired(controlled.lab, _transit(path), delay_s=0.020):
        for _ in range(2):  # the pinned path is its owner's: no other path to take
            controlled.services.reconcile_once()
            status = controlled.stitch("blue1-red1").status
            assert status.state.value == "DEGRADED" and status.message.startswith("latency "), status
            assert status.path == ["n1", "n2", "n3"]
    controlled.services.reconcile_once()
    status = controlled.stitch("blue1-red1").status
    assert status.state.value == "ACTIVE" and status.measured.latency < 0.005, status


def test_probes_are_rate_limited_cached_and_run_at_once(lab):
    """Three stitches, 5 s interval on a fake clock: an observe inside it reads the cache; the next
    probes all three at once (total loss: each ping waits out its ~1 s deadline, together)."""
    ops = (lab.stitch_op("s-direct", "direct", {"network": "blue", "member": "blue-1"},
                         {"network": "red", "member": "red-1"}),
           lab.stitch_op("s-segment", "segment", {"network": "blue"}, {"network": "red"}, encryption="none"),
           lab.stitch_op("s-bandwidth", "bandwidth", {"network": "blue"}, {"network": "green"},
                         bandwidth="100Mbps"))
    for op in ops:
        assert op.path == ("n1", "n2", "n3"), op.path
        lab.driver.apply(op)
    now = [0.0]
    driver = LinuxDriver(lab.directory, clock=lambda: now[0], probe_interval_s=5.0)
    try:
        before = driver.observe().stitches
        assert set(before) == {"acme/s-direct", "acme/s-segment", "acme/s-bandwidth"}
        for have in before.values():
            assert have.healthy and have.loss == 0.0 and 0 < have.latency_s < 0.005, have
        with impaired(lab, "n2", loss=1.0):
            now[0] = 1.0
            cached = driver.observe().stitches
            assert {k: (s.latency_s, s.loss) for k, s in cached.items()} == {
                k: (s.latency_s, s.loss) for k, s in before.items()}, "inside the interval: the last probe"
            now[0] = 6.0
            started = time.monotonic()
            lost = driver.observe().stitches
            took = time.monotonic() - started
            for have in lost.values():
                assert have.healthy and have.loss == 1.0 and have.latency_s is None, have
            assert took < 2.5, f"three probes of ~1 s each took {took:.2f} s: not concurrent"
        now[0] = 12.0
        assert all(s.loss == 0.0 for s in driver.observe().stitches.values())
    finally:
        driver.close()
