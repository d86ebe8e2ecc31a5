"""Quantities with units: bandwidth in bit/s and durations in seconds.

Unit symbols are case-sensitive where case carries meaning: `M` is mega and `m` milli, `b` a bit and `B`
a byte, so `10mbps` is refused (with a hint) rather than read as 10 Mbit/s, and `10MB/s` is 80 Mbit/s.
Numbers are read as decimals (`1.1Gbps` is exactly 1.1e9 bit/s). A bare number is the canonical unit
(bit/s, seconds) unless `require_unit`: resource files written by people must say which unit they mean.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_PREFIXES = {"": 1, "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}  # K: no other meaning, so allowed
_BW_UNITS = {
    **{f"{p}{bits}": Decimal(scale) for p, scale in _PREFIXES.items() for bits in ("bps", "bit/s", "b/s")},
    **{f"{p}B/s": Decimal(scale * 8) for p, scale in _PREFIXES.items()},  # bytes per second, converted ×8
}
_TIME_UNITS = {"ns": Decimal("1e-9"), "us": Decimal("1e-6"), "µs": Decimal("1e-6"), "ms": Decimal("1e-3"),
               "s": Decimal(1), "m": Decimal(60), "min": Decimal(60), "h": Decimal(3600), "d": Decimal(86400),
               "w": Decimal(7 * 86400)}
_QUANTITY = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-zA-Zµ/]*)\s*$")

MAX_BANDWIDTH_BPS = 10e12  # 10 Tbit/s: anything above is a typo, not a link
BANDWIDTH_UNITS = ("bits: bps, kbps, Mbps, Gbps, Tbps or bit/s, kbit/s, Mbit/s, Gbit/s, Tbit/s; "
                   "bytes (×8): B/s, kB/s, MB/s, GB/s, TB/s")
DURATION_UNITS = "ns, us, ms, s, m (or min), h, d, w"


def _bare(value: str | int | float) -> str:
    """How a number the user wrote reads back: 30 → '30', 1e6 → '1000000', '1.5e9' → '1.5e9'."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _unit_hint(unit: str, units: dict) -> str:
    """': … did you mean 'Mbps'?' where only the letter case is wrong, else ''."""
    near = [u for u in units if u.lower() == unit.lower()]
    if not near:
        return ""
    why = "'m' is milli, 'M' mega; 'b' a bit, 'B' a byte" if "bps" in units else "write them in lower case"
    return f": unit symbols are case-sensitive ({why}); did you mean " + " or ".join(f"'{u}'" for u in near) + "?"


def _parse_quantity(value: str | int | float, units: dict, what: str, example: str, unit_names: str,
                    require_unit: bool = False, case_sensitive: bool = True) -> float:
    """A number with one of `units` (or a bare number in the canonical unit); never negative."""
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number or a quantity like '{example}'")
    if isinstance(value, (int, float)):
        if require_unit:
            raise ValueError(_needs_unit(value, what, example, unit_names))
        number = float(value)
    else:
        match = _QUANTITY.match(str(value))
        if not match:
            raise ValueError(f"'{value}' is not a {what} (e.g. '{example}')")
        unit = match.group(2) if case_sensitive else match.group(2).lower()
        if not unit and require_unit:
            raise ValueError(_needs_unit(value, what, example, unit_names))
        if unit and unit not in units:
            hint = _unit_hint(unit, units) if case_sensitive else ""
            raise ValueError(f"unknown {what} unit '{match.group(2)}'" + (hint or f" (use {unit_names})"))
        try:
            number = float(Decimal(match.group(1)) * Decimal(units.get(unit, 1)))
        except InvalidOperation:
            raise ValueError(f"'{value}' is not a {what} (e.g. '{example}')") from None
    if number != number or number < 0:
        raise ValueError(f"{what} must not be negative")
    return number


def _needs_unit(value: str | int | float, what: str, example: str, unit_names: str) -> str:
    """The error for a bare number where a unit is required, spelling out the old reading."""
    number = _bare(value)
    try:
        meant = float(value)
    except ValueError:
        meant = float("nan")
    if meant != meant or meant in (float("inf"), float("-inf")):
        return f"{number} has no unit: write the {what} with one, e.g. '{example}' ({unit_names})"
    spelled, canonical = (duration_text(meant), "seconds") if what == "duration" else (bandwidth_text(meant), "bit/s")
    return (f"{number} has no unit: write the {what} with one, e.g. '{spelled}' if you meant {number} {canonical} "
            f"({unit_names})")


def parse_bandwidth(value: str | int | float, require_unit: bool = False) -> float:
    """'2Gbps', '500 Mbit/s', '10MB/s' (×8) → bit/s; a bare number is bit/s unless `require_unit`."""
    bps = _parse_quantity(value, _BW_UNITS, "bandwidth", "2Gbps", BANDWIDTH_UNITS, require_unit)
    if bps > MAX_BANDWIDTH_BPS:
        raise ValueError(f"bandwidth {bps:g} bit/s is absurd (limit {MAX_BANDWIDTH_BPS:g})")
    return bps


def parse_duration(value: str | int | float, require_unit: bool = False) -> float:
    """'30ms', '1.5s', '5m' → seconds; a bare number is seconds unless `require_unit`."""
    return _parse_quantity(value, _TIME_UNITS, "duration", "30ms", DURATION_UNITS, require_unit)


def format_bandwidth(bps: float) -> str:
    """Human form of a bit rate for tables: 2e9 → '2 Gbps' (3 significant digits)."""
    for unit, scale in (("Tbps", 1e12), ("Gbps", 1e9), ("Mbps", 1e6), ("Kbps", 1e3)):
        if abs(bps) >= scale:
            return f"{bps / scale:.3g} {unit}"
    return f"{bps:.3g} bps"


def _exact(value: float, scales: tuple, fallback: str) -> str:
    """The first `unit` whose quotient is ≥ 1, exact and has at most `digits` decimals; else `fallback`."""
    exact = Decimal(repr(float(value)))
    for unit, scale, digits in scales:
        quotient = exact / Decimal(scale)
        if quotient >= 1 and quotient * Decimal(scale) == exact and -quotient.normalize().as_tuple().exponent <= digits:
            return f"{quotient.normalize():f}{unit}"
    return f"{exact.normalize():f}{fallback}"


def bandwidth_text(bps: float) -> str:
    """A bit rate as a document writes it, exactly: 1e7 → '10Mbps', 1500 → '1.5kbps' (parse_bandwidth
    reads it back to the same float)."""
    return _exact(bps, (("Tbps", 10**12, 3), ("Gbps", 10**9, 3), ("Mbps", 10**6, 3), ("kbps", 10**3, 3)), "bps")


def duration_text(seconds: float) -> str:
    """Seconds as a document writes them, exactly: 0.03 → '30ms', 300 → '5min', 90 → '90s' (parse_duration
    reads it back to the same float)."""
    return _exact(seconds, (("d", 86400, 0), ("h", 3600, 0), ("min", 60, 0), ("s", 1, 3), ("ms", "1e-3", 3),
                            ("us", "1e-6", 3), ("ns", "1e-9", 3)), "s")


_BYTE_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9, "t": 1e12, "tb": 1e12,
               "ki": 2**10, "kib": 2**10, "mi": 2**20, "mib": 2**20, "gi": 2**30, "gib": 2**30, "ti": 2**40, "tib": 2**40}


def parse_bytes(value: str | int | float) -> int:
    """'64Gi', '1TB', 4096 → bytes (memory and disk sizes: letter case is not significant here)."""
    return int(_parse_quantity(value, _BYTE_UNITS, "size", "64Gi", "B, KB, MB, GB, TB, KiB, MiB, GiB, TiB",
                               case_sensitive=False))


def parse_period(value: str) -> float:
    """'24h', '90min', '7d' → seconds; the unit is required (a bare 24 could mean hours or seconds)."""
    match = None if isinstance(value, (int, float)) else _QUANTITY.match(str(value))
    if match is None and not isinstance(value, (int, float)):
        raise ValueError(f"'{value}' is not a period (e.g. '24h')")
    if match is None or not match.group(2):
        raise ValueError(f"'{value}' needs a unit: a period like '24h' (use s, min, h, d, w)")
    return parse_duration(value)


def format_period(seconds: float) -> str:
    """Seconds → whole hours or minutes where exact: 86400 → '24h', 5400 → '90min', 1.5 → '1.5s' (parse_period
    reads it back)."""
    for unit, scale in (("h", 3600.0), ("min", 60.0)):
        if seconds >= scale and seconds % scale == 0:
            return f"{int(seconds // scale)}{unit}"
    return f"{seconds:g}s"
