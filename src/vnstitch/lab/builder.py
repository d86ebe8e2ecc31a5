"""Build, inspect and tear down a lab: node namespaces, shaped substrate veths, networks, VMs."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import networkx as nx

from vnstitch.drivers.linux import nft, wireguard
from vnstitch.drivers.linux.driver import LinuxDriver
from vnstitch.drivers.linux.kernel import (
    Namespaces, ifindex, kernel_errors, list_netns, netns_exists, pid_alive, set_sysctls, NETNS_DIR,
)
from vnstitch.drivers.linux.layout import (
    DRIVER_FILE, LAB_FILE, LabLayout, LinkInfo, NodeInfo, StitchNames, load_layout, node_address,
    state_dir, substrate_ifname, write_json,
)
from vnstitch.drivers.linux.network import ensure_address, ensure_link_up
from vnstitch.drivers.linux.statefile import JOURNAL_SUFFIX, read_state
from vnstitch.drivers.linux.routing import ensure_root_htb
from vnstitch.errors import Conflict, InvalidInput, NotFound
from vnstitch.lab.topology import LAB_NAME, LabTopology, parse
from vnstitch.planning import desired
from vnstitch.planning.ops import EnsureNetwork

DEFAULT_SCALE = 0.01      # lab rate = capacity × scale (10 Gbit/s links become 100 Mbit/s HTB)
DEFAULT_NAME = "lab"
SUBSTRATE_MTU = 1500


def plan_layout(topo: LabTopology, name: str, scale: float, source: str = "") -> LabLayout:
    """Names, underlay addresses and shortest-latency next hops, before touching the kernel."""
    if not LAB_NAME.match(name):
        raise InvalidInput("lab name: 1-16 of a-z, 0-9, '-'", field="name")
    if not 0 < scale <= 1:
        raise InvalidInput("scale must be in (0, 1]", field="scale")
    nodes = {n.name: NodeInfo(n.name, i, f"vns-{name}-{n.name}", node_address(i), n.spec.trust_zone)
             for i, n in enumerate(topo.nodes)}
    links = []
    for link in topo.links:
        a, b = link.spec.endpoints
        links.append(LinkInfo(a=a, b=b, capacity_bps=link.spec.capacity, rate_bps=link.spec.capacity * scale,
                              ifname_a=substrate_ifname(nodes[b].index), ifname_b=substrate_ifname(nodes[a].index),
                              latency_s=link.spec.latency))
    paths = dict(nx.all_pairs_dijkstra_path(topo.graph(), weight="latency"))
    next_hop = {u: {v: path[1] for v, path in paths[u].items() if v != u} for u in nodes}
    vms = {m.name: m.node for net in topo.networks for m in net.spec.members}
    return LabLayout(name=name, scale=scale, nodes=nodes, links=links, next_hop=next_hop, vms=vms, source=source)


def network_op(net) -> EnsureNetwork:
    """The lab's networks compile as the controller's do (`planning.desired`)."""
    return desired.network_op(net, reason="lab up")


def up(path: str, name: str | None = None, scale: float = DEFAULT_SCALE, directory: str | None = None) -> LabLayout:
    """Ensure the lab described by `path` exists (idempotent); returns its layout."""
    topo = parse(path)
    directory = state_dir(directory)
    existing = load_layout(directory)
    name = name or (existing.name if existing else DEFAULT_NAME)
    if existing and existing.name != name:
        raise Conflict(f"lab '{existing.name}' is already up in {directory}; run `vnstitch lab down` first")
    layout = plan_layout(topo, name, scale, os.path.abspath(path))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    write_json(os.path.join(directory, LAB_FILE), layout.to_json())  # first: `lab down` can undo a failed up
    nss = Namespaces()
    try:
        for node in layout.nodes.values():
            _ensure_node(nss, node)
        for link in layout.links:
            _ensure_link(nss, layout, link)
        for node in layout.nodes.values():
            _ensure_underlay_routes(nss, layout, node)
            nft.ensure_base(node.netns)  # default deny between networks from the start
    finally:
        nss.close()
    driver = LinuxDriver(directory)
    try:
        for net in topo.networks:
            driver.apply(network_op(net))
    finally:
        driver.close()
    return layout


def _ensure_node(nss: Namespaces, node: NodeInfo) -> None:
    created = nss.create(node.netns)
    ipr = nss(node.netns)
    with kernel_errors(f"node {node.name}"):
        ensure_link_up(ipr, 1)
        # ip -n NODE addr add 10.255.0.N/32 dev lo
        ensure_address(ipr, 1, node.address, 32)
    if created:
        set_sysctls(node.netns, {"net.ipv4.ip_forward": 1, "net.ipv4.conf.all.rp_filter": 0,
                                 "net.ipv4.conf.default.rp_filter": 0, "net.ipv6.conf.all.disable_ipv6": 1,
                                 "net.ipv6.conf.default.disable_ipv6": 1})


def _ensure_link(nss: Namespaces, layout: LabLayout, link: LinkInfo) -> None:
    ns_a, ns_b = layout.node_ns(link.a), layout.node_ns(link.b)
    ipr_a, ipr_b = nss(ns_a), nss(ns_b)
    with kernel_errors(f"substrate link {link.a}–{link.b}"):
        if ifindex(ipr_a, link.ifname_a) is None or ifindex(ipr_b, link.ifname_b) is None:
            for ipr, ifname in ((ipr_a, link.ifname_a), (ipr_b, link.ifname_b)):
                index = ifindex(ipr, ifname)
                if index is not None:
                    ipr.link("del", index=index)
            # ip -n A link add subB type veth peer name subA netns B
            ipr_a.link("add", ifname=link.ifname_a, kind="veth", peer={"ifname": link.ifname_b, "net_ns_fd": ns_b})
        for ipr, ifname in ((ipr_a, link.ifname_a), (ipr_b, link.ifname_b)):
            ensure_link_up(ipr, ifindex(ipr, ifname), mtu=SUBSTRATE_MTU)
            # tc qdisc add dev subX root handle 1: htb default fff0; tc class add ... rate CAPACITY×SCALE
            ensure_root_htb(ipr, ifname, link.rate_bps)


def _ensure_underlay_routes(nss: Namespaces, layout: LabLayout, node: NodeInfo) -> None:
    ipr = nss(node.netns)
    present = {(m.get("RTA_DST"), m.get("RTA_GATEWAY")) for m in ipr.get_routes(family=2, table=254)}
    with kernel_errors(f"underlay routes on {node.name}"):
        for dest, hop in layout.next_hop[node.name].items():
            dest_addr, hop_addr = layout.nodes[dest].address, layout.nodes[hop].address
            if (dest_addr, hop_addr) in present:
                continue
            _, egress, _ = layout.link_between(node.name, hop)
            # ip -n NODE route replace DEST/32 via HOP onlink dev subHOP src NODE_ADDR
            ipr.route("replace", dst=dest_addr, dst_len=32, gateway=hop_addr, oif=ifindex(ipr, egress), flags=4,
                      prefsrc=node.address)


# --- teardown -------------------------------------------------------------------------------

def _namespace_inodes(prefix: str) -> set[tuple[int, int]]:
    out = set()
    for name in list_netns(prefix):
        try:
            st = os.stat(os.path.join(NETNS_DIR, name))
            out.add((st.st_dev, st.st_ino))
        except OSError:
            pass
    return out


def processes_in(prefix: str) -> list[int]:
    """Pids of processes whose network namespace is one of ours, or that serve a device in one of ours
    from a namespace of their own (wireguard-go: its environment names the node's namespace)."""
    inodes = _namespace_inodes(prefix)
    marker = f"{wireguard.NETNS_ENV}={prefix}".encode()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            st = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in inodes:
            pids.append(int(entry))
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                if any(item.startswith(marker) for item in handle.read().split(b"\0")):
                    pids.append(int(entry))
        except OSError:
            pass
    return pids


def _kill_all(pids: list[int], timeout_s: float = 3.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(os.path.exists(f"/proc/{p}") and _not_zombie(p) for p in pids):
            for pid in pids:
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass
            time.sleep(0.01)


def _not_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except OSError:
        return False


def down(directory: str | None = None, name: str | None = None) -> list[str]:
    """Remove every namespace, process, socket and state file of the lab; returns what was removed."""
    directory = state_dir(directory)
    layout = load_layout(directory)
    name = name or (layout.name if layout else None)
    if name is None:
        return []
    prefix = f"vns-{name}-"
    removed = []
    wg_names = []
    try:
        records = list(read_state(directory)["stitches"].values())
    except ValueError:   # an unreadable state file: processes_in() below still finds the processes
        records = []
    for record in records:
        # both tunnel slots (a key rotation's other one too), stopped by pid or UAPI socket before
        # processes_in() below finds what is left
        current = record.get("slot", 0)
        other = record.get("next") or record.get("retiring") or {}
        for slot, pids in ((current, record.get("pids", {})), (1 - current, other.get("pids", {}))):
            names = StitchNames(record["hash"], record["index"], slot)
            for side in ("a", "b"):
                ifname = names.wg_if(side)
                wg_names.append(ifname)
                pid = pids.get(side) if pid_alive(pids.get(side), needle=ifname) else wireguard.socket_pid(ifname)
                if wireguard.stop(pid, ifname):
                    removed.append(f"wireguard-go {ifname}")
    stray = processes_in(prefix)
    _kill_all(stray)
    removed += [f"process {pid}" for pid in stray]
    nss = Namespaces()
    for ns in list_netns(prefix):
        nss.remove(ns)
        removed.append(f"netns {ns}")
    for ifname in wg_names:
        path = wireguard.socket_path(ifname)
        if os.path.exists(path):
            os.unlink(path)
    if os.path.isdir(directory):
        for entry in (LAB_FILE, DRIVER_FILE, DRIVER_FILE + JOURNAL_SUFFIX, ".lock", "keys"):
            path = os.path.join(directory, entry)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.unlink(path)
        for entry in os.listdir(directory):
            if entry.startswith("vw") and entry.endswith(".log"):
                os.unlink(os.path.join(directory, entry))
    return removed


# --- inspection -----------------------------------------------------------------------------

def status(directory: str | None = None) -> dict:
    """What exists in the kernel for this lab: nodes, links with their HTB rate, networks, stitches."""
    directory = state_dir(directory)
    layout = load_layout(directory)
    if layout is None:
        return {"lab": None, "stateDir": directory}
    nss = Namespaces()
    try:
        nodes = {name: {"netns": n.netns, "address": n.address, "exists": netns_exists(n.netns)}
                 for name, n in layout.nodes.items()}
        links = []
        for link in layout.links:
            up_a = nodes[link.a]["exists"] and ifindex(nss(layout.node_ns(link.a)), link.ifname_a) is not None
            links.append({"endpoints": [link.a, link.b], "capacityBps": link.capacity_bps,
                          "labRateBps": link.rate_bps, "exists": bool(up_a)})
    finally:
        nss.close()
    driver = LinuxDriver(directory)
    try:
        observed = driver.observe()
    finally:
        driver.close()
    return {
        "lab": layout.name, "stateDir": directory, "scale": layout.scale, "source": layout.source,
        "nodes": nodes, "links": links,
        "vms": {vm: {"node": node, "netns": layout.vm_ns(vm), "exists": netns_exists(layout.vm_ns(vm))}
                for vm, node in layout.vms.items()},
        "networks": {k: {"vnid": n.vnid, "nodes": sorted(n.nodes), "members": sorted(n.members)}
                     for k, n in observed.networks.items()},
        "stitches": {k: {"type": s.type, "path": list(s.path), "rateBps": s.rate_bps, "encrypted": s.encrypted,
                         "healthy": s.healthy, "txBytes": s.tx_bytes, "rxBytes": s.rx_bytes}
                     for k, s in observed.stitches.items()},
    }


def namespace_of(target: str, directory: str | None = None) -> str:
    """The namespace of a VM (or, failing that, of a substrate node) by name."""
    layout = load_layout(state_dir(directory))
    if layout is None:
        raise NotFound("no lab is up", field="lab")
    if target in layout.vms and netns_exists(layout.vm_ns(target)):
        return layout.vm_ns(target)
    if target in layout.nodes:
        return layout.node_ns(target)
    raise NotFound(f"no VM or node '{target}' in lab {layout.name} "
                   f"(VMs: {', '.join(sorted(layout.vms)) or '-'})", field="vm")


def exec_in(target: str, argv: list[str], directory: str | None = None) -> int:
    """ip netns exec <VM namespace> argv..."""
    if not argv:
        raise InvalidInput("give a command after --", field="command")
    return subprocess.call(["ip", "netns", "exec", namespace_of(target, directory)] + list(argv))
