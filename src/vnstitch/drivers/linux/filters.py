"""Anomaly filters in nftables: a table of their own per substrate node (so the stitches' table and its
base-ruleset checks never see them), one forward chain at priority -10 (before the stitches' chains),
each filter's rules tagged with a comment that names it and a fingerprint of what it asks for.

    nft add table inet vnstitch_anomaly
    nft add chain inet vnstitch_anomaly forward '{ type filter hook forward priority -10; policy accept; }'
    nft add rule inet vnstitch_anomaly forward ip saddr 10.1.0.11 ip daddr 10.3.0.0/24 tcp dport 5201 accept \
        comment '"acme/an-x#1a2b3c4d"'
    nft add rule inet vnstitch_anomaly forward ip saddr 10.1.0.11 ip daddr 10.3.0.0/24 counter drop \
        comment '"acme/an-x#1a2b3c4d"'
"""

from __future__ import annotations

import hashlib
import json
from typing import Sequence

from vnstitch.drivers.linux import nft
from vnstitch.errors import DriverError

TABLE = "vnstitch_anomaly"
_BASE = f"""table inet {TABLE} {{
    chain forward {{
        type filter hook forward priority -10; policy accept;
    }}
}}
"""


def fingerprint(src: str, dst: str, action: str, rate_bps: float, allow: Sequence) -> str:
    text = json.dumps([src, dst, action, round(rate_bps), [(a.protocol, a.port) for a in allow]])
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def filter_rules(src: str, dst: str, action: str, rate_bps: float, allow: Sequence, passed: str = "accept") -> list[str]:
    """The allowed flows pass on (`passed`: accept in the node's own table, whose next table holds the stitches'
    chains; return in a VM's guard, whose own drop must still see them); the rest is dropped (or policed) and
    counted."""
    match = f"ip saddr {src} ip daddr {dst}"
    rules = []
    for rule in allow:
        if rule.port is not None:
            rules.append(f"{match} {rule.protocol} dport {rule.port} {passed}")
        else:
            rules.append(f"{match} meta l4proto {rule.protocol} {passed}")
    if action == "limit":
        # what passes the rate goes on; the excess is counted and dropped
        rules.append(f"{match} limit rate over {max(1, int(rate_bps / 8 / 1000))} kbytes/second counter drop")
    else:
        rules.append(f"{match} counter drop")
    return rules


def _rules(ns: str, table: str = TABLE) -> list[dict] | None:
    try:
        out = nft.run(ns, f"list table inet {table}\n", json_output=True, what="nft list anomaly filters")
    except DriverError:
        return None
    return [item["rule"] for item in json.loads(out)["nftables"] if "rule" in item]


def _tagged(rules: list[dict], name: str) -> list[dict]:
    return [r for r in rules if r.get("comment", "").partition("#")[0] == name]


def ensure_filter(ns: str, name: str, src: str, dst: str, action: str, rate_bps: float, allow: Sequence,
                  table: str = TABLE, chain: str = "forward", base: str = _BASE, passed: str = "accept") -> bool:
    """Add the filter's rules where they are missing or differ (old ones deleted in the same transaction).
    By default in the node's forward chain; a VM's guard (guard.py) takes them in its `filters` chain."""
    if action not in ("drop", "limit"):
        raise DriverError(f"filter {name}: action must be drop or limit", errno=22)
    tag = f"{name}#{fingerprint(src, dst, action, rate_bps, allow)}"
    wanted = filter_rules(src, dst, action, rate_bps, allow, passed)
    rules = _rules(ns, table)
    have = _tagged(rules or [], name)
    if have and len(have) == len(wanted) and all(r.get("comment") == tag for r in have):
        return False
    script = base if rules is None else ""
    script += "".join(f"delete rule inet {table} {chain} handle {r['handle']}\n" for r in have)
    script += "".join(f'add rule inet {table} {chain} {rule} comment "{tag}"\n' for rule in wanted)
    nft.run(ns, script, what=f"nft filter {name}")
    return True


def remove_filter(ns: str, name: str, table: str = TABLE, chain: str = "forward") -> bool:
    """nft delete rule … for each of the filter's rules; False when it has none."""
    have = _tagged(_rules(ns, table) or [], name)
    if not have:
        return False
    nft.run(ns, "".join(f"delete rule inet {table} {chain} handle {r['handle']}\n" for r in have),
            what=f"nft remove filter {name}")
    return True


def filter_counters(ns: str, table: str = TABLE) -> dict[str, tuple[int, int]]:
    """name → (packets, bytes) its counted drop took, for every filter in the namespace's table."""
    out: dict[str, tuple[int, int]] = {}
    for rule in _rules(ns, table) or []:
        name = rule.get("comment", "").partition("#")[0]
        if not name:
            continue
        packets, size = out.get(name, (0, 0))
        for expr in rule.get("expr", []):
            if "counter" in expr:
                packets += int(expr["counter"].get("packets", 0))
                size += int(expr["counter"].get("bytes", 0))
        out[name] = (packets, size)
    return out
