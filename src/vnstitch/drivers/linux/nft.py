"""nftables per substrate node: default deny between virtual networks, one chain per stitch end."""

from __future__ import annotations

import json

from vnstitch.drivers.linux.kernel import run_in

TABLE = "vnstitch"

# Forwarded traffic in a node namespace is either substrate transit or stitch traffic;
# anything else (one network reaching another) hits the drop policy.
_BASE = f"""table inet {TABLE} {{
    map stitch_in {{ type ifname : verdict; }}
    chain forward {{
        type filter hook forward priority 0; policy drop;
        tcp flags syn tcp option maxseg size set rt mtu
        iifname "sub*" oifname "sub*" accept
        iifname vmap @stitch_in
    }}
    chain input {{
        type filter hook input priority 0; policy accept;
        iifname "vg*" drop
        iifname "vw*" drop
        iifname "vt*" drop
        iifname "br*" drop
    }}
}}
"""


def ensure_base(ns: str) -> bool:
    """nft add table inet vnstitch ... (only when missing: rules are not idempotent to add)."""
    if run_in(ns, ["nft", "list", "chain", "inet", TABLE, "forward"], check=False).returncode == 0:
        return False
    run_in(ns, ["nft", "-f", "-"], stdin=_BASE, what=f"nft base ruleset in {ns}")
    return True


def chain_name(stitch_hash: str) -> str:
    return f"st_{stitch_hash}"


def stitch_rules(gateway_if: str, tunnel_if: str, local: str, remote: str) -> list[str]:
    """The only traffic a stitch end lets through: local→remote out of the tunnel and back."""
    return [
        f'iifname "{gateway_if}" oifname "{tunnel_if}" ip saddr {local} ip daddr {remote} counter accept',
        f'iifname "{tunnel_if}" oifname "{gateway_if}" ip saddr {remote} ip daddr {local} counter accept',
    ]


def read_chain(ns: str, chain: str) -> list[dict] | None:
    """nft -j list chain inet vnstitch CHAIN → rule expressions, None when absent."""
    proc = run_in(ns, ["nft", "-j", "list", "chain", "inet", TABLE, chain], check=False)
    if proc.returncode != 0:
        return None
    return [item["rule"] for item in json.loads(proc.stdout)["nftables"] if "rule" in item]


def chain_counters(rules: list[dict]) -> list[int]:
    """Bytes of each rule's counter, in rule order."""
    out = []
    for rule in rules:
        count = 0
        for expr in rule.get("expr", []):
            if "counter" in expr:
                count = int(expr["counter"].get("bytes", 0))
        out.append(count)
    return out


def ensure_stitch(ns: str, chain: str, gateway_if: str, tunnel_if: str, local: str, remote: str,
                  fresh: bool = False) -> bool:
    """Create the stitch chain and map entries unless the kernel already has exactly them
    (`fresh`: the stitch was just allocated, skip reading the kernel)."""
    wanted = stitch_rules(gateway_if, tunnel_if, local, remote)
    existing = None if fresh else read_chain(ns, chain)
    if existing is not None and len(existing) == len(wanted) and _has_elements(ns, chain, gateway_if, tunnel_if):
        return False
    script = "\n".join([
        f"add chain inet {TABLE} {chain}",
        f"flush chain inet {TABLE} {chain}",
        *[f"add rule inet {TABLE} {chain} {rule}" for rule in wanted],
        f'add element inet {TABLE} stitch_in {{ "{gateway_if}" : jump {chain}, "{tunnel_if}" : jump {chain} }}',
    ]) + "\n"
    run_in(ns, ["nft", "-f", "-"], stdin=script, what=f"nft stitch chain {chain}")
    return True


def _has_elements(ns: str, chain: str, *ifnames: str) -> bool:
    proc = run_in(ns, ["nft", "-j", "list", "map", "inet", TABLE, "stitch_in"], check=False)
    if proc.returncode != 0:
        return False
    text = proc.stdout
    return all(f'"{name}"' in text for name in ifnames) and chain in text


def remove_stitch(ns: str, chain: str, *ifnames: str) -> bool:
    """nft delete element ...; nft delete chain ... (tolerates absence)."""
    existed = read_chain(ns, chain) is not None
    script = "".join(f'delete element inet {TABLE} stitch_in {{ "{name}" }}\n' for name in ifnames)
    for line in script.splitlines():  # each may be absent on its own
        run_in(ns, ["nft", line], check=False)
    if existed:
        run_in(ns, ["nft", "delete", "chain", "inet", TABLE, chain], check=False)
    return existed
