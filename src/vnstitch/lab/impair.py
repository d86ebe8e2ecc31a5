"""Delay on a device of a namespace lab (real-kernel tests and benches): `add_delay(ns, ifname, delay_s)`
makes packets leaving `ifname` in namespace `ns` wait about `delay_s`; `clear(ns, ifname)` takes it away
again; `add_class_delay` does it for one HTB class (a stitch on a lab link) and keeps the link's tree.

Where the kernel has netem this is `tc qdisc replace dev IF root netem delay D`. This kernel has none,
so the fallback builds the delay out of a queue: a TBF qdisc at a low rate R (2 Mbit/s) whose queue
limit is about R × delay bytes (`tc qdisc replace dev IF root tbf rate R burst B latency L`), kept full
by a background flood of UDP broadcast frames (1000 bytes, paced at 1.5 × R) sent from the namespace
straight onto the device (an AF_PACKET socket: no route or neighbour needed, and it goes through the
qdisc). Every other packet then waits behind a full queue, which drains at R: about `delay_s`
(measured by ping over a veth: 49 ms for 50 ms asked, tests/linux/test_impair.py).

The trade-off: it is queueing delay, real and measured by ping like any other, but not netem's model.
Everything on the device shares the queue and R: its throughput falls to what the flood leaves (next
to nothing), so use it for latency, never on a device whose rate a test measures; a packet that finds
the queue full is dropped (small ones such as pings nearly always fit, the flood's frames being
large); the delay varies by about one flood frame's time (4 ms) and takes ~2 × delay_s to build up;
the flood costs a little CPU and its broadcasts (to the discard port, answered by nothing) reach the
far side of the device.
"""

from __future__ import annotations

import subprocess
import sys
import time

FLOOD_RATE_BPS = 2_000_000        # TBF rate R
FLOOD_FRAME = 1000                # bytes of each flood frame's IP packet
TBF_BURST = 1600                  # bytes: at least one full-size frame
_floods: dict[tuple[str, str], subprocess.Popen] = {}

# Broadcast IPv4/UDP packets to port 9 (discard) onto one device, paced to `rate` bit/s: SOCK_DGRAM
# lets the kernel add the link header (none on a TUN device), broadcast MAC on Ethernet.
_FLOOD = r"""
import socket, struct, sys, time
ifname, rate, size = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
port = int(sys.argv[4]) if len(sys.argv) > 4 else 9
s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
s.bind((ifname, 0x0800))
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 16)
udp = struct.pack("!HHHH", 9, port, size - 20, 0) + bytes(size - 28)
def checksum(header):
    total = sum(struct.unpack("!10H", header))
    total = (total >> 16) + (total & 0xffff)
    return ~(total + (total >> 16)) & 0xffff
header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, size, 0, 0x4000, 1, 17, 0, bytes(4), b"\xff" * 4)
packet = header[:10] + struct.pack("!H", checksum(header)) + header[12:] + udp
gap, due = size * 8 / rate, time.monotonic()
print("flooding", flush=True)
while True:
    try:
        s.sendto(packet, (ifname, 0x0800, 0, 0, b"\xff" * 6))
    except OSError:
        pass   # the queue is full: the frame is dropped, which is the point
    due += gap
    time.sleep(max(0.0, due - time.monotonic()))
"""


def _exec(ns: str, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True)


def has_netem(ns: str, ifname: str) -> bool:
    """Can this kernel put netem on the device (tried, and taken off again)?"""
    added = _exec(ns, "tc", "qdisc", "add", "dev", ifname, "root", "handle", "ffe0:", "netem", "delay", "1ms")
    if added.returncode != 0:
        return False
    _exec(ns, "tc", "qdisc", "del", "dev", ifname, "root")
    return True


def add_delay(ns: str, ifname: str, delay_s: float, netem: bool | None = None) -> str:
    """Packets leaving `ifname` in namespace `ns` wait about `delay_s`; returns how ("netem" or "tbf").
    `netem=False` forces the fallback (where the kernel has netem too)."""
    clear(ns, ifname)
    if netem is None:
        netem = has_netem(ns, ifname)
    if netem:
        done = _exec(ns, "tc", "qdisc", "replace", "dev", ifname, "root", "netem", "delay", f"{delay_s * 1000:.3f}ms")
        if done.returncode != 0:
            raise RuntimeError(f"netem on {ifname} in {ns}: {done.stderr.strip()}")
        return "netem"
    # tc makes the queue limit = R × latency + burst; the flood keeps the backlog between limit − one
    # frame and limit, so a limit of R × delay + one frame makes a packet wait delay + up to a frame's time.
    latency_s = max(0.001, delay_s + (FLOOD_FRAME + 14 - TBF_BURST) * 8 / FLOOD_RATE_BPS)
    done = _exec(ns, "tc", "qdisc", "replace", "dev", ifname, "root", "tbf", "rate", f"{FLOOD_RATE_BPS}bit",
                 "burst", str(TBF_BURST), "latency", f"{latency_s * 1000:.3f}ms")
    if done.returncode != 0:
        raise RuntimeError(f"tbf on {ifname} in {ns}: {done.stderr.strip()}")
    flood = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", _FLOOD, ifname,
                              str(FLOOD_RATE_BPS * 1.5), str(FLOOD_FRAME)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _floods[(ns, ifname)] = flood
    if flood.stdout.readline().strip() != "flooding":
        clear(ns, ifname)
        raise RuntimeError(f"flood on {ifname} in {ns} did not start: {flood.stderr.read()}")
    time.sleep(delay_s * 2 + 0.05)   # until the queue has filled
    return "tbf"


def add_class_delay(ns: str, ifname: str, classid: str, dport: int, delay_s: float) -> None:
    """The same queue built inside an HTB tree that must stay (a lab link's root HTB and a stitch's class on
    it): a TBF leaf under `classid` (`tc qdisc add dev IF parent CLASSID handle 9: tbf …`), kept full by
    a flood whose UDP destination port `dport` the class's filter sends into it (a stitch's tunnel port).
    What that class carries waits about `delay_s` on this device; the rest of the link is untouched."""
    if (ns, ifname) in _floods:
        clear(ns, ifname)
    latency_s = max(0.001, delay_s + (FLOOD_FRAME + 14 - TBF_BURST) * 8 / FLOOD_RATE_BPS)
    done = _exec(ns, "tc", "qdisc", "add", "dev", ifname, "parent", classid, "handle", "9:", "tbf", "rate",
                 f"{FLOOD_RATE_BPS}bit", "burst", str(TBF_BURST), "latency", f"{latency_s * 1000:.3f}ms")
    if done.returncode != 0:
        shown = _exec(ns, "tc", "class", "show", "dev", ifname).stdout + _exec(ns, "tc", "qdisc", "show", "dev",
                                                                                 ifname).stdout
        raise RuntimeError(f"tbf under {classid} on {ifname} in {ns}: {done.stderr.strip()}\n{shown}")
    flood = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", _FLOOD, ifname,
                              str(FLOOD_RATE_BPS * 1.5), str(FLOOD_FRAME), str(dport)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _floods[(ns, ifname)] = flood
    _leaves[(ns, ifname)] = classid
    if flood.stdout.readline().strip() != "flooding":
        clear(ns, ifname)
        raise RuntimeError(f"flood on {ifname} in {ns} did not start: {flood.stderr.read()}")
    time.sleep(delay_s * 2 + 0.05)


_leaves: dict[tuple[str, str], str] = {}


def clear(ns: str, ifname: str) -> None:
    """Stop the flood (and reap it) and take the delay's qdisc off the device (its default comes back)."""
    flood = _floods.pop((ns, ifname), None)
    if flood is not None:
        flood.kill()
        flood.wait(timeout=5)
        for stream in (flood.stdout, flood.stderr):
            stream.close()
    leaf = _leaves.pop((ns, ifname), None)
    if leaf is not None:  # only our leaf goes (its class may be gone already): the HTB tree stays
        _exec(ns, "tc", "qdisc", "del", "dev", ifname, "parent", leaf, "handle", "9:")
    else:
        _exec(ns, "tc", "qdisc", "del", "dev", ifname, "root")


def clear_all() -> None:
    """Every delay this module added (a test's finally)."""
    for ns, ifname in list(_floods):
        clear(ns, ifname)
