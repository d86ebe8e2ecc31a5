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
_TIME_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0,
               "d": 86400.0, "w": 7 * 86400.0}
_QUANTITY = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-zA-Zµ/]*)\s*$")

MAX_BANDWIDTH_BPS = 10e12  # 10 Tbit/s: anything above is a typo, not a link


def _parse_quantity(value: str | int | float, units: dict[str, float], what: str, example: str,
                    unit_names: str) -> float:
    """A bare number, or a number with one of `units` (case-insensitive); never negative."""
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number or a quantity like '{example}'")
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        match = _QUANTITY.match(str(value))
        if not match:
            raise ValueError(f"'{value}' is not a {what} (e.g. '{example}')")
        unit = match.group(2).lower()
        if unit and unit not in units:
            raise ValueError(f"unknown {what} unit '{match.group(2)}' (use {unit_names})")
        number = float(match.group(1)) * units.get(unit, 1.0)
    if number != number or number < 0:
        raise ValueError(f"{what} must not be negative")
    return number


def parse_bandwidth(value: str | int | float) -> float:
    """'2Gbps', '500 Mbit/s', 1e9 → bit/s; a bare number is bit/s."""
    bps = _parse_quantity(value, _BW_UNITS, "bandwidth", "2Gbps", "bps, Kbps, Mbps, Gbps, Tbps")
    if bps > MAX_BANDWIDTH_BPS:
        raise ValueError(f"bandwidth {bps:g} bit/s is absurd (limit {MAX_BANDWIDTH_BPS:g})")
    return bps


def parse_duration(value: str | int | float) -> float:
    """'30ms', '1.5s', 0.02 → seconds; a bare number is seconds."""
    return _parse_quantity(value, _TIME_UNITS, "duration", "30ms", "ns, us, ms, s, min, h, d, w")


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
    return int(_parse_quantity(value, _BYTE_UNITS, "size", "64Gi", "B, KB, MB, GB, TB, KiB, MiB, GiB, TiB"))
