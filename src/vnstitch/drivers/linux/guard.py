"""What a member sends where no stitch leads: counted and dropped where it leaves the VM.

A member reaches its own network on-link and a stitched network through that stitch's gateway (routes
the stitches program). Everything else takes the member's default route, via a next hop that exists
nowhere (GUARD_GATEWAY, onlink), and the VM's output hook rejects it before any neighbour lookup (the
sender learns at once, as from a router: ICMP administratively prohibited, "No route to host" for TCP),
so nothing of it reaches the wire. Each destination address it was sent to is an element of a dynamic
set with its own counter: telemetry reads them as the member's traffic to networks it may not reach
(the anomaly engine's forbidden flows), and an anomaly's filter can sit in front of it (chain
`filters`) with a counter of its own.

    ip -n VM route replace default via 169.254.255.254 dev eth0 onlink
    nft -f - <<EOF   (in the VM)
    table inet vnstitch_guard {
        set unstitched { type ipv4_addr; size 65535; flags dynamic,timeout; timeout 1h; counter; }
        chain filters { }
        chain output {
            type filter hook output priority 0; policy accept;
            jump filters
            rt ip nexthop 169.254.255.254 update @unstitched { ip daddr } reject with icmpx type admin-prohibited
        }
    }
    EOF
"""

from __future__ import annotations

import json

from vnstitch.drivers.linux import nft
from vnstitch.errors import DriverError

TABLE = "vnstitch_guard"
SET = "unstitched"
CHAIN = "filters"                  # anomaly filters in front of the guard (filters.py writes them)
GUARD_GATEWAY = "169.254.255.254"  # above every stitch gateway (169.254.0.0 + 2n + 2/3, n < 3000)
TIMEOUT = "1h"                     # a destination not sent to for an hour is forgotten (its count with it)

BASE = f"""table inet {TABLE} {{
    set {SET} {{
        type ipv4_addr; size 65535; flags dynamic,timeout; timeout {TIMEOUT}; counter;
    }}
    chain {CHAIN} {{
    }}
    chain output {{
        type filter hook output priority 0; policy accept;
        jump {CHAIN}
        rt ip nexthop {GUARD_GATEWAY} update @{SET} {{ ip daddr }} reject with icmpx type admin-prohibited
    }}
}}
"""


def default_route(ipr, index: int) -> dict:
    """The route write for the member's default route over its eth0 (ifindex `index`)."""
    return {"dst": "0.0.0.0", "dst_len": 0, "gateway": GUARD_GATEWAY, "oif": index, "flags": 4}  # RTNH_F_ONLINK


def has_table(ns: str) -> bool:
    try:
        nft.run(ns, f"list chain inet {TABLE} output\n", what="nft list guard")
    except DriverError:
        return False
    return True


def ensure_guard(ns: str, ipr, index: int, fresh: bool = False) -> bool:
    """The guard table and the default route in the VM namespace `ns` (eth0 = `index`)."""
    changed = False
    if fresh or not has_table(ns):
        nft.run(ns, BASE, what=f"nft guard in {ns}")
        changed = True
    if not fresh:
        for msg in ipr.get_routes(family=2, table=254):
            if msg["dst_len"] == 0 and msg.get("RTA_GATEWAY") == GUARD_GATEWAY and msg.get("RTA_OIF") == index:
                return changed
    ipr.route("replace", **default_route(ipr, index))
    return True


def unstitched_bytes(ns: str) -> tuple[int | None, dict[str, int]] | None:
    """(the set's handle, destination address → bytes the member sent there with no stitch to carry it);
    None: no guard to read. A guard made again has a new handle (its counts start from zero)."""
    try:
        out = nft.run(ns, f"list set inet {TABLE} {SET}\n", json_output=True, what="nft list guard set")
    except DriverError:
        return None
    found: dict[str, int] = {}
    handle = None
    for item in json.loads(out)["nftables"]:
        if "set" in item:
            handle = item["set"].get("handle")
        for element in (item.get("set") or {}).get("elem") or []:
            elem = element.get("elem") if isinstance(element, dict) else None
            if not isinstance(elem, dict):
                continue
            address = elem.get("val")
            counter = elem.get("counter") or {}
            if isinstance(address, str):
                found[address] = int(counter.get("bytes", 0))
    return handle, found


__all__ = ["BASE", "GUARD_GATEWAY", "TABLE", "ensure_guard", "unstitched_bytes"]
