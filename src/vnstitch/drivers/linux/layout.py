"""Names and addresses of everything the lab and the driver create, and the state files.

Every namespace starts with `vns-<lab>-`; every interface we create inside them has a
short fixed prefix (IFNAMSIZ is 16 with the NUL), so teardown removes exactly ours.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
from dataclasses import asdict, dataclass, field, replace

DEFAULT_STATE_DIR = "/run/vnstitch/lab"
STATE_DIR_ENV = "VNSTITCH_LAB_DIR"
LAB_FILE = "lab.json"
DRIVER_FILE = "driver.json"

UNDERLAY_BASE = ipaddress.ip_address("10.255.0.0")   # node i has 10.255.0.(i+1)/32 on lo
GATEWAY_BASE = ipaddress.ip_address("169.254.0.0")   # stitch n: .2n+2 (end a), .2n+3 (end b)
NETWORK_VXLAN_PORT = 4789
STITCH_PORT_BASE = 20000                               # stitch n: ports 20000+2n (a), 20001+2n (b)
ROTATED_PORT_BASE = 26000                              # its second tunnel slot (key rotation): 26000+2n, 26001+2n
ROTATABLE_STITCHES = (ROTATED_PORT_BASE - STITCH_PORT_BASE) // 2   # indexes whose two slots' ports never meet
STITCH_TABLE_BASE = 1000                               # routing table and rule preference
UPLINK_RULE_PREF = 90                                  # `ip rule to NODE ipproto udp dport P lookup P`: a tunnel's
LOCAL_RULE_PREF = 99                                   # UDP to its uplink, before `lookup local` (moved from 0)
DEFAULT_CLASS_MINOR = 0xFFF0
LINK_CLASS_MINOR = 0x1
NETWORK_MTU = 1450                                     # 1500 substrate - 50 VXLAN


def state_dir(explicit: str | None = None) -> str:
    return explicit or os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR


def short_hash(*parts: str, length: int = 8) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:length]


def node_address(index: int) -> str:
    return str(UNDERLAY_BASE + index + 1)


def substrate_ifname(neighbor_index: int) -> str:
    return f"sub{neighbor_index}"


def bridge_ifname(vnid: int) -> str:
    return f"br{vnid}"


def vxlan_ifname(vnid: int) -> str:
    return f"vx{vnid}"


def member_ifname(lab: str, network: str, member: str) -> str:
    return f"vm{short_hash(lab, network, member)}"


@dataclass
class NodeInfo:
    name: str
    index: int
    netns: str
    address: str
    trust_zone: str = "default"


@dataclass
class LinkInfo:
    a: str
    b: str
    capacity_bps: float
    rate_bps: float            # capacity × scale: what HTB enforces
    ifname_a: str              # on node a, towards b
    ifname_b: str              # on node b, towards a
    latency_s: float = 0.001


@dataclass
class LabLayout:
    """What `lab up` built; the driver reads it to find nodes, links and VMs."""

    name: str
    scale: float
    nodes: dict[str, NodeInfo]
    links: list[LinkInfo]
    next_hop: dict[str, dict[str, str]]    # node → destination node → neighbour
    vms: dict[str, str] = field(default_factory=dict)   # VM name → node (informational)
    source: str = ""

    @property
    def prefix(self) -> str:
        return f"vns-{self.name}-"

    def node_ns(self, node: str) -> str:
        return f"{self.prefix}{node}"

    def vm_ns(self, vm: str) -> str:
        return f"{self.prefix}vm-{vm}"

    def link_between(self, u: str, v: str) -> tuple[LinkInfo, str, str]:
        """(link, egress ifname on u, egress ifname on v) for the substrate link u–v."""
        for link in self.links:
            if (link.a, link.b) == (u, v):
                return link, link.ifname_a, link.ifname_b
            if (link.a, link.b) == (v, u):
                return link, link.ifname_b, link.ifname_a
        raise KeyError(f"no substrate link between {u} and {v}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> "LabLayout":
        return cls(name=data["name"], scale=data["scale"],
                   nodes={k: NodeInfo(**v) for k, v in data["nodes"].items()},
                   links=[LinkInfo(**item) for item in data["links"]], next_hop=data["next_hop"],
                   vms=data.get("vms", {}), source=data.get("source", ""))


def load_layout(directory: str) -> LabLayout | None:
    try:
        with open(os.path.join(directory, LAB_FILE)) as handle:
            return LabLayout.from_dict(json.load(handle))
    except FileNotFoundError:
        return None


def write_json(path: str, payload: dict | str) -> None:
    """Atomic replace, readable by root only (the state names key files)."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        # No indent: with one, json falls back to its pure-Python encoder (tens of ms at 100 stitches).
        handle.write(payload if isinstance(payload, str) else json.dumps(payload, sort_keys=True))
    os.replace(tmp, path)


@dataclass(frozen=True)
class StitchNames:
    """Per-stitch kernel names; index n is allocated once and kept in the state file.

    An encrypted stitch has two tunnel slots: a key rotation builds the other slot's tunnel (its own
    wireguard-go devices and UDP ports) beside the current one, switches over, and removes the old one;
    `slot` (the state record's "slot", 0 for records written before there were two) names the current."""

    hash: str
    index: int
    slot: int = 0

    @classmethod
    def of(cls, record: dict) -> "StitchNames":
        """The names of a driver state record, in its current tunnel slot."""
        return cls(record["hash"], record["index"], record.get("slot", 0))

    def in_slot(self, slot: int) -> "StitchNames":
        return replace(self, slot=slot)

    @property
    def other_slot(self) -> "StitchNames":
        return replace(self, slot=1 - self.slot)

    def gateway_if(self, side: str) -> str:   # node end of the attachment veth
        return f"vg{self.hash}{side}"

    def peer_if(self, side: str) -> str:      # VM/bridge end of the attachment veth
        return f"vp{self.hash}{side}"

    def wg_if(self, side: str) -> str:        # globally unique: its UAPI socket path is global
        # slot 1 puts an `r` before the side, so neither slot's name is a substring of the other's
        # (pid checks match the name in wireguard-go's command line); 12 characters at most
        return f"vw{self.hash}{side}" if self.slot == 0 else f"vw{self.hash}r{side}"

    def uplink_if(self, side: str) -> str:    # node end of the veth to the wireguard-go's own namespace
        return f"vu{self.hash}{side}" if self.slot == 0 else f"vu{self.hash}r{side}"

    def uplink_macs(self, side: str) -> tuple[str, str]:   # (node end, wireguard-go end), fixed: no ARP
        tail = ("0a" if side == "a" else "0b") if self.slot == 0 else ("1a" if side == "a" else "1b")
        octets = ":".join(self.hash[i:i + 2] for i in range(0, 8, 2))
        return f"12:{octets}:{tail}", f"16:{octets}:{tail}"

    def vxlan_if(self, side: str) -> str:
        return f"vt{self.hash}{side}"

    def gateway_mac(self, side: str) -> str:   # fixed, so the VM's neighbour entry needs no lookup
        return "0a:" + ":".join(self.hash[i:i + 2] for i in range(0, 8, 2)) + (":0a" if side == "a" else ":0b")

    def peer_mac(self, side: str) -> str:
        return "0e:" + ":".join(self.hash[i:i + 2] for i in range(0, 8, 2)) + (":0a" if side == "a" else ":0b")

    def gateway_address(self, side: str) -> str:
        return str(GATEWAY_BASE + 2 * self.index + (2 if side == "a" else 3))

    def port(self, side: str) -> int:       # the tunnel's UDP port in this slot (a VXLAN uses slot 0's a)
        base = STITCH_PORT_BASE if self.slot == 0 else ROTATED_PORT_BASE
        return base + 2 * self.index + (0 if side == "a" else 1)

    @property
    def table(self) -> int:
        return STITCH_TABLE_BASE + self.index

    @property
    def class_minor(self) -> int:
        return 0x100 + self.index

    @property
    def filter_prio(self) -> int:
        return 100 + self.index
