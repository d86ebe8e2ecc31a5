"""wireguard-go processes and their UAPI socket (the protocol `wg` speaks), keys never in argv."""

from __future__ import annotations

import errno as errno_codes
import os
import signal
import socket
import subprocess
import time

from vnstitch.drivers.linux.kernel import pid_alive, wait_until
from vnstitch.errors import DriverError

SOCKET_DIR = "/var/run/wireguard"
NETNS_ENV = "VNSTITCH_NETNS"   # in each wireguard-go's environment: the namespace its TUN is in (`lab down` reads it)
TUNNEL_MTU = 1420  # 1500 substrate - 80 (IPv6-sized WireGuard overhead, as wg-quick assumes)


def socket_path(ifname: str) -> str:
    return os.path.join(SOCKET_DIR, f"{ifname}.sock")


def start(nss, ns: str, ifname: str, log_path: str, uplink) -> subprocess.Popen:
    """wireguard-go -f IFNAME (foreground, own session: survives the controller), in a network namespace
    of its own with the TUN in NS and its UDP through `uplink` (uplink.py: why, and how).

    Spawned from a thread in that namespace instead of through `ip netns exec`: one exec fewer.
    """
    from vnstitch.drivers.linux import uplink as uplink_mod
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "LOG_LEVEL": "error",
           "WG_PROCESS_FOREGROUND": "1", NETNS_ENV: ns}
    stale = socket_path(ifname)
    if os.path.exists(stale):
        os.unlink(stale)
    log = open(log_path, "ab")
    try:
        return uplink_mod.start(nss, ns, ifname, uplink, ["wireguard-go", "-f", ifname], env, log)
    except OSError as exc:
        raise DriverError(f"cannot start wireguard-go for {ifname}: {exc.strerror}", errno=exc.errno) from exc
    finally:
        log.close()


def _tail(path: str) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            handle.seek(max(0, handle.tell() - 2000))
            return handle.read().decode(errors="replace")
    except OSError:
        return ""


def wait_ready(ifname: str, proc: subprocess.Popen | None, timeout_s: float = 5.0, log_path: str = "") -> None:
    """Wait until the UAPI socket answers (the tun device exists by then)."""
    def ready() -> bool:
        if proc is not None and proc.poll() is not None:
            hint = ""
            if log_path and "too many open files" in _tail(log_path):
                hint = " (each wireguard-go takes an inotify instance: raise fs.inotify.max_user_instances)"
            raise DriverError(f"wireguard-go for {ifname} exited with {proc.returncode}{hint}",
                              errno=errno_codes.EMFILE if hint else errno_codes.ECHILD)
        try:
            uapi(ifname, "get=1\n\n", timeout_s=0.2)
            return True
        except DriverError:
            return False
    wait_until(ready, timeout_s, f"wireguard-go {ifname}", interval_s=0.001)


def signal_stop(pid: int | None, ifname: str) -> bool:
    """kill -TERM wireguard-go (only if the pid still is ours); True when it was running."""
    if not pid_alive(pid, needle=ifname):
        return False
    try:
        os.kill(pid, signal.SIGTERM)
        return True
    except ProcessLookupError:
        return False


def wait_stopped(pid: int | None, ifname: str, timeout_s: float = 3.0) -> None:
    """Wait for a signalled wireguard-go to exit (SIGKILL after timeout_s); remove its socket."""
    if pid:
        deadline = time.monotonic() + timeout_s
        while pid_alive(pid, needle=ifname) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.002)
        if pid_alive(pid, needle=ifname):
            os.kill(pid, signal.SIGKILL)
        _reap(pid)
    if os.path.exists(socket_path(ifname)):
        os.unlink(socket_path(ifname))


def stop(pid: int | None, ifname: str, timeout_s: float = 3.0) -> bool:
    """kill wireguard-go (only if the pid still is ours); True when something was stopped."""
    stopped = signal_stop(pid, ifname)
    wait_stopped(pid if stopped else None, ifname, timeout_s)
    return stopped


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def uapi(ifname: str, request: str, timeout_s: float = 2.0, raw: bool = False):
    """One UAPI exchange (`wg show`/`wg set` equivalent); returns key → values (`raw`: the answer's text,
    where the order of the lines tells which peer a value belongs to)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    try:
        sock.connect(socket_path(ifname))
        sock.sendall(request.encode())
        data = b""
        while not data.endswith(b"\n\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError as exc:
        raise DriverError(f"wireguard UAPI {ifname}: {exc.strerror or exc}", errno=exc.errno) from exc
    finally:
        sock.close()
    out: dict[str, list[str]] = {}
    for line in data.decode().splitlines():
        if "=" in line:
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(value)
    code = int(out.get("errno", ["0"])[-1])
    if code:
        raise DriverError(f"wireguard UAPI {ifname} refused the request", errno=code)
    return data.decode() if raw else out


def configure(ifname: str, private_hex: str, listen_port: int, peer_public_hex: str, endpoint: str,
              allowed_ips: list[str], keepalive_s: int = 25) -> None:
    """wg set IFNAME private-key FILE listen-port P peer PUB endpoint E allowed-ips A persistent-keepalive 25
    (`keepalive_s` 0: the device sends nothing until it has traffic or its keepalive is switched on)."""
    lines = ["set=1", f"private_key={private_hex}", f"listen_port={listen_port}", "replace_peers=true",
             f"public_key={peer_public_hex}", f"endpoint={endpoint}", f"persistent_keepalive_interval={keepalive_s}",
             "replace_allowed_ips=true"] + [f"allowed_ip={ip}" for ip in allowed_ips]
    uapi(ifname, "\n".join(lines) + "\n\n")


def set_keepalive(ifname: str, public_hex: str, keepalive_s: int = 25) -> None:
    """wg set IFNAME peer PUB persistent-keepalive 25 (only if that peer exists). Switched on from 0 on a
    device that is up, wireguard-go sends a keepalive at once: a handshake first when it has no session."""
    uapi(ifname, f"set=1\npublic_key={public_hex}\nupdate_only=true\npersistent_keepalive_interval={keepalive_s}\n\n")


def socket_pid(ifname: str) -> int | None:
    """The pid of the wireguard-go listening on IFNAME's UAPI socket (SO_PEERCRED of a connection to it),
    None when none answers: finds a process whose pid was never recorded (a crash right after its start)."""
    import struct
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(0.5)
    try:
        sock.connect(socket_path(ifname))
        pid, _, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
        return pid or None
    except OSError:
        return None
    finally:
        sock.close()


def renew_peer(ifname: str, public_hex: str, endpoint: str, allowed_ips: list[str]) -> None:
    """The peer removed and made again in one request: a fresh entry, whose keepalive handshakes at once
    (an entry whose initiation was dropped waits wireguard-go's 5 s rekey timeout to try again)."""
    lines = ["set=1", f"public_key={public_hex}", "remove=true", f"public_key={public_hex}", f"endpoint={endpoint}",
             "persistent_keepalive_interval=25", "replace_allowed_ips=true"] + [f"allowed_ip={ip}" for ip in allowed_ips]
    uapi(ifname, "\n".join(lines) + "\n\n")


def peers(ifname: str) -> dict[str, dict]:
    """wg show IFNAME peers: public key (hex) → its last handshake as (seconds, nanoseconds), 0 when none."""
    data = uapi(ifname, "get=1\n\n", raw=True)
    out: dict[str, dict] = {}
    current: dict | None = None
    for line in data.splitlines():
        key, _, value = line.partition("=")
        if key == "public_key":
            current = out.setdefault(value, {"handshake": (0, 0)})
        elif current is not None and key == "last_handshake_time_sec":
            current["handshake"] = (int(value), current["handshake"][1])
        elif current is not None and key == "last_handshake_time_nsec":
            current["handshake"] = (current["handshake"][0], int(value))
    return out


def read_config(ifname: str) -> dict:
    """wg show IFNAME dump, without the private key leaving this function except as a digest check."""
    raw = uapi(ifname, "get=1\n\n")
    peer = {
        "public_key": raw.get("public_key", [None])[0],
        "endpoint": raw.get("endpoint", [None])[0],
        "allowed_ips": sorted(raw.get("allowed_ip", [])),
        "tx_bytes": int(raw.get("tx_bytes", ["0"])[0]),
        "rx_bytes": int(raw.get("rx_bytes", ["0"])[0]),
        "last_handshake_s": int(raw.get("last_handshake_time_sec", ["0"])[0]),
    }
    return {"private_key": raw.get("private_key", [None])[0], "listen_port": int(raw.get("listen_port", ["0"])[0]),
            "peer": peer}
