"""Virtual networks in the kernel: a bridge per node, VXLAN (VNI = VNID) between nodes, VMs as namespaces."""

from __future__ import annotations

import ipaddress
from collections import defaultdict

from vnstitch.drivers.linux import guard
from vnstitch.drivers.linux.kernel import (
    EEXIST, ENOENT, Namespaces, ifindex, kernel_errors, set_sysctls, tolerate,
)
from vnstitch.drivers.linux.layout import (
    NETWORK_MTU, NETWORK_VXLAN_PORT, LabLayout, bridge_ifname, member_ifname, vxlan_ifname,
)
from vnstitch.errors import DriverError
from vnstitch.planning.ops import EnsureNetwork

ZERO_MAC = "00:00:00:00:00:00"


def ensure_link_up(ipr, index: int, mtu: int | None = None, master: int | None = None) -> bool:
    """ip link set dev X [mtu M] [master B] up — only what differs."""
    msg = ipr.link("get", index=index)[0]
    changes: dict = {}
    if mtu is not None and msg.get("IFLA_MTU") != mtu:
        changes["mtu"] = mtu
    if master is not None and msg.get("IFLA_MASTER") != master:
        changes["master"] = master
    if not msg["flags"] & 1:
        changes["state"] = "up"
    if changes:
        ipr.link("set", index=index, **changes)
    return bool(changes)


def ensure_address(ipr, index: int, address: str, prefixlen: int) -> bool:
    """ip addr add ADDRESS/PREFIX dev X (tolerating 'exists')."""
    for msg in ipr.get_addr(index=index, family=2):
        if msg.get("IFA_ADDRESS") == address and msg["prefixlen"] == prefixlen:
            return False
    with tolerate(EEXIST):
        ipr.addr("add", index=index, address=address, prefixlen=prefixlen)
    return True


def prepare_vm_namespace(nss: Namespaces, ns: str) -> bool:
    """ip netns add VM; ip -n VM link set lo up; rp_filter off (replies come back over stitches)."""
    created = nss.create(ns)
    ipr = nss(ns)
    ensure_link_up(ipr, 1)
    if created:
        set_sysctls(ns, {"net.ipv4.conf.all.rp_filter": 0, "net.ipv4.conf.default.rp_filter": 0,
                         "net.ipv6.conf.all.disable_ipv6": 1, "net.ipv6.conf.default.disable_ipv6": 1})
    return created


def ensure_network(nss: Namespaces, lab: LabLayout, op: EnsureNetwork) -> bool:
    """Bridge + VXLAN on every node with members, a namespace and veth per member."""
    changed = False
    prefixlen = ipaddress.ip_network(op.cidr).prefixlen
    by_node: dict[str, list] = defaultdict(list)
    for member in op.members:
        if member.node not in lab.nodes:
            raise DriverError(f"{op.network}: member {member.name} is on unknown node {member.node}",
                              field="members", errno=ENOENT)
        by_node[member.node].append(member)
    nodes = sorted(by_node)
    for node in nodes:
        changed |= _ensure_bridge(nss, lab, op.vnid, node, [n for n in nodes if n != node])
    for member in op.members:
        changed |= _ensure_member(nss, lab, op, member, prefixlen)
    changed |= _prune(nss, lab, op, set(nodes))
    return changed


def _ensure_bridge(nss: Namespaces, lab: LabLayout, vnid: int, node: str, peers: list[str]) -> bool:
    changed = False
    ns = lab.node_ns(node)
    ipr = nss(ns)
    bridge, vxlan = bridge_ifname(vnid), vxlan_ifname(vnid)
    with kernel_errors(f"bridge {bridge} on {node}"):
        br_index = ifindex(ipr, bridge)
        if br_index is None:
            # ip link add brVNID type bridge
            ipr.link("add", ifname=bridge, kind="bridge")
            br_index = ifindex(ipr, bridge)
            changed = True
            # The bridge is L2 only: never answer ARP for the node's addresses (the stitch
            # gateways' 169.254 addresses must be answered by their own veth, not the bridge).
            # Bridged frames must not traverse the IP forward hook (br_netfilter, when loaded),
            # or the default-deny policy between networks would also cut traffic inside one.
            set_sysctls(ns, {f"net.ipv4.conf.{bridge}.arp_ignore": 8, "net.bridge.bridge-nf-call-iptables": 0,
                             "net.bridge.bridge-nf-call-ip6tables": 0, "net.bridge.bridge-nf-call-arptables": 0})
        changed |= ensure_link_up(ipr, br_index, mtu=NETWORK_MTU)
        vx_index = ifindex(ipr, vxlan)
        if vx_index is None:
            # ip link add vxVNID type vxlan id VNID local NODE_ADDR dstport 4789 learning
            ipr.link("add", ifname=vxlan, kind="vxlan", vxlan_id=vnid, vxlan_local=lab.nodes[node].address,
                     vxlan_port=NETWORK_VXLAN_PORT, vxlan_learning=1)
            vx_index = ifindex(ipr, vxlan)
            changed = True
        changed |= ensure_link_up(ipr, vx_index, mtu=NETWORK_MTU, master=br_index)
        wanted = {lab.nodes[p].address for p in peers}
        present = set()
        for entry in ipr.fdb("dump", ifindex=vx_index):
            if entry.get("NDA_LLADDR") == ZERO_MAC and entry.get("NDA_DST"):
                present.add(entry.get("NDA_DST"))
        for dst in sorted(wanted - present):
            # bridge fdb append 00:00:00:00:00:00 dev vxVNID dst PEER_ADDR
            ipr.fdb("append", ifindex=vx_index, lladdr=ZERO_MAC, dst=dst)
            changed = True
        for dst in sorted(present - wanted):
            # bridge fdb del 00:00:00:00:00:00 dev vxVNID dst PEER_ADDR
            with tolerate(ENOENT):
                ipr.fdb("del", ifindex=vx_index, lladdr=ZERO_MAC, dst=dst)
            changed = True
    return changed


def _ensure_member(nss: Namespaces, lab: LabLayout, op: EnsureNetwork, member, prefixlen: int) -> bool:
    vm_ns = lab.vm_ns(member.name)
    changed = created = prepare_vm_namespace(nss, vm_ns)
    node_ipr = nss(lab.node_ns(member.node))
    vm_ipr = nss(vm_ns)
    port = member_ifname(lab.name, op.network, member.name)
    with kernel_errors(f"member {member.name} of {op.network}"):
        port_index = ifindex(node_ipr, port)
        if port_index is None or ifindex(vm_ipr, "eth0") is None:
            if port_index is not None:
                node_ipr.link("del", index=port_index)
            else:  # the member moved here: its port (and the VM's eth0 with it) is still on the old node
                for other in lab.nodes:
                    if other != member.node:
                        other_ipr = nss(lab.node_ns(other))
                        old = ifindex(other_ipr, port)
                        if old is not None:
                            other_ipr.link("del", index=old)  # ip -n OLD link del vmHASH
            # ip -n NODE link add vmHASH type veth peer name eth0 netns VM
            node_ipr.link("add", ifname=port, kind="veth", peer={"ifname": "eth0", "net_ns_fd": vm_ns})
            port_index = ifindex(node_ipr, port)
            changed = True
        bridge_index = ifindex(node_ipr, bridge_ifname(op.vnid))
        changed |= ensure_link_up(node_ipr, port_index, mtu=NETWORK_MTU, master=bridge_index)
        eth0 = ifindex(vm_ipr, "eth0")
        changed |= ensure_link_up(vm_ipr, eth0, mtu=NETWORK_MTU)
        # ip -n VM addr add ADDRESS/PREFIX dev eth0
        changed |= ensure_address(vm_ipr, eth0, member.address, prefixlen)
        # what no stitch carries: counted per destination and dropped as it leaves the VM (guard.py)
        changed |= guard.ensure_guard(vm_ns, vm_ipr, eth0, fresh=created)
    return changed


def _prune(nss: Namespaces, lab: LabLayout, op: EnsureNetwork, nodes: set[str]) -> bool:
    """Remove bridges and member ports of this network that the op no longer lists."""
    changed = False
    wanted_ports = {member_ifname(lab.name, op.network, m.name): m.node for m in op.members}  # port → node
    for node in lab.nodes:
        ipr = nss(lab.node_ns(node))
        br_index = ifindex(ipr, bridge_ifname(op.vnid))
        if br_index is None:
            continue
        for msg in ipr.get_links():
            name = msg.get("IFLA_IFNAME")
            if msg.get("IFLA_MASTER") == br_index and name.startswith("vm") and wanted_ports.get(name) != node:
                with tolerate(ENOENT, 19):
                    ipr.link("del", index=msg["index"])  # ip link del vmHASH
                changed = True
        if node not in nodes:
            changed |= remove_bridge(nss, lab, op.vnid, node)
    return changed


def remove_bridge(nss: Namespaces, lab: LabLayout, vnid: int, node: str) -> bool:
    """ip link del vxVNID; ip link del brVNID (and the member ports enslaved to it)."""
    ipr = nss(lab.node_ns(node))
    changed = False
    br_index = ifindex(ipr, bridge_ifname(vnid))
    if br_index is not None:
        for msg in ipr.get_links():
            if msg.get("IFLA_MASTER") == br_index and msg.get("IFLA_IFNAME", "").startswith("vm"):
                with tolerate(ENOENT, 19):
                    ipr.link("del", index=msg["index"])
    for name in (vxlan_ifname(vnid), bridge_ifname(vnid)):
        index = ifindex(ipr, name)
        if index is not None:
            with tolerate(ENOENT, 19):
                ipr.link("del", index=index)
            changed = True
    return changed
