"""LinuxCountersSource: the stitch chains' nft counters give the rate iperf3 sends, per direction
(in the controller's units: the kernel's rate divided by the lab's scale, 0.01 here)."""

from __future__ import annotations

import json
import time

from vnstitch.drivers.linux import nft, stitch as stitch_mod
from vnstitch.drivers.linux.layout import StitchNames
from vnstitch.planning.ops import RemoveStitch
from vnstitch.telemetry.linux import LinuxCountersSource
from tests.linux.conftest import iperf_server

KEY = "acme/blue1-red1"
FORWARD_BPS = 20e6
REVERSE_BPS = 6e6     # another rate: each direction must read its own counter


def _direct(lab):
    """blue-1 (n1) ⇄ red-1 (n3), VXLAN (no wireguard-go: cheaper, the counters are the same rules)."""
    op = lab.stitch_op("blue1-red1", "direct", {"network": "blue", "member": "blue-1"},
                       {"network": "red", "member": "red-1"}, encryption="none")
    lab.driver.apply(op)
    return op


def _by_pair(samples):
    return {(s.src, s.dst): s for s in samples}


def test_samples_match_the_rate_iperf3_sends_each_way(lab):
    _direct(lab)
    assert lab.pings("blue-1", "10.2.0.21")
    source = LinuxCountersSource(lab.driver)
    scale = lab.driver.lab.scale
    assert source.collect(1000.0) == [], "the first collect is a baseline"

    # Two UDP flows at once, of different rates: blue-1 → red-1 and (-R) red-1 → blue-1.
    clients = {}
    for (src, dst), (port, rate_bps) in {("blue", "red"): (5201, FORWARD_BPS),
                                         ("red", "blue"): (5202, REVERSE_BPS)}.items():
        iperf_server(lab, "red-1", port)
        clients[(src, dst)] = lab.spawn(
            "blue-1", "iperf3", "-c", "10.2.0.21", "-p", str(port), "-u", "-b", str(int(rate_bps)), "-l", "1200",
            "-t", "3", "-J", "--connect-timeout", "2000", *(["-R"] if src == "red" else []))
    time.sleep(0.7)
    source.collect(1001.0)                     # inside the flows: the baseline of the measured interval
    time.sleep(1.5)
    samples = _by_pair(source.collect(1002.5))
    for pair, client in clients.items():
        out, _ = client.communicate(timeout=30)
        report = json.loads(out)["end"]["sum"]
        sent_bps = report["bits_per_second"]
        sample = samples[pair]
        assert sample.tenant == "acme" and sample.time == 1002.5
        # the counters see IP packets (28 bytes of headers on 1200 of payload) where iperf3 counts payload
        kernel_bps = sample.rate_bps * scale
        assert 0.8 * sent_bps <= kernel_bps <= 1.2 * sent_bps, (pair, sample.rate_bps, sent_bps)
        print(f"\nsample {pair[0]}→{pair[1]} {kernel_bps / 1e6:.2f} Mbit/s in the kernel "
              f"({sample.rate_bps / 1e6:.0f} Mbit/s modelled), iperf3 {sent_bps / 1e6:.2f} Mbit/s "
              f"(lost {report.get('lost_percent', 0):.1f}%)")
    vm_pair = samples[("blue/blue-1", "red/red-1")]
    assert vm_pair.rate_bps == samples[("blue", "red")].rate_bps, "a direct stitch: its VM pair is its network pair"


def test_rewritten_chain_and_recreated_stitch_count_from_zero(lab):
    op = _direct(lab)
    assert lab.pings("blue-1", "10.2.0.21", count=30)
    source = LinuxCountersSource(lab.driver)
    scale = lab.driver.lab.scale
    source.collect(1000.0)
    before = lab.driver.pair_bytes()[("acme/blue", "acme/red")]
    assert before > 0

    # Another writer rewrites end a's chain (as a repair does): new rules, counters from zero.
    record = lab.driver.state["stitches"][KEY]
    names = StitchNames(record["hash"], record["index"])
    nft.ensure_stitch(lab.ns("n1"), *stitch_mod.nft_spec(op, names, "a"), fresh=True)
    assert lab.pings("blue-1", "10.2.0.21", count=2)
    time.sleep(0.2)
    assert 0 < lab.driver.pair_bytes()[("acme/blue", "acme/red")] < before
    samples = source.collect(1001.0)
    assert source.resets >= 1 and samples
    assert all(0 <= s.rate_bps * scale < 1e6 for s in samples), samples

    # The stitch removed and built again: all of its counters start again.
    lab.driver.apply(RemoveStitch(stitch=KEY, reason="test"))
    assert source.collect(1002.0) == [], "no stitch, no counter: no sample (not a zero)"
    _direct(lab)
    assert lab.pings("blue-1", "10.2.0.21", count=2)
    time.sleep(0.2)
    samples = _by_pair(source.collect(1003.0))
    assert set(samples) == {("blue", "red"), ("red", "blue"), ("blue/blue-1", "red/red-1"),
                            ("red/red-1", "blue/blue-1")}
    assert all(0 < s.rate_bps * scale < 1e6 for s in samples.values()), samples


class _FakeDriver:
    """stitch_bytes() as the driver answers it, set by the test."""

    def __init__(self):
        self.counters: dict = {}

    def stitch_bytes(self):
        return dict(self.counters)


def test_resets_unreadable_chains_and_cross_tenant_pairs():
    driver, clock = _FakeDriver(), [0.0]
    source = LinuxCountersSource(driver, clock=lambda: clock[0])
    driver.counters = {("acme/s1", "acme/a", "acme/b"): ("st_x#4", 1000),
                       ("acme/s2", "acme/a", "acme/b"): ("st_y#4", 5000),
                       ("acme/s3", "acme/a", "globex/c"): ("st_z#4", 0)}
    assert source.collect(100.0) == []
    clock[0] = 1.0
    driver.counters[("acme/s1", "acme/a", "acme/b")] = ("st_x#4", 200)    # went down: reset
    driver.counters[("acme/s2", "acme/a", "acme/b")] = None               # unreadable now
    [sample] = source.collect(101.0)
    assert (sample.tenant, sample.src, sample.dst, sample.time) == ("acme", "a", "b", 101.0)
    assert sample.rate_bps == 200 * 8 and source.resets == 1
    assert source.skipped_cross_tenant == 1
    assert source.collect(101.0) == [], "no time passed: nothing, the baseline stays"
    clock[0] = 2.0
    driver.counters[("acme/s1", "acme/a", "acme/b")] = ("st_x#4", 300)
    driver.counters[("acme/s2", "acme/a", "acme/b")] = ("st_y#4", 5500)   # readable again: over 2 s
    [sample] = source.collect(102.0)
    assert sample.rate_bps == 100 * 8 + 500 * 8 / 2.0


def test_rates_are_in_the_units_of_capacities_and_reservations():
    """A lab shapes a link to capacity × scale: the kernel's rate ÷ scale is the modelled demand."""
    from types import SimpleNamespace

    driver, clock = _FakeDriver(), [0.0]
    driver.lab = SimpleNamespace(scale=0.01)
    source = LinuxCountersSource(driver, clock=lambda: clock[0])
    driver.counters = {("acme/s1", "acme/a", "acme/b"): ("st_x#4", 0)}
    assert source.collect(100.0) == []
    clock[0] = 2.0
    driver.counters[("acme/s1", "acme/a", "acme/b")] = ("st_x#4", 5_000_000)    # 20 Mbit/s in the kernel
    [sample] = source.collect(102.0)
    assert sample.rate_bps == 2e9
