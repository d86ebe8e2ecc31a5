"""Quantities with units."""

import pytest

from vnstitch.units import format_bandwidth, parse_bandwidth, parse_bytes, parse_duration


@pytest.mark.parametrize("text,bps", [("2Gbps", 2e9), ("500 Mbit/s", 5e8), ("1.5kbps", 1500.0), (1e9, 1e9),
                                      ("10Tbps", 10e12), ("0", 0.0), ("3e6", 3e6)])
def test_bandwidth(text, bps):
    assert parse_bandwidth(text) == bps


@pytest.mark.parametrize("text,message", [("-5Mbps", "not a bandwidth"), ("5 furlongs", "unknown bandwidth unit"),
                                          ("11Tbps", "absurd"), (True, "must be a number"), (-1, "negative"),
                                          (float("nan"), "negative")])
def test_bad_bandwidth(text, message):
    with pytest.raises(ValueError, match=message):
        parse_bandwidth(text)


def test_durations_and_sizes():
    assert parse_duration("30ms") == pytest.approx(0.03)
    assert parse_duration("2min") == 120.0 and parse_duration(0.5) == 0.5
    with pytest.raises(ValueError, match="unknown duration unit"):
        parse_duration("3 fortnights")
    assert parse_bytes("64Gi") == 64 * 2**30 and parse_bytes("1TB") == 10**12 and parse_bytes(4096) == 4096
    with pytest.raises(ValueError, match="not a size|unknown size unit"):
        parse_bytes("lots")
    assert format_bandwidth(2e9) == "2 Gbps" and format_bandwidth(1500) == "1.5 Kbps"
