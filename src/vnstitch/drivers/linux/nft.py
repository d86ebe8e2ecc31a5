"""nftables per substrate node: default deny between virtual networks, one chain per stitch end.

Scripts run through libnftables (the library behind `nft`) in a thread joined to the node's
namespace: one atomic transaction per call, about 1 ms instead of 10–20 ms for
`ip netns exec NS nft -f -` (which stays as the fallback where the library cannot be loaded).
"""

from __future__ import annotations

import ctypes
import errno as errno_codes
import os
import functools
import ipaddress
import json
import shlex
import threading
from dataclasses import dataclass
from typing import Sequence

from vnstitch.drivers.linux.kernel import in_netns, run_in
from vnstitch.errors import DriverError

TABLE = "vnstitch"
_OUTPUT_JSON = 1 << 4          # NFT_CTX_OUTPUT_JSON in libnftables.h

# Forwarded traffic in a node namespace is either substrate transit, a tunnel's UDP between its
# wireguard-go's uplink (vu…, uplink.py) and the substrate, or stitch traffic; anything else (one
# network reaching another) hits the drop policy.
_BASE = f"""table inet {TABLE} {{
    map stitch_in {{ type ifname : verdict; }}
    chain forward {{
        type filter hook forward priority 0; policy drop;
        tcp flags syn tcp option maxseg size set rt mtu
        iifname "sub*" oifname "sub*" accept
        iifname "vu*" oifname "sub*" accept
        iifname "sub*" oifname "vu*" accept
        iifname vmap @stitch_in
    }}
    chain input {{
        type filter hook input priority 0; policy accept;
        iifname "vg*" drop
        iifname "vw*" drop
        iifname "vt*" drop
        iifname "vu*" drop
        iifname "br*" drop
    }}
}}
"""

_ERRNO_BY_TEXT = {"No such file or directory": errno_codes.ENOENT, "File exists": errno_codes.EEXIST,
                  "Device or resource busy": errno_codes.EBUSY, "Operation not permitted": errno_codes.EPERM}


class _Lib:
    """ctypes binding of the five libnftables calls we use; None when the library is missing."""

    _instance: "_Lib | None | bool" = False
    _lock = threading.Lock()

    def __init__(self, lib: ctypes.CDLL):
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        self.lib = lib

    @classmethod
    def get(cls) -> "_Lib | None":
        with cls._lock:
            if cls._instance is False:
                try:
                    cls._instance = cls(ctypes.CDLL("libnftables.so.1"))
                except OSError:
                    cls._instance = None
            return cls._instance  # type: ignore[return-value]

    def run(self, script: str, json_output: bool) -> tuple[int, str, str]:
        """nft -f - (in the calling thread's namespace): (rc, stdout, stderr)."""
        lib = self.lib
        ctx = lib.nft_ctx_new(0)
        if not ctx:
            raise DriverError("libnftables: cannot allocate a context", errno=errno_codes.ENOMEM)
        try:
            lib.nft_ctx_buffer_output(ctx)
            lib.nft_ctx_buffer_error(ctx)
            if json_output:
                lib.nft_ctx_output_set_flags(ctx, _OUTPUT_JSON)
            rc = lib.nft_run_cmd_from_buffer(ctx, script.encode())
            out = (lib.nft_ctx_get_output_buffer(ctx) or b"").decode()
            err = (lib.nft_ctx_get_error_buffer(ctx) or b"").decode()
            return rc, out, err
        finally:
            lib.nft_ctx_free(ctx)


def _low_fds_free() -> bool:
    """libnftables waits on its netlink socket with select(), which aborts the process (glibc's
    FD_SET check) when that socket's number is 1024 or more: true when the next fd would be below."""
    probe = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    os.close(probe)
    return probe < 1000


def run(ns: str, script: str, json_output: bool = False, what: str = "nft") -> str:
    """nft [-j] -f - inside `ns` as one transaction; DriverError (errno from the message) on failure.
    In-process through libnftables, or the `nft` command when the library is missing or the process
    holds so many files that the library's socket would get a number select() cannot take."""
    lib = _Lib.get()
    if lib is not None and _low_fds_free():
        rc, out, err = in_netns(ns, lambda: lib.run(script, json_output))
    else:
        lines = [line for line in script.splitlines() if line.strip()]
        if json_output and len(lines) == 1:  # `nft -j -f -` prints nothing for a list command (nft 1.0.6)
            proc = run_in(ns, ["nft", "-j", *shlex.split(lines[0])], check=False)
        else:
            proc = run_in(ns, ["nft"] + (["-j"] if json_output else []) + ["-f", "-"], stdin=script, check=False)
        rc, out, err = proc.returncode, proc.stdout, proc.stderr
    if rc != 0:
        lines = [line for line in err.splitlines() if line.startswith("Error:")] or err.strip().splitlines() or [
            f"exit {rc}"]
        code = next((c for text, c in _ERRNO_BY_TEXT.items() if text in err), errno_codes.EIO)
        raise DriverError(f"{what} in {ns}: {lines[0]}", errno=code)
    return out


_BASE_RULES = {"forward": 5, "input": 5}  # rules per base chain in _BASE


def base_problem(table: dict | None) -> str | None:
    """What is missing of the base ruleset (a read_table() result), or None: a flushed table keeps its
    chains but loses their rules, and then every stitch through the node is dropped."""
    if table is None:
        return "nftables table missing"
    for chain, count in _BASE_RULES.items():
        rules = table["chains"].get(chain)
        if rules is None:
            return f"nftables base chain {chain} missing"
        if len(rules) != count:
            return f"nftables base chain {chain} has {len(rules)} rules, not {count}"
    return None


def ensure_base(ns: str) -> bool:
    """nft -f BASE where the base ruleset is missing or incomplete (its chains flushed first, in the same
    transaction: rules are not idempotent to add)."""
    table = read_table(ns)
    if base_problem(table) is None:
        return False
    flush = "".join(f"flush chain inet {TABLE} {chain}\n" for chain in _BASE_RULES
                    if table is not None and chain in table["chains"])
    run(ns, flush + _BASE, what="nft base ruleset")
    return True


def chain_name(stitch_hash: str) -> str:
    return f"st_{stitch_hash}"


ESTABLISHED = "established,related"


@dataclass(frozen=True)
class ChainRule:
    """One rule of a stitch end's chain: what it matches (None: anything), its verdict; `text` is the nft
    syntax it is written in, `shape` what `_rule_shape` reads back from `nft -j` for it."""

    verdict: str                      # accept | drop
    iifname: str | None = None
    oifname: str | None = None
    saddr: str | None = None
    daddr: str | None = None
    l4proto: str | None = None        # tcp | udp | icmp
    dport: int | None = None
    ct_state: str | None = None       # "established,related": replies only

    @property
    def text(self) -> str:
        parts = []
        if self.iifname is not None:
            parts.append(f'iifname "{self.iifname}"')
        if self.oifname is not None:
            parts.append(f'oifname "{self.oifname}"')
        if self.saddr is not None:
            parts.append(f"ip saddr {self.saddr}")
        if self.daddr is not None:
            parts.append(f"ip daddr {self.daddr}")
        if self.l4proto is not None and self.dport is not None:
            parts.append(f"{self.l4proto} dport {self.dport}")      # = meta l4proto P th dport N
        elif self.l4proto is not None:
            parts.append(f"meta l4proto {self.l4proto}")
        if self.ct_state is not None:
            parts.append(f"ct state {self.ct_state}")
        return " ".join(parts + ["counter", self.verdict])

    @property
    def shape(self) -> tuple:
        matches = []
        for key, value in (("iifname", self.iifname), ("oifname", self.oifname), ("saddr", self.saddr),
                           ("daddr", self.daddr), ("l4proto", self.l4proto), ("dport", self.dport)):
            if value is not None:
                text = _addr_text(value) if key in ("saddr", "daddr") else str(value)
                matches.append((key, "==", text))
        if self.ct_state is not None:
            matches.append(("ct state", "in", ",".join(sorted(self.ct_state.split(",")))))
        return (tuple(sorted(matches)), self.verdict)


def chain_rules(gateway_if: str, tunnel_if: str, local: str, remote: str, services: Sequence = (),
                inbound: bool = False) -> list[ChainRule]:
    """What a stitch end lets through, in order, then `counter drop` (what it denies, counted).

    No services: local→remote out of the tunnel and remote→local back. With services (each with a
    `protocol` and a `port`, None: any), only those flows may start, from end a (`from`) towards end b
    (`to`), and their replies come back (conntrack): end a (`inbound` False) sends the services out
    and takes back only `ct state established,related`; end b (`inbound` True) takes the services in
    from the tunnel and sends back only established/related."""
    out = dict(iifname=gateway_if, oifname=tunnel_if, saddr=local, daddr=remote)
    back = dict(iifname=tunnel_if, oifname=gateway_if, saddr=remote, daddr=local)
    if not services:
        return [ChainRule("accept", **out), ChainRule("accept", **back), ChainRule("drop")]
    starting, replying = (back, out) if inbound else (out, back)
    allowed = [ChainRule("accept", **starting, l4proto=s.protocol, dport=s.port) for s in services]
    replies = ChainRule("accept", **replying, ct_state=ESTABLISHED)
    ordered = allowed + [replies] if not inbound else [replies] + allowed
    return ordered + [ChainRule("drop")]


def stitch_rules(gateway_if: str, tunnel_if: str, local: str, remote: str, services: Sequence = (),
                 inbound: bool = False) -> list[str]:
    """The nft text of `chain_rules` (what `_stitch_script` adds)."""
    return [rule.text for rule in chain_rules(gateway_if, tunnel_if, local, remote, services, inbound)]


def read_table(ns: str) -> dict | None:
    """nft -j list table inet vnstitch → {"chains": {name: [rule]}, "map": {ifname: chain}}; None when absent."""
    try:
        out = run(ns, f"list table inet {TABLE}\n", json_output=True)
    except DriverError:
        return None
    chains: dict[str, list[dict]] = {}
    jumps: dict[str, str] = {}
    for item in json.loads(out)["nftables"]:
        if "chain" in item:
            chains.setdefault(item["chain"]["name"], [])
        elif "rule" in item:
            chains.setdefault(item["rule"]["chain"], []).append(item["rule"])
        elif "map" in item and item["map"]["name"] == "stitch_in":
            for key, verdict in item["map"].get("elem", []):
                target = (verdict.get("jump") or verdict.get("goto") or {}).get("target")
                jumps[key] = target
    return {"chains": chains, "map": jumps}


def read_chain(ns: str, chain: str) -> list[dict] | None:
    """The rules of one chain of our table, None when absent."""
    table = read_table(ns)
    return None if table is None else table["chains"].get(chain)


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


@functools.lru_cache(maxsize=4096)
def _addr_text(cidr: str) -> str:
    """A match value as nft -j lists it, as text: "10.1.0.11" for a /32, else "10.1.0.0/24"."""
    net = ipaddress.ip_network(cidr, strict=False)
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return f"{net.network_address}/{net.prefixlen}"


def _value_text(right) -> str:
    """A rule's match value (a name, an address, {"prefix": …}, or anything else) as comparable text."""
    if isinstance(right, str):
        return right
    prefix = right.get("prefix") if isinstance(right, dict) else None
    if prefix is not None and set(prefix) == {"addr", "len"}:
        return f"{prefix['addr']}/{prefix['len']}"
    return json.dumps(right, sort_keys=True)


def _rule_shape(rule: dict) -> tuple:
    """(sorted (key, op, value) matches, verdict) of a rule as nft -j lists it, comparable with
    ChainRule.shape (observe() reads every stitch's chain: no JSON encoding per rule). `tcp dport N`
    lists as a tcp payload match: it reads as l4proto tcp and dport N."""
    matched = []
    verdict = None
    for expr in rule.get("expr", []):
        match = expr.get("match")
        if match is not None:
            left, op, right = match["left"], match.get("op"), match["right"]
            payload = left.get("payload") or {}
            if "meta" in left:
                matched.append((left["meta"].get("key"), op, _value_text(right)))
            elif "ct" in left:
                values = right if isinstance(right, list) else [right]
                matched.append((f"ct {left['ct'].get('key')}", op,
                                ",".join(sorted(v if isinstance(v, str) else json.dumps(v) for v in values))))
            elif payload.get("protocol") in ("tcp", "udp", "th") and payload.get("field") == "dport":
                if payload["protocol"] != "th":
                    matched.append(("l4proto", "==", payload["protocol"]))
                matched.append(("dport", op, _value_text(right if not isinstance(right, int) else str(right))))
            else:
                matched.append((payload.get("field"), op, _value_text(right)))
        else:
            for name in ("accept", "drop", "jump", "goto", "return", "reject"):
                if name in expr:
                    verdict = name
    return (tuple(sorted(matched, key=lambda m: tuple(str(part) for part in m))), verdict)


def _wanted_shapes(gateway_if: str, tunnel_if: str, local: str, remote: str, services: Sequence = (),
                   inbound: bool = False) -> list[tuple]:
    return [rule.shape for rule in chain_rules(gateway_if, tunnel_if, local, remote, services, inbound)]


def stitch_chain_problem(table: dict | None, chain: str, gateway_if: str, tunnel_if: str, local: str,
                         remote: str, services: Sequence = (), inbound: bool = False
                         ) -> tuple[list[dict] | None, str | None]:
    """(the chain's rules or None, what differs from what ensure_stitch writes or None), from a
    read_table() result: the chain must hold exactly the stitch's rules (chain_rules) and the map must
    send both interfaces to it."""
    rules = None if table is None else table["chains"].get(chain)
    if rules is None:
        return None, f"nftables chain {chain} missing"
    if [_rule_shape(rule) for rule in rules] != _wanted_shapes(gateway_if, tunnel_if, local, remote, services,
                                                               inbound):
        return rules, f"nftables chain {chain} does not hold the stitch's rules"
    for ifname in (gateway_if, tunnel_if):
        if table["map"].get(ifname) != chain:
            return rules, f"nftables map stitch_in does not send {ifname} to {chain}"
    return rules, None


def chain_services(rules: list[dict] | None, gateway_if: str, tunnel_if: str, local: str, remote: str,
                   inbound: bool = False) -> tuple | None:
    """The ServiceRules a chain's rules enforce, read back (what observe() reports): () when it lets
    everything between the ends through, None when the rules are no stitch chain chain_rules writes
    (missing, flushed, edited beyond recognition: the chain's problem says so)."""
    from vnstitch.planning.ops import ServiceRule

    if rules is None:
        return None
    shapes = [_rule_shape(rule) for rule in rules]
    starting_if = tunnel_if if inbound else gateway_if   # where the allowed flows start from
    found = []
    for matches, verdict in shapes:
        fields = {key: value for key, _, value in matches}
        if verdict != "accept" or "ct state" in fields or "l4proto" not in fields:
            continue
        if fields.get("iifname") != starting_if:
            continue
        port = fields.get("dport")
        found.append(ServiceRule(fields["l4proto"], int(port) if port and port.isdigit() else None))
    candidate = tuple(found)
    if shapes == _wanted_shapes(gateway_if, tunnel_if, local, remote, candidate, inbound):
        return candidate
    return None


def chain_totals(rules: list[dict], gateway_if: str) -> tuple[int, int, int]:
    """(bytes accepted out of the gateway, bytes accepted towards it, packets dropped) of a stitch chain:
    throughput is read from the accept rules' counters, the denied count from the drop rule's."""
    out_bytes = in_bytes = denied = 0
    for rule in rules:
        counter = next((expr["counter"] for expr in rule.get("expr", []) if "counter" in expr), None)
        if counter is None:
            continue
        exprs = rule.get("expr", [])
        if any("drop" in expr for expr in exprs):
            denied += int(counter.get("packets", 0))
            continue
        iif = next((e["match"]["right"] for e in exprs if "match" in e
                    and (e["match"]["left"].get("meta") or {}).get("key") == "iifname"), None)
        if iif == gateway_if:
            out_bytes += int(counter.get("bytes", 0))
        else:
            in_bytes += int(counter.get("bytes", 0))
    return out_bytes, in_bytes, denied


def direction_rules(rules: list[dict], gateway_if: str, outward: bool) -> list[dict]:
    """The accept rules of a stitch chain that count one direction: out of the gateway (`outward`) or
    towards it."""
    picked = []
    for rule in rules:
        exprs = rule.get("expr", [])
        if not any("accept" in expr for expr in exprs):
            continue
        iif = next((e["match"]["right"] for e in exprs if "match" in e
                    and (e["match"]["left"].get("meta") or {}).get("key") == "iifname"), None)
        if (iif == gateway_if) == outward:
            picked.append(rule)
    return picked


def _stitch_script(chain: str, gateway_if: str, tunnel_if: str, local: str, remote: str,
                   services: Sequence = (), inbound: bool = False) -> str:
    return "\n".join([
        f"add chain inet {TABLE} {chain}",
        f"flush chain inet {TABLE} {chain}",
        *[f"add rule inet {TABLE} {chain} {rule}"
          for rule in stitch_rules(gateway_if, tunnel_if, local, remote, services, inbound)],
        f'add element inet {TABLE} stitch_in {{ "{gateway_if}" : jump {chain}, "{tunnel_if}" : jump {chain} }}',
    ]) + "\n"


def ensure_stitch(ns: str, chain: str, gateway_if: str, tunnel_if: str, local: str, remote: str,
                  services: Sequence = (), inbound: bool = False, fresh: bool = False) -> bool:
    """One transaction: (re)write the stitch chain and its map entries, unless the kernel already
    has exactly them (`fresh`: the stitch was just allocated, so skip reading). Creates the base
    table first where it is missing. A changed service list rewrites the chain in place (its
    counters start again from zero)."""
    if not fresh:
        table = read_table(ns)
        if table is not None:
            have = [_rule_shape(rule) for rule in table["chains"].get(chain) or []]
            if (have == _wanted_shapes(gateway_if, tunnel_if, local, remote, services, inbound)
                    and table["map"].get(gateway_if) == chain and table["map"].get(tunnel_if) == chain):
                return False
    script = _stitch_script(chain, gateway_if, tunnel_if, local, remote, services, inbound)
    try:
        run(ns, script, what=f"nft stitch chain {chain}")
    except DriverError:
        if not ensure_base(ns):
            raise
        run(ns, script, what=f"nft stitch chain {chain}")
    return True


def remove_stitch(ns: str, chain: str, *ifnames: str) -> bool:
    """One transaction that removes the map entries and the chain whether or not they exist
    (each is added first, so the deletes cannot fail on absence). False when our table is gone."""
    entries = ", ".join(f'"{name}" : jump {chain}' for name in ifnames)
    keys = ", ".join(f'"{name}"' for name in ifnames)
    script = "\n".join([
        f"add chain inet {TABLE} {chain}",
        f"add element inet {TABLE} stitch_in {{ {entries} }}",
        f"delete element inet {TABLE} stitch_in {{ {keys} }}",
        f"flush chain inet {TABLE} {chain}",
        f"delete chain inet {TABLE} {chain}",
    ]) + "\n"
    try:
        run(ns, script, what=f"nft remove {chain}")
    except DriverError as exc:
        if exc.errno == errno_codes.ENOENT:    # no table in this namespace: nothing of ours
            return False
        raise
    return True
