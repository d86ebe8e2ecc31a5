"""Netlink sockets per network namespace, tool invocation, and kernel errors as DriverError."""

from __future__ import annotations

import ctypes
import errno as errno_codes
import fcntl
import os
import socket
import struct
import subprocess
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar

from pyroute2 import IPRoute, config as pyroute2_config, netns
from pyroute2.netlink.exceptions import NetlinkError

from vnstitch.errors import DriverError

# pyroute2 makes a namespace (and opens a socket in one) in a forked child and waits 2 s for its answer; on
# two loaded cores a fork of a large process took longer ("no response from the child"), so wait longer.
if hasattr(pyroute2_config, "default_communicate_timeout"):   # pyroute2 ≥ 0.9
    pyroute2_config.default_communicate_timeout = max(pyroute2_config.default_communicate_timeout, 15)

NETNS_DIR = "/var/run/netns"
SIOCGIFINDEX = 0x8933
T = TypeVar("T")


def netns_exists(name: str) -> bool:
    return os.path.exists(os.path.join(NETNS_DIR, name))


def list_netns(prefix: str) -> list[str]:
    try:
        return sorted(n for n in os.listdir(NETNS_DIR) if n.startswith(prefix))
    except FileNotFoundError:
        return []


@contextmanager
def kernel_errors(what: str) -> Iterator[None]:
    """Turn netlink/OS failures into DriverError, keeping the errno."""
    try:
        yield
    except DriverError:
        raise
    except NetlinkError as exc:
        raise DriverError(f"{what}: {os.strerror(exc.code) if exc.code else exc}", errno=exc.code) from exc
    except OSError as exc:
        raise DriverError(f"{what}: {exc.strerror or exc}", errno=exc.errno) from exc


def tolerate(*codes: int):
    """Context manager swallowing netlink errors with the given errnos (EEXIST on add, ENOENT on del)."""

    @contextmanager
    def _cm() -> Iterator[None]:
        try:
            yield
        except NetlinkError as exc:
            if exc.code not in codes:
                raise
    return _cm()


EEXIST = errno_codes.EEXIST
ENOENT = errno_codes.ENOENT
ESRCH = errno_codes.ESRCH
ENODEV = errno_codes.ENODEV
EADDRNOTAVAIL = errno_codes.EADDRNOTAVAIL


class Namespaces:
    """One cached rtnetlink socket per namespace (opening one costs a fork in pyroute2)."""

    def __init__(self) -> None:
        self._sockets: dict[str, IPRoute] = {}
        self._ioctl: dict[str, socket.socket] = {}
        self._rtnl: dict = {}

    def __call__(self, name: str) -> IPRoute:
        sock = self._sockets.get(name)
        if sock is None:
            if not netns_exists(name):
                raise DriverError(f"network namespace {name} does not exist", errno=errno_codes.ENOENT)
            with kernel_errors(f"open netlink socket in {name}"):
                # groups=0: no broadcasts (every link, route and neighbour change of the namespace would
                # be queued to it and decoded by pyroute2 while it waits for its own answers)
                sock = IPRoute(netns=name, groups=0)
            self._sockets[name] = sock
        return sock

    def rtnl(self, name: str):
        """A raw rtnetlink socket in the namespace (rtnl.py: batched writes of a fresh stitch)."""
        from vnstitch.drivers.linux.rtnl import Rtnl
        sock = self._rtnl.get(name)
        if sock is None:
            if not netns_exists(name):
                raise DriverError(f"network namespace {name} does not exist", errno=errno_codes.ENOENT)
            sock = self._rtnl[name] = in_netns(name, Rtnl)
        return sock

    def index(self, name: str, ifname: str) -> int | None:
        """ip -n NAME link show IFNAME → its index, or None: SIOCGIFINDEX on a socket kept in the namespace
        (a netlink lookup through pyroute2 costs about 50 times more)."""
        sock = self._ioctl.get(name)
        if sock is None:
            if not netns_exists(name):
                raise DriverError(f"network namespace {name} does not exist", errno=errno_codes.ENOENT)
            sock = self._ioctl[name] = in_netns(name, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        try:
            answer = fcntl.ioctl(sock, SIOCGIFINDEX, struct.pack("16s24x", ifname.encode()))
        except OSError as exc:
            if exc.errno == errno_codes.ENODEV:
                return None
            raise DriverError(f"link {ifname} in {name}: {exc.strerror}", errno=exc.errno) from exc
        return struct.unpack_from("i", answer, 16)[0]

    def create(self, name: str) -> bool:
        """ip netns add NAME (no-op when it exists); True when created."""
        if netns_exists(name):
            return False
        with kernel_errors(f"ip netns add {name}"):
            netns.create(name)
        return True

    def remove(self, name: str) -> bool:
        """ip netns del NAME; True when it existed."""
        self.forget(name)
        if not netns_exists(name):
            return False
        with kernel_errors(f"ip netns del {name}"):
            netns.remove(name)
        return True

    def forget(self, name: str) -> None:
        sock = self._sockets.pop(name, None)
        if sock is not None:
            sock.close()
        for cache in (self._ioctl, self._rtnl):
            other = cache.pop(name, None)
            if other is not None:
                other.close()

    def close(self) -> None:
        for name in list(self._sockets) + list(self._ioctl) + list(self._rtnl):
            self.forget(name)


def ifindex(ipr: IPRoute, ifname: str) -> int | None:
    """Index of a link by name in the socket's namespace, or None."""
    found = ipr.link_lookup(ifname=ifname)
    return found[0] if found else None


def link_attrs(ipr: IPRoute, index: int) -> dict:
    msg = ipr.link("get", index=index)[0]
    return {"ifname": msg.get("IFLA_IFNAME"), "mtu": msg.get("IFLA_MTU"), "master": msg.get("IFLA_MASTER"),
            "up": bool(msg["flags"] & 1), "operstate": msg.get("IFLA_OPERSTATE"),
            "kind": (msg.get(("IFLA_LINKINFO", "IFLA_INFO_KIND"))), "stats": msg.get("IFLA_STATS64"),
            "address": msg.get("IFLA_ADDRESS")}


def run_in(ns: str | None, argv: list[str], stdin: str | None = None, check: bool = True,
           what: str | None = None) -> subprocess.CompletedProcess:
    """Run a tool inside a namespace (`ip netns exec NS ...`); never pass secrets in argv."""
    full = (["ip", "netns", "exec", ns] if ns else []) + argv
    proc = subprocess.run(full, input=stdin, capture_output=True, text=True)
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise DriverError(f"{what or ' '.join(argv)}: {detail[-1] if detail else 'exit ' + str(proc.returncode)}",
                          errno=errno_codes.EIO)
    return proc


CLONE_NEWNET = 0x40000000
SYS_PIDFD_GETFD = 438             # the same number on every architecture (Linux 5.6)
_libc = ctypes.CDLL(None, use_errno=True)


def pidfd_getfd(pidfd: int, target_fd: int) -> int:
    """pidfd_getfd(2): a duplicate, in this process, of the process's file `target_fd` (OSError on failure)."""
    fd = _libc.syscall(SYS_PIDFD_GETFD, pidfd, target_fd, 0)
    if fd < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return fd


def _in_thread(enter: Callable[[], None], fn: Callable[[], T], name: str) -> T:
    """fn() in a fresh thread that first ran enter() (setns/unshare are per thread); its result or
    exception handed back to the caller's thread."""
    result: dict = {}

    def body() -> None:
        try:
            enter()
            result["value"] = fn()
        except BaseException as exc:  # handed to the caller's thread below
            result["error"] = exc

    thread = threading.Thread(target=body, name=name, daemon=True)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


def _setns_path(path: str, what: str) -> Callable[[], None]:
    def enter() -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise DriverError(f"network namespace {what}: {exc.strerror}", errno=exc.errno) from exc
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                code = ctypes.get_errno()
                raise DriverError(f"setns {what}: {os.strerror(code)}", errno=code)
        finally:
            os.close(fd)
    return enter


def in_netns(ns: str, fn: Callable[[], T]) -> T:
    """Run fn in a thread that joined namespace `ns` (setns is per thread): in-process `ip netns exec`.

    Children started from that thread (subprocess) are born in `ns` too.
    """
    return _in_thread(_setns_path(os.path.join(NETNS_DIR, ns), ns), fn, f"netns-{ns}")


def in_netns_of(pid: int, fn: Callable[[], T]) -> T:
    """Run fn in a thread that joined the network namespace of process `pid` (`nsenter -t PID -n`)."""
    return _in_thread(_setns_path(f"/proc/{pid}/ns/net", f"of pid {pid}"), fn, f"netns-pid-{pid}")


def in_new_netns(fn: Callable[[], T]) -> T:
    """Run fn in a thread that unshared a new, unnamed network namespace (`unshare -n`): it lives while a
    process or socket born in it does, and goes (with its devices) when the last one ends."""
    def enter() -> None:
        if _libc.unshare(CLONE_NEWNET) != 0:
            code = ctypes.get_errno()
            raise DriverError(f"unshare(CLONE_NEWNET): {os.strerror(code)}", errno=code)
    return _in_thread(enter, fn, "netns-new")


def run_batch(ns: str, tool: str, lines: list[str]) -> subprocess.CompletedProcess:
    """`ip|bridge -n NS -force -batch -`: many requests in one process, each line as on the command line,
    carrying on past a failing one. For bulk changes only: pyroute2 spends about 1 ms of Python encoding
    each message (2 ms with its answer), iproute2 about 0.1 ms. The caller reads the result back from the
    kernel and makes what is still missing one request at a time through pyroute2, where errors are told."""
    try:
        return subprocess.run([tool, "-n", ns, "-force", "-batch", "-"], input="\n".join(lines) + "\n",
                              capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DriverError(f"{tool} -batch in {ns}: {exc}", errno=errno_codes.EIO) from None


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.002) -> None:
    """Poll until the kernel shows the change; DriverError(ETIMEDOUT) otherwise."""
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return
        if time.monotonic() > deadline:
            raise DriverError(f"timed out after {timeout_s:g}s waiting for {what}", errno=errno_codes.ETIMEDOUT)
        time.sleep(interval_s)


def set_sysctls(ns: str, values: dict[str, str | int]) -> None:
    """ip netns exec NS sysctl -w k=v ... (one call for all keys)."""
    run_in(ns, ["sysctl", "-q", "-e", "-w"] + [f"{k}={v}" for k, v in values.items()], what=f"sysctl in {ns}")


def pid_alive(pid: int | None, needle: str | None = None) -> bool:
    """True when pid runs (not a zombie) and, if given, its command line contains needle."""
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            state = handle.read().rsplit(b")", 1)[1].split()[0]
        if state in (b"Z", b"X"):
            return False
        if needle is not None:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                return needle.encode() in handle.read()
        return True
    except (OSError, IndexError):
        return False
