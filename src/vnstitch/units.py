"""Quantities with units: bandwidth in bit/s and durations in seconds."""

from __future__ import annotations

import re

_BW_UNITS = {
    "bps": 1.0, "b/s": 1.0,
    "kbps": 1e3, "kbit/s": 1e3, "kb/s": 1e3,
    "mbps": 1e6, "mbit/s": 1e6, "mb/s": 1e6,
    "gbps": 1e9, "gbit/s": 1e9, "gb/s": 1e9,
    "tbps": 1e12, "tbit/s": 1e12, "tb/s": 1e12,
}
_TIME_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_QUANTITY = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-zA-Zµ/]*)\s*$")

MAX_BANDWIDTH_BPS = 10e12  # 10 Tbit/s: anything above is a typo, not a link


def parse_bandwidth(value: str | int | float) -> float:
    """'2Gbps', '500 Mbit/s', 1e9 → bit/s; a bare number is bit/s."""
    if isinstance(value, bool):
        raise ValueError("bandwidth must be a number or a quantity like '2Gbps'")
    if isinstance(value, (int, float)):
        bps = float(value)
    else:
        match = _QUANTITY.match(str(value))
        if not match:
            raise ValueError(f"'{value}' is not a bandwidth (e.g. '2Gbps', '500Mbps')")
        number, unit = float(match.group(1)), match.group(2).lower()
        if unit and unit not in _BW_UNITS:
            raise ValueError(f"unknown bandwidth unit '{match.group(2)}' (use bps, Kbps, Mbps, Gbps, Tbps)")
        bps = number * _BW_UNITS.get(unit, 1.0)
    if bps != bps or bps < 0:
        raise ValueError("bandwidth must not be negative")
    if bps > MAX_BANDWIDTH_BPS:
        raise ValueError(f"bandwidth {bps:g} bit/s is absurd (limit {MAX_BANDWIDTH_BPS:g})")
    return bps


def parse_duration(value: str | int | float) -> float:
    """'30ms', '1.5s', 0.02 → seconds; a bare number is seconds."""
    if isinstance(value, bool):
        raise ValueError("duration must be a number or a quantity like '30ms'")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _QUANTITY.match(str(value))
        if not match:
            raise ValueError(f"'{value}' is not a duration (e.g. '30ms', '2s')")
        number, unit = float(match.group(1)), match.group(2).lower()
        if unit and unit not in _TIME_UNITS:
            raise ValueError(f"unknown time unit '{match.group(2)}' (use ns, us, ms, s, min, h)")
        seconds = number * _TIME_UNITS.get(unit, 1.0)
    if seconds != seconds or seconds < 0:
        raise ValueError("duration must not be negative")
    return seconds


def format_bandwidth(bps: float) -> str:
    """Human form of a bit rate: 2e9 → '2 Gbps'."""
    for unit, scale in (("Tbps", 1e12), ("Gbps", 1e9), ("Mbps", 1e6), ("Kbps", 1e3)):
        if abs(bps) >= scale:
            return f"{bps / scale:.3g} {unit}"
    return f"{bps:.3g} bps"


_BYTE_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9, "t": 1e12, "tb": 1e12,
               "ki": 2**10, "kib": 2**10, "mi": 2**20, "mib": 2**20, "gi": 2**30, "gib": 2**30, "ti": 2**40, "tib": 2**40}


def parse_bytes(value: str | int | float) -> int:
    """'64Gi', '1TB', 4096 → bytes."""
    if isinstance(value, bool):
        raise ValueError("size must be a number or a quantity like '64Gi'")
    if isinstance(value, (int, float)):
        size = float(value)
    else:
        match = _QUANTITY.match(str(value))
        if not match or match.group(2).lower() not in _BYTE_UNITS:
            raise ValueError(f"'{value}' is not a size (e.g. '64Gi', '500GB')")
        size = float(match.group(1)) * _BYTE_UNITS[match.group(2).lower()]
    if size < 0:
        raise ValueError("size must not be negative")
    return int(size)
