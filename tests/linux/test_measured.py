"""Measured throughput: the stitch's status reports what its nftables counters carried between passes."""

from __future__ import annotations

import json
import time

from tests.linux.conftest import REPO, iperf_server
from vnstitch.drivers.linux import nft, stitch as stitch_mod
from vnstitch.drivers.linux.layout import StitchNames

STITCH = (REPO / "examples" / "lab-stitch.yaml").read_text()   # blue-1 (n1) ⇄ red-1 (n3), encrypted
KEY = "acme/blue1-red1"


def test_status_reports_the_throughput_iperf3_sees(controlled):
    lab = controlled.lab
    controlled.apply(STITCH)
    controlled.services.reconcile_once()
    assert controlled.stitch("blue1-red1").status.state.value == "ACTIVE"
    iperf_server(lab, "red-1", 5201)
    client = lab.spawn("blue-1", "iperf3", "-c", "10.2.0.21", "-p", "5201", "-t", "2", "-J",
                       "--connect-timeout", "2000")
    time.sleep(0.5)
    controlled.services.reconcile_once()     # its counters now: the baseline
    time.sleep(1.0)
    controlled.services.reconcile_once()     # 1 s later, still inside the 2 s flow
    measured = controlled.stitch("blue1-red1").status.measured.throughput
    out, _ = client.communicate(timeout=30)
    iperf_bps = json.loads(out)["end"]["sum_received"]["bits_per_second"]
    assert iperf_bps > 1e6, out[-500:]
    # the counters see IP packets (headers and ACKs too) where iperf3 counts TCP payload
    assert measured is not None and 0.7 * iperf_bps <= measured <= 1.5 * iperf_bps, (measured, iperf_bps)

    controlled.services.reconcile_once()     # the flow's tail
    time.sleep(0.3)
    controlled.services.reconcile_once()
    idle = controlled.stitch("blue1-red1").status.measured.throughput
    assert idle is not None and 0 <= idle < 0.02 * iperf_bps, "the flow ended: nothing crosses"


def test_counter_reset_is_a_restart_not_negative_traffic(lab):
    op = lab.stitch_op("blue1-red1", "direct", {"network": "blue", "member": "blue-1"},
                       {"network": "red", "member": "red-1"})
    lab.driver.apply(op)
    assert lab.pings("blue-1", "10.2.0.21", count=20)
    before = lab.driver.observe().stitches[KEY]
    assert before.tx_bytes > 0 and before.throughput_bps is None, "one observe: no interval yet"
    # Another writer rewrites the chain (as a repair does): its counters start again from zero.
    record = lab.driver.state["stitches"][KEY]
    names = StitchNames(record["hash"], record["index"])
    nft.ensure_stitch(lab.ns("n1"), *stitch_mod.nft_spec(op, names, "a"), fresh=True)
    assert lab.pings("blue-1", "10.2.0.21", count=2)
    time.sleep(0.2)
    after = lab.driver.observe().stitches[KEY]
    assert 0 < after.tx_bytes < before.tx_bytes
    assert after.throughput_bps is not None and 0 < after.throughput_bps < 1e6, after.throughput_bps
