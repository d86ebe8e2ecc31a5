"""The Linux driver's probe reads ping's own words: counts from its summary, the median reply for latency."""

from __future__ import annotations

import pytest

from vnstitch.drivers.linux.probe import parse_ping

IPUTILS_OK = """PING 10.2.0.21 (10.2.0.21) from 10.1.0.11 : 56(84) bytes of data.
64 bytes from 10.2.0.21: icmp_seq=1 ttl=62 time=61.2 ms
64 bytes from 10.2.0.21: icmp_seq=2 ttl=62 time=40.4 ms
64 bytes from 10.2.0.21: icmp_seq=3 ttl=62 time=40.1 ms
64 bytes from 10.2.0.21: icmp_seq=4 ttl=62 time=40.9 ms
64 bytes from 10.2.0.21: icmp_seq=5 ttl=62 time=40.6 ms

--- 10.2.0.21 ping statistics ---
5 packets transmitted, 5 received, 0% packet loss, time 81ms
rtt min/avg/max/mdev = 40.112/44.640/61.200/8.281 ms
"""

IPUTILS_LOSSY = """PING 10.2.0.21 (10.2.0.21) from 10.1.0.11 : 56(84) bytes of data.
64 bytes from 10.2.0.21: icmp_seq=2 ttl=62 time=0.412 ms
64 bytes from 10.2.0.21: icmp_seq=2 ttl=62 time=0.950 ms (DUP!)
64 bytes from 10.2.0.21: icmp_seq=5 ttl=62 time=0.388 ms

--- 10.2.0.21 ping statistics ---
5 packets transmitted, 2 received, +1 duplicates, 60% packet loss, time 83ms
rtt min/avg/max/mdev = 0.388/0.583/0.950/0.260 ms
"""

IPUTILS_NOTHING = """PING 10.2.0.21 (10.2.0.21) from 10.1.0.11 : 56(84) bytes of data.

--- 10.2.0.21 ping statistics ---
5 packets transmitted, 0 received, 100% packet loss, time 84ms

"""

IPUTILS_ERRORS = """PING 10.2.0.21 (10.2.0.21) from 10.1.0.11 : 56(84) bytes of data.
From 169.254.0.2 icmp_seq=1 Destination Host Unreachable
From 169.254.0.2 icmp_seq=2 Destination Host Unreachable

--- 10.2.0.21 ping statistics ---
5 packets transmitted, 0 received, +5 errors, 100% packet loss, time 81ms
"""

BUSYBOX = """PING 10.2.0.21 (10.2.0.21): 56 data bytes
64 bytes from 10.2.0.21: seq=0 ttl=62 time=2.000 ms
64 bytes from 10.2.0.21: seq=1 ttl=62 time=4.000 ms

--- 10.2.0.21 ping statistics ---
4 packets transmitted, 2 packets received, 50% packet loss
round-trip min/avg/max = 2.000/3.000/4.000 ms
"""

SUMMARY_ONLY = """--- 10.2.0.21 ping statistics ---
10 packets transmitted, 9 received, 10% packet loss, time 90ms
rtt min/avg/max/mdev = 1.000/3.000/9.000/1.000 ms
"""


def test_one_way_latency_is_half_the_median_round_trip():
    summary = parse_ping(IPUTILS_OK)
    assert (summary.sent, summary.received, summary.loss) == (5, 5, 0.0)
    # the median (40.6 ms) ignores the first echo, which waited for a handshake; the mean would not
    assert summary.latency_s == pytest.approx(0.0203)


def test_partial_loss_counts_round_trips_and_ignores_duplicates():
    summary = parse_ping(IPUTILS_LOSSY)
    assert summary.loss == pytest.approx(0.6)
    assert summary.rtts_s == pytest.approx((0.000412, 0.000388))
    assert summary.latency_s == pytest.approx(0.0004 / 2)


@pytest.mark.parametrize("text", [IPUTILS_NOTHING, IPUTILS_ERRORS])
def test_every_echo_lost_is_loss_one_and_no_latency(text):
    summary = parse_ping(text)
    assert summary.loss == 1.0 and summary.latency_s is None


def test_busybox_and_a_bare_summary_are_read_too():
    busybox = parse_ping(BUSYBOX)
    assert (busybox.loss, busybox.latency_s) == (0.5, pytest.approx(0.0015))
    bare = parse_ping(SUMMARY_ONLY)   # no reply lines: the summary's average
    assert (bare.loss, bare.latency_s) == (pytest.approx(0.1), pytest.approx(0.0015))


@pytest.mark.parametrize("text", ["", "ping: connect: Network is unreachable\n",
                                  "PING 10.2.0.21 (10.2.0.21) 56(84) bytes of data.\n"
                                  "64 bytes from 10.2.0.21: icmp_seq=1 ttl=62 time=0.4 ms\n",   # killed: no summary
                                  "0 packets transmitted, 0 received\n"])
def test_no_summary_or_nothing_sent_is_unknown_not_lost(text):
    assert parse_ping(text) is None

