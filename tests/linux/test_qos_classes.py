"""QoS classes on the Linux data plane: under saturation each ranked class keeps its share of the
stitch's rate (classified by DSCP or port on the tunnel device, before encryption) and a class alone
may borrow up to the whole rate; the classes are read back, changed in place and removed."""

from __future__ import annotations

import json
import statistics
import time

from vnstitch.drivers.linux import routing
from vnstitch.drivers.linux.layout import StitchNames
from vnstitch.planning.ops import QosRule

KEY = "acme/b1-r1"
RED_1 = "10.2.0.21"
BANDWIDTH = "2Gbps"           # × the lab's scale 0.01: 20 Mbit/s on the tunnel devices
RATE_BPS = 20e6
GOLD = {"name": "gold", "rank": 1, "share": 0.7, "dscp": 46}
BRONZE = {"name": "bronze", "rank": 2, "share": 0.3}
PAYLOAD = 1300                # UDP payload: one 1328-byte IP packet inside the 1420-byte tunnel MTU
SECONDS = 5


def _stitch(lab, **spec):
    return lab.stitch_op("b1-r1", "direct", {"network": "blue", "member": "blue-1"},
                         {"network": "red", "member": "red-1"}, bandwidth=BANDWIDTH, **spec)


def _receiver(lab, port: int):
    """iperf3 -s -1 -J in red-1, returned once it listens: its JSON has what arrived, per second."""
    server = lab.spawn("red-1", "iperf3", "-s", "-1", "-J", "-p", str(port))
    deadline = time.monotonic() + 3
    while f":{port}" not in lab.run("red-1", "ss", "-Hltn").stdout:
        assert time.monotonic() < deadline, "iperf3 server did not start"
        time.sleep(0.02)
    return server


def _udp_flood(lab, port: int, seconds: int, tos: int = 0):
    """iperf3 UDP from blue-1 to red-1 at 30 Mbit/s (more than the whole stitch), DSCP in `tos`."""
    return lab.spawn("blue-1", "iperf3", "-c", RED_1, "-p", str(port), "-u", "-b", "30M", "-l", str(PAYLOAD),
                     "-t", str(seconds), "-S", str(tos), "--connect-timeout", "2000")


def _received_bps(client, server) -> float:
    """What reached the far end while both flows ran: the median of the receiver's 1 s intervals
    without the first and the last (the flows start a little apart, and the classes' queues, 500
    packets each, fill at the start and drain at the end)."""
    _, err = client.communicate(timeout=30)
    assert client.returncode == 0, err[-800:]
    out, err = server.communicate(timeout=30)
    intervals = [i["sum"]["bits_per_second"] for i in json.loads(out)["intervals"]]
    assert len(intervals) >= 3, (out[-800:], err[-800:])
    return statistics.median(intervals[1:-1])


def _wire_bps(payload_bps: float) -> float:
    """The IP rate (what HTB counts on the tunnel device) of a UDP payload rate."""
    return payload_bps * (PAYLOAD + 28) / PAYLOAD


def test_classes_keep_their_share_and_a_lone_class_borrows_the_rest(lab):
    op = _stitch(lab, qos=[GOLD, BRONZE])
    assert [rule.name for rule in op.qos] == ["gold", "bronze"]
    assert lab.driver.apply(op) is True
    assert lab.driver.apply(op) is False
    seen = lab.driver.observe().stitches[KEY]
    assert seen.healthy and seen.qos == op.qos, (seen.problem, seen.qos)

    servers = _receiver(lab, 5201), _receiver(lab, 5202)
    gold = _udp_flood(lab, 5201, SECONDS, tos=46 << 2)
    bronze = _udp_flood(lab, 5202, SECONDS)
    gold_bps = _wire_bps(_received_bps(gold, servers[0]))
    bronze_bps = _wire_bps(_received_bps(bronze, servers[1]))
    print(f"both saturating: gold {gold_bps / 1e6:.2f} Mbit/s, bronze {bronze_bps / 1e6:.2f} Mbit/s "
          f"(stitch {RATE_BPS / 1e6:.0f} Mbit/s)")
    assert 0.9 * 0.7 * RATE_BPS <= gold_bps <= 1.1 * 0.7 * RATE_BPS, gold_bps
    assert 0.9 * 0.3 * RATE_BPS <= bronze_bps <= 1.1 * 0.3 * RATE_BPS, bronze_bps
    assert gold_bps + bronze_bps <= 1.1 * RATE_BPS

    server = _receiver(lab, 5202)
    alone = _wire_bps(_received_bps(_udp_flood(lab, 5202, 3), server))
    print(f"bronze alone: {alone / 1e6:.2f} Mbit/s")
    assert 0.85 * RATE_BPS <= alone <= 1.1 * RATE_BPS, alone


def test_classes_change_in_place_are_read_back_and_go(lab):
    op = _stitch(lab, qos=[GOLD, BRONZE])
    lab.driver.apply(op)
    record = lab.driver.state["stitches"][KEY]
    names, pids = StitchNames(record["hash"], record["index"]), dict(record["pids"])
    tc = lab.run("n1", "tc", "class", "show", "dev", names.wg_if("a")).stdout
    assert "rate 14Mbit ceil 20Mbit" in tc and "rate 6Mbit ceil 20Mbit" in tc, tc

    # A class deleted by hand (with its filter): observe reports what is left, the next ensure restores it.
    assert lab.run("n1", "tc", "filter", "del", "dev", names.wg_if("a"), "parent", "1:", "prio", "1").returncode == 0
    assert lab.run("n1", "tc", "class", "del", "dev", names.wg_if("a"), "classid", "1:10").returncode == 0
    seen = lab.driver.observe().stitches[KEY]
    assert seen.qos == (op.qos[1],), seen.qos
    assert lab.driver.apply(op) is True
    assert lab.driver.observe().stitches[KEY].qos == op.qos

    # New shares and a port match: changed in place (no new wireguard-go).
    changed = _stitch(lab, qos=[{**GOLD, "share": 0.5, "ports": [5201]}, BRONZE])
    assert changed.qos[0] == QosRule("gold", 1, 0.5, 46, (5201,))
    assert lab.driver.apply(changed) is True
    assert lab.driver.state["stitches"][KEY]["pids"] == pids
    assert lab.driver.observe().stitches[KEY].qos == changed.qos
    tc = lab.run("n3", "tc", "class", "show", "dev", names.wg_if("b")).stdout
    assert "rate 10Mbit ceil 20Mbit" in tc, tc

    # No classes any more: the tunnel devices get their own qdisc back.
    plain = _stitch(lab)
    assert lab.driver.apply(plain) is True
    for node, side in (("n1", "a"), ("n3", "b")):
        index = lab.driver.nss(lab.ns(node)).link_lookup(ifname=names.wg_if(side))[0]
        assert routing.read_qos(lab.driver.nss(lab.ns(node)), index) is None
    seen = lab.driver.observe().stitches[KEY]
    assert seen.healthy and seen.qos == ()
