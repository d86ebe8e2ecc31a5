"""Each tunnel end's wireguard-go in a network namespace of its own, so stitches do not wake each other.

wireguard-go listens to rtnetlink in the namespace it runs in (routes: its sticky-socket listener asks
the kernel for a route per peer on every route change; links and addresses: its TUN listener). With
every end in the node's namespace, each new stitch's links and routes woke every wireguard-go there,
and the k-th stitch cost O(k). Here:

- the TUN `vw…` is made in the node's namespace by us (TUNSETIFF) and handed to wireguard-go as an fd
  (WG_TUN_FD): it is where routes, nft chains and tc classes expect it;
- wireguard-go runs in a new, unnamed namespace X (it lives while the process does, and takes its
  devices with it when it ends). X holds one veth, named like the TUN (wireguard-go looks its device up
  by name in its own namespace: that name's up/MTU events are what it follows, besides polling the TUN
  itself), with the node's underlay address and a default route towards the node;
- the veth's node end `vu…` (the uplink) carries the tunnel's UDP: out of X it is forwarded like the
  node's own packets (same addresses and ports on the wire, so path pinning and the HTB filters by port
  are unchanged); towards X, `ip rule pref 90 to NODE ipproto udp dport PORT lookup PORT` (before
  `lookup local`, moved to pref 99) sends the tunnel's port into the uplink.

Nothing of a stitch's own setup happens in X, so each wireguard-go wakes only for its own events.

Once an end is up, its wireguard-go's rtnetlink sockets leave their multicast groups (`mute_rtnetlink`):
the kernel delivers every rtnetlink notification, in any namespace, by walking *every* socket in the
system that joined a group (`netlink_broadcast`), so with 2 such sockets per wireguard-go each device,
address, route or rule a new stitch makes cost O(stitches) — 16% of the machine's CPU at 600 stitches,
most of the per-stitch growth. Nothing those listeners follow changes in X after set-up (its one veth,
address and route are made before wireguard-go starts, and its MTU is set once, before the mute: that
event is already queued); its TUN's up/down state reaches it through its own polling of the TUN.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import struct
import subprocess
import time
from dataclasses import dataclass

from vnstitch.drivers.linux import rtnl
from vnstitch.drivers.linux.kernel import (
    EEXIST, ENOENT, ESRCH, in_netns, in_netns_of, in_new_netns, kernel_errors, pidfd_getfd, tolerate,
)
from vnstitch.drivers.linux.layout import LOCAL_RULE_PREF, UPLINK_RULE_PREF
from vnstitch.errors import DriverError

log = logging.getLogger(__name__)

UPLINK_MTU = 1500                 # the tunnel's UDP packets: 1420 inside + 60 IPv4/UDP/WireGuard
INNER_GATEWAY = "169.254.0.1"     # X's default gateway (only a permanent neighbour: the uplink's MAC)
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001                  # with the packet-information header, as wireguard-go's own CreateTUN
SIOCSIFMTU = 0x8922
RT_TABLE_LOCAL = 255
SOL_NETLINK = 270
NETLINK_DROP_MEMBERSHIP = 2
NETLINK_LIST_MEMBERSHIPS = 9
NETLINK_ROUTE = 0


@dataclass(frozen=True)
class Uplink:
    """The UDP path of one tunnel end: `ifname` (vu…) in the node's namespace, the node's underlay
    `address` (also the only address in X), the end's listen `port` (also its routing table)."""

    ifname: str
    address: str
    port: int
    node_mac: str
    inner_mac: str


def _inner_setup(sock: rtnl.Rtnl, ifname: str, uplink: Uplink, node_fd: int) -> None:
    """In X: the veth and its peer (the uplink, in the node's namespace), the node's address, the way out."""
    # ip link add vw… mtu 1500 address MAC type veth peer name vu… mtu 1500 address MAC netns NODE
    sock.batch([rtnl.veth_add(ifname, uplink.inner_mac, UPLINK_MTU, uplink.ifname, uplink.node_mac, UPLINK_MTU,
                              peer_ns_fd=node_fd)])
    index = socket.if_nametoindex(ifname)
    sock.batch([
        rtnl.link_no_ipv6_addresses(index),                          # ip link set vw… addrgenmode none
        rtnl.addr_add(index, uplink.address, 32),                    # ip addr add ADDRESS/32 dev vw…
        rtnl.link_set(index, up=True),                               # ip link set vw… up
        rtnl.neigh_replace(index, INNER_GATEWAY, uplink.node_mac),   # ip neigh replace 169.254.0.1 lladdr MAC …
        rtnl.route_replace("0.0.0.0", 0, oif=index, gateway=INNER_GATEWAY, onlink=True),  # ip route replace
    ])                                                               #   default via 169.254.0.1 dev vw… onlink


# --- start ---------------------------------------------------------------------------------

def _open_tun(ifname: str) -> tuple[int, int]:
    """open /dev/net/tun; TUNSETIFF IFNAME (in the calling thread's namespace); (fd, ifindex)."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)   # inheritable: handed to wireguard-go
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", ifname.encode(), IFF_TUN))
        return fd, socket.if_nametoindex(ifname)
    except BaseException:
        os.close(fd)
        raise


def start(nss, ns: str, ifname: str, uplink: Uplink, argv: list[str], env: dict, log) -> subprocess.Popen:
    """The TUN IFNAME in NS (mtu 1420, up), a new namespace X with its veth and the uplink in NS, and
    wireguard-go (`argv`) started in X with the TUN's fd; then the uplink's routing in NS. Does not wait
    for wireguard-go; what is left of a failure goes with X (or is removed by remove_node_side)."""
    from vnstitch.drivers.linux.wireguard import TUNNEL_MTU
    tun_fd, tun_index = in_netns(ns, lambda: _open_tun(ifname))
    try:
        with kernel_errors(f"tunnel {ifname} in {ns}"):
            nss.rtnl(ns).batch([rtnl.link_set(tun_index, up=True, mtu=TUNNEL_MTU)])   # ip link set vw… mtu 1420 up
        node_fd = os.open(os.path.join("/var/run/netns", ns), os.O_RDONLY | os.O_CLOEXEC)
        try:
            def in_x() -> subprocess.Popen:
                # No IPv6 address on X's veth (addrgenmode none), set by netlink rather than by sysctl
                # disable_ipv6: a path under /proc/sys costs a step per namespace on the machine.
                sock = rtnl.Rtnl()
                try:
                    _inner_setup(sock, ifname, uplink, node_fd)
                finally:
                    sock.close()
                return subprocess.Popen(argv, env={**env, "WG_TUN_FD": str(tun_fd)}, stdin=subprocess.DEVNULL,
                                        stdout=log, stderr=log, start_new_session=True, pass_fds=(tun_fd,))
            with kernel_errors(f"cannot start wireguard-go for {ifname}"):
                proc = in_new_netns(in_x)
        finally:
            os.close(node_fd)
    finally:
        os.close(tun_fd)   # wireguard-go holds it now: the TUN goes when that process ends
    index = nss.index(ns, uplink.ifname)
    if index is None:
        raise DriverError(f"uplink {uplink.ifname} missing", errno=ENOENT)
    # ip link set vu… up; ip neigh replace ADDRESS lladdr MAC dev vu… nud permanent;
    # ip route replace ADDRESS/32 dev vu… table PORT; ip rule add pref 90 to ADDRESS ipproto udp dport PORT lookup PORT
    with kernel_errors(f"uplink {uplink.ifname}"):
        nss.rtnl(ns).batch([
            rtnl.link_set(index, up=True),
            rtnl.neigh_replace(index, uplink.address, uplink.inner_mac),
            rtnl.route_replace(uplink.address, 32, oif=index, table=uplink.port),
            rtnl.rule_add(UPLINK_RULE_PREF, table=uplink.port, dst=uplink.address, dst_len=32, ip_proto=17,
                          dport_range=(uplink.port, uplink.port)),
        ], tolerate=(EEXIST,))
    return proc


def set_inner_mtu(pid: int, ifname: str) -> None:
    """ip link set vw… mtu 1500 in the namespace of wireguard-go `pid`: it set its device (the veth there)
    to the tunnel's 1420 at start; the veth carries the tunnel's UDP, 60 bytes bigger."""
    def set_mtu() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            fcntl.ioctl(sock, SIOCSIFMTU, struct.pack("16si20x", ifname.encode(), UPLINK_MTU))
    try:
        in_netns_of(pid, set_mtu)
    except OSError as exc:
        raise DriverError(f"uplink MTU of {ifname}: {exc.strerror}", errno=exc.errno) from exc


def _groups(sock: socket.socket) -> list[int]:
    """getsockopt NETLINK_LIST_MEMBERSHIPS: the groups (1-based) the socket joined."""
    raw = sock.getsockopt(SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, 16)
    words = struct.unpack(f"{len(raw) // 4}I", raw[:len(raw) // 4 * 4])
    return [32 * i + bit + 1 for i, word in enumerate(words) for bit in range(32) if word >> bit & 1]


def mute_rtnetlink(pid: int) -> int:
    """Each rtnetlink socket of process `pid` leaves every multicast group it joined (pidfd_getfd: the
    same socket, ours for the call; setsockopt NETLINK_DROP_MEMBERSHIP); the module's docstring says why.
    Returns how many sockets were in a group. Best effort: a process that ended meanwhile, or a kernel or
    sandbox without pidfd_getfd, only costs the flat per-stitch time (logged), never the stitch."""
    muted = 0
    try:
        pidfd = os.pidfd_open(pid)
    except OSError as exc:
        if exc.errno != ESRCH:
            log.warning("cannot mute wireguard-go %d's rtnetlink listeners: %s", pid, exc.strerror)
        return 0
    try:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except FileNotFoundError:
            return 0
        for name in fds:
            try:
                if not os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:"):
                    continue
                fd = pidfd_getfd(pidfd, int(name))
            except OSError as exc:   # closed meanwhile, the process ended, or no pidfd_getfd here
                if exc.errno not in (ENOENT, ESRCH, 9):   # EBADF: closed meanwhile
                    log.warning("cannot mute wireguard-go %d's rtnetlink listeners: %s", pid, exc.strerror)
                    return muted
                continue
            try:
                sock = socket.socket(fileno=fd)   # the family and protocol read from the socket itself
            except OSError:
                os.close(fd)
                continue
            try:
                if sock.family != socket.AF_NETLINK or sock.proto != NETLINK_ROUTE:
                    continue
                groups = _groups(sock)
                for group in groups:
                    sock.setsockopt(SOL_NETLINK, NETLINK_DROP_MEMBERSHIP, group)
                muted += bool(groups)
            except OSError as exc:
                log.warning("cannot mute wireguard-go %d's rtnetlink listeners: %s", pid, exc.strerror)
            finally:
                sock.close()   # our duplicate only: the process keeps its socket
    finally:
        os.close(pidfd)
    return muted


LISTENERS = 2          # wireguard-go 0.0.2022x: its TUN's listener and, once bound, its route listener
MUTE_WAIT_S = 0.05


def mute_listeners(pid: int) -> None:
    """mute_rtnetlink until both of wireguard-go's listeners were muted (its route listener is made when the
    device is up and bound, which its first up event may do just after the configuration), for at most
    MUTE_WAIT_S; a wireguard-go with fewer listeners costs that wait once."""
    deadline = time.monotonic() + MUTE_WAIT_S
    muted = mute_rtnetlink(pid)
    while muted < LISTENERS and time.monotonic() < deadline:
        time.sleep(0.005)
        muted += mute_rtnetlink(pid)


# --- the node's side -------------------------------------------------------------------------

def _rule(uplink: Uplink) -> dict:
    return {"priority": UPLINK_RULE_PREF, "table": uplink.port, "dst": uplink.address, "dst_len": 32,
            "ip_proto": 17, "dport_range": f"{uplink.port}:{uplink.port}"}


def remove_node_side(ipr, uplink: Uplink) -> bool:
    """ip rule del pref 90 … lookup PORT; ip link del vu… (its route and neighbour go with it)."""
    changed = False
    with kernel_errors(f"remove uplink {uplink.ifname}"):
        with tolerate(ENOENT, ESRCH):
            ipr.rule("del", **_rule(uplink))
            changed = True
        with tolerate(ENOENT, 19):   # ENODEV
            ipr.link("del", ifname=uplink.ifname)
            changed = True
    return changed


def ensure_node_base(ipr, ns: str) -> None:
    """Once per node: `lookup local` from pref 0 to pref 99 (ip rule add pref 99 lookup local; ip rule del
    pref 0 lookup local), so the uplink rules at pref 90 see the tunnels' UDP to the node's own address
    first; and sysctl net.ipv4.conf.all.accept_local=1: what comes out of an uplink has that address as
    its source."""
    with kernel_errors(f"uplink rules in {ns}"):
        with tolerate(EEXIST):
            ipr.rule("add", priority=LOCAL_RULE_PREF, table=RT_TABLE_LOCAL)
        with tolerate(ENOENT, ESRCH):
            ipr.rule("del", priority=0, table=RT_TABLE_LOCAL)

    def accept_local() -> None:
        with open("/proc/sys/net/ipv4/conf/all/accept_local", "w") as handle:
            handle.write("1")
    in_netns(ns, accept_local)
