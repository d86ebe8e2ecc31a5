"""Latency and loss of a stitch from an active probe: a short burst of ICMP echo requests (iputils
`ping`) from a VM namespace at one end to a VM at the other, through the stitch.

What is measured is the path stitched traffic takes, VM to VM: for `direct`, end a's VM (its
address on eth0, routed over the attachment veth) to end b's VM; for `segment` and `bandwidth`, a
member of end a's network inside the end's CIDR (one on end a's node first) to such a member of end
b's. The echo goes veth → end node (table T, nft chain) → tunnel (WireGuard or VXLAN, its UDP in the
stitch's HTB class where it has a rate, pinned to the path) → far end node → veth → VM, and the
reply the same way back. Latency is one-way: the median round-trip time / 2 (the median, so that
the one echo that waits for a WireGuard handshake does not count); loss is lost / sent round trips.
The lab's VM namespaces are ours to probe from; on real tenant VMs this would need an agent.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import signal
import statistics
import subprocess
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Hashable

if TYPE_CHECKING:
    from vnstitch.drivers.linux.layout import LabLayout
    from vnstitch.planning.ops import EnsureStitch, StitchEnd

log = logging.getLogger("vnstitch.linux.probe")

_SUMMARY = re.compile(r"(\d+) packets transmitted, (\d+) (?:packets )?received")
_REPLY = re.compile(r"^\d+ bytes from .*?time[=<]\s*([\d.]+)\s*ms(.*)$")
_RTT = re.compile(r"(?:rtt|round-trip) min/avg/max(?:/mdev)? = [\d.]+/([\d.]+)/")


@dataclass(frozen=True)
class PingSummary:
    sent: int
    received: int
    rtts_s: tuple[float, ...]      # one per reply, duplicates left out
    avg_rtt_s: float | None = None  # from the summary line, where the replies were not listed

    @property
    def loss(self) -> float:
        return min(1.0, max(0.0, (self.sent - self.received) / self.sent))

    @property
    def latency_s(self) -> float | None:
        """One-way: the median round trip / 2; None when nothing came back."""
        if self.received == 0:
            return None
        if self.rtts_s:
            return statistics.median(self.rtts_s) / 2
        return None if self.avg_rtt_s is None else self.avg_rtt_s / 2


def parse_ping(text: str) -> PingSummary | None:
    """iputils (or busybox) `ping -n` output → its counts and round trips; None without a summary
    (ping did not run, or was killed before it printed one) or with nothing sent."""
    found = _SUMMARY.search(text)
    if found is None:
        return None
    sent, received = int(found.group(1)), int(found.group(2))
    if sent == 0:
        return None
    rtts = []
    for line in text.splitlines():
        reply = _REPLY.match(line.strip())
        if reply and "DUP!" not in reply.group(2):
            rtts.append(float(reply.group(1)) / 1e3)
    avg = _RTT.search(text)
    return PingSummary(sent, received, tuple(rtts), float(avg.group(1)) / 1e3 if avg else None)


@dataclass(frozen=True)
class ProbeTarget:
    namespace: str     # the VM namespace the echo requests leave from
    source: str        # its address, inside the end's side of the stitch
    destination: str   # the far VM's address
    tcp_port: int | None = None  # probe with TCP handshakes to this port (a stitch whose services drop ICMP)


# TCP handshake probe, for a stitch that lets only TCP to a port cross: each connect() from the source
# address is timed from SYN to SYN-ACK (or to the RST of a port nobody listens on: it crossed too),
# printed as ping prints its replies so that parse_ping reads both.
TCP_PROBE = r"""
import socket, sys, time
dst, port, count, spacing, wait, src = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), sys.argv[6]
got = 0
for seq in range(1, count + 1):
    s = socket.socket(); s.settimeout(wait); s.bind((src, 0))
    t0 = time.perf_counter()
    try:
        s.connect((dst, port)); ok = True
    except ConnectionRefusedError:
        ok = True
    except OSError:
        ok = False
    rtt = time.perf_counter() - t0
    s.close()
    if ok:
        got += 1
        print(f"0 bytes from {dst}: tcp_seq={seq} time={rtt * 1e3:.3f} ms", flush=True)
    time.sleep(spacing)
print(f"{count} packets transmitted, {got} received", flush=True)
"""


def probe_target(lab: "LabLayout", members_of: dict[str, list[dict]], op: "EnsureStitch",
                 tcp_port: int | None = None) -> ProbeTarget | None:
    """Where the stitch's probe runs (see the module docstring), or None where it cannot yet: a
    network end without a member inside its CIDR, or a VM namespace that does not exist."""
    from vnstitch.drivers.linux.kernel import netns_exists

    if op.type == "direct":
        if not (op.a.member and op.a.address and op.b.address):
            return None
        source = (op.a.member, op.a.address)
        destination = op.b.address
    else:
        near, far = _member_in(members_of, op.a), _member_in(members_of, op.b)
        if near is None or far is None:
            return None
        source, destination = (near["name"], near["address"]), far["address"]
    namespace = lab.vm_ns(source[0])
    return ProbeTarget(namespace, source[1], destination, tcp_port) if netns_exists(namespace) else None


def _member_in(members_of: dict[str, list[dict]], end: "StitchEnd") -> dict | None:
    """A member of the end's network inside the end's CIDR, one on the end's node first, by name."""
    cidr = ipaddress.ip_network(end.cidr, strict=False)
    inside = [m for m in members_of.get(end.network, []) if ipaddress.ip_address(m["address"]) in cidr]
    inside.sort(key=lambda m: (m["node"] != end.node, m["name"]))
    return inside[0] if inside else None


@dataclass(frozen=True)
class ProbeResult:
    time: float                   # the caller's clock when it was probed (s)
    signature: Hashable           # what was probed: a rebuilt or rerouted stitch is probed afresh
    latency_s: float | None
    loss: float | None


class Prober:
    """Probes stitches at most every `interval_s` each, all due ones at once; results cached between."""

    def __init__(self, interval_s: float = 5.0, count: int = 5, spacing_s: float = 0.02, deadline_s: float = 1.0,
                 max_per_pass: int = 64):
        self.interval_s, self.count, self.spacing_s = interval_s, count, spacing_s
        self.deadline_s, self.max_per_pass = deadline_s, max_per_pass
        self._results: dict[str, ProbeResult] = {}

    def argv(self, target: ProbeTarget) -> list[str]:
        """ping -n -c N -i SPACING -W WAIT -I SRC DST: N echoes, then WAIT for the last replies (ping
        waits two round trips instead once one has come back), within the deadline."""
        wait_s = max(0.1, self.deadline_s - self.count * self.spacing_s)
        if target.tcp_port is not None:  # python3 -c TCP_PROBE DST PORT N SPACING WAIT SRC
            import sys

            return [sys.executable, "-c", TCP_PROBE, target.destination, str(target.tcp_port), str(self.count),
                    f"{self.spacing_s:g}", f"{wait_s / self.count:g}", target.source]
        return ["ping", "-n", "-c", str(self.count), "-i", f"{self.spacing_s:g}", "-W", f"{wait_s:g}",
                "-I", target.source, target.destination]

    def results(self, targets: dict[str, tuple[Hashable, ProbeTarget | None]], now: float) -> dict[str, ProbeResult]:
        """Per stitch key: its cached result when younger than interval_s and of the same signature,
        else a fresh probe (at most max_per_pass, oldest first: the rest keep their last result one
        more pass). A stitch without a target (no members yet) has latency and loss None; stitches
        not in `targets` (gone, or not healthy) are forgotten."""
        for key in set(self._results) - set(targets):
            del self._results[key]
        due = []
        for key, (signature, target) in targets.items():
            cached = self._results.get(key)
            if target is None:
                self._results[key] = ProbeResult(now, signature, None, None)
            elif cached is None or cached.signature != signature:
                due.append((float("-inf"), key))
            elif now - cached.time >= self.interval_s:
                due.append((cached.time, key))
        due.sort()
        for key, result in self._probe({key: targets[key] for _, key in due[:self.max_per_pass]}, now).items():
            self._results[key] = result
        return {key: r for key, r in self._results.items() if r.signature == targets[key][0]}

    def _probe(self, targets: dict[str, tuple[Hashable, ProbeTarget]], now: float) -> dict[str, ProbeResult]:
        """Start every ping, then collect each by one shared deadline."""
        from vnstitch.drivers.linux.kernel import in_netns  # pyroute2 and ctypes: only where a probe runs

        started: dict[str, subprocess.Popen | None] = {}
        for key, (_, target) in targets.items():
            argv = self.argv(target)
            try:
                # ip netns exec VM ping ... (the child is born in the thread's namespace, without exec'ing ip)
                started[key] = in_netns(target.namespace, lambda argv=argv: subprocess.Popen(
                    argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True))
            except Exception as exc:  # noqa: BLE001 - the namespace vanished, no ping: unknown, not lost
                log.info("probe %s: cannot start ping in %s: %s", key, target.namespace, exc)
                started[key] = None
        deadline = time.monotonic() + self.deadline_s + 0.5
        out: dict[str, ProbeResult] = {}
        for key, proc in started.items():
            summary = None if proc is None else _collect(proc, deadline)
            signature = targets[key][0]
            out[key] = ProbeResult(now, signature, summary.latency_s if summary else None,
                                   summary.loss if summary else None)
        return out


def _collect(proc: subprocess.Popen, deadline: float) -> PingSummary | None:
    """Wait for ping until the deadline; past it, SIGINT makes ping print what it has (then SIGKILL)."""
    try:
        out, _ = proc.communicate(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=0.2)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            return None
    return parse_ping(out or "")


__all__ = ["PingSummary", "ProbeResult", "ProbeTarget", "Prober", "parse_ping", "probe_target"]
