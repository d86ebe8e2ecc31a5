"""One stitch in the kernel: attachment veths, tunnel (wireguard-go or VXLAN), policy routes
pinned to the path, nftables allow rules, HTB classes.

`build` runs every step ensure-style. With `fresh` (the driver just allocated the stitch, so
nothing named after it can exist) steps write without first dumping lists that grow with the
number of stitches (rules, routes, nft map); either way the netlink ack, the UAPI errno and
the nft transaction result mean the kernel holds the change, and a final `ip route get` per
end checks that traffic from the gateway is routed into the tunnel.
"""

from __future__ import annotations

import base64
import logging
import ipaddress
import os
import subprocess
import time
from dataclasses import dataclass, field
from typing import Callable

from pyroute2.netlink.exceptions import NetlinkError

from vnstitch.drivers.linux import keys, nft, routing, rtnl, uplink as uplink_mod, wireguard
from vnstitch.drivers.linux.kernel import (
    EEXIST, ENODEV, ENOENT, ESRCH, NETNS_DIR, Namespaces, ifindex, kernel_errors, pid_alive, tolerate,
)
from vnstitch.drivers.linux.layout import NETWORK_MTU, ROTATABLE_STITCHES, LabLayout, StitchNames, bridge_ifname
from vnstitch.drivers.linux.network import ensure_address, ensure_link_up
from vnstitch.errors import DriverError
from vnstitch.planning.ops import EnsureStitch, StitchEnd

SIDES = ("a", "b")


log = logging.getLogger("vnstitch.linux.stitch")

@dataclass
class StitchContext:
    nss: Namespaces
    lab: LabLayout
    state_dir: str
    members_of: dict[str, list[dict]]             # network key → [{"name","node","address"}]
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)   # wg ifname → process we started
    indexes: dict[tuple[str, str], int] = field(default_factory=dict)  # (netns, ifname) → ifindex, one build
    wall_clock: Callable[[], float] = time.time   # unix time: when keys are made (compared with keys_after)
    save: Callable[[], None] = lambda: None       # writes the driver's state: each rotation step is recorded
    uplink_bases: set[str] = field(default_factory=set)   # node namespaces whose uplink rules are in place
    new_ends: set[str] = field(default_factory=set)       # wg ifnames started by this driver, MTU of X not set

    def ifindex(self, ns: str, ifname: str) -> int | None:
        """ip -n NS link show IFNAME, remembered for the rest of this build (links we made do not move)."""
        index = self.indexes.get((ns, ifname))
        if index is None:
            index = self.nss.index(ns, ifname)
            if index is not None:
                self.indexes[(ns, ifname)] = index
        return index


def _ends(op: EnsureStitch, side: str) -> tuple[StitchEnd, StitchEnd]:
    return (op.a, op.b) if side == "a" else (op.b, op.a)


def _other(side: str) -> str:
    return "b" if side == "a" else "a"


def _dst(end: StitchEnd, direct: bool) -> str:
    if direct:
        if not end.address:
            raise DriverError(f"direct stitch end on {end.network} needs a member address", errno=22)
        return f"{end.address}/32"
    return end.cidr


def key_path(ctx: StitchContext, ifname: str) -> str:
    return os.path.join(ctx.state_dir, "keys", f"{ifname}.key")  # keys_made_at() reads the same path


def is_local(op: EnsureStitch) -> bool:
    """A path of one node: both ends attach to the same node, which routes between its two gateway
    veths in its own namespace; no tunnel (nothing leaves the node, so nothing to encrypt)."""
    return len(op.path) == 1


def tunnel_if(op: EnsureStitch, names: StitchNames, side: str) -> str:
    """Where the end's traffic leaves towards the far end: the tunnel, or the far end's gateway veth."""
    if is_local(op):
        return names.gateway_if(_other(side))
    return names.wg_if(side) if op.encrypted else names.vxlan_if(side)


def tunnel_mtu(op: EnsureStitch) -> int:
    if is_local(op):
        return NETWORK_MTU
    return wireguard.TUNNEL_MTU if op.encrypted else NETWORK_MTU - 30


# Bytes each tunnel packet adds on the substrate link (what the HTB class counts): WireGuard's header
# and tag (16 + 16), UDP 8, IPv4 20, Ethernet 14; VXLAN's inner Ethernet 14, VXLAN 8, UDP 8, IPv4 20,
# Ethernet 14.
WIREGUARD_OVERHEAD, VXLAN_OVERHEAD = 32 + 8 + 20 + 14, 14 + 8 + 8 + 20 + 14


def wire_factor(op: EnsureStitch) -> float:
    """Substrate bytes per byte of the stitched traffic for full-size packets: the reservation is of the
    traffic between the networks, the class is enforced on the tunnel's packets, so its rate is scaled
    up by this (about 5%); small packets carry relatively more overhead and get a little less."""
    if is_local(op):
        return 1.0
    mtu = tunnel_mtu(op)
    return (mtu + (WIREGUARD_OVERHEAD if op.encrypted else VXLAN_OVERHEAD)) / mtu


def policy_sides(op: EnsureStitch) -> tuple[str, ...]:
    """The ends that own a routing table T and an nft chain: a local stitch has one of each, in
    which end a's gateway and end b's gateway are each other's tunnel."""
    return ("a",) if is_local(op) else SIDES


def nft_spec(op: EnsureStitch, names: StitchNames, side: str) -> tuple:
    """(chain, gateway ifname, tunnel ifname, local dst, remote dst, services, inbound) of the end's nft
    chain (the arguments of nft.ensure_stitch / stitch_chain_problem): `inbound` is end b of a tunnel,
    where the services' flows arrive from the tunnel (a local stitch's one chain is end a's)."""
    end, remote = _ends(op, side)
    direct = op.type == "direct"
    return (nft.chain_name(f"{names.hash}{side}"), names.gateway_if(side), tunnel_if(op, names, side),
            _dst(end, direct), _dst(remote, direct), tuple(op.services), side == "b" and not is_local(op))


def port_range(names: StitchNames) -> tuple[int, int]:
    """The stitch's two UDP ports (in names' slot) are adjacent: one `ip rule dport A-B` pins both."""
    ports = sorted({names.port("a"), names.port("b")})
    return ports[0], ports[-1]


def tunnel_slots(op: EnsureStitch, names: StitchNames) -> tuple[StitchNames, ...]:
    """The slots whose tunnel UDP the path pins and the HTB class counts: both for wireguard-go (a key
    rotation brings the other slot's tunnel up beside the current one), slot 0 for a VXLAN."""
    if op.encrypted and not is_local(op):
        return (names.in_slot(0), names.in_slot(1))
    return (names.in_slot(0),)


def tunnel_ports(op: EnsureStitch, names: StitchNames) -> list[int]:
    return sorted({port for slot in tunnel_slots(op, names) for port in (slot.port("a"), slot.port("b"))})


def validate(ctx: StitchContext, op: EnsureStitch) -> None:
    """Reject a bad path before anything is created."""
    path = list(op.path)
    if not path or path[0] != op.a.node or path[-1] != op.b.node:
        raise DriverError(f"stitch {op.stitch}: path must run from {op.a.node} to {op.b.node}", field="path",
                          errno=22)
    for node in path:
        if node not in ctx.lab.nodes:
            raise DriverError(f"stitch {op.stitch}: unknown node {node} on path", field="path", errno=ENOENT)
    for u, v in zip(path, path[1:]):
        try:
            ctx.lab.link_between(u, v)
        except KeyError as exc:
            raise DriverError(f"stitch {op.stitch}: no substrate link {u}–{v}", field="path", errno=ENOENT) from exc


def build(ctx: StitchContext, op: EnsureStitch, names: StitchNames, record: dict, fresh: bool) -> bool:
    """Every piece of the stitch, cheapest order first: wireguard-go starts (in the background)
    before the veths, routes and rules are made, so its start-up overlaps them; the tunnel is
    brought up last, far end first, so the first handshake finds its peer listening."""
    validate(ctx, op)
    ctx.indexes.clear()
    changed = settle_rotation(ctx, op, names, record)  # a rotation a crash interrupted: finish or undo it
    changed |= start_tunnel_processes(ctx, op, names, record)
    for side in SIDES:
        changed |= ensure_attachment(ctx, op, names, side, fresh)
        changed |= ensure_vm_routes(ctx, op, names, side, fresh)
    changed |= ensure_path(ctx, op, names, fresh)
    if not fresh:  # a flushed table on any node of the path drops the stitch's traffic there
        for node in dict.fromkeys(op.path):
            changed |= nft.ensure_base(ctx.lab.node_ns(node))
    for side in policy_sides(op):
        end, _ = _ends(op, side)
        changed |= nft.ensure_stitch(ctx.lab.node_ns(end.node), *nft_spec(op, names, side), fresh=fresh)
    if op.rate_bps > 0 or not fresh:
        changed |= ensure_rate(ctx, op, names, op.rate_bps)
    changed |= ensure_tunnel(ctx, op, names, record, fresh)
    if op.qos or not fresh:  # on the tunnel devices, which exist from here (wireguard-go made its TUN)
        changed |= ensure_qos(ctx, op, names, op.rate_bps)
    for side in policy_sides(op):
        changed |= ensure_end_routing(ctx, op, names, side, fresh)
    for side in SIDES:
        verify_end(ctx, op, names, side)
    return changed


# --- tunnel --------------------------------------------------------------------------------

def start_tunnel_processes(ctx: StitchContext, op: EnsureStitch, names: StitchNames, record: dict,
                           fresh: bool = False) -> bool:
    """Start wireguard-go for both ends at once unless already running; does not wait for them
    (`fresh`: the stitch was just allocated, so no device of an earlier process can be left)."""
    if not op.encrypted or is_local(op):
        return False
    changed = False
    for side in SIDES:
        ifname = names.wg_if(side)
        pid = record.get("pids", {}).get(side)
        ours = ctx.procs.get(ifname)
        if ours is not None and ours.poll() is None and ours.pid == pid:  # poll() first: it reaps a dead one
            continue  # started by this op and still starting up: wait_ready() waits for it
        end, _ = _ends(op, side)
        node_ns = ctx.lab.node_ns(end.node)
        alive = pid_alive(pid, needle=ifname)
        if alive and os.path.exists(wireguard.socket_path(ifname)) and ctx.ifindex(node_ns, names.uplink_if(side)):
            continue
        if alive:   # its uplink is gone (its UDP has no way out): a fresh one, with a fresh namespace
            wireguard.stop(pid, ifname)
        if ours is not None and ours.poll() is None:  # replaced while still dying: keep it for reap()
            ctx.procs[f"{ifname}#{ours.pid}"] = ours
        proc = start_end(ctx, op, names, side, stale=not fresh)
        ctx.procs[ifname] = proc
        record.setdefault("pids", {})[side] = proc.pid
        changed = True
    return changed


def uplink_of(ctx: StitchContext, op: EnsureStitch, names: StitchNames, side: str) -> uplink_mod.Uplink:
    end, _ = _ends(op, side)
    node_mac, inner_mac = names.uplink_macs(side)
    return uplink_mod.Uplink(names.uplink_if(side), ctx.lab.nodes[end.node].address, names.port(side), node_mac,
                             inner_mac)


def start_end(ctx: StitchContext, op: EnsureStitch, names: StitchNames, side: str,
              stale: bool = True) -> subprocess.Popen:
    """wireguard-go for one end in names' slot, in its own namespace with its uplink (uplink.py); with
    `stale`, first removes a TUN or uplink an earlier process may have left."""
    end, _ = _ends(op, side)
    node_ns, ifname = ctx.lab.node_ns(end.node), names.wg_if(side)
    ipr = ctx.nss(node_ns)
    if node_ns not in ctx.uplink_bases:
        uplink_mod.ensure_node_base(ipr, node_ns)
        ctx.uplink_bases.add(node_ns)
    for name in (ifname, names.uplink_if(side)) if stale else ():
        with kernel_errors(f"ip link del {name}"), tolerate(ENODEV, ENOENT):
            ipr.link("del", ifname=name)
        ctx.indexes.pop((node_ns, name), None)
    proc = wireguard.start(ctx.nss, node_ns, ifname, os.path.join(ctx.state_dir, f"{ifname}.log"),
                           uplink_of(ctx, op, names, side))
    ctx.new_ends.add(ifname)
    return proc


def wait_end_ready(ctx: StitchContext, ifname: str, pid: int | None) -> None:
    """Until wireguard-go answers on its UAPI socket; then, for one this driver started, the MTU of its
    namespace's veth (which it set to the tunnel's) back to the uplink's."""
    wireguard.wait_ready(ifname, ctx.procs.get(ifname), log_path=os.path.join(ctx.state_dir, f"{ifname}.log"))
    if ifname in ctx.new_ends and pid:
        uplink_mod.set_inner_mtu(pid, ifname)
        ctx.new_ends.discard(ifname)


def configure_end(ifname: str, pid: int | None, *args, **kwargs) -> None:
    """wireguard.configure; then its rtnetlink listeners leave their groups (uplink.mute_listeners: each
    new stitch's cost stays flat). After the configuration: setting the listen port rebinds wireguard-go,
    which makes its route listener anew."""
    wireguard.configure(ifname, *args, **kwargs)
    if pid:
        uplink_mod.mute_listeners(pid)


def ensure_keys(ctx: StitchContext, names: StitchNames, record: dict, keys_after: float = 0.0) -> dict[str, bytes]:
    """A key pair per end, kept in 0600 files; public halves (always those of the files) and the time
    keys were made recorded in the state. Keys made for an op count as at least as new as its
    `keys_after` (a clock behind the controller's must not make it ask for them again)."""
    private = {}
    for side in SIDES:
        path = key_path(ctx, names.wg_if(side))
        key = keys.read_private_key(path)
        if key is None:
            key = keys.generate_private_key()
            keys.write_private_key(path, key)
            record["keys_at"] = max(ctx.wall_clock(), keys_after)
        record.setdefault("public", {})[side] = keys.to_base64(keys.public_key(key))
        private[side] = key
    return private


def keys_made_at(state_dir: str, names: StitchNames, record: dict) -> float | None:
    """When the stitch's current keys were made (unix time): the state's record, else (a stitch built before
    it was kept) the older key file's mtime; None when it has no keys."""
    if record.get("keys_at") is not None:
        return record["keys_at"]
    try:
        return min(os.stat(os.path.join(state_dir, "keys", f"{names.wg_if(side)}.key")).st_mtime for side in SIDES)
    except FileNotFoundError:
        return None


HANDSHAKE_TIMEOUT_S = 5.0  # wireguard-go's own REKEY_TIMEOUT: a handshake not done by then is lost
HANDSHAKE_TRY_S, HANDSHAKE_TRIES = 0.5, 10   # the new tunnel's handshake: each try, then a fresh peer entry
DRAIN_QUIET_S, DRAIN_MAX_S = 0.06, 2.0       # the old tunnel is removed once it received nothing for this long


def rotate_keys(ctx: StitchContext, op: EnsureStitch, names: StitchNames, record: dict) -> bool:
    """New key pairs for both ends when the keys are older than `op.keys_after`, make-before-break.

    A second tunnel with the new keys is built beside the current one, in the stitch's other slot
    (its own wireguard-go devices and UDP ports, layout.StitchNames), and carries nothing until its
    handshake has completed both ways; then each end's nft chain accepts both tunnels (one transaction
    per end), each end's route to the far side moves to the new tunnel (`ip route replace`, atomic),
    and once the old tunnel has drained it goes: chains and map hold only the new tunnel, then the old
    rules, wireguard-go and key files are removed. Every packet is sent on a tunnel both ends accept.
    Each step is saved in the state record ("next": the slot being built; "slot" and "retiring" once
    switched), so a driver that dies mid-rotation is finished or rolled back by the next build
    (settle_rotation). A failure before the switch removes the new slot and raises: the stitch keeps
    its old keys, and the next pass tries again."""
    if not op.encrypted or is_local(op):
        return False
    made = keys_made_at(ctx.state_dir, names, record)
    if made is None or made >= op.keys_after:
        return False
    if names.index >= ROTATABLE_STITCHES:
        raise DriverError(f"stitch {op.stitch}: key rotation needs a stitch index below {ROTATABLE_STITCHES}",
                          errno=75)
    new = names.other_slot
    _remove_slot(ctx, op, new, record.get("next", {}).get("pids", {}))  # whatever an earlier try left
    private = {side: keys.generate_private_key() for side in SIDES}
    public = {side: keys.public_key(private[side]) for side in SIDES}
    record["next"] = {"slot": new.slot, "pids": {}}   # saved first: what follows is undone after a crash
    ctx.save()
    for side in SIDES:
        keys.write_private_key(key_path(ctx, new.wg_if(side)), private[side])   # 0600
    try:
        _build_slot(ctx, op, new, record, private, public)
    except Exception as exc:
        log.warning("stitch %s: new tunnel for the key rotation failed (%s); removing it", op.stitch, exc)
        _remove_slot(ctx, op, new, record["next"]["pids"])
        record.pop("next", None)
        ctx.save()
        if isinstance(exc, DriverError):
            raise
        raise DriverError(f"stitch {op.stitch}: key rotation: {exc}", errno=getattr(exc, "errno", None)) from exc
    try:
        _switch(ctx, op, names, new)
    except Exception:
        settle_rotation(ctx, op, names, record)  # routes and chains back to the old tunnel, the new slot removed
        raise
    record["retiring"] = {"slot": names.slot, "pids": dict(record.get("pids", {}))}
    record["slot"], record["pids"] = new.slot, record.pop("next")["pids"]
    record["public"] = {side: keys.to_base64(public[side]) for side in SIDES}
    record["keys_at"] = max(ctx.wall_clock(), op.keys_after)
    ctx.save()
    _drain(names)
    _retire(ctx, op, new, record)
    for side in SIDES:
        verify_end(ctx, op, new, side)
    return True


def _build_slot(ctx: StitchContext, op: EnsureStitch, new: StitchNames, record: dict, private: dict,
                public: dict) -> None:
    """The new slot's tunnel, carrying nothing yet: wireguard-go for both ends; each configured with
    the new keys, its slot's port and the far end as its only peer, keepalive off; up, end b first; its
    `ip rule iif vw… lookup T`; the QoS classes; then end a's keepalive switched on, so that a alone
    initiates (two initiations that cross are both refused and retried only after 5 s) and b, which
    already listens, answers. Waits until both report the handshake: a when it took b's response, b
    when a's first packet confirmed the session, so each can send at once."""
    for side in SIDES:
        ifname = new.wg_if(side)
        end, _ = _ends(op, side)
        stale = ctx.procs.pop(ifname, None)
        if stale is not None and stale.poll() is None:  # an earlier one still dying: keep it for reap()
            ctx.procs[f"{ifname}#{stale.pid}"] = stale
        proc = start_end(ctx, op, new, side)
        ctx.procs[ifname] = proc
        record["next"]["pids"][side] = proc.pid
    ctx.save()
    direct = op.type == "direct"
    peer_of = {}
    for side in ("b", "a"):
        ifname, other = new.wg_if(side), _other(side)
        end, remote = _ends(op, side)
        node_ns = ctx.lab.node_ns(end.node)
        wait_end_ready(ctx, ifname, record["next"]["pids"].get(side))
        peer_of[side] = (public[other].hex(), f"{ctx.lab.nodes[remote.node].address}:{new.port(other)}",
                         [_dst(remote, direct)])
        # wg set vw… private-key FILE listen-port P peer PUB endpoint E allowed-ips A (keepalive 0)
        configure_end(ifname, record["next"]["pids"].get(side), private[side].hex(), new.port(side),
                      *peer_of[side], keepalive_s=0)
        ipr = ctx.nss(node_ns)
        index = ctx.ifindex(node_ns, ifname)
        if index is None:
            raise DriverError(f"wireguard-go did not create {ifname}", errno=ENOENT)
        with kernel_errors(f"tunnel {ifname} on {end.node}"):
            ipr.link("set", index=index, mtu=wireguard.TUNNEL_MTU, state="up")  # ip link set vw… mtu 1420 up
            # ip rule add pref T iif vw… lookup T
            routing.ensure_rules(ipr, new.table, iifnames=[ifname])
    if op.qos:
        ensure_qos(ctx, op, new, op.rate_bps)
    waits = ((new.wg_if("a"), peer_of["a"][0], (0, 0)), (new.wg_if("b"), peer_of["b"][0], (0, 0)))
    wireguard.set_keepalive(new.wg_if("a"), peer_of["a"][0])   # wg set vwa peer PUB persistent-keepalive 25
    for _ in range(HANDSHAKE_TRIES):
        for side in SIDES:
            proc = ctx.procs.get(new.wg_if(side))
            if proc is not None and proc.poll() is not None:
                raise DriverError(f"wireguard-go for {new.wg_if(side)} exited with {proc.returncode}", errno=10)
        if _wait_handshake(op, waits, HANDSHAKE_TRY_S, warn=False):
            break
        # its initiation was lost (b not listening yet): a fresh peer entry initiates at once, where
        # wireguard-go would retry only after 5 s. The old tunnel carries the traffic meanwhile.
        log.info("stitch %s: no handshake on the new tunnel within %.1f s; peer entry made afresh", op.stitch,
                 HANDSHAKE_TRY_S)
        wireguard.renew_peer(new.wg_if("a"), *peer_of["a"])
    else:
        raise DriverError(f"stitch {op.stitch}: the new tunnel {new.wg_if('a')}–{new.wg_if('b')} did not "
                          f"handshake within {HANDSHAKE_TRY_S * HANDSHAKE_TRIES:.0f} s", errno=110)
    wireguard.set_keepalive(new.wg_if("b"), peer_of["b"][0])   # as every tunnel: keepalive 25 s both ways


def _chain_script(op: EnsureStitch, side: str, accept: list[StitchNames], keep: list[StitchNames],
                  drop: list[StitchNames]) -> str:
    """One transaction on an end's chain: its rules for each slot in `accept` (the old then the new
    tunnel's, then the one `counter drop`), map entries for `keep`'s tunnels, none for `drop`'s."""
    chain = nft.chain_name(f"{accept[0].hash}{side}")
    rules = []
    for names in accept:
        rules += nft.stitch_rules(*nft_spec(op, names, side)[1:])[:-1]
    rules.append("counter drop")
    lines = [f"flush chain inet {nft.TABLE} {chain}"] + [f"add rule inet {nft.TABLE} {chain} {rule}" for rule in rules]
    entries = ", ".join(f'"{tunnel_if(op, names, side)}" : jump {chain}' for names in keep + drop)
    lines.append(f"add element inet {nft.TABLE} stitch_in {{ {entries} }}")   # added first: a delete cannot miss
    if drop:
        lines.append(f"delete element inet {nft.TABLE} stitch_in {{ "
                     + ", ".join(f'"{tunnel_if(op, names, side)}"' for names in drop) + " }")
    return "\n".join(lines) + "\n"


def _point_routes(ctx: StitchContext, op: EnsureStitch, names: StitchNames) -> None:
    """ip route replace REMOTE dev vw… table T on each end: its traffic leaves by names' tunnel."""
    for side in SIDES:
        end, remote = _ends(op, side)
        node_ns = ctx.lab.node_ns(end.node)
        index = ctx.ifindex(node_ns, names.wg_if(side))
        if index is None:
            raise DriverError(f"{names.wg_if(side)} missing on {end.node}", errno=ENOENT)
        with kernel_errors(f"route of {op.stitch} end {side} on {end.node}"):
            routing.ensure_routes(ctx.nss(node_ns), names.table, [{"dst": _dst(remote, op.type == "direct"),
                                                                   "oif": index}])


def _switch(ctx: StitchContext, op: EnsureStitch, old: StitchNames, new: StitchNames) -> None:
    """Both ends' chains accept both tunnels (nft -f: flush chain, the old and the new tunnel's rules,
    map entry for the new, one transaction per end), then both ends route into the new tunnel: what is
    still in flight on the old one is accepted where it arrives."""
    for side in SIDES:
        end, _ = _ends(op, side)
        nft.run(ctx.lab.node_ns(end.node), _chain_script(op, side, [old, new], [old, new], []),
                what=f"nft rotation of {op.stitch} end {side}")
    _point_routes(ctx, op, new)


def _drain(old: StitchNames, quiet_s: float = DRAIN_QUIET_S, limit_s: float = DRAIN_MAX_S) -> None:
    """Until the old tunnel's ends received nothing for `quiet_s` (wg show vw… transfer), at most `limit_s`."""
    deadline = time.monotonic() + limit_s
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        try:
            now = tuple(wireguard.read_config(old.wg_if(side))["peer"]["rx_bytes"] for side in SIDES)
        except DriverError:
            return  # an old end is gone: nothing more comes out of it
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
        time.sleep(0.01)


def _retire(ctx: StitchContext, op: EnsureStitch, current: StitchNames, record: dict) -> None:
    """The switched-from slot goes: each end's chain holds only the current tunnel's rules and the map
    loses the old tunnel (one transaction per end), then its rules, wireguard-go, devices and key files."""
    retiring = record.get("retiring")
    if retiring is None:
        return
    old = current.in_slot(retiring["slot"])
    for side in SIDES:
        end, _ = _ends(op, side)
        nft.run(ctx.lab.node_ns(end.node), _chain_script(op, side, [current], [current], [old]),
                what=f"nft rotation of {op.stitch} end {side}")
    _remove_slot(ctx, op, old, retiring.get("pids", {}))
    record.pop("retiring", None)
    ctx.save()


def _remove_slot(ctx: StitchContext, op: EnsureStitch, slot: StitchNames, pids: dict) -> bool:
    """A slot that carries no traffic (no route, no chain rule points at it): its `iif` rules, wireguard-go
    (the recorded pid, or whoever answers on its UAPI socket), its devices and its key files."""
    changed = False
    stopping = []
    for side in SIDES:
        ifname = slot.wg_if(side)
        proc = ctx.procs.pop(ifname, None)
        pid = pids.get(side) or wireguard.socket_pid(ifname) or (proc.pid if proc else None)
        if wireguard.signal_stop(pid, ifname):  # kill -TERM PID
            changed = True
        stopping.append((pid, ifname, proc))
    for side in SIDES:
        end, _ = _ends(op, side)
        node_ns = ctx.lab.node_ns(end.node)
        ipr = ctx.nss(node_ns)
        ifname = slot.wg_if(side)
        # ip rule del pref T iif vw… lookup T
        changed |= routing.remove_rules(ipr, slot.table, iifnames=[ifname])
        with kernel_errors(f"ip link del {ifname}"), tolerate(ENODEV, ENOENT):
            ipr.link("del", ifname=ifname)  # ip link del vw… (wireguard-go's TUN goes with it anyway)
            changed = True
        changed |= uplink_mod.remove_node_side(ipr, uplink_of(ctx, op, slot, side))
        ctx.indexes.pop((node_ns, ifname), None)
        ctx.indexes.pop((node_ns, slot.uplink_if(side)), None)
    for pid, ifname, proc in stopping:
        wireguard.wait_stopped(pid, ifname)
        if proc is not None:
            try:
                proc.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                log.warning("wireguard-go %s (pid %s) did not exit", ifname, proc.pid)
        try:
            os.unlink(key_path(ctx, ifname))
            changed = True
        except FileNotFoundError:
            pass
    return changed


def settle_rotation(ctx: StitchContext, op: EnsureStitch, names: StitchNames, record: dict) -> bool:
    """A rotation interrupted by a crash (the state record says how far it got): a new slot not yet
    switched to is rolled back (routes back to the current tunnel while both chains still accept
    both, then the chains and map only the current one, then the new slot removed); a switched one is
    finished (the old slot retired). The rotation itself is asked for again by the next op."""
    pending, retiring = record.get("next"), record.get("retiring")
    if pending is None and retiring is None:
        return False
    if not op.encrypted or is_local(op):
        record.pop("next", None), record.pop("retiring", None)
        return True
    if retiring is not None:
        log.warning("stitch %s: finishing a key rotation that was interrupted after its switch", op.stitch)
        _retire(ctx, op, names, record)
        return True
    log.warning("stitch %s: rolling back a key rotation that was interrupted before its switch", op.stitch)
    new = names.in_slot(pending["slot"])
    try:
        _point_routes(ctx, op, names)
    except DriverError as exc:  # the current tunnel is itself broken: build() repairs it next
        log.warning("stitch %s: %s", op.stitch, exc)
    for side in SIDES:
        end, _ = _ends(op, side)
        try:
            nft.run(ctx.lab.node_ns(end.node), _chain_script(op, side, [names], [names], [new]),
                    what=f"nft rotation of {op.stitch} end {side}")
        except DriverError as exc:  # e.g. a flushed table: build() writes the chain again
            log.warning("stitch %s: %s", op.stitch, exc)
    _remove_slot(ctx, op, new, pending.get("pids", {}))
    record.pop("next", None)
    ctx.save()
    return True


def _wait_handshake(op: EnsureStitch, waits, timeout_s: float | None = None, warn: bool = True) -> bool:
    """Until each (device, peer) reports a handshake newer than the one given (`wg show IF latest-handshakes`);
    False when `timeout_s` (default HANDSHAKE_TIMEOUT_S) passed first."""
    deadline = time.monotonic() + (HANDSHAKE_TIMEOUT_S if timeout_s is None else timeout_s)
    pending = list(waits)
    while pending:
        pending = [(ifname, peer, before) for ifname, peer, before in pending
                   if wireguard.peers(ifname).get(peer, {}).get("handshake", (0, 0)) <= before]
        if pending and time.monotonic() > deadline and not warn:
            return False
        if pending and time.monotonic() > deadline:
            # the keys are in place on both ends; only this handshake is late (a path down?): the next
            # packet or keepalive makes it, and the repair loop sees a tunnel that stays down
            log.warning("stitch %s: no handshake on %s within %.0f s of the key change", op.stitch,
                        ", ".join(ifname for ifname, _, _ in pending), HANDSHAKE_TIMEOUT_S)
            return False
        if pending:
            time.sleep(0.002)
    return True


def ensure_tunnel(ctx: StitchContext, op: EnsureStitch, names: StitchNames, record: dict, fresh: bool) -> bool:
    """wireguard-go: wg set each end (its key, its port, the other end as the only peer), then
    ip link set vw… mtu 1420 up, end b before end a. Unencrypted: the VXLAN pair. Local: none."""
    if is_local(op):
        return False
    if not op.encrypted:
        changed = False
        for side in SIDES:
            changed |= _ensure_vxlan_tunnel(ctx, op, names, side)
        return changed
    private = ensure_keys(ctx, names, record, op.keys_after)
    changed = False
    for side in ("b", "a"):   # each end is up from its start: b listens with its keys before a's first handshake
        ifname, pid = names.wg_if(side), record.get("pids", {}).get(side)
        wait_end_ready(ctx, ifname, pid)
        _, remote = _ends(op, side)
        other = _other(side)
        want = {"private_key": private[side].hex(), "listen_port": names.port(side),
                "peer_key": base64.b64decode(record["public"][other]).hex(),
                "endpoint": f"{ctx.lab.nodes[remote.node].address}:{names.port(other)}",
                "allowed": [_dst(remote, op.type == "direct")]}
        if not fresh:
            have = wireguard.read_config(ifname)
            if (have["private_key"] == want["private_key"] and have["listen_port"] == want["listen_port"]
                    and have["peer"]["public_key"] == want["peer_key"] and have["peer"]["endpoint"] == want["endpoint"]
                    and have["peer"]["allowed_ips"] == want["allowed"]):
                # adopted, or brought up again (which rebinds it: a new route listener): muted again
                if pid:
                    uplink_mod.mute_rtnetlink(pid)
                continue
        configure_end(ifname, pid, want["private_key"], want["listen_port"],
                      want["peer_key"], want["endpoint"], want["allowed"])
        changed = True
    for side in ("b", "a"):
        end, _ = _ends(op, side)
        ipr = ctx.nss(ctx.lab.node_ns(end.node))
        index = ctx.ifindex(ctx.lab.node_ns(end.node), names.wg_if(side))
        if index is None:
            raise DriverError(f"wireguard-go did not create {names.wg_if(side)}", errno=ENOENT)
        with kernel_errors(f"tunnel {names.wg_if(side)} on {end.node}"):
            if fresh:   # up with its MTU since its start (uplink.start): nothing to set
                changed = True
            else:
                changed |= ensure_link_up(ipr, index, mtu=wireguard.TUNNEL_MTU)
    return changed


def _vxlan_mac(names: StitchNames, side: str) -> str:
    return "02:" + ":".join(names.hash[i:i + 2] for i in range(0, 8, 2)) + (":0a" if side == "a" else ":0b")


def _ensure_vxlan_tunnel(ctx: StitchContext, op: EnsureStitch, names: StitchNames, side: str) -> bool:
    """Unencrypted: a point-to-point VXLAN on the stitch's own port; the far end's gateway
    address is a permanent neighbour with the far end's MAC, so nothing ARPs over it."""
    end, remote = _ends(op, side)
    other = _other(side)
    ipr = ctx.nss(ctx.lab.node_ns(end.node))
    ifname = names.vxlan_if(side)
    changed = False
    with kernel_errors(f"vxlan {ifname} on {end.node}"):
        if ifindex(ipr, ifname) is None:
            # ip link add vtHASHs address MAC type vxlan id 1 local ADDR remote PEER dstport PORT nolearning
            ipr.link("add", ifname=ifname, kind="vxlan", vxlan_id=1, vxlan_local=ctx.lab.nodes[end.node].address,
                     vxlan_group=ctx.lab.nodes[remote.node].address, vxlan_port=names.port("a"), vxlan_learning=0,
                     address=_vxlan_mac(names, side))
            changed = True
        index = ctx.ifindex(ctx.lab.node_ns(end.node), ifname)
        changed |= ensure_link_up(ipr, index, mtu=NETWORK_MTU - 30)
        far_gw, far_mac = names.gateway_address(other), _vxlan_mac(names, other)
        have = [n for n in ipr.get_neighbours(ifindex=index) if n.get("NDA_DST") == far_gw]
        if not have or have[0].get("NDA_LLADDR") != far_mac or not have[0]["state"] & 0x80:
            # ip neigh replace FAR_GW lladdr FAR_MAC dev vtHASHs nud permanent
            ipr.neigh("replace", ifindex=index, dst=far_gw, lladdr=far_mac, state=0x80)
            changed = True
    return changed


# --- ends ----------------------------------------------------------------------------------

def ensure_attachment(ctx: StitchContext, op: EnsureStitch, names: StitchNames, side: str, fresh: bool) -> bool:
    """The attachment veth, gateway side up. `direct`: the other side up in the VM, and instead of an
    address on the gateway (an address change wakes every wireguard-go in the node's namespace)
    permanent neighbours both ways. Otherwise the other side joins the network's bridge and the
    gateway holds its 169.254 address, so the network's members can ARP for it."""
    direct = op.type == "direct"
    end, _ = _ends(op, side)
    node_ns = ctx.lab.node_ns(end.node)
    ipr = ctx.nss(node_ns)
    gw_if, peer_if = names.gateway_if(side), names.peer_if(side)
    mtu = tunnel_mtu(op)
    peer_ns = ctx.lab.vm_ns(end.member) if direct else node_ns
    changed = False
    with kernel_errors(f"stitch {op.stitch} end {side} on {end.node}"):
        peer_ipr = ctx.nss(peer_ns)
        created = False
        if fresh or ifindex(ipr, gw_if) is None:
            peer = {"ifname": peer_if, "mtu": mtu if direct else NETWORK_MTU, "address": names.peer_mac(side)}
            if direct:
                peer["net_ns_fd"] = peer_ns
            try:
                # ip -n NODE link add vgHASHs address MAC mtu M up type veth peer name vpHASHs address MAC
                #    mtu M [netns VM]
                if direct:   # one raw request (rtnl.py)
                    vm_fd = os.open(os.path.join(NETNS_DIR, peer_ns), os.O_RDONLY | os.O_CLOEXEC)
                    try:
                        ctx.nss.rtnl(node_ns).batch([rtnl.veth_add(gw_if, names.gateway_mac(side), mtu, peer_if,
                                                                   names.peer_mac(side), mtu, vm_fd, up=True)])
                    finally:
                        os.close(vm_fd)
                else:
                    ipr.link("add", ifname=gw_if, kind="veth", mtu=mtu, state="up", address=names.gateway_mac(side),
                             peer=peer)
                created = changed = True
            except NetlinkError as exc:  # fresh but present (a stray from outside): converge below
                if exc.code != EEXIST:
                    raise
        gw_index = ctx.ifindex(node_ns, gw_if)
        if gw_index is None:
            raise DriverError(f"{gw_if} vanished from {node_ns}", errno=ENOENT)
        if not created:
            changed |= ensure_link_up(ipr, gw_index, mtu=mtu)
        peer_index = ctx.ifindex(peer_ns, peer_if)
        if peer_index is None:
            raise DriverError(f"{peer_if} vanished from {peer_ns}", errno=ENOENT)
        if direct and created:
            # ip -n VM link set vpHASHs up; ip -n VM neigh replace 169.254.x.y lladdr GW_MAC dev vpHASHs nud
            # permanent; ip -n NODE neigh replace VM_ADDR lladdr PEER_MAC dev vgHASHs nud permanent
            ctx.nss.rtnl(peer_ns).batch([rtnl.link_set(peer_index, up=True),
                                         rtnl.neigh_replace(peer_index, names.gateway_address(side),
                                                            names.gateway_mac(side))])
            ctx.nss.rtnl(node_ns).batch([rtnl.neigh_replace(gw_index, end.address, names.peer_mac(side))])
        elif direct:   # an existing attachment: read, and set what differs
            changed |= ensure_link_up(peer_ipr, peer_index, mtu=mtu)
            gw_mac, peer_mac = _link_mac(ipr, gw_index), _link_mac(peer_ipr, peer_index)
            # ip -n VM neigh replace 169.254.x.y lladdr GW_MAC dev vpHASHs nud permanent
            changed |= _ensure_neighbour(peer_ipr, peer_index, names.gateway_address(side), gw_mac, False)
            # ip -n NODE neigh replace VM_ADDR lladdr PEER_MAC dev vgHASHs nud permanent
            changed |= _ensure_neighbour(ipr, gw_index, end.address, peer_mac, False)
        else:
            # ip -n NODE addr add 169.254.x.y/32 dev vgHASHs
            if created:
                with tolerate(EEXIST):
                    ipr.addr("add", index=gw_index, address=names.gateway_address(side), prefixlen=32)
            else:
                changed |= ensure_address(ipr, gw_index, names.gateway_address(side), 32)
            bridge = ifindex(ipr, bridge_ifname(end.vnid))
            if bridge is None:
                raise DriverError(f"network {end.network} has no bridge on {end.node}", errno=ENOENT)
            # ip link set vpHASHs master brVNID up
            if created:
                peer_ipr.link("set", index=peer_index, master=bridge, state="up")
            else:
                changed |= ensure_link_up(peer_ipr, peer_index, mtu=NETWORK_MTU, master=bridge)
    return changed


def _link_mac(ipr, index: int) -> str:
    return ipr.link("get", index=index)[0].get("IFLA_ADDRESS")


def _ensure_neighbour(ipr, index: int, address: str, mac: str, fresh: bool) -> bool:
    """ip neigh replace ADDRESS lladdr MAC dev X nud permanent, unless it is there already."""
    if not fresh:
        for msg in ipr.get_neighbours(ifindex=index, family=2):
            if (msg.get("NDA_DST") == address and msg.get("NDA_LLADDR") == mac and msg["state"] & 0x80
                    and msg["ifindex"] == index):
                return False
    ipr.neigh("replace", ifindex=index, dst=address, lladdr=mac, state=0x80)
    return True


def ensure_end_routing(ctx: StitchContext, op: EnsureStitch, names: StitchNames, side: str, fresh: bool) -> bool:
    """Table T on the end node: local dst → gateway veth, remote dst → tunnel (for a local stitch
    the far gateway veth: one table and one pair of rules serve both ends), anything else unreachable;
    `ip rule iif vg… / iif <tunnel> lookup T`."""
    direct = op.type == "direct"
    end, remote = _ends(op, side)
    ipr = ctx.nss(ctx.lab.node_ns(end.node))
    gw_if, tun_name = names.gateway_if(side), tunnel_if(op, names, side)
    with kernel_errors(f"routes of {op.stitch} end {side} on {end.node}"):
        node_ns = ctx.lab.node_ns(end.node)
        gw_index, tun_index = ctx.ifindex(node_ns, gw_if), ctx.ifindex(node_ns, tun_name)
        if gw_index is None or tun_index is None:
            raise DriverError(f"{gw_if} or {tun_name} missing on {end.node}", errno=ENOENT)
        routes = [
            {"dst": _dst(end, direct), "oif": gw_index},
            {"dst": _dst(remote, direct), "oif": tun_index,
             "gateway": None if op.encrypted or is_local(op) else names.gateway_address(_other(side))},
            routing.UNREACHABLE_DEFAULT,
        ]
        if fresh:   # the same writes, in one batch (rtnl.py)
            ctx.nss.rtnl(node_ns).batch(routing.fresh_writes(names.table, routes, iifnames=[gw_if, tun_name]),
                                        tolerate=(EEXIST,))
            return True
        changed = routing.ensure_routes(ipr, names.table, routes)
        changed |= routing.ensure_rules(ipr, names.table, iifnames=[gw_if, tun_name])
    return changed


def verify_end(ctx: StitchContext, op: EnsureStitch, names: StitchNames, side: str) -> None:
    """ip route get REMOTE from LOCAL iif vg…: the kernel must route the end's traffic into the tunnel."""
    direct = op.type == "direct"
    end, remote = _ends(op, side)
    ipr = ctx.nss(ctx.lab.node_ns(end.node))
    src = end.address if direct else str(ipaddress.ip_network(end.cidr, strict=False).network_address + 1)
    dst = str(ipaddress.ip_network(_dst(remote, direct), strict=False).network_address)
    if not direct:
        dst = str(ipaddress.ip_address(dst) + 1)
    node_ns = ctx.lab.node_ns(end.node)
    tun_index = ctx.ifindex(node_ns, tunnel_if(op, names, side))
    with kernel_errors(f"stitch {op.stitch}: route check on {end.node}"):
        # ip route get REMOTE from LOCAL iif vgHASHs
        found = ipr.route("get", dst=dst, src=src, iif=ctx.ifindex(node_ns, names.gateway_if(side)))
    oif = found[0].get("RTA_OIF") if found else None
    if tun_index is None or oif != tun_index:
        raise DriverError(f"stitch {op.stitch}: {end.node} does not route {src}→{dst} into the tunnel",
                          errno=ENOENT)


def route_problem(ctx: StitchContext, op: EnsureStitch, names: StitchNames, side: str) -> str | None:
    """Does the end's node still route its traffic into the tunnel, and the far end's back to the end
    (ip route get, both ways)? What is wrong, or None."""
    try:
        verify_end(ctx, op, names, side)
    except DriverError as exc:
        return str(exc).split(": ", 1)[-1]
    direct = op.type == "direct"
    end, remote = _ends(op, side)
    node_ns = ctx.lab.node_ns(end.node)
    here = end.address if direct else str(ipaddress.ip_network(end.cidr, strict=False).network_address + 1)
    there = remote.address if direct else str(ipaddress.ip_network(remote.cidr, strict=False).network_address + 1)
    tunnel, gateway = ctx.ifindex(node_ns, tunnel_if(op, names, side)), ctx.ifindex(node_ns, names.gateway_if(side))
    if tunnel is None or gateway is None:
        return f"{end.node}: stitch devices missing"
    try:
        # ip route get HERE from THERE iif TUNNEL
        found = ctx.nss(node_ns).route("get", dst=here, src=there, iif=tunnel)
    except Exception as exc:  # noqa: BLE001 - unreachable, or a netlink error: the route is not right
        return f"{end.node} does not route {there}→{here} back to the end ({exc})"
    if not found or found[0].get("RTA_OIF") != gateway:
        return f"{end.node} does not route {there}→{here} back to the end"
    return None


def _vm_targets(ctx: StitchContext, op: EnsureStitch, names: StitchNames, side: str) -> list[tuple[str, str, str]]:
    """(VM namespace, device, source) for each VM that must route the remote side via this end's gateway."""
    end, _ = _ends(op, side)
    if op.type == "direct":
        return [(ctx.lab.vm_ns(end.member), names.peer_if(side), end.address)]
    return [(ctx.lab.vm_ns(m["name"]), "eth0", None) for m in ctx.members_of.get(end.network, [])]


def ensure_vm_routes(ctx: StitchContext, op: EnsureStitch, names: StitchNames, side: str,
                      fresh: bool = False) -> bool:
    """ip -n VM route replace REMOTE via 169.254.x.y dev DEV onlink [src ADDR] mtu M; over eth0 also
    ip -n VM neigh replace 169.254.x.y lladdr GW_MAC dev eth0 nud permanent: two stitches' gateways of one
    network on one node sit on the same bridge, and the node would answer a VM's ARP for either address from
    either veth (the kernel answers for any of its addresses on any interface), so the VM could send one
    stitch's traffic into the other's table. A permanent neighbour needs no ARP."""
    _, remote = _ends(op, side)
    remote_dst = _dst(remote, op.type == "direct")
    net, _, plen = remote_dst.partition("/")
    gw = names.gateway_address(side)
    changed = False
    for vm_ns, dev, src in _vm_targets(ctx, op, names, side):
        vm = ctx.nss(vm_ns)
        index = ctx.ifindex(vm_ns, dev)
        if index is None:
            continue
        neighbour = op.type != "direct"   # a direct stitch's veth got its neighbour in ensure_attachment
        if not fresh:
            if neighbour:
                with kernel_errors(f"gateway neighbour in {vm_ns}"):
                    changed |= _ensure_neighbour(vm, index, gw, names.gateway_mac(side), False)
            have = [m for m in vm.get_routes(family=2, table=254)   # dump: a lookup would fail when absent
                    if m["dst_len"] == int(plen) and m.get("RTA_DST") == net]
            if have and have[0].get("RTA_GATEWAY") == gw and have[0].get("RTA_OIF") == index:
                continue
        with kernel_errors(f"route in {vm_ns}"):
            if fresh:
                writes = [rtnl.neigh_replace(index, gw, names.gateway_mac(side))] if neighbour else []
                ctx.nss.rtnl(vm_ns).batch(writes + [rtnl.route_replace(net, int(plen), oif=index, gateway=gw,
                                                                       onlink=True, prefsrc=src, mtu=tunnel_mtu(op))])
            else:
                kwargs = {"dst": net, "dst_len": int(plen), "gateway": gw, "oif": index, "flags": 4,
                          "metrics": {"RTAX_MTU": tunnel_mtu(op)}}
                if src:
                    kwargs["prefsrc"] = src
                vm.route("replace", **kwargs)
        changed = True
    return changed


# --- path ----------------------------------------------------------------------------------

def pin_routes(lab: LabLayout, op: EnsureStitch) -> dict[str, list[tuple[str, str]]]:
    """Per path node, the (far node, next hop) routes that pin the tunnel's UDP to the path, only on
    nodes where the path leaves the underlay's own next hop (elsewhere the main table already
    sends it along the path, and every route change wakes each wireguard-go in that namespace)."""
    path = list(op.path)
    a_node, b_node = op.a.node, op.b.node
    out: dict[str, list[tuple[str, str]]] = {}
    for i, node in enumerate(path):
        hops = []
        if i + 1 < len(path):
            hops.append((b_node, path[i + 1]))
        if i > 0:
            hops.append((a_node, path[i - 1]))
        if any(lab.next_hop.get(node, {}).get(far) != hop for far, hop in hops):
            out[node] = hops
    return out


def ensure_path(ctx: StitchContext, op: EnsureStitch, names: StitchNames, fresh: bool = False) -> bool:
    """Pin the tunnel's UDP packets to the path where the underlay would not: on such a node,
    `ip rule ipproto udp dport A-B lookup T` and in T the next hop towards each end (else unreachable)."""
    lab = ctx.lab
    changed = False
    for node, hops in pin_routes(lab, op).items():
        ns = lab.node_ns(node)
        ipr = ctx.nss(ns)
        with kernel_errors(f"pin {op.stitch} on {node}"):
            wanted = []
            for far, hop in hops:
                _, egress, _ = lab.link_between(node, hop)
                wanted.append({"dst": f"{lab.nodes[far].address}/32", "oif": ctx.ifindex(ns, egress),
                               "gateway": lab.nodes[hop].address})
            wanted.append(routing.UNREACHABLE_DEFAULT)
            changed |= routing.ensure_routes(ipr, names.table, wanted, fresh=fresh)
            for slot in tunnel_slots(op, names):   # ip rule ... dport A-B lookup T, each slot's ports
                changed |= routing.ensure_rules(ipr, names.table, dport_range=port_range(slot), fresh=fresh)
    return changed


def shaped_egresses(lab: LabLayout, op_path: tuple[str, ...], symmetric: bool) -> list[tuple[str, str, float]]:
    """(node, egress ifname, link rate) for every link of the path, both directions if symmetric."""
    out = []
    for u, v in zip(op_path, op_path[1:]):
        link, egress_u, egress_v = lab.link_between(u, v)
        out.append((u, egress_u, link.rate_bps))
        if symmetric:
            out.append((v, egress_v, link.rate_bps))
    return out


def ensure_rate(ctx: StitchContext, op: EnsureStitch, names: StitchNames, rate_bps: float) -> bool:
    """HTB class at rate × lab scale × wire_factor on each egress of the path (removed when the rate is 0)."""
    changed = False
    ports = tunnel_ports(op, names)   # both slots' (a rotation's new tunnel is counted from its first packet)
    failed: list[DriverError] = []
    for node, egress, link_rate in shaped_egresses(ctx.lab, op.path, op.symmetric):
        try:
            ipr = ctx.nss(ctx.lab.node_ns(node))
            with kernel_errors(f"tc class for {op.stitch} on {node}/{egress}"):
                if rate_bps > 0:
                    scaled = min(rate_bps * ctx.lab.scale * wire_factor(op), link_rate)
                    changed |= routing.ensure_stitch_class(ipr, egress, names.class_minor, names.filter_prio,
                                                           scaled, link_rate, ports)
                else:
                    changed |= routing.remove_stitch_class(ipr, egress, names.class_minor, names.filter_prio,
                                                           link_rate)
        except DriverError as exc:
            if rate_bps > 0:
                raise
            failed.append(exc)  # removing: one egress that fails must not leave the others' classes behind
    if failed:
        raise failed[0]
    return changed


def qos_devices(op: EnsureStitch, names: StitchNames) -> list[tuple[str, str, str]]:
    """(side, node, device) where the stitch's QoS classes live: each end's tunnel device, which carries
    the inner packets out before encryption (a local stitch: the far end's gateway veth)."""
    return [(side, _ends(op, side)[0].node, tunnel_if(op, names, side)) for side in SIDES]


def qos_rate(ctx: StitchContext, rate_bps: float) -> float:
    """The QoS parent class's rate: the stitch's rate × lab scale, of the inner packets (no tunnel overhead)."""
    return rate_bps * ctx.lab.scale


def ensure_qos(ctx: StitchContext, op: EnsureStitch, names: StitchNames, rate_bps: float | None = None) -> bool:
    """The QoS classes of op.qos on both ends' tunnel devices at `rate_bps` (default op.rate_bps) × scale
    (routing.ensure_qos); none (the device's own qdisc again) when op.qos is empty or the rate is 0."""
    rate = op.rate_bps if rate_bps is None else rate_bps
    changed = False
    for side, node, ifname in qos_devices(op, names):
        ns = ctx.lab.node_ns(node)
        with kernel_errors(f"tc QoS classes of {op.stitch} on {node}/{ifname}"):
            ipr = ctx.nss(ns)
            index = ctx.ifindex(ns, ifname)
            if op.qos and rate > 0:
                if index is None:
                    raise DriverError(f"{ifname} missing on {node}", errno=ENOENT)
                changed |= routing.ensure_qos(ipr, index, qos_rate(ctx, rate), op.qos)
            elif index is not None:
                changed |= routing.remove_qos(ipr, index)
    return changed


# --- teardown ------------------------------------------------------------------------------

def teardown(ctx: StitchContext, op: EnsureStitch, names: StitchNames, record: dict) -> bool:
    """Remove every piece of the stitch the spec describes, tolerant of anything already gone:
    signal wireguard-go, delete links, nft entries, rules and routes, then wait for the processes."""
    changed = False
    stopping = []
    other = names.other_slot   # a rotation's other tunnel slot (being built, or being retired)
    other_pids = (record.get("next") or record.get("retiring") or {}).get("pids", {})
    wg_slots = ((names, record.get("pids", {})), (other, other_pids)) if op.encrypted and not is_local(op) \
        else ((names, record.get("pids", {})),)
    for slot, pids in wg_slots:
        for side in SIDES:
            ifname = slot.wg_if(side)
            proc = ctx.procs.pop(ifname, None)
            pid = pids.get(side) or (proc.pid if proc else None)
            if slot is other and not pid_alive(pid, needle=ifname):
                pid = wireguard.socket_pid(ifname)   # started, but its pid never recorded (a crash)
            if wireguard.signal_stop(pid, ifname):
                changed = True
            stopping.append((pid, ifname, proc))
    direct = op.type == "direct"
    for side in SIDES:
        end, remote = _ends(op, side)
        if end.node not in ctx.lab.nodes:
            continue
        node_ns = ctx.lab.node_ns(end.node)
        try:
            ipr = ctx.nss(node_ns)
        except DriverError:
            continue
        # VM routes over eth0 outlive the gateway; the direct ones die with the veth.
        if not direct:
            net, _, plen = _dst(remote, False).partition("/")
            for vm_ns, _, _ in _vm_targets(ctx, op, names, side):
                try:
                    with tolerate(ESRCH, ENOENT):
                        ctx.nss(vm_ns).route("del", dst=net, dst_len=int(plen), gateway=names.gateway_address(side))
                        changed = True
                    eth0 = ctx.ifindex(vm_ns, "eth0")
                    if eth0 is not None:   # ip -n VM neigh del 169.254.x.y dev eth0
                        with tolerate(ESRCH, ENOENT):
                            ctx.nss(vm_ns).neigh("del", ifindex=eth0, dst=names.gateway_address(side))
                except DriverError:
                    pass
        wg_names = [slot.wg_if(side) for slot, _ in wg_slots]
        for name in (names.gateway_if(side), *wg_names, names.vxlan_if(side)):
            with kernel_errors(f"ip link del {name}"), tolerate(ENODEV, ENOENT):
                ipr.link("del", ifname=name)  # ip link del NAME
                changed = True
        if op.encrypted and not is_local(op):
            for slot, _ in wg_slots:   # ip rule del pref 90 … ; ip link del vu…
                changed |= uplink_mod.remove_node_side(ipr, uplink_of(ctx, op, slot, side))
        ifnames = dict.fromkeys((names.gateway_if(side), tunnel_if(op, names, side), *wg_names,
                                 names.vxlan_if(side)))  # a local stitch's chain also holds the far gateway
        changed |= nft.remove_stitch(node_ns, nft.chain_name(f"{names.hash}{side}"), *ifnames)
        changed |= routing.remove_rules(ipr, names.table, iifnames=list(dict.fromkeys(
            [names.gateway_if(side), tunnel_if(op, names, side), *wg_names])))
        # the routes in T via the veth and the tunnel went with those links
    pinned = [{"dst": f"{ctx.lab.nodes[n].address}/32"} for n in (op.a.node, op.b.node) if n in ctx.lab.nodes]
    pinned.append(routing.UNREACHABLE_DEFAULT)   # on end and pinning nodes: T is then empty
    for node in dict.fromkeys(list(op.path) + [op.a.node, op.b.node]):
        if node not in ctx.lab.nodes:
            continue
        try:
            ipr = ctx.nss(ctx.lab.node_ns(node))
        except DriverError:
            continue
        for slot in tunnel_slots(op, names):
            changed |= routing.remove_rules(ipr, names.table, dport_range=port_range(slot))
        changed |= routing.remove_routes(ipr, names.table, pinned)
    if op.rate_bps > 0:
        try:
            changed |= ensure_rate(ctx, op, names, 0)  # tries every egress before it raises
        except KeyError:
            pass  # the path left the lab (a node or link removed): nothing of it to clean there
        except DriverError as exc:  # e.g. an egress device already gone: teardown goes on
            log.warning("stitch %s: removing its HTB classes: %s", op.stitch, exc)
    for pid, ifname, proc in stopping:
        wireguard.wait_stopped(pid, ifname)
        if proc is not None:  # ours: reap it (a SIGKILLed one may take a moment to become a zombie)
            try:
                proc.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                log.warning("wireguard-go %s (pid %s) did not exit", ifname, proc.pid)
        try:
            os.unlink(key_path(ctx, ifname))
        except FileNotFoundError:
            pass
    return changed
