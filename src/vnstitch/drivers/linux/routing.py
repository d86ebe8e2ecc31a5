"""Ensure-style helpers for policy routing and HTB classes inside one namespace."""

from __future__ import annotations

import socket

from vnstitch.drivers.linux.kernel import EEXIST, ENOENT, ESRCH, ifindex, tolerate
from vnstitch.drivers.linux.layout import DEFAULT_CLASS_MINOR, LINK_CLASS_MINOR

ETH_P_IP = 0x0800
RTN_UNREACHABLE = 7


def _route_key(msg) -> tuple:
    dst = msg.get("RTA_DST") or "0.0.0.0"
    return (f"{dst}/{msg['dst_len']}", msg["type"], msg.get("RTA_OIF"), msg.get("RTA_GATEWAY"))


def ensure_routes(ipr, table: int, wanted: list[dict]) -> bool:
    """ip route replace ... table T for each wanted route not already there.

    A wanted route: {"dst": "10.1.0.0/24", "oif": 7} or with "gateway", or {"dst": "0.0.0.0/0",
    "type": "unreachable"}.
    """
    present = {_route_key(m) for m in ipr.get_routes(family=socket.AF_INET, table=table)}
    changed = False
    for route in wanted:
        net, _, plen = route["dst"].partition("/")
        rtype = RTN_UNREACHABLE if route.get("type") == "unreachable" else 1
        key = (f"{net}/{plen}", rtype, route.get("oif"), route.get("gateway"))
        if key in present:
            continue
        kwargs = {"dst": net, "dst_len": int(plen), "table": table}
        if rtype == RTN_UNREACHABLE:
            kwargs["type"] = "unreachable"
        else:
            kwargs["oif"] = route["oif"]
            if route.get("gateway"):
                kwargs["gateway"] = route["gateway"]
                kwargs["flags"] = 4  # RTNH_F_ONLINK
        # ip route replace DST [via GW onlink] dev OIF table T   |   ip route replace unreachable default table T
        ipr.route("replace", **kwargs)
        changed = True
    return changed


def ensure_rules(ipr, table: int, iifnames: list[str] = (), dports: list[int] = ()) -> bool:
    """ip rule add iif X lookup T pref T; ip rule add ipproto udp dport P lookup T pref T."""
    present_iif, present_dport = set(), set()
    for msg in ipr.get_rules(family=socket.AF_INET, priority=table):
        if msg.get("FRA_TABLE") != table:
            continue
        if msg.get("FRA_IIFNAME"):
            present_iif.add(msg.get("FRA_IIFNAME"))
        dport = _port_range(msg)
        if dport:
            present_dport.add(dport[0])
    changed = False
    for name in iifnames:
        if name not in present_iif:
            with tolerate(EEXIST):
                ipr.rule("add", table=table, priority=table, iifname=name)
            changed = True
    for port in dports:
        if port not in present_dport:
            with tolerate(EEXIST):
                ipr.rule("add", table=table, priority=table, ip_proto=17, dport_range=f"{port}:{port}")
            changed = True
    return changed


def count_rules(ipr, table: int) -> int:
    return sum(1 for m in ipr.get_rules(family=socket.AF_INET, priority=table) if m.get("FRA_TABLE") == table)


def remove_rules_and_table(ipr, table: int) -> bool:
    """ip rule del pref T (all of them); ip route flush table T."""
    changed = False
    for msg in ipr.get_rules(family=socket.AF_INET, priority=table):
        if msg.get("FRA_TABLE") == table and msg.get("FRA_PRIORITY") == table:
            with tolerate(ENOENT, ESRCH):
                ipr.rule("del", table=table, priority=table, **_rule_match(msg))
            changed = True
    for msg in ipr.get_routes(family=socket.AF_INET, table=table):
        with tolerate(ESRCH, ENOENT):
            ipr.route("del", table=table, dst=msg.get("RTA_DST") or "0.0.0.0", dst_len=msg["dst_len"],
                      type=msg["type"])
        changed = True
    return changed


def _rule_match(msg) -> dict:
    out = {}
    if msg.get("FRA_IIFNAME"):
        out["iifname"] = msg.get("FRA_IIFNAME")
    port_range = _port_range(msg)
    if port_range:
        out["ip_proto"] = 17
        out["dport_range"] = f"{port_range[0]}:{port_range[1]}"
    return out


def _port_range(msg) -> tuple[int, int] | None:
    """FRA_DPORT_RANGE as (start, end); pyroute2 decodes it as 'start:end' or a dict."""
    value = msg.get("FRA_DPORT_RANGE")
    if not value:
        return None
    if isinstance(value, str):
        start, _, end = value.partition(":")
        return int(start), int(end or start)
    return int(value["start"]), int(value["end"])


# --- HTB ---------------------------------------------------------------------------------

def _handle(minor: int) -> int:
    return 0x10000 | minor


def htb_classes(ipr, index: int) -> dict[int, dict]:
    """minor → {"rate_bps", "bytes"} for the HTB classes on a device."""
    out = {}
    for msg in ipr.get_classes(index=index):
        if msg.get("TCA_KIND") != "htb":
            continue
        parms = msg.get(("TCA_OPTIONS", "TCA_HTB_PARMS")) or {}
        rate64 = msg.get(("TCA_OPTIONS", "TCA_HTB_RATE64"))
        rate_bytes = rate64 or parms.get("rate", 0)
        stats = msg.get("TCA_STATS2")
        sent = 0
        if stats is not None:
            basic = stats.get("TCA_STATS_BASIC")
            sent = basic.get("bytes", 0) if basic else 0
        out[msg["handle"] & 0xFFFF] = {"rate_bps": rate_bytes * 8.0, "bytes": sent}
    return out


def ensure_root_htb(ipr, ifname: str, rate_bps: float) -> bool:
    """tc qdisc add dev X root handle 1: htb default fff0; classes 1:1 and 1:fff0 at the link rate."""
    index = ifindex(ipr, ifname)
    qdiscs = [m for m in ipr.get_qdiscs(index=index) if m["parent"] == 0xFFFFFFFF]
    changed = False
    if not qdiscs or qdiscs[0].get("TCA_KIND") != "htb":
        with tolerate(ENOENT):
            ipr.tc("del", index=index, handle=0, parent=0xFFFFFFFF) if qdiscs else None
        ipr.tc("add", "htb", index, 0x10000, default=DEFAULT_CLASS_MINOR, r2q=100)
        changed = True
    classes = htb_classes(ipr, index)
    rate = f"{int(rate_bps)}bit"
    if LINK_CLASS_MINOR not in classes:
        # tc class add dev X parent 1: classid 1:1 htb rate R ceil R
        ipr.tc("add-class", "htb", index, _handle(LINK_CLASS_MINOR), parent=0x10000, rate=rate, ceil=rate)
        changed = True
    if DEFAULT_CLASS_MINOR not in classes:
        # tc class add dev X parent 1:1 classid 1:fff0 htb rate R ceil R
        ipr.tc("add-class", "htb", index, _handle(DEFAULT_CLASS_MINOR), parent=_handle(LINK_CLASS_MINOR),
               rate=rate, ceil=rate)
        changed = True
    return changed


def _rebalance_default(ipr, index: int, link_rate_bps: float) -> None:
    """tc class change dev X classid 1:fff0 htb rate (link − reserved) ceil link."""
    classes = htb_classes(ipr, index)
    reserved = sum(c["rate_bps"] for minor, c in classes.items() if 0x100 <= minor < DEFAULT_CLASS_MINOR)
    rest = max(link_rate_bps - reserved, link_rate_bps * 0.05)
    ipr.tc("change-class", "htb", index, _handle(DEFAULT_CLASS_MINOR), parent=_handle(LINK_CLASS_MINOR),
           rate=f"{int(rest)}bit", ceil=f"{int(link_rate_bps)}bit")


def ensure_stitch_class(ipr, ifname: str, minor: int, prio: int, rate_bps: float, link_rate_bps: float,
                        dports: list[int]) -> bool:
    """A class at the reserved rate for the stitch's tunnel packets (UDP to its ports) on one egress."""
    index = ifindex(ipr, ifname)
    classes = htb_classes(ipr, index)
    changed = False
    current = classes.get(minor)
    rate = f"{int(rate_bps)}bit"
    if current is None or abs(current["rate_bps"] - int(rate_bps)) > max(8.0, rate_bps * 1e-3):
        # tc class replace dev X parent 1:1 classid 1:MINOR htb rate R ceil R
        ipr.tc("replace-class", "htb", index, _handle(minor), parent=_handle(LINK_CLASS_MINOR), rate=rate,
               ceil=rate, quantum=1514)
        changed = True
    filters = [m for m in ipr.get_filters(index=index, parent=0x10000)
               if (m["info"] >> 16) == prio and m.get("TCA_KIND") == "u32" and m.get(("TCA_OPTIONS", "TCA_U32_SEL"))]
    if len(filters) < len(dports):
        with tolerate(ENOENT):
            ipr.tc("del-filter", "u32", index, 0, parent=0x10000, prio=prio, protocol=ETH_P_IP) if filters else None
        for port in dports:
            # tc filter add dev X parent 1: protocol ip prio P u32 match ip protocol 17 0xff
            #    match ip dport PORT 0xffff flowid 1:MINOR
            ipr.tc("add-filter", "u32", index, 0, parent=0x10000, prio=prio, protocol=ETH_P_IP,
                   target=_handle(minor), keys=["0x00110000/0x00ff0000+8", f"0x{port:08x}/0x0000ffff+20"])
        changed = True
    if changed:
        _rebalance_default(ipr, index, link_rate_bps)
    return changed


def remove_stitch_class(ipr, ifname: str, minor: int, prio: int, link_rate_bps: float) -> bool:
    """tc filter del dev X parent 1: prio P; tc class del dev X classid 1:MINOR."""
    index = ifindex(ipr, ifname)
    if index is None:
        return False
    changed = False
    if any((m["info"] >> 16) == prio for m in ipr.get_filters(index=index, parent=0x10000)):
        with tolerate(ENOENT, 22):
            ipr.tc("del-filter", "u32", index, 0, parent=0x10000, prio=prio, protocol=ETH_P_IP)
        changed = True
    if minor in htb_classes(ipr, index):
        with tolerate(ENOENT):
            ipr.tc("del-class", "htb", index, _handle(minor), parent=_handle(LINK_CLASS_MINOR))
        changed = True
    if changed:
        _rebalance_default(ipr, index, link_rate_bps)
    return changed
