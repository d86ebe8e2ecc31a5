"""A small rtnetlink client for the writes of a fresh stitch: messages encoded here, sent as one batch
per step, every one acked. pyroute2 (kernel.Namespaces) stays for reads and for ensure-style repairs;
it costs about 1 ms of Python per request, this about 0.05 ms, and a new stitch makes ~30 requests.

A socket belongs to the namespace of the thread that opened it, whichever thread uses it later.
"""

from __future__ import annotations

import os
import socket
import struct

from pyroute2.netlink.exceptions import NetlinkError

NLM_F_REQUEST, NLM_F_ACK, NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x100, 0x200, 0x400
RTM_NEWLINK, RTM_NEWADDR, RTM_NEWROUTE, RTM_NEWNEIGH, RTM_NEWRULE = 16, 20, 24, 28, 32
IFF_UP = 0x1
NUD_PERMANENT = 0x80
RTPROT_STATIC, RTN_UNICAST, RTN_UNREACHABLE, RTNH_F_ONLINK = 4, 1, 7, 4
FR_ACT_TO_TBL, FR_ACT_UNREACHABLE = 1, 7


def attr(kind: int, payload: bytes) -> bytes:
    size = 4 + len(payload)
    return struct.pack("HH", size, kind) + payload + b"\0" * ((4 - size % 4) % 4)


def _u32(value: int) -> bytes:
    return struct.pack("I", value)


def _ip(address: str) -> bytes:
    return socket.inet_aton(address)


def _mac(address: str) -> bytes:
    return bytes.fromhex(address.replace(":", ""))


Message = tuple[int, int, bytes]   # (type, flags besides REQUEST|ACK, body)


def link_set(index: int, up: bool | None = None, mtu: int | None = None) -> Message:
    """ip link set dev INDEX [mtu M] [up|down]"""
    flags = IFF_UP if up else 0
    change = IFF_UP if up is not None else 0
    body = struct.pack("BxHiII", socket.AF_UNSPEC, 0, index, flags, change)
    if mtu is not None:
        body += attr(4, _u32(mtu))   # IFLA_MTU
    return RTM_NEWLINK, 0, body


def link_no_ipv6_addresses(index: int) -> Message:
    """ip link set dev INDEX addrgenmode none: no IPv6 link-local address when it comes up, so no DAD,
    router solicitations or their timers (IFLA_AF_SPEC{AF_INET6{IFLA_INET6_ADDR_GEN_MODE}}; the kernel
    takes it on an existing link only, not in the message that makes it)."""
    inet6 = attr(8, struct.pack("B", 1))   # IFLA_INET6_ADDR_GEN_MODE = IN6_ADDR_GEN_MODE_NONE
    return RTM_NEWLINK, 0, struct.pack("BxHiII", socket.AF_UNSPEC, 0, index, 0, 0) + attr(26, attr(socket.AF_INET6, inet6))


def _link_attrs(ifname: str, mac: str | None, mtu: int | None) -> bytes:
    out = attr(3, ifname.encode() + b"\0")   # IFLA_IFNAME
    if mtu is not None:
        out += attr(4, _u32(mtu))            # IFLA_MTU
    if mac is not None:
        out += attr(1, _mac(mac))            # IFLA_ADDRESS
    return out


def veth_add(ifname: str, mac: str | None, mtu: int | None, peer: str, peer_mac: str | None, peer_mtu: int | None,
             peer_ns_fd: int | None = None, up: bool = False) -> Message:
    """ip link add IFNAME [address MAC] [mtu M] [up] type veth peer name PEER [address MAC] [mtu M] [netns FD]
    (the peer is made down: a veth cannot open before both ends exist)."""
    peer_body = struct.pack("BxHiII", socket.AF_UNSPEC, 0, 0, 0, 0) + _link_attrs(peer, peer_mac, peer_mtu)
    if peer_ns_fd is not None:
        peer_body += attr(28, _u32(peer_ns_fd))   # IFLA_NET_NS_FD
    info = attr(1, b"veth\0") + attr(2, attr(1, peer_body))   # IFLA_INFO_KIND, IFLA_INFO_DATA{VETH_INFO_PEER}
    flags = IFF_UP if up else 0
    return RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, (struct.pack("BxHiII", socket.AF_UNSPEC, 0, 0, flags, flags)
                                                    + _link_attrs(ifname, mac, mtu) + attr(18, info))


def addr_add(index: int, address: str, prefixlen: int) -> Message:
    """ip addr add ADDRESS/PREFIXLEN dev INDEX"""
    return RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, (struct.pack("BBBBI", socket.AF_INET, prefixlen, 0, 0, index)
                                                    + attr(2, _ip(address)) + attr(1, _ip(address)))


def neigh_replace(index: int, address: str, mac: str) -> Message:
    """ip neigh replace ADDRESS lladdr MAC dev INDEX nud permanent"""
    return RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, (
        struct.pack("BxxxiHBB", socket.AF_INET, index, NUD_PERMANENT, 0, 0) + attr(1, _ip(address))
        + attr(2, _mac(mac)))


def route_replace(dst: str, dst_len: int, oif: int | None = None, table: int = 254, gateway: str | None = None,
                  onlink: bool = False, prefsrc: str | None = None, mtu: int | None = None,
                  unreachable: bool = False) -> Message:
    """ip route replace [unreachable] DST/LEN [via GW [onlink]] [dev OIF] [src PREFSRC] [mtu M] table T"""
    body = struct.pack("BBBBBBBBI", socket.AF_INET, dst_len, 0, 0, table if table < 256 else 252, RTPROT_STATIC,
                       0, RTN_UNREACHABLE if unreachable else RTN_UNICAST, RTNH_F_ONLINK if onlink else 0)
    body += attr(15, _u32(table))              # RTA_TABLE
    if dst_len:
        body += attr(1, _ip(dst))              # RTA_DST
    if oif is not None:
        body += attr(4, _u32(oif))             # RTA_OIF
    if gateway:
        body += attr(5, _ip(gateway))          # RTA_GATEWAY
    if prefsrc:
        body += attr(7, _ip(prefsrc))          # RTA_PREFSRC
    if mtu:
        body += attr(8, attr(2, _u32(mtu)))    # RTA_METRICS{RTAX_MTU}
    return RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, body


def rule_add(priority: int, table: int | None = None, unreachable: bool = False, iifname: str | None = None,
             dst: str | None = None, dst_len: int = 0, ip_proto: int | None = None,
             dport_range: tuple[int, int] | None = None) -> Message:
    """ip rule add pref P [iif NAME] [to DST/LEN] [ipproto N] [dport A-B] lookup T | unreachable"""
    action = FR_ACT_UNREACHABLE if unreachable else FR_ACT_TO_TBL
    body = struct.pack("BBBBBBBBI", socket.AF_INET, dst_len if dst else 0, 0, 0, 0, 0, 0, action, 0)
    body += attr(6, _u32(priority))            # FRA_PRIORITY
    if table is not None and not unreachable:
        body += attr(15, _u32(table))          # FRA_TABLE
    if iifname:
        body += attr(3, iifname.encode() + b"\0")   # FRA_IIFNAME
    if dst:
        body += attr(1, _ip(dst))              # FRA_DST
    if ip_proto is not None:
        body += attr(22, struct.pack("B", ip_proto))   # FRA_IP_PROTO
    if dport_range is not None:
        body += attr(24, struct.pack("HH", *dport_range))   # FRA_DPORT_RANGE
    return RTM_NEWRULE, NLM_F_CREATE | NLM_F_EXCL, body


class Rtnl:
    """A raw NETLINK_ROUTE socket of the calling thread's namespace."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
        self.sock.bind((0, 0))
        self.seq = 0

    def batch(self, messages: list[Message], tolerate: tuple[int, ...] = ()) -> None:
        """Send the messages in one write; wait for every ack; raise NetlinkError for the first that failed
        with an errno not in `tolerate` (the kernel runs them in order, each whether or not one failed)."""
        if not messages:
            return
        data, pending = b"", {}
        for kind, flags, body in messages:
            self.seq += 1
            pending[self.seq] = None
            data += struct.pack("IHHII", 16 + len(body), kind, flags | NLM_F_REQUEST | NLM_F_ACK, self.seq, 0) + body
        self.sock.send(data)
        first_error = None
        while pending:
            reply = self.sock.recv(1 << 16)
            offset = 0
            while offset + 16 <= len(reply):
                length, kind, _, seq, _ = struct.unpack_from("IHHII", reply, offset)
                if kind == 2 and seq in pending:   # NLMSG_ERROR: error 0 is the ack
                    del pending[seq]
                    code = -struct.unpack_from("i", reply, offset + 16)[0]
                    if code and code not in tolerate and first_error is None:
                        first_error = code
                offset += max((length + 3) & ~3, 16)
        if first_error is not None:
            raise NetlinkError(first_error, os.strerror(first_error))

    def close(self) -> None:
        self.sock.close()
