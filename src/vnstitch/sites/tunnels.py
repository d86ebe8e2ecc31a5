"""Encrypted tunnels between sites: one WireGuard device per stitch across sites in each border namespace
(docs/SITES.md, "Stitches across sites").

This kernel has no WireGuard module, so each end is a `wireguard-go` process (own session: it outlives a
route-manager restart, which adopts it by its UAPI socket) whose TUN and UDP socket are in the site's
namespace. Its private key is a 0600 file in the route manager's state dir, never in argv.

The border node routes between the local network's bridge and the tunnel: the far network's prefix is
routed into the tunnel, the bridge answers ARP for it (proxy ARP, so members need only an on-link route),
and an nftables table of the namespace forwards, of what enters or leaves a tenant's bridge or a tunnel,
exactly the pairs of prefixes of live tunnels (nothing else is routed between tenants' bridges, the hub and
the tunnels, and nothing from a bridge reaches the border itself).
"""

from __future__ import annotations

import base64
import errno as errno_codes
import ipaddress
import json
import os
import socket
import subprocess
import threading
import zlib
from dataclasses import dataclass

from vnstitch.drivers.linux import keys, nft, wireguard
from vnstitch.drivers.linux.kernel import (Namespaces, in_netns, kernel_errors, pid_alive, set_sysctls, tolerate,
                                           wait_until)
from vnstitch.drivers.linux.layout import bridge_ifname
from vnstitch.errors import DriverError, VnstitchError

PREFIX = "ws"
TABLE = "vnstitch_sites"
PORT_BASE, PORT_SPAN = 40000, 20000   # the ends' UDP ports (the border's other sockets are TCP: BGP, consent API)
KEEPALIVE_S = 5   # the initiator's end keeps the session (and a peer's NAT state) warm


def tunnel_ifname(netns: str, site: str, stitch_key: str) -> str:
    """ws + 8 hex digits: unique on the machine, as wireguard-go's UAPI socket path is (/var/run/wireguard)."""
    return f"{PREFIX}{zlib.crc32(f'{netns}|{site}|{stitch_key}'.encode()):08x}"


@dataclass(frozen=True)
class Route:
    """What one tunnel carries: the local network's prefix on its bridge, the far prefix in the tunnel."""

    ifname: str
    vnid: int           # the local network's VNID (its bridge br<VNID>)
    local_cidr: str
    remote_cidr: str


def anycast_mac(vnid: int) -> str:
    """The MAC every site's routing bridge of a VNID answers ARP with (a distributed anycast gateway, as EVPN
    does, RFC 9135): a member's cached entry stays right when its stitch moves to another site's border."""
    return f"02:76:73:{vnid >> 16 & 0xff:02x}:{vnid >> 8 & 0xff:02x}:{vnid & 0xff:02x}"


def site_mac(netns: str, vnid: int) -> str:
    """A bridge's own MAC when it routes no tunnel: locally administered, unique per namespace and VNID."""
    digest = zlib.crc32(f"{netns}|{vnid}".encode())
    return f"02:76:74:{digest >> 16 & 0xff:02x}:{digest >> 8 & 0xff:02x}:{digest & 0xff:02x}"


def tunnel_port(ifname: str) -> int:
    """The first UDP port tried for an end: PORT_BASE + the name's hash mod PORT_SPAN."""
    return PORT_BASE + zlib.crc32(ifname.encode()) % PORT_SPAN


def public_key_hex(text: str) -> str:
    """A WireGuard public key as given (base64 of 32 bytes) → hex for the UAPI; ValueError otherwise."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (ValueError, TypeError):
        raise ValueError("the public key is not base64") from None
    if len(raw) != 32:
        raise ValueError("the public key is not 32 bytes")
    return raw.hex()


def overlap(a: str, b: str) -> bool:
    return ipaddress.ip_network(a).overlaps(ipaddress.ip_network(b))


class SiteTunnels:
    """The WireGuard ends of one site's border namespace. Thread-safe: one lock per end for its slow work
    (starting wireguard-go, configuring it), one for the routes and the table they make."""

    def __init__(self, netns: str, state_dir: str):
        self.netns = netns
        self.dir = os.path.join(state_dir, "tunnels")
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        self.nss = Namespaces()
        self._lock = threading.RLock()              # _routes, the table, the bridges, the netlink socket
        self._end_locks: dict[str, threading.Lock] = {}
        self._base_done = False
        self._routes: dict[str, Route] = {}   # ifname → what it carries (the nftables table is made from it)
        for ifname in self.present():          # an earlier run's (kept across restarts beside the key)
            try:
                with open(self._path(ifname, "route")) as handle:
                    self._routes[ifname] = Route(**json.load(handle))
            except (OSError, ValueError, TypeError):
                pass
        self._table: str | None = None

    # paths ------------------------------------------------------------------------------------
    def _path(self, ifname: str, ext: str) -> str:
        return os.path.join(self.dir, f"{ifname}.{ext}")

    def present(self) -> set[str]:
        """The tunnels this route manager made (a key file each), whether or not their process still runs."""
        return {name[:-4] for name in os.listdir(self.dir) if name.startswith(PREFIX) and name.endswith(".key")}

    def _end_lock(self, ifname: str) -> threading.Lock:
        with self._lock:
            return self._end_locks.setdefault(ifname, threading.Lock())

    # one end ------------------------------------------------------------------------------------
    def identity(self, ifname: str) -> tuple[str, int]:
        """The end's public key (base64) and UDP port, without starting anything: the key is made and kept in a
        0600 file on first use; the port is the first from tunnel_port() that no other end here has and that is
        free in the namespace, kept beside the key."""
        with self._end_lock(ifname):
            private = keys.read_private_key(self._path(ifname, "key"))
            if private is None:
                private = keys.generate_private_key()
                keys.write_private_key(self._path(ifname, "key"), private)
            return keys.to_base64(keys.public_key(private)), self.port(ifname)

    def port(self, ifname: str) -> int:
        """The end's UDP port: the one kept beside its key, else the first free one (then kept)."""
        port = _read_int(self._path(ifname, "port"))
        if port:
            return port
        with self._lock:
            taken = {_read_int(self._path(other, "port")) for other in self.present() if other != ifname}
            for step in range(PORT_SPAN):
                port = PORT_BASE + (tunnel_port(ifname) - PORT_BASE + step) % PORT_SPAN
                if port not in taken and (not self._netns_alive() or in_netns(self.netns, lambda: _udp_free(port))):
                    break
            with open(self._path(ifname, "port"), "w") as handle:
                handle.write(str(port))
            return port

    def _up(self, ifname: str) -> bytes:
        """wireguard-go running for the end (started or adopted), its device up; returns the private key."""
        private = keys.read_private_key(self._path(ifname, "key"))
        if private is None:
            raise DriverError(f"the key of {ifname} is gone ({self._path(ifname, 'key')})")
        pid = wireguard.socket_pid(ifname)
        if pid is None:
            self._start(ifname)
        elif _read_int(self._path(ifname, "pid")) != pid:   # adopted (an earlier run's): recorded for teardown
            with open(self._path(ifname, "pid"), "w") as handle:
                handle.write(str(pid))
        index = self.nss.index(self.netns, ifname)
        if index is None:
            raise DriverError(f"wireguard-go for {ifname} answers but its device is not in {self.netns}")
        with self._lock, kernel_errors(f"ip link set {ifname} up mtu {wireguard.TUNNEL_MTU}"):
            self.nss(self.netns).link("set", index=index, state="up", mtu=wireguard.TUNNEL_MTU)
        return private

    def _start(self, ifname: str) -> None:
        """ip netns exec NS wireguard-go -f IF, in its own session (it outlives the route manager); killed
        again if it does not answer in time (no second one is ever started beside it)."""
        stale = wireguard.socket_path(ifname)
        if os.path.exists(stale):
            os.unlink(stale)
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "LOG_LEVEL": "error",
               "WG_PROCESS_FOREGROUND": "1", wireguard.NETNS_ENV: self.netns}
        log = open(self._path(ifname, "log"), "ab")
        try:
            proc = in_netns(self.netns, lambda: subprocess.Popen(
                ["wireguard-go", "-f", ifname], env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True))
        except OSError as exc:
            raise DriverError(f"cannot start wireguard-go for {ifname}: {exc.strerror}", errno=exc.errno) from exc
        finally:
            log.close()
        with open(self._path(ifname, "pid"), "w") as handle:
            handle.write(str(proc.pid))
        try:
            wireguard.wait_ready(ifname, proc, timeout_s=5.0, log_path=self._path(ifname, "log"))
        except VnstitchError:
            proc.kill()
            proc.wait()
            raise

    def connect(self, route: Route, peer_public_b64: str, endpoint: str, initiator: bool) -> None:
        """The end's one peer (the other site's end) and the routing through the border node:
        wg set IF peer PUB endpoint E allowed-ips REMOTE persistent-keepalive 5 (0 at the consenting end: it
        is built first, and a handshake it sent before the initiator listened would hold the first packets
        for wireguard-go's 5 s retry; the initiator's end starts the handshake as soon as it is configured);
        ip link set brVNID address ANYCAST; ip route replace REMOTE dev IF; ip route replace LOCAL dev brVNID;
        proxy ARP on brVNID; then the forwarding table of every live tunnel.

        The route is recorded before the kernel is touched, so a failure half-way is undone by remove()."""
        public_hex = public_key_hex(peer_public_b64)
        with self._lock:
            self._check_free(route)
            if self._routes.get(route.ifname) != route:
                with open(self._path(route.ifname, "route"), "w") as handle:
                    json.dump(route.__dict__, handle)
            self._routes[route.ifname] = route
        with self._end_lock(route.ifname):
            private = self._up(route.ifname)
            config = wireguard.read_config(route.ifname)
            peer, port = config["peer"], self.port(route.ifname)
            if (config["private_key"], config["listen_port"], peer["public_key"], peer["endpoint"],
                    peer["allowed_ips"]) != (private.hex(), port, public_hex, endpoint, [route.remote_cidr]):
                wireguard.configure(route.ifname, private.hex(), port, public_hex, endpoint, [route.remote_cidr],
                                    keepalive_s=KEEPALIVE_S if initiator else 0)
            self._wait_bound(route.ifname)
        with self._lock:
            self._route(route)
            self._write_table()

    def _check_free(self, route: Route) -> None:
        """Refuse a far prefix some route of the namespace not made by a tunnel already covers (a connected
        network, the substrate's): `ip route replace` would take it over."""
        remote = ipaddress.ip_network(route.remote_cidr)
        with kernel_errors(f"ip route show in {self.netns}"):
            routes = self.nss(self.netns).get_routes(family=socket.AF_INET, table=254)
        ours = {self.nss.index(self.netns, r.ifname) for r in self._routes.values()} - {None}
        for entry in routes:
            dst = entry.get_attr("RTA_DST") or "0.0.0.0"
            network = ipaddress.ip_network(f"{dst}/{entry['dst_len']}", strict=False)
            oif = entry.get_attr("RTA_OIF")
            if network.overlaps(remote) and oif not in ours and not (network.prefixlen == 0 and remote.prefixlen):
                raise DriverError(f"{remote} overlaps {network}, a route of {self.netns} that no stitch made",
                                  errno=errno_codes.EEXIST)

    def _route(self, route: Route) -> None:
        ipr = self.nss(self.netns)
        bridge = bridge_ifname(route.vnid)
        self._base()
        tunnel_index, bridge_index = self.nss.index(self.netns, route.ifname), self.nss.index(self.netns, bridge)
        if tunnel_index is None or bridge_index is None:
            raise DriverError(f"{route.ifname} or {bridge} is missing in {self.netns}", errno=errno_codes.ENODEV)
        mac = anycast_mac(route.vnid)
        with kernel_errors(f"ip link set {bridge} address {mac}"):
            if ipr.get_links(bridge_index)[0].get_attr("IFLA_ADDRESS") != mac:
                ipr.link("set", index=bridge_index, address=mac)
        remote, local = ipaddress.ip_network(route.remote_cidr), ipaddress.ip_network(route.local_cidr)
        with kernel_errors(f"ip route replace {remote} dev {route.ifname}"):
            ipr.route("replace", dst=str(remote.network_address), dst_len=remote.prefixlen, oif=tunnel_index)
        with kernel_errors(f"ip route replace {local} dev {bridge}"):
            ipr.route("replace", dst=str(local.network_address), dst_len=local.prefixlen, oif=bridge_index,
                      scope=253)   # scope link: the members are on the bridge
        set_sysctls(self.netns, {f"net.ipv4.conf.{bridge}.proxy_arp": 1, f"net.ipv4.neigh.{bridge}.proxy_delay": 0})

    def _wait_bound(self, ifname: str, timeout_s: float = 2.0) -> None:
        """Until wireguard-go listens on the end's UDP port: it takes the device up (and binds) from its own
        netlink event, after the UAPI call returned; a handshake arriving before that is lost, and its sender
        waits its 5 s retry. So a consent is answered, and the initiator's first packet sent, once it listens."""
        port = f"{self.port(ifname):04X}"

        def read() -> list[str]:   # /proc/net/udp{,6} of the thread's namespace: local_address is HEXIP:HEXPORT
            lines = []
            for name in ("udp", "udp6"):
                try:
                    with open(f"/proc/thread-self/net/{name}") as handle:
                        lines += handle.read().splitlines()[1:]
                except OSError:
                    pass
            return lines

        def bound() -> bool:
            return any(len(f := line.split()) > 1 and f[1].rsplit(":", 1)[-1] == port for line in in_netns(self.netns, read))
        wait_until(bound, timeout_s, f"wireguard-go {ifname} to listen on UDP {self.port(ifname)}", interval_s=0.005)

    def remove(self, ifname: str) -> None:
        """Stop the end's wireguard-go (its device and routes go with it), forget its key and its rules."""
        with self._end_lock(ifname):
            pid = wireguard.socket_pid(ifname) or _read_int(self._path(ifname, "pid"))
            if pid is not None and pid_alive(pid, ifname):
                wireguard.stop(pid, ifname)
            with self._lock:
                index = self.nss.index(self.netns, ifname) if self._netns_alive() else None
                if index is not None:
                    with kernel_errors(f"ip link del {ifname}"), tolerate(errno_codes.ENODEV):
                        self.nss(self.netns).link("del", index=index)   # what a dead process left
            for ext in ("key", "pid", "log", "route", "port"):
                try:
                    os.unlink(self._path(ifname, ext))
                except FileNotFoundError:
                    pass
            try:
                os.unlink(wireguard.socket_path(ifname))
            except OSError:
                pass
        with self._lock:
            gone = self._routes.pop(ifname, None)
            if gone is not None and self._netns_alive():
                self._write_table()
                if not any(r.vnid == gone.vnid for r in self._routes.values()):
                    self._unroute_bridge(gone)
            self._end_locks.pop(ifname, None)

    def _unroute_bridge(self, route: Route) -> None:
        """The VNID's last tunnel here is gone: its bridge stops answering ARP and takes back a MAC of this
        site's own (a bridge keeping the anycast MAC would swallow the frames members send to the gateway
        that another site's border still is)."""
        bridge = bridge_ifname(route.vnid)
        index = self.nss.index(self.netns, bridge)
        if index is None:
            return
        set_sysctls(self.netns, {f"net.ipv4.conf.{bridge}.proxy_arp": 0})
        local = ipaddress.ip_network(route.local_cidr)
        with kernel_errors(f"ip route del {local} dev {bridge}"), tolerate(errno_codes.ESRCH, errno_codes.ENOENT):
            self.nss(self.netns).route("del", dst=str(local.network_address), dst_len=local.prefixlen, oif=index)
        with kernel_errors(f"ip link set {bridge} address"):
            self.nss(self.netns).link("set", index=index, address=site_mac(self.netns, route.vnid))

    def _netns_alive(self) -> bool:
        return os.path.exists(os.path.join("/run/netns", self.netns))

    # the border's forwarding ------------------------------------------------------------------------
    def _base(self) -> None:
        if not self._base_done:
            set_sysctls(self.netns, {"net.ipv4.ip_forward": 1})
            self._base_done = True

    def _write_table(self) -> None:
        """One nftables transaction: the table made anew with a forward rule pair per live tunnel, then a drop of
        anything else entering or leaving a tenant's bridge or a tunnel (other forwarding in the namespace is
        not this table's business), and no IP from a tenant's bridge to the border itself. No tunnel left: no
        table."""
        if not self._routes:
            if self._table != "":
                nft.run(self.netns, f"table inet {TABLE}\ndelete table inet {TABLE}\n", what="site tunnels' table")
                self._table = ""
            return
        rules = []
        for route in sorted(self._routes.values(), key=lambda r: r.ifname):
            bridge = bridge_ifname(route.vnid)
            rules.append(f'iifname "{bridge}" oifname "{route.ifname}" ip saddr {route.local_cidr} '
                         f'ip daddr {route.remote_cidr} accept')
            rules.append(f'iifname "{route.ifname}" oifname "{bridge}" ip saddr {route.remote_cidr} '
                         f'ip daddr {route.local_cidr} accept')
        rules += ['iifname "br*" drop', 'oifname "br*" drop', f'iifname "{PREFIX}*" drop', f'oifname "{PREFIX}*" drop']
        body = "\n".join(f"    {r}" for r in rules)
        table = (f"table inet {TABLE} {{\n  chain forward {{\n    type filter hook forward priority 0; policy accept;\n"
                 f"{body}\n  }}\n  chain input {{\n    type filter hook input priority 0; policy accept;\n"
                 f'    iifname "br*" meta nfproto ipv4 drop\n  }}\n}}\n')
        if table == self._table:
            return
        nft.run(self.netns, f"table inet {TABLE}\ndelete table inet {TABLE}\n{table}", what="site tunnels' table")
        self._table = table

    def status(self) -> dict[str, dict]:
        out = {}
        for ifname in sorted(self.present()):
            entry: dict = {"running": wireguard.socket_pid(ifname) is not None}
            if entry["running"]:
                try:
                    handshakes = wireguard.peers(ifname)
                    entry["handshake"] = max((h["handshake"][0] for h in handshakes.values()), default=0)
                except VnstitchError as exc:
                    entry["error"] = str(exc)
            out[ifname] = entry
        return out

    def close(self) -> None:
        self.nss.close()


def _udp_free(port: int) -> bool:
    """Can a UDP socket bind the port (v4 and v6) in the calling thread's namespace?"""
    for family, address in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as probe:
                probe.bind((address, port))
        except OSError as exc:
            if exc.errno == errno_codes.EADDRINUSE:
                return False
    return True


def _read_int(path: str) -> int | None:
    try:
        with open(path) as handle:
            return int(handle.read())
    except (OSError, ValueError):
        return None


__all__ = ["Route", "SiteTunnels", "anycast_mac", "overlap", "public_key_hex", "tunnel_ifname", "tunnel_port"]
