"""One stitch in the kernel: attachment veths, tunnel (wireguard-go or VXLAN), policy routes
pinned to the path, nftables allow rules, HTB classes. Built end by end; every step ensure-style."""

from __future__ import annotations

import base64
import os
import subprocess
from dataclasses import dataclass, field

from vnstitch.drivers.linux import keys, nft, routing, wireguard
from vnstitch.drivers.linux.kernel import (
    ENOENT, ESRCH, Namespaces, ifindex, kernel_errors, pid_alive, tolerate,
)
from vnstitch.drivers.linux.layout import NETWORK_MTU, LabLayout, StitchNames, bridge_ifname
from vnstitch.drivers.linux.network import ensure_address, ensure_link_up
from vnstitch.errors import DriverError
from vnstitch.planning.ops import EnsureStitch, StitchEnd

SIDES = ("a", "b")


@dataclass
class StitchContext:
    nss: Namespaces
    lab: LabLayout
    state_dir: str
    members_of: dict[str, list[dict]]             # network key → [{"name","node","address"}]
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)   # wg ifname → process we started


def _ends(op: EnsureStitch, side: str) -> tuple[StitchEnd, StitchEnd]:
    return (op.a, op.b) if side == "a" else (op.b, op.a)


def _dst(end: StitchEnd, direct: bool) -> str:
    if direct:
        if not end.address:
            raise DriverError(f"direct stitch end on {end.network} needs a member address", errno=22)
        return f"{end.address}/32"
    return end.cidr


def key_path(ctx: StitchContext, ifname: str) -> str:
    return os.path.join(ctx.state_dir, "keys", f"{ifname}.key")


# --- build ---------------------------------------------------------------------------------

def start_tunnel_processes(ctx: StitchContext, op: EnsureStitch, names: StitchNames, record: dict) -> bool:
    """Start wireguard-go for both ends at once (they take ~10 ms each) unless already running."""
    if not op.encrypted:
        return False
    changed = False
    for side in SIDES:
        ifname = names.wg_if(side)
        pid = record.get("pids", {}).get(side)
        if pid_alive(pid, needle=ifname) and os.path.exists(wireguard.socket_path(ifname)):
            continue
        end, _ = _ends(op, side)
        proc = wireguard.start(ctx.lab.node_ns(end.node), ifname, os.path.join(ctx.state_dir, f"{ifname}.log"))
        ctx.procs[ifname] = proc
        record.setdefault("pids", {})[side] = proc.pid
        changed = True
    return changed


def ensure_keys(ctx: StitchContext, names: StitchNames, record: dict) -> dict[str, bytes]:
    """A key pair per end, kept in 0600 files; public halves recorded in the state."""
    private = {}
    for side in SIDES:
        path = key_path(ctx, names.wg_if(side))
        key = keys.read_private_key(path)
        if key is None:
            key = keys.generate_private_key()
            keys.write_private_key(path, key)
            record.setdefault("public", {})[side] = keys.to_base64(keys.public_key(key))
        elif side not in record.get("public", {}):
            record.setdefault("public", {})[side] = keys.to_base64(keys.public_key(key))
        private[side] = key
    return private


def ensure_tunnel_config(ctx: StitchContext, op: EnsureStitch, names: StitchNames, record: dict) -> bool:
    """wg set each end: its key, its port, the other end as the only peer."""
    if not op.encrypted:
        return False
    private = ensure_keys(ctx, names, record)
    changed = False
    for side in SIDES:
        ifname = names.wg_if(side)
        wireguard.wait_ready(ifname, ctx.procs.get(ifname), log_path=os.path.join(ctx.state_dir, f"{ifname}.log"))
        end, remote = _ends(op, side)
        other = "b" if side == "a" else "a"
        want = {"private_key": private[side].hex(), "listen_port": names.port(side),
                "peer_key": base64.b64decode(record["public"][other]).hex(),
                "endpoint": f"{ctx.lab.nodes[remote.node].address}:{names.port(other)}",
                "allowed": [_dst(remote, op.type == "direct")]}
        have = wireguard.read_config(ifname)
        if (have["private_key"] != want["private_key"] or have["listen_port"] != want["listen_port"]
                or have["peer"]["public_key"] != want["peer_key"] or have["peer"]["endpoint"] != want["endpoint"]
                or have["peer"]["allowed_ips"] != want["allowed"]):
            wireguard.configure(ifname, want["private_key"], want["listen_port"], want["peer_key"],
                                want["endpoint"], want["allowed"])
            changed = True
        ipr = ctx.nss(ctx.lab.node_ns(end.node))
        index = ifindex(ipr, ifname)
        if index is None:
            raise DriverError(f"wireguard-go did not create {ifname}", errno=ENOENT)
        changed |= ensure_link_up(ipr, index, mtu=wireguard.TUNNEL_MTU)
    return changed


def _vxlan_mac(names: StitchNames, side: str) -> str:
    return "02:" + ":".join(names.hash[i:i + 2] for i in range(0, 8, 2)) + (":0a" if side == "a" else ":0b")


def _ensure_vxlan_tunnel(ctx: StitchContext, op: EnsureStitch, names: StitchNames, side: str) -> bool:
    """Unencrypted: a point-to-point VXLAN on the stitch's own port; the far end's gateway
    address is a permanent neighbour with the far end's MAC, so nothing ARPs over it."""
    end, remote = _ends(op, side)
    other = "b" if side == "a" else "a"
    ipr = ctx.nss(ctx.lab.node_ns(end.node))
    ifname = names.vxlan_if(side)
    changed = False
    if ifindex(ipr, ifname) is None:
        # ip link add vtHASHs address MAC type vxlan id 1 local ADDR remote PEER dstport PORT nolearning
        ipr.link("add", ifname=ifname, kind="vxlan", vxlan_id=1, vxlan_local=ctx.lab.nodes[end.node].address,
                 vxlan_group=ctx.lab.nodes[remote.node].address, vxlan_port=names.port("a"), vxlan_learning=0,
                 address=_vxlan_mac(names, side))
        changed = True
    index = ifindex(ipr, ifname)
    changed |= ensure_link_up(ipr, index, mtu=NETWORK_MTU - 30)
    far_gw, far_mac = names.gateway_address(other), _vxlan_mac(names, other)
    have = [n for n in ipr.get_neighbours(ifindex=index) if n.get("NDA_DST") == far_gw]
    if not have or have[0].get("NDA_LLADDR") != far_mac or not have[0]["state"] & 0x80:
        # ip neigh replace FAR_GW lladdr FAR_MAC dev vtHASHs nud permanent
        ipr.neigh("replace", ifindex=index, dst=far_gw, lladdr=far_mac, state=0x80)
        changed = True
    return changed


def tunnel_if(op: EnsureStitch, names: StitchNames, side: str) -> str:
    return names.wg_if(side) if op.encrypted else names.vxlan_if(side)


def tunnel_mtu(op: EnsureStitch) -> int:
    return wireguard.TUNNEL_MTU if op.encrypted else NETWORK_MTU - 30


def ensure_end(ctx: StitchContext, op: EnsureStitch, names: StitchNames, side: str, fresh: bool) -> bool:
    """Attachment veth + gateway address, routes and rules in table T, VM routes, nft chain."""
    direct = op.type == "direct"
    end, remote = _ends(op, side)
    node_ns = ctx.lab.node_ns(end.node)
    ipr = ctx.nss(node_ns)
    gw_if, peer_if, gw_addr = names.gateway_if(side), names.peer_if(side), names.gateway_address(side)
    mtu = tunnel_mtu(op)
    changed = False
    if not op.encrypted:
        changed |= _ensure_vxlan_tunnel(ctx, op, names, side)
    with kernel_errors(f"stitch {op.stitch} end {side} on {end.node}"):
        peer_ns = ctx.lab.vm_ns(end.member) if direct else node_ns
        peer_ipr = ctx.nss(peer_ns)
        if ifindex(ipr, gw_if) is None:
            if direct:
                # ip -n NODE link add vgHASHs type veth peer name vpHASHs netns VM
                ipr.link("add", ifname=gw_if, kind="veth", peer={"ifname": peer_if, "net_ns_fd": peer_ns})
            else:
                # ip -n NODE link add vgHASHs type veth peer name vpHASHs
                ipr.link("add", ifname=gw_if, kind="veth", peer=peer_if)
            changed = True
        gw_index = ifindex(ipr, gw_if)
        changed |= ensure_link_up(ipr, gw_index, mtu=mtu)
        # ip -n NODE addr add 169.254.x.y/32 dev vgHASHs
        changed |= ensure_address(ipr, gw_index, gw_addr, 32)
        peer_index = ifindex(peer_ipr, peer_if)
        if peer_index is None:
            raise DriverError(f"{peer_if} vanished from {peer_ns}", errno=ENOENT)
        if direct:
            changed |= ensure_link_up(peer_ipr, peer_index, mtu=mtu)
        else:
            bridge = ifindex(ipr, bridge_ifname(end.vnid))
            if bridge is None:
                raise DriverError(f"network {end.network} has no bridge on {end.node}", errno=ENOENT)
            # ip link set vpHASHs master brVNID up
            changed |= ensure_link_up(peer_ipr, peer_index, mtu=NETWORK_MTU, master=bridge)

        tun_name = tunnel_if(op, names, side)
        tun_index = ifindex(ipr, tun_name)
        local_dst, remote_dst = _dst(end, direct), _dst(remote, direct)
        changed |= routing.ensure_routes(ipr, names.table, [
            {"dst": local_dst, "oif": gw_index},
            {"dst": remote_dst, "oif": tun_index,
             "gateway": None if op.encrypted else names.gateway_address("b" if side == "a" else "a")},
            {"dst": "0.0.0.0/0", "type": "unreachable"},
        ])
        changed |= routing.ensure_rules(ipr, names.table, iifnames=[gw_if, tun_name])
        changed |= _ensure_vm_routes(ctx, op, names, side)
    if fresh:
        nft.ensure_base(node_ns)
    changed |= nft.ensure_stitch(node_ns, nft.chain_name(f"{names.hash}{side}"), gw_if, tun_name,
                                 local_dst, remote_dst, fresh=fresh)
    return changed


def _vm_targets(ctx: StitchContext, op: EnsureStitch, names: StitchNames, side: str) -> list[tuple[str, str, str]]:
    """(VM namespace, device, source) for each VM that must route the remote side via this end's gateway."""
    end, _ = _ends(op, side)
    if op.type == "direct":
        return [(ctx.lab.vm_ns(end.member), names.peer_if(side), end.address)]
    return [(ctx.lab.vm_ns(m["name"]), "eth0", None) for m in ctx.members_of.get(end.network, [])]


def _ensure_vm_routes(ctx: StitchContext, op: EnsureStitch, names: StitchNames, side: str) -> bool:
    """ip -n VM route replace REMOTE via 169.254.x.y dev DEV onlink [src ADDR] mtu M."""
    _, remote = _ends(op, side)
    remote_dst = _dst(remote, op.type == "direct")
    net, _, plen = remote_dst.partition("/")
    gw = names.gateway_address(side)
    changed = False
    for vm_ns, dev, src in _vm_targets(ctx, op, names, side):
        vm = ctx.nss(vm_ns)
        index = ifindex(vm, dev)
        if index is None:
            continue
        have = [m for m in vm.get_routes(family=2, table=254)   # dump: a lookup would fail when absent
                if m["dst_len"] == int(plen) and m.get("RTA_DST") == net]
        if have and have[0].get("RTA_GATEWAY") == gw and have[0].get("RTA_OIF") == index:
            continue
        kwargs = {"dst": net, "dst_len": int(plen), "gateway": gw, "oif": index, "flags": 4,
                  "metrics": {"RTAX_MTU": tunnel_mtu(op)}}
        if src:
            kwargs["prefsrc"] = src
        vm.route("replace", **kwargs)
        changed = True
    return changed


def ensure_path(ctx: StitchContext, op: EnsureStitch, names: StitchNames) -> bool:
    """Pin the tunnel's UDP packets to the path: per node, `ip rule ipproto udp dport P lookup T`
    and in T the next hop towards each end; HTB classes at the reserved rate when rate > 0."""
    lab, path = ctx.lab, list(op.path)
    if not path or path[0] != op.a.node or path[-1] != op.b.node:
        raise DriverError(f"stitch {op.stitch}: path must run from {op.a.node} to {op.b.node}", field="path",
                          errno=22)
    ports = sorted({names.port("a"), names.port("b")})
    addr_a, addr_b = lab.nodes[op.a.node].address, lab.nodes[op.b.node].address
    changed = False
    for i, node in enumerate(path):
        if node not in lab.nodes:
            raise DriverError(f"stitch {op.stitch}: unknown node {node} on path", field="path", errno=ENOENT)
        ipr = ctx.nss(lab.node_ns(node))
        wanted = []
        with kernel_errors(f"pin {op.stitch} on {node}"):
            if i + 1 < len(path):
                _, egress, _ = lab.link_between(node, path[i + 1])
                wanted.append({"dst": f"{addr_b}/32", "oif": ifindex(ipr, egress),
                               "gateway": lab.nodes[path[i + 1]].address})
            if i > 0:
                _, egress, _ = lab.link_between(node, path[i - 1])
                wanted.append({"dst": f"{addr_a}/32", "oif": ifindex(ipr, egress),
                               "gateway": lab.nodes[path[i - 1]].address})
            if len(path) > 1:
                changed |= routing.ensure_routes(ipr, names.table, wanted + [{"dst": "0.0.0.0/0",
                                                                               "type": "unreachable"}])
                changed |= routing.ensure_rules(ipr, names.table, dports=ports)
    changed |= ensure_rate(ctx, op, names, op.rate_bps)
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
    """HTB class at rate × lab scale on each egress of the path (removed when the rate is 0)."""
    changed = False
    ports = sorted({names.port("a"), names.port("b")})
    for node, egress, link_rate in shaped_egresses(ctx.lab, op.path, op.symmetric):
        ipr = ctx.nss(ctx.lab.node_ns(node))
        with kernel_errors(f"tc class for {op.stitch} on {node}/{egress}"):
            if rate_bps > 0:
                scaled = min(rate_bps * ctx.lab.scale, link_rate)
                changed |= routing.ensure_stitch_class(ipr, egress, names.class_minor, names.filter_prio, scaled,
                                                       link_rate, ports)
            else:
                changed |= routing.remove_stitch_class(ipr, egress, names.class_minor, names.filter_prio,
                                                       link_rate)
    return changed


# --- teardown ------------------------------------------------------------------------------

def teardown(ctx: StitchContext, op: EnsureStitch, names: StitchNames, record: dict) -> bool:
    """Remove every piece of the stitch that exists; tolerant of anything already gone."""
    changed = False
    for side in SIDES:
        ifname = names.wg_if(side)
        proc = ctx.procs.pop(ifname, None)
        changed |= wireguard.stop(record.get("pids", {}).get(side) or (proc.pid if proc else None), ifname)
        if proc is not None:
            proc.poll()
        try:
            os.unlink(key_path(ctx, ifname))
        except FileNotFoundError:
            pass
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
        if op.type != "direct":
            net, _, plen = _dst(remote, False).partition("/")
            for vm_ns, _, _ in _vm_targets(ctx, op, names, side):
                try:
                    with tolerate(ESRCH, ENOENT):
                        ctx.nss(vm_ns).route("del", dst=net, dst_len=int(plen), gateway=names.gateway_address(side))
                        changed = True
                except DriverError:
                    pass
        for name in (names.gateway_if(side), names.wg_if(side), names.vxlan_if(side)):
            index = ifindex(ipr, name)
            if index is not None:
                with tolerate(ENOENT, 19):
                    ipr.link("del", index=index)  # ip link del NAME
                changed = True
        changed |= nft.remove_stitch(node_ns, nft.chain_name(f"{names.hash}{side}"), names.gateway_if(side),
                                     names.wg_if(side), names.vxlan_if(side))
    for node in set(op.path) | {op.a.node, op.b.node}:
        if node in ctx.lab.nodes:
            try:
                changed |= routing.remove_rules_and_table(ctx.nss(ctx.lab.node_ns(node)), names.table)
            except DriverError:
                pass
    try:
        changed |= ensure_rate(ctx, op, names, 0)
    except (DriverError, KeyError):
        pass
    return changed
