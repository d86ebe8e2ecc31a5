"""Ensure-style helpers for policy routing and HTB classes inside one namespace."""

from __future__ import annotations

import socket
from dataclasses import dataclass

from pyroute2.netlink.exceptions import NetlinkError

from vnstitch.drivers.linux.kernel import EEXIST, ENOENT, ESRCH, ifindex, tolerate
from vnstitch.drivers.linux.layout import DEFAULT_CLASS_MINOR, LINK_CLASS_MINOR

ETH_P_IP = 0x0800
RTN_UNREACHABLE = 7
FR_ACT_TO_TBL = 1
# In every stitch table: what T does not route stops there (`ip route add unreachable default table T`)
# instead of going on to the next rules and the main table.
UNREACHABLE_DEFAULT = {"dst": "0.0.0.0/0", "type": "unreachable"}


def _route_key(msg) -> tuple:
    dst = msg.get("RTA_DST") or "0.0.0.0"
    return (f"{dst}/{msg['dst_len']}", msg["type"], msg.get("RTA_OIF"), msg.get("RTA_GATEWAY"))


def _route_args(route: dict, table: int) -> dict:
    net, _, plen = route["dst"].partition("/")
    kwargs = {"dst": net, "dst_len": int(plen), "table": table}
    if route.get("type") == "unreachable":
        kwargs["type"] = "unreachable"
    else:
        kwargs["oif"] = route["oif"]
        if route.get("gateway"):
            kwargs["gateway"] = route["gateway"]
            kwargs["flags"] = 4  # RTNH_F_ONLINK
    return kwargs


def ensure_routes(ipr, table: int, wanted: list[dict], fresh: bool = False) -> bool:
    """ip route replace ... table T for each wanted route not already there (`fresh`: table T
    was just allocated, so write without dumping routes first).

    A wanted route: {"dst": "10.1.0.0/24", "oif": 7} or with "gateway", or {"dst": "0.0.0.0/0",
    "type": "unreachable"}.
    """
    present = set() if fresh else {_route_key(m) for m in ipr.get_routes(family=socket.AF_INET, table=table)}
    changed = False
    for route in wanted:
        net, _, plen = route["dst"].partition("/")
        rtype = RTN_UNREACHABLE if route.get("type") == "unreachable" else 1
        key = (f"{net}/{plen}", rtype, route.get("oif"), route.get("gateway"))
        if key in present:
            continue
        # ip route replace DST [via GW onlink] dev OIF table T   |   ip route replace unreachable default table T
        ipr.route("replace", **_route_args(route, table))
        changed = True
    return changed


def fresh_writes(table: int, routes: list[dict] = (), iifnames: list[str] = (),
                 dport_range: tuple[int, int] | None = None) -> list:
    """The rtnl.py messages of ensure_routes and ensure_rules with `fresh` (nothing read first): one batch."""
    from vnstitch.drivers.linux import rtnl
    out = []
    for route in routes:
        net, _, plen = route["dst"].partition("/")
        if route.get("type") == "unreachable":
            out.append(rtnl.route_replace(net, int(plen), table=table, unreachable=True))
        else:
            out.append(rtnl.route_replace(net, int(plen), oif=route["oif"], table=table, gateway=route.get("gateway"),
                                          onlink=bool(route.get("gateway"))))
    for spec in _rule_specs(table, iifnames, dport_range):
        dports = spec.get("dport_range")
        out.append(rtnl.rule_add(spec["priority"], table=spec.get("table"), unreachable="action" in spec,
                                 iifname=spec.get("iifname"), ip_proto=spec.get("ip_proto"),
                                 dport_range=tuple(int(p) for p in dports.split(":")) if dports else None))
    return out


def remove_routes(ipr, table: int, routes: list[dict]) -> bool:
    """ip route del [unreachable] DST table T for each route spec ({"dst", "type"}); absent ones are fine."""
    changed = False
    for route in routes:
        net, _, plen = route["dst"].partition("/")
        with tolerate(ESRCH, ENOENT):
            ipr.route("del", table=table, dst=net, dst_len=int(plen), type=route.get("type", "unicast"))
            changed = True
    return changed


def _rule_specs(table: int, iifnames, dport_range) -> list[dict]:
    """One rule per selector: `lookup T` at pref T (what T does not route meets its UNREACHABLE_DEFAULT).

    Every rule costs each later rule insert, each new device in the namespace (the kernel binds `iif`
    rules by name: it walks the list) and each routed packet a step, so a stitch adds as few as it can."""
    selectors = [{"iifname": name} for name in iifnames]
    if dport_range:
        selectors.append({"ip_proto": 17, "dport_range": f"{dport_range[0]}:{dport_range[1]}"})
    return [{"table": table, "priority": table, **selector} for selector in selectors]


def _spec_key(spec: dict) -> tuple:
    return (spec["priority"], spec.get("table", 0) if "table" in spec else -1, spec.get("iifname"),
            spec.get("dport_range"))


def _msg_key(msg) -> tuple:
    port = _port_range(msg)
    table = msg.get("FRA_TABLE") if msg["action"] == FR_ACT_TO_TBL else -1
    return (msg.get("FRA_PRIORITY", 0), table, msg.get("FRA_IIFNAME"),
            f"{port[0]}:{port[1]}" if port else None)


def ensure_rules(ipr, table: int, iifnames: list[str] = (), dport_range: tuple[int, int] | None = None,
                 fresh: bool = False) -> bool:
    """ip rule add pref T iif X lookup T; ip rule add pref T ipproto udp dport P1-P2 lookup T (`fresh`:
    add without dumping the rule list)."""
    present = set() if fresh else {_msg_key(m) for m in ipr.get_rules(family=socket.AF_INET)}
    changed = False
    for spec in _rule_specs(table, iifnames, dport_range):
        if _spec_key(spec) in present:
            continue
        with tolerate(EEXIST):
            ipr.rule("add", **spec)
        changed = True
    return changed


def unreachable_tables(ipr) -> set[int]:
    """The tables that hold an `unreachable default` route (one dump of every table's IPv4 routes)."""
    return {msg.get("RTA_TABLE") for msg in ipr.route("dump", family=socket.AF_INET)
            if msg["type"] == RTN_UNREACHABLE and msg["dst_len"] == 0}


def rules_per_table(ipr) -> dict[int, int]:
    """ip rule list, `lookup T` rules at pref T counted by table (one dump for every stitch in a namespace)."""
    counts: dict[int, int] = {}
    for msg in ipr.get_rules(family=socket.AF_INET):
        table = msg.get("FRA_TABLE")
        if msg["action"] == FR_ACT_TO_TBL and table is not None and msg.get("FRA_PRIORITY") == table:
            counts[table] = counts.get(table, 0) + 1
    return counts


def remove_rules(ipr, table: int, iifnames: list[str] = (), dport_range: tuple[int, int] | None = None) -> bool:
    """ip rule del (each rule ensure_rules would make); absent ones are fine."""
    changed = False
    for spec in _rule_specs(table, iifnames, dport_range):
        with tolerate(ENOENT, ESRCH):
            ipr.rule("del", **spec)
            changed = True
    return changed


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
    """minor → {"rate_bps", "ceil_bps", "bytes"} for the HTB classes on a device."""
    out = {}
    for msg in ipr.get_classes(index=index):
        if msg.get("TCA_KIND") != "htb":
            continue
        parms = msg.get(("TCA_OPTIONS", "TCA_HTB_PARMS")) or {}
        rate64 = msg.get(("TCA_OPTIONS", "TCA_HTB_RATE64"))
        rate_bytes = rate64 or parms.get("rate", 0)
        ceil_bytes = msg.get(("TCA_OPTIONS", "TCA_HTB_CEIL64")) or parms.get("ceil", 0)
        stats = msg.get("TCA_STATS2")
        sent = 0
        if stats is not None:
            basic = stats.get("TCA_STATS_BASIC")
            sent = basic.get("bytes", 0) if basic else 0
        out[msg["handle"] & 0xFFFF] = {"rate_bps": rate_bytes * 8.0, "ceil_bps": ceil_bytes * 8.0, "bytes": sent}
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
    """A class for the stitch's tunnel packets (UDP to its ports) on one egress: the reservation is
    guaranteed (rate) and what the link has spare is borrowed (ceil = the link's rate), so traffic above
    the reservation is best effort, as the simulator models it, never cut off while the link is idle."""
    index = ifindex(ipr, ifname)
    classes = htb_classes(ipr, index)
    changed = False
    current = classes.get(minor)
    rate, ceil = f"{int(rate_bps)}bit", f"{int(link_rate_bps)}bit"
    if current is None or abs(current["rate_bps"] - int(rate_bps)) > max(8.0, rate_bps * 1e-3) \
            or abs(current["ceil_bps"] - int(link_rate_bps)) > max(8.0, link_rate_bps * 1e-3):
        # tc class replace dev X parent 1:1 classid 1:MINOR htb rate R ceil LINK
        ipr.tc("replace-class", "htb", index, _handle(minor), parent=_handle(LINK_CLASS_MINOR), rate=rate,
               ceil=ceil, quantum=1514)
        changed = True
    filters = [m for m in ipr.get_filters(index=index, parent=0x10000)
               if (m["info"] >> 16) == prio and m.get("TCA_KIND") == "u32" and m.get(("TCA_OPTIONS", "TCA_U32_SEL"))]
    if len(filters) < len(dports):
        with tolerate(ENOENT):
            # pyroute2's u32 plugin needs the target even to delete (KeyError 'target' without it)
            ipr.tc("del-filter", "u32", index, 0, parent=0x10000, prio=prio, protocol=ETH_P_IP,
                   target=_handle(minor)) if filters else None
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
            # tc filter del dev X parent 1: prio P (pyroute2's u32 plugin needs the target even here)
            ipr.tc("del-filter", "u32", index, 0, parent=0x10000, prio=prio, protocol=ETH_P_IP,
                   target=_handle(minor))
        changed = True
    if minor in htb_classes(ipr, index):
        with tolerate(ENOENT):
            # tc class del dev X classid 1:MINOR (no kind: pyroute2's htb plugin cannot build a delete)
            ipr.tc("del-class", index=index, handle=_handle(minor), parent=_handle(LINK_CLASS_MINOR))
        changed = True
    if changed:
        _rebalance_default(ipr, index, link_rate_bps)
    return changed


# --- QoS classes on a stitch's tunnel device -----------------------------------------------
#
# Classified before encryption, on the device that carries the stitch's inner packets out of the end
# node (wireguard-go's TUN vw…, the VXLAN vt…, a local stitch's far gateway veth):
#   root HTB 1: (default: the lowest-ranked class) → 1:1 at the stitch's rate (rate = ceil) → one child
#   class 1:(10+i) per QoS class i in rank order, rate = share × stitch rate, ceil = stitch rate,
#   HTB prio = rank − 1 (HTB has prio 0–7, 0 first), with u32 filters at prio i+1 (DSCP: ip tos under
#   mask 0xfc; ports: ip protocol tcp/udp and ip dport) to it.

QOS_PARENT_MINOR = 0x1
QOS_CLASS_BASE = 0x10
ROOT = 0xFFFFFFFF
IPPROTO_TCP, IPPROTO_UDP = 6, 17


@dataclass(frozen=True)
class QosClassSpec:
    """One HTB child class of the tunnel device and the u32 filters that send traffic to it (pure)."""

    minor: int
    prio: int                         # HTB prio: rank − 1
    rate_bps: float
    ceil_bps: float
    filter_prio: int
    filters: tuple[tuple[str, ...], ...]   # u32 keys ("val/mask+off") of each filter, one tuple per filter


def dscp_key(dscp: int) -> str:
    """u32 key of `match ip tos (DSCP << 2) 0xfc`: the TOS byte is the second of the IPv4 header."""
    return f"0x{(dscp << 2) << 16:08x}/0x00fc0000+0"


def port_keys(protocol: int, port: int) -> tuple[str, str]:
    """u32 keys of `match ip protocol P 0xff match ip dport PORT 0xffff` (no IP options, as tc assumes)."""
    return (f"0x{protocol << 16:08x}/0x00ff0000+8", f"0x{port:08x}/0x0000ffff+20")


def qos_classes(qos, rate_bps: float) -> tuple[int, list[QosClassSpec]]:
    """(default class minor, the child classes) of a stitch's QoS rules (sorted by rank, as the op holds
    them) at `rate_bps` (already scaled): unmatched traffic goes to the lowest-ranked class."""
    specs = []
    for i, rule in enumerate(qos):
        filters = []
        if rule.dscp is not None:
            filters.append((dscp_key(rule.dscp),))
        for port in rule.ports:
            filters.extend([port_keys(IPPROTO_TCP, port), port_keys(IPPROTO_UDP, port)])
        specs.append(QosClassSpec(QOS_CLASS_BASE + i, max(0, min(7, rule.rank - 1)), rule.share * rate_bps,
                                  rate_bps, i + 1, tuple(filters)))
    return (specs[-1].minor if specs else 0), specs


def _close_rate(have: float, want: float) -> bool:
    return abs(have - int(want)) <= max(8.0, want * 1e-3)


def read_qos(ipr, index: int, root: dict | None = None) -> dict | None:
    """tc qdisc/class/filter show dev X: {"default", "classes": {minor: {rate_bps, ceil_bps, prio, parent}},
    "filters": {prio: [classid minor, …]}} of our root HTB 1:, None when the device's root is not one
    (`root`: its root qdisc message from an earlier dump, to skip reading it again)."""
    if root is None:
        roots = [m for m in ipr.get_qdiscs(index=index) if m["parent"] == ROOT and m["index"] == index]
        root = roots[0] if roots else None
    if root is None or root.get("TCA_KIND") != "htb" or root["handle"] != 0x10000:
        return None
    init = root.get(("TCA_OPTIONS", "TCA_HTB_INIT")) or {}
    classes = {}
    for msg in ipr.get_classes(index=index):
        if msg.get("TCA_KIND") != "htb":
            continue
        parms = msg.get(("TCA_OPTIONS", "TCA_HTB_PARMS")) or {}
        rate = msg.get(("TCA_OPTIONS", "TCA_HTB_RATE64")) or parms.get("rate", 0)
        ceil = msg.get(("TCA_OPTIONS", "TCA_HTB_CEIL64")) or parms.get("ceil", 0)
        classes[msg["handle"] & 0xFFFF] = {"rate_bps": rate * 8.0, "ceil_bps": ceil * 8.0,
                                           "prio": parms.get("prio", 0), "parent": msg["parent"] & 0xFFFF}
    filters: dict[int, list[int]] = {}
    for msg in ipr.get_filters(index=index, parent=0x10000):
        if msg.get("TCA_KIND") != "u32" or not msg.get(("TCA_OPTIONS", "TCA_U32_SEL")):
            continue
        classid = msg.get(("TCA_OPTIONS", "TCA_U32_CLASSID")) or 0
        filters.setdefault(msg["info"] >> 16, []).append(classid & 0xFFFF)
    return {"default": init.get("defcls", 0), "classes": classes, "filters": filters}


def qos_in_force(qos, rate_bps: float, have: dict | None) -> tuple:
    """The QoS rules a tunnel device enforces, from read_qos(): each wanted rule whose class holds its
    rate, ceil and prio under a parent at the stitch's rate, with its filters, in order; a class that
    is wrong or extra reads as a rule of its own (`class-1:MINOR`, its share and rank as the kernel has
    them, no matches), so that anything but exactly the wanted tree differs from the op (pure)."""
    from vnstitch.planning.ops import QosRule

    if have is None:
        return ()
    default, specs = qos_classes(qos, rate_bps)
    classes = dict(have["classes"])
    parent = classes.pop(QOS_PARENT_MINOR, None)
    parent_ok = (parent is not None and _close_rate(parent["rate_bps"], rate_bps)
                 and _close_rate(parent["ceil_bps"], rate_bps))
    out = []
    wanted = {spec.minor: (spec, rule) for spec, rule in zip(specs, qos)}
    for minor in sorted(classes):
        cls = classes[minor]
        spec, rule = wanted.get(minor, (None, None))
        ok = (spec is not None and parent_ok and cls["parent"] == QOS_PARENT_MINOR and cls["prio"] == spec.prio
              and _close_rate(cls["rate_bps"], spec.rate_bps) and _close_rate(cls["ceil_bps"], spec.ceil_bps)
              and sorted(have["filters"].get(spec.filter_prio, [])) == [minor] * len(spec.filters)
              and (minor != default or have["default"] == default))
        if ok:
            out.append(rule)
        else:
            share = round(cls["rate_bps"] / parent["rate_bps"], 3) if parent and parent["rate_bps"] else 0.0
            out.append(QosRule(f"class-1:{minor:x}", cls["prio"] + 1, share))
    return tuple(out)


def _replace_class(ipr, index: int, minor: int, parent_minor: int, rate_bps: float, ceil_bps: float,
                   prio: int = 0) -> None:
    # tc class replace dev X parent 1:P classid 1:MINOR htb rate R ceil C prio PRIO quantum 1514
    ipr.tc("replace-class", "htb", index, _handle(minor), parent=_handle(parent_minor),
           rate=f"{int(rate_bps)}bit", ceil=f"{int(ceil_bps)}bit", prio=prio, quantum=1514)


def _delete_filters(ipr, index: int, prio: int) -> None:
    with tolerate(ENOENT, 22):
        # tc filter del dev X parent 1: prio P (pyroute2's u32 plugin needs a target even here)
        ipr.tc("del-filter", "u32", index, 0, parent=0x10000, prio=prio, protocol=ETH_P_IP,
               target=_handle(QOS_CLASS_BASE))


def ensure_qos(ipr, index: int, rate_bps: float, qos) -> bool:
    """The QoS tree above on device `index` at `rate_bps` (scaled), changing only what differs: the
    root when absent or with another default class (HTB cannot change its default in place), then
    the parent, each child class, each class's filters; classes and filters no rule wants go."""
    default, specs = qos_classes(qos, rate_bps)
    have = read_qos(ipr, index)
    changed = False
    if have is None or have["default"] != default:
        if have is not None:   # our HTB with another default class: HTB has no change for it
            with tolerate(ENOENT, 22):
                ipr.tc("del", index=index, handle=0, parent=ROOT)      # tc qdisc del dev X root
        try:
            # tc qdisc replace dev X root handle 1: htb default MINOR (replaces the device's default qdisc)
            ipr.tc("replace", "htb", index, 0x10000, default=default, r2q=100)
        except NetlinkError:   # some other qdisc holds handle 1:
            with tolerate(ENOENT, 22):
                ipr.tc("del", index=index, handle=0, parent=ROOT)      # tc qdisc del dev X root
            ipr.tc("add", "htb", index, 0x10000, default=default, r2q=100)  # tc qdisc add … htb default MINOR
        have, changed = {"default": default, "classes": {}, "filters": {}}, True
    parent = have["classes"].get(QOS_PARENT_MINOR)
    if parent is None or not (_close_rate(parent["rate_bps"], rate_bps) and _close_rate(parent["ceil_bps"], rate_bps)):
        _replace_class(ipr, index, QOS_PARENT_MINOR, 0, rate_bps, rate_bps)   # 1:1 under the root 1:
        changed = True
    wanted_prios = {spec.filter_prio for spec in specs}
    for prio in set(have["filters"]) - wanted_prios:   # filters of classes that went (before their class)
        _delete_filters(ipr, index, prio)
        changed = True
    wanted_minors = {spec.minor for spec in specs}
    for minor in set(have["classes"]) - wanted_minors - {QOS_PARENT_MINOR}:
        with tolerate(ENOENT):
            # tc class del dev X classid 1:MINOR
            ipr.tc("del-class", index=index, handle=_handle(minor), parent=_handle(QOS_PARENT_MINOR))
        changed = True
    for spec in specs:
        cls = have["classes"].get(spec.minor)
        if cls is None or cls["prio"] != spec.prio or not (_close_rate(cls["rate_bps"], spec.rate_bps)
                                                         and _close_rate(cls["ceil_bps"], spec.ceil_bps)):
            _replace_class(ipr, index, spec.minor, QOS_PARENT_MINOR, spec.rate_bps, spec.ceil_bps, spec.prio)
            changed = True
        if sorted(have["filters"].get(spec.filter_prio, [])) != [spec.minor] * len(spec.filters):
            if spec.filter_prio in have["filters"]:
                _delete_filters(ipr, index, spec.filter_prio)
            for keys in spec.filters:
                # tc filter add dev X parent 1: protocol ip prio P u32 match ip tos DSCP<<2 0xfc flowid 1:MINOR
                #   | … u32 match ip protocol 6|17 0xff match ip dport PORT 0xffff flowid 1:MINOR
                ipr.tc("add-filter", "u32", index, 0, parent=0x10000, prio=spec.filter_prio, protocol=ETH_P_IP,
                       target=_handle(spec.minor), keys=list(keys))
            changed = True
    return changed


def remove_qos(ipr, index: int) -> bool:
    """tc qdisc del dev X root, when the root is our HTB 1: (the device falls back to its default qdisc)."""
    roots = [m for m in ipr.get_qdiscs(index=index) if m["parent"] == ROOT and m["index"] == index]
    if not roots or roots[0].get("TCA_KIND") != "htb" or roots[0]["handle"] != 0x10000:
        return False
    with tolerate(ENOENT, 22):
        ipr.tc("del", index=index, handle=0, parent=ROOT)   # tc qdisc del dev X root
    return True
