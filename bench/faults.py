"""Fault campaign on a real lab (issue 16, "Keep the network true"): random faults under established
stitches, each followed by reconcile passes until the network is true again.

A lab of three substrate nodes and a few networks of three VMs each is brought up (`vnstitch lab up`);
the controller (SQLite store → reconciler → linux driver) establishes N direct stitches (three in four
encrypted, the rest over VXLAN; one in three with a 100 Mbps reservation); then each fault is injected
and reconcile passes run until *converged*: the plan is empty, every stitch that should be up is ACTIVE
and pings, every withdrawn one is not ACTIVE and passes no traffic, and every VM's port is on its node.
A fault not converged after --max-passes passes or --max-repair-s seconds counts as not repaired; the
bench then resets the data plane out of band (removes objects no stitch owns, detaches a moved VM from
its old node, rebuilds an emptied nft table, re-applies every stored stitch through the driver) so
that the next fault starts from a true network.

Fault kinds: SIGKILL a stitch's wireguard-go; delete a stitch's gateway veth; delete an unencrypted
stitch's VXLAN device; flush a node's nftables table; flush one stitch chain; delete a route of a
stitch's table; move a VM to another node (its old NIC is deleted, as when a VM migrates, then the
changed network is applied; --apply-only-moves leaves the NIC); revoke a policy (a network's
allowStitchTo loses a peer: the stitches between them must be withdrawn) or restore one.

During each repair a probe in the stitch's VM sends an ICMP echo every 50 ms through it and counts the
unanswered ones. After every fault the kernel is searched for objects of stitches that no recorded
stitch owns (devices, rules, nft chains, HTB classes and filters, wireguard-go); after the campaign
the lab goes down and what is left (namespaces, processes, sockets, devices, state files) is listed.

usage: sudo .venv/bin/python bench/faults.py [--faults 200] [--stitches 20] [--seed 1]
           [--max-passes 4] [--max-repair-s 15] [--kinds K,...] [--json out/bench/faults.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import random
import re
import select
import shlex
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from vnstitch.controller.services import open_local  # noqa: E402
from vnstitch.domain.registry import parse_documents  # noqa: E402
from vnstitch.drivers.linux import nft, routing  # noqa: E402
from vnstitch.drivers.linux.driver import op_from_dict  # noqa: E402
from vnstitch.drivers.linux.kernel import in_netns, list_netns, pid_alive  # noqa: E402
from vnstitch.drivers.linux.layout import (  # noqa: E402
    DEFAULT_CLASS_MINOR, STITCH_TABLE_BASE, StitchNames, member_ifname,
)
from vnstitch.drivers.linux.stitch import (  # noqa: E402
    is_local, pin_routes, policy_sides, shaped_egresses,
)
from vnstitch.drivers.linux.wireguard import socket_path  # noqa: E402
from vnstitch.errors import VnstitchError  # noqa: E402
from vnstitch.lab import builder  # noqa: E402

TENANT = "acme"
NODES = ("n1", "n2", "n3")
LINKS = (("n1", "n2", "1ms"), ("n2", "n3", "1ms"), ("n1", "n3", "3ms"))
MEMBERS_PER_NETWORK = 3
PING_INTERVAL_S = 0.05
# drawn at random; "policy" is a revocation, or a restore of an earlier one (about half the time)
KINDS = ("kill-wireguard", "delete-veth", "delete-vxlan", "flush-nft-table", "flush-nft-chain",
         "delete-route", "move-member", "policy")
POLICY_KINDS = ("revoke-policy", "restore-policy")
FAULT_KINDS = KINDS[:-1] + POLICY_KINDS          # what a fault is, as reported
# faults whose target stitch should stay up: the probe's unanswered echoes are pings lost in repair
LOSS_KINDS = frozenset(KINDS) - {"policy"}


# --- what the network should be ----------------------------------------------------------------

@dataclass
class Member:
    name: str
    node: str
    address: str


@dataclass
class Network:
    name: str
    vnid: int
    cidr: str
    members: list[Member]
    denied: set[str] = field(default_factory=set)    # peers removed from allowStitchTo (revoked)


@dataclass(frozen=True)
class StitchSpec:
    name: str
    a_net: str
    a_vm: str
    b_net: str
    b_vm: str
    encrypted: bool
    bandwidth: str | None


class World:
    """The bench's own model of what should be (never read back from the controller)."""

    def __init__(self, stitches: int):
        count = 3
        while count * (count - 1) < stitches:  # at most two stitches per pair of networks
            count += 1
        self.networks: dict[str, Network] = {}
        for j in range(count):
            name = f"net{j}"
            members = [Member(f"{name}-{k}", NODES[(j + k) % len(NODES)], f"10.{j + 10}.0.{k + 11}")
                       for k in range(MEMBERS_PER_NETWORK)]
            self.networks[name] = Network(name, 2001 + j, f"10.{j + 10}.0.0/24", members)
        pairs = list(itertools.combinations(sorted(self.networks), 2))
        self.stitches: list[StitchSpec] = []
        for i in range(stitches):
            x, y = pairs[i % len(pairs)]
            r = i // len(pairs)     # distinct rounds of one pair use distinct VMs: no two stitches share a VM pair
            self.stitches.append(StitchSpec(f"s{i:02d}", x, f"{x}-{r}", y, f"{y}-{(r + 1) % MEMBERS_PER_NETWORK}",
                                            encrypted=i % 4 != 2, bandwidth="100Mbps" if i % 3 == 1 else None))

    def member(self, vm: str) -> Member:
        return next(m for net in self.networks.values() for m in net.members if m.name == vm)

    def network_of(self, vm: str) -> Network:
        return next(net for net in self.networks.values() if any(m.name == vm for m in net.members))

    def should_be_up(self, stitch: StitchSpec) -> bool:
        return (stitch.b_net not in self.networks[stitch.a_net].denied
                and stitch.a_net not in self.networks[stitch.b_net].denied)

    def pair(self, stitch: StitchSpec) -> tuple[str, str]:
        return (stitch.a_net, stitch.b_net)

    def network_doc(self, net: Network) -> dict:
        allowed = sorted(n for n in self.networks if n != net.name and n not in net.denied)
        return {"apiVersion": "vnstitch.io/v1", "kind": "VirtualNetwork", "metadata": {"name": net.name, "tenant": TENANT},
                "spec": {"vnid": net.vnid, "cidr": net.cidr,
                         "members": [{"name": m.name, "node": m.node, "address": m.address} for m in net.members],
                         "policy": {"allowStitchTo": allowed, "allowUnencrypted": True}}}

    def lab_docs(self) -> list[dict]:
        docs: list[dict] = [{"apiVersion": "vnstitch.io/v1", "kind": "Node", "metadata": {"name": n}} for n in NODES]
        docs += [{"apiVersion": "vnstitch.io/v1", "kind": "Link", "metadata": {"name": f"{a}--{b}"},
                  "spec": {"endpoints": [a, b], "capacity": "5Gbps", "latency": latency}} for a, b, latency in LINKS]
        return docs + [self.network_doc(net) for net in self.networks.values()]

    def stitch_docs(self) -> list[dict]:
        docs = []
        for s in self.stitches:
            spec = {"type": "direct", "from": {"network": s.a_net, "member": s.a_vm},
                    "to": {"network": s.b_net, "member": s.b_vm},
                    "encryption": "required" if s.encrypted else "none"}
            if s.bandwidth:
                spec["bandwidth"] = s.bandwidth
            docs.append({"apiVersion": "vnstitch.io/v1", "kind": "Stitch",
                         "metadata": {"name": s.name, "tenant": TENANT}, "spec": spec})
        return docs


def to_yaml(docs: list[dict]) -> str:
    return "".join("---\n" + json.dumps(doc) + "\n" for doc in docs)  # JSON is YAML


# --- an ICMP probe inside a VM's namespace -------------------------------------------------------

def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


_IDENTS = itertools.count((os.getpid() * 97) & 0xFFFF)


class Probe:
    """`ping -i 0.05` in-process: an echo request from a VM's namespace every `interval_s`, replies
    counted by sequence number. A send the kernel refuses (no route) counts as sent and unanswered."""

    def __init__(self, ns: str, address: str, interval_s: float = PING_INTERVAL_S):
        self.address, self.interval_s = address, interval_s
        self.ident = next(_IDENTS) & 0xFFFF
        # a socket keeps the namespace it was made in: made in a thread joined to the VM's namespace
        self.sock = in_netns(ns, lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))
        self.sock.setblocking(False)
        self.sent = 0
        self.answered: set[int] = set()
        self.replied = threading.Event()
        self._sending = True
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"probe-{address}", daemon=True)

    def start(self) -> "Probe":
        self._thread.start()
        return self

    def _send(self, seq: int) -> None:
        payload = struct.pack("!d", time.monotonic()) + b"vnstitch-faults."
        header = struct.pack("!BBHHH", 8, 0, 0, self.ident, seq)
        packet = struct.pack("!BBHHH", 8, 0, _checksum(header + payload), self.ident, seq) + payload
        try:
            self.sock.sendto(packet, (self.address, 0))
        except OSError:
            pass  # ENETUNREACH and the like: the echo is lost

    def _receive(self) -> None:
        while True:
            try:
                data, (source, _) = self.sock.recvfrom(2048)
            except OSError:
                return
            ihl = (data[0] & 0x0F) * 4
            if source != self.address or len(data) < ihl + 8:
                continue
            kind, _, _, ident, seq = struct.unpack("!BBHHH", data[ihl:ihl + 8])
            if kind == 0 and ident == self.ident and seq < self.sent:
                self.answered.add(seq)
                self.replied.set()

    def _run(self) -> None:
        next_send = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if self._sending and now >= next_send and self.sent < 0xFFFF:
                seq = self.sent
                self.sent += 1
                self._send(seq)
                next_send = max(next_send + self.interval_s, now)  # starved: no burst to catch up
            wait = max(0.0, next_send - time.monotonic()) if self._sending else 0.02
            ready, _, _ = select.select([self.sock], [], [], min(wait, 0.05))
            if ready:
                self._receive()

    def stop(self, grace_s: float = 0.2) -> int:
        """Stop sending, wait `grace_s` for echoes in flight; the number never answered."""
        self._sending = False
        if grace_s > 0 and self._thread.is_alive():
            time.sleep(grace_s)
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.sock.close()
        return self.sent - len(self.answered)


def reachable(targets: list[tuple[str, str]], expect: list[bool], up_timeout_s: float = 1.0,
              down_window_s: float = 0.3) -> list[bool]:
    """For each (VM namespace, address): does an echo come back? Probes run in parallel; waits until
    every target expected up has answered (at most `up_timeout_s`) and, when a target is expected
    not to pass, at least `down_window_s` (six echoes unanswered)."""
    probes = [Probe(ns, address).start() for ns, address in targets]
    started = time.monotonic()
    try:
        for probe, up in zip(probes, expect):
            if up:
                probe.replied.wait(max(0.0, started + up_timeout_s - time.monotonic()))
        if not all(expect):
            time.sleep(max(0.0, started + down_window_s - time.monotonic()))
        return [probe.replied.is_set() for probe in probes]
    finally:
        for probe in probes:
            probe.stop(grace_s=0)


# --- the campaign ---------------------------------------------------------------------------------

def sh(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=30)


def nearest_rank(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@dataclass
class Fault:
    kind: str
    detail: str
    target: StitchSpec | None = None                  # the stitch the probe runs through
    revoked: list[StitchSpec] = field(default_factory=list)


class Campaign:
    """Faults on the lab under `services` (local controller services over the linux driver)."""

    def __init__(self, world: World, services, rng: random.Random, max_passes: int, max_repair_s: float,
                 kinds: tuple[str, ...] = KINDS, migrate: bool = True):
        self.kinds, self.migrate = kinds, migrate
        self.world, self.services, self.rng = world, services, rng
        self.max_passes, self.max_repair_s = max_passes, max_repair_s
        self.wg_names: set[str] = set()     # every wireguard-go interface ever made, for the leak check
        self.hashes: set[str] = set()
        self.stale_seen: set[str] = set()   # stale kernel objects after the last fault

    @property
    def driver(self):
        return self.services.reconciler.driver

    @property
    def layout(self):
        return self.driver.lab

    def record(self, stitch: StitchSpec) -> dict | None:
        return self.driver.state["stitches"].get(f"{TENANT}/{stitch.name}")

    def remember_names(self) -> None:
        for record in self.driver.state["stitches"].values():
            names = StitchNames(record["hash"], record["index"])
            self.hashes.add(record["hash"])
            self.wg_names.update(names.wg_if(side) for side in "ab")

    # converged? ---------------------------------------------------------------------------
    def problems(self) -> list[str]:
        """Why the network is not true now (empty: converged)."""
        plan = self.services.plan()
        if plan.ops:
            return [f"plan: {op}" for op in plan.ops[:4]]
        states = {s.name: s.status.state.value for s in self.services.list("Stitch", TENANT)}
        out = []
        for s in self.world.stitches:
            up, state = self.world.should_be_up(s), states.get(s.name)
            if up and state != "ACTIVE":
                out.append(f"{s.name} is {state}, should be ACTIVE")
            elif not up and state == "ACTIVE":
                out.append(f"{s.name} is ACTIVE, should be withdrawn")
        out += [f"{m.name} should be attached on {m.node}, is on {found or 'no node'}"
                for _, m, found in self.misplaced_members()]
        if out:
            return out
        expect = [self.world.should_be_up(s) for s in self.world.stitches]
        replies = reachable([self.probe_target(s) for s in self.world.stitches], expect)
        for s, up, replied in zip(self.world.stitches, expect, replies):
            if up and not replied:
                out.append(f"{s.name} ({s.a_vm}→{s.b_vm}) does not ping")
            elif not up and replied:
                out.append(f"{s.name} ({s.a_vm}→{s.b_vm}) is withdrawn but passes traffic")
        return out

    def member_port(self, net: Network, member: Member) -> str:
        return member_ifname(self.layout.name, f"{TENANT}/{net.name}", member.name)

    def port_nodes(self) -> dict[str, list[str]]:
        """Interface name → the nodes that have it (one link dump per node)."""
        where: dict[str, list[str]] = {}
        for node in NODES:
            for msg in self.driver.nss(self.layout.node_ns(node)).get_links():
                where.setdefault(msg.get_attr("IFLA_IFNAME"), []).append(node)
        return where

    def misplaced_members(self) -> list[tuple[Network, Member, list[str]]]:
        """Members whose VM port (its eth0's peer) is not exactly on its node."""
        where = self.port_nodes()
        return [(net, m, where.get(self.member_port(net, m), [])) for net in self.world.networks.values()
                for m in net.members if where.get(self.member_port(net, m), []) != [m.node]]

    def probe_target(self, stitch: StitchSpec) -> tuple[str, str]:
        return self.layout.vm_ns(stitch.a_vm), self.world.member(stitch.b_vm).address

    def reconcile_pass(self) -> list[str]:
        """One reconcile pass; the ops that failed, or the exception that ended the pass (a bug: a
        driver must raise DriverError) as text."""
        try:
            report = self.services.reconcile_once()
        except Exception as exc:  # noqa: BLE001 - recorded and reported, the campaign goes on
            frames = [f for f in traceback.extract_tb(exc.__traceback__) if "/vnstitch/" in f.filename]
            where = frames[-1] if frames else traceback.extract_tb(exc.__traceback__)[-1]
            return [f"pass crashed: {type(exc).__name__}: {exc} (in {Path(where.filename).name}:{where.lineno} "
                    f"{where.name})"]
        return [f"{op}: {error}" for op, error in report.failures]

    def converge(self, started: float, on_pass=None) -> tuple[bool, int, list[str], list[str]]:
        """Reconcile passes until converged or out of passes/time: (converged, passes, why not, op errors)."""
        why: list[str] = []
        errors: list[str] = []
        for number in range(1, self.max_passes + 1):
            errors += self.reconcile_pass()
            self.last_pass_done = time.monotonic()
            if on_pass is not None:
                on_pass(number)
            why = self.problems()
            if not why:
                return True, number, [], errors
            if time.monotonic() - started > self.max_repair_s:
                return False, number, why, errors
        return False, self.max_passes, why, errors

    # faults -------------------------------------------------------------------------------
    def up_stitches(self, predicate=lambda s, record, op: True) -> list[StitchSpec]:
        out = []
        for s in self.world.stitches:
            record = self.record(s)
            if self.world.should_be_up(s) and record is not None:
                op = op_from_dict(record["op"])
                if predicate(s, record, op):
                    out.append(s)
        return out

    def _names(self, stitch: StitchSpec) -> tuple[dict, StitchNames, object]:
        record = self.record(stitch)
        return record, StitchNames(record["hash"], record["index"]), op_from_dict(record["op"])

    def candidates(self, kind: str) -> list:
        if kind == "kill-wireguard":
            return self.up_stitches(lambda s, r, op: op.encrypted and not is_local(op))
        if kind == "delete-vxlan":
            return self.up_stitches(lambda s, r, op: not op.encrypted and not is_local(op))
        if kind in ("delete-veth", "flush-nft-chain", "delete-route", "flush-nft-table"):
            return self.up_stitches()
        if kind == "move-member":
            return [m for net in self.world.networks.values() for m in net.members]
        if kind == "revoke-policy":
            return sorted({self.world.pair(s) for s in self.world.stitches if self.world.should_be_up(s)})
        if kind == "restore-policy":
            return [(net, peer) for net in self.world.networks.values() for peer in sorted(net.denied)]
        if kind == "policy":
            return self.candidates("revoke-policy") + self.candidates("restore-policy")
        raise ValueError(f"unknown fault kind {kind!r} (valid: {', '.join(KINDS)})")

    def choose_target(self, kind: str) -> StitchSpec | None:
        """The stitch the fault hits and the probe runs through (chosen before the fault, so that the
        probe is running when it lands); None for a policy change."""
        if kind in ("policy", *POLICY_KINDS):
            return None
        if kind == "move-member":
            riding = self.up_stitches()
            return self.rng.choice(riding) if riding else None
        return self.rng.choice(self.candidates(kind))

    def inject(self, kind: str, stitch: StitchSpec | None) -> Fault:
        if kind == "move-member":
            return self._move_member(stitch)
        if kind in ("policy", *POLICY_KINDS):
            return self._policy(kind)
        rng = self.rng
        record, names, op = self._names(stitch)
        side = rng.choice("ab") if kind in ("kill-wireguard", "delete-veth", "delete-vxlan") \
            else rng.choice(policy_sides(op))
        node = (op.a if side == "a" else op.b).node
        ns = self.layout.node_ns(node)
        if kind == "kill-wireguard":
            pid = record["pids"][side]
            os.kill(pid, signal.SIGKILL)
            try:
                os.waitpid(pid, 0)  # the driver in this process started it: reap it, so it is gone
            except ChildProcessError:
                pass
            return Fault(kind, f"SIGKILL wireguard-go {names.wg_if(side)} (pid {pid}) on {node}", stitch)
        if kind in ("delete-veth", "delete-vxlan"):
            ifname = names.gateway_if(side) if kind == "delete-veth" else names.vxlan_if(side)
            self._run(ns, "ip", "link", "del", ifname)
            return Fault(kind, f"ip link del {ifname} on {node}", stitch)
        if kind == "flush-nft-chain":
            chain = nft.chain_name(f"{names.hash}{side}")
            self._run(ns, "nft", "flush", "chain", "inet", nft.TABLE, chain)
            return Fault(kind, f"nft flush chain inet {nft.TABLE} {chain} on {node}", stitch)
        if kind == "flush-nft-table":
            self._run(ns, "nft", "flush", "table", "inet", nft.TABLE)
            return Fault(kind, f"nft flush table inet {nft.TABLE} on {node}", stitch)
        if kind == "delete-route":
            table = str(names.table)
            listed = json.loads(self._run(ns, "ip", "-j", "route", "show", "table", table).stdout or "[]")
            route = rng.choice([r for r in listed if "dev" in r])   # not T's `unreachable default`
            self._run(ns, "ip", "route", "del", route["dst"], "dev", route["dev"], "table", table)
            return Fault(kind, f"ip route del {route['dst']} dev {route['dev']} table {table} on {node}", stitch)
        raise ValueError(f"unknown fault kind {kind!r} (valid: {', '.join(KINDS)})")

    def _run(self, ns: str, *argv: str) -> subprocess.CompletedProcess:
        done = sh("ip", "netns", "exec", ns, *argv)
        if done.returncode != 0:
            raise RuntimeError(f"fault injection failed: {' '.join(argv)} in {ns}: {done.stderr.strip()}")
        return done

    def _move_member(self, riding: StitchSpec | None) -> Fault:
        """Move a VM to another node: an end of `riding` when given, else any member."""
        if riding is not None:
            member = self.world.member(self.rng.choice((riding.a_vm, riding.b_vm)))
        else:
            member = self.rng.choice(self.candidates("move-member"))
        old = member.node
        member.node = self.rng.choice([n for n in NODES if n != old])
        net = self.world.network_of(member.name)
        how = "apply"
        if self.migrate:  # the VM leaves its old host: its NIC there (and so its eth0) goes with it
            port = self.member_port(net, member)
            self._run(self.layout.node_ns(old), "ip", "link", "del", port)
            how = f"ip link del {port} on {old}, apply"
        self.services.apply(parse_documents(to_yaml([self.world.network_doc(net)])))
        return Fault("move-member", f"move {member.name} ({net.name}) {old}→{member.node}: {how}", riding)

    def _policy(self, kind: str) -> Fault:
        """Revoke (a network's allowStitchTo loses a peer it has stitches with) or restore one;
        "policy": a restore about half the time when something is revoked."""
        rng = self.rng
        revoked, pairs = self.candidates("restore-policy"), self.candidates("revoke-policy")
        if kind == "policy":
            kind = "restore-policy" if revoked and (not pairs or rng.random() < 0.5) else "revoke-policy"
        if kind == "restore-policy":
            net, peer = rng.choice(revoked)
            net.denied.discard(peer)
            self.services.apply(parse_documents(to_yaml([self.world.network_doc(net)])))
            return Fault(kind, f"restore: {net.name} allows {peer} again")
        pair = rng.choice(pairs)
        owner, peer = pair if rng.random() < 0.5 else pair[::-1]
        withdrawn = [s for s in self.world.stitches if self.world.should_be_up(s) and self.world.pair(s) == pair]
        net = self.world.networks[owner]
        net.denied.add(peer)
        self.services.apply(parse_documents(to_yaml([self.world.network_doc(net)])))
        return Fault(kind, f"revoke: {owner} no longer allows {peer} ({len(withdrawn)} stitches)",
                     revoked=withdrawn)

    def choose(self) -> str:
        """A fault kind at random among those with something to hit now."""
        kinds = list(self.kinds)
        while True:
            if not kinds:
                raise RuntimeError(f"none of the fault kinds {self.kinds} has anything to hit")
            kind = self.rng.choice(kinds)
            if self.candidates(kind):
                return kind
            kinds.remove(kind)

    # one fault ----------------------------------------------------------------------------
    def run_fault(self, index: int, kind: str) -> dict:
        self.remember_names()
        target = self.choose_target(kind)
        probe, baseline = None, False
        if target is not None:
            probe = Probe(*self.probe_target(target)).start()
            baseline = probe.replied.wait(2.0)  # it passes before the fault
        started = time.monotonic()
        try:
            fault = self.inject(kind, target)
        except BaseException:
            if probe is not None:
                probe.stop(0)
            raise
        wrongly_alive: list[str] = []

        def after_pass(number: int) -> None:
            if number == 1 and fault.revoked:  # the pass that should have withdrawn them
                alive = reachable([self.probe_target(s) for s in fault.revoked], [False] * len(fault.revoked))
                wrongly_alive.extend(s.name for s, ok in zip(fault.revoked, alive) if ok)

        converged, passes, why, errors = self.converge(started, after_pass)
        elapsed = time.monotonic() - started
        lost = probe.stop() if probe is not None else None
        result = {"index": index, "kind": fault.kind, "detail": fault.detail, "target": target.name if target else None,
                  "repaired": converged, "repair_s": round(elapsed, 3) if converged else None, "passes": passes,
                  "last_pass_done_s": round(self.last_pass_done - started, 3) if converged else None,
                  "pings_lost": lost if (baseline and kind in LOSS_KINDS) else None,
                  "pings_sent": probe.sent if probe is not None else None, "baseline_ping": baseline,
                  "wrongly_alive": wrongly_alive, "revoked": [s.name for s in fault.revoked],
                  "why_not": why, "op_errors": errors[:5], "reset": None}
        self.remember_names()
        stale = [what for what, _ in self.stale_objects()]
        result["stale"] = stale
        result["stale_new"] = [what for what in stale if what not in self.stale_seen]
        self.stale_seen = set(stale)
        if not converged:
            result["reset"] = self.reset()
            self.stale_seen = {what for what, _ in self.stale_objects()}
        return result

    # kernel objects no recorded stitch owns ------------------------------------------------------
    def owned(self) -> dict:
        """What the driver's recorded stitches own, where: devices, nft chains and rule tables per node,
        devices per VM, HTB minors/prios per egress, pids."""
        own = {"devices": defaultdict(set), "chains": defaultdict(set), "tables": defaultdict(set),
               "vm": defaultdict(set), "classes": defaultdict(set),
               "prios": defaultdict(set), "pids": set()}
        for record in self.driver.state["stitches"].values():
            op, names = op_from_dict(record["op"]), StitchNames(record["hash"], record["index"])
            for side, end in (("a", op.a), ("b", op.b)):
                own["devices"][end.node].add(names.gateway_if(side))
                if not is_local(op):
                    own["devices"][end.node].add(names.wg_if(side) if op.encrypted else names.vxlan_if(side))
                (own["vm"][end.member] if op.type == "direct" else own["devices"][end.node]).add(names.peer_if(side))
            for side in policy_sides(op):
                node = (op.a if side == "a" else op.b).node
                own["chains"][node].add(nft.chain_name(f"{names.hash}{side}"))
                own["tables"][node].add(names.table)
            for node in pin_routes(self.layout, op):
                own["tables"][node].add(names.table)
            if op.rate_bps > 0 and not is_local(op):
                for node, egress, _ in shaped_egresses(self.layout, op.path, op.symmetric):
                    own["classes"][(node, egress)].add(names.class_minor)
                    own["prios"][(node, egress)].add(names.filter_prio)
            own["pids"].update(record.get("pids", {}).values())
        return own

    def stale_objects(self) -> list[tuple[str, list[list[str]]]]:
        """Kernel objects of stitches that no recorded stitch owns (left by a teardown or a rebuild
        elsewhere), each with the commands that remove it."""
        own, out = self.owned(), []
        ours = re.compile(r"^v[gpwt][0-9a-f]{8}[ab]$")
        for node in NODES:
            ns = self.layout.node_ns(node)
            ipr = self.driver.nss(ns)
            links = {m.get_attr("IFLA_IFNAME"): m["index"] for m in ipr.get_links()}
            for name in sorted(links):
                if ours.match(name) and name not in own["devices"][node]:
                    out.append((f"device {name} on {node}", [["ip", "-n", ns, "link", "del", name]]))
            for table in sorted(routing.rules_per_table(ipr)):
                if table >= STITCH_TABLE_BASE and table not in own["tables"][node]:
                    out.append((f"rules of table {table} on {node}", [["ip", "-n", ns, "rule", "del", "pref", str(table)]] * 3))
            listed = subprocess.run(["ip", "-n", ns, "-4", "route", "show", "table", "all", "type", "unreachable"],
                                    capture_output=True, text=True).stdout
            for table in sorted({int(m) for m in re.findall(r"^unreachable default table (\d+)", listed, re.M)}):
                if table >= STITCH_TABLE_BASE and table not in own["tables"][node]:
                    out.append((f"unreachable default of table {table} on {node}",
                                [["ip", "-n", ns, "route", "del", "unreachable", "default", "table", str(table)]]))
            table = nft.read_table(ns) or {"chains": {}, "map": {}}
            for chain in sorted(table["chains"]):
                if chain.startswith("st_") and chain not in own["chains"][node]:
                    out.append((f"nft chain {chain} on {node}", [["ip", "netns", "exec", ns, "nft", "delete", "table",
                                                                 "inet", nft.TABLE]]))
            for ifname, chain in sorted(table["map"].items()):
                if chain not in own["chains"][node]:
                    out.append((f"nft map entry {ifname} → {chain} on {node}",
                                [["ip", "netns", "exec", ns, "nft", "delete", "table", "inet", nft.TABLE]]))
            for link in self.layout.links:
                if node not in (link.a, link.b):
                    continue
                egress = link.ifname_a if node == link.a else link.ifname_b
                index = links.get(egress)
                if index is None:
                    continue
                prios = {m["info"] >> 16 for m in ipr.get_filters(index=index, parent=0x10000)}
                for prio in sorted(prios):  # filters first: a class a filter points to cannot be deleted
                    if prio >= 100 and prio not in own["prios"][(node, egress)]:
                        out.append((f"tc filter prio {prio} on {node} {egress}",
                                    [["tc", "-n", ns, "filter", "del", "dev", egress, "parent", "1:", "prio", str(prio)]]))
                for minor in sorted(routing.htb_classes(ipr, index)):
                    if 0x100 <= minor < DEFAULT_CLASS_MINOR and minor not in own["classes"][(node, egress)]:
                        out.append((f"HTB class 1:{minor:x} on {node} {egress}",
                                    [["tc", "-n", ns, "class", "del", "dev", egress, "classid", f"1:{minor:x}"]]))
        for net in self.world.networks.values():
            for member in net.members:
                ns = self.layout.vm_ns(member.name)
                for msg in self.driver.nss(ns).get_links():
                    name = msg.get_attr("IFLA_IFNAME")
                    if ours.match(name) and name not in own["vm"][member.name]:
                        out.append((f"device {name} in VM {member.name}", [["ip", "-n", ns, "link", "del", name]]))
        for pid, argv in wireguard_processes(self.hashes):
            if pid not in own["pids"]:
                out.append((f"wireguard-go {' '.join(argv[1:])} (pid {pid})", [["kill", "-9", str(pid)]]))
        return out

    # recovery after a fault that was not repaired -------------------------------------------
    def reset(self) -> dict:
        """Out of band: remove kernel objects no stitch owns, detach a moved VM's port from its old
        node, rebuild a node's table whose base
        chains were emptied, re-apply every stored stitch through the driver (fresh=False re-adds
        whatever is missing), then reconcile again."""
        done: list[str] = []
        commands = []
        for what, argv_list in self.stale_objects():
            done.append(f"removed stale {what}")
            commands += [argv for argv in argv_list if argv not in commands]
        for argv in commands:
            sh(*argv)
        for net, member, found in self.misplaced_members():
            for node in found:
                if node != member.node:  # the VM left: detach what the driver left on its old node
                    port = self.member_port(net, member)
                    sh("ip", "-n", self.layout.node_ns(node), "link", "del", port)
                    done.append(f"ip link del {port} ({member.name}) on {node}")
        for node in NODES:
            ns = self.layout.node_ns(node)
            listed = sh("ip", "netns", "exec", ns, "nft", "-j", "list", "chain", "inet", nft.TABLE, "forward")
            rules = [i for i in json.loads(listed.stdout or '{"nftables": []}')["nftables"] if "rule" in i] \
                if listed.returncode == 0 else []
            if len(rules) < 3:
                sh("ip", "netns", "exec", ns, "nft", "delete", "table", "inet", nft.TABLE)
                done.append(f"nft table rebuilt on {node}")
        errors = self.reconcile_pass()  # a detached VM gets its eth0 (and address) back first
        for key, record in sorted(self.driver.state["stitches"].items()):
            try:
                if self.driver.apply(op_from_dict(record["op"])):
                    done.append(f"re-applied {key}")
            except VnstitchError as exc:
                done.append(f"re-apply {key} failed: {exc}")
        converged, passes, why, more = self.converge(time.monotonic())
        return {"actions": done, "converged": converged, "why_not": why, "op_errors": (errors + more)[:5]}


# --- leaks ----------------------------------------------------------------------------------------

def wireguard_processes(hashes: set[str]) -> list[tuple[int, list[str]]]:
    """(pid, argv) of wireguard-go processes (zombies included) for interfaces of our stitches."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                argv = [a.decode(errors="replace") for a in handle.read().split(b"\0") if a]
        except OSError:
            continue
        if argv and argv[0].endswith("wireguard-go") and any(a[2:10] in hashes for a in argv[1:] if a.startswith("vw")):
            found.append((int(entry), argv))
    return found


ZOMBIES_BEFORE: set[str] = set()  # zombie children that were there before the campaign (others' tests)


def zombie_children() -> set[str]:
    """Pids of wireguard-go zombies whose parent is this process (a zombie has no command line: by name
    and parent)."""
    out = set()
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as handle:
                comm, rest = handle.read().rsplit(")", 1)
        except (OSError, ValueError):
            continue
        state, ppid = rest.split()[:2]
        if comm.endswith("(wireguard-go") and state == "Z" and int(ppid) == os.getpid():
            out.add(entry)
    return out


def leaked_objects(name: str, lab_dir: str, wg_names: set[str], hashes: set[str], vm_ports: set[str]) -> list[str]:
    """What of lab `name` is left in the kernel after `lab down`: namespaces, wireguard-go processes
    (zombies included), UAPI sockets, our devices in the root namespace, state files."""
    try:
        from tests.linux.conftest import leftovers
        found = leftovers(name)
    except ImportError:  # pytest missing: the same check
        found = [f"netns {n}" for n in list_netns(f"vns-{name}-")]
    for pid, argv in wireguard_processes(hashes):
        found.append(f"{'process' if pid_alive(pid) else 'zombie'} {pid} {' '.join(argv)}")
    for entry in sorted(zombie_children() - ZOMBIES_BEFORE):
        found.append(f"zombie {entry} wireguard-go (our child, not reaped)")
    found += [f"socket {socket_path(n)}" for n in sorted(wg_names) if os.path.exists(socket_path(n))]
    links = json.loads(sh("ip", "-j", "link", "show").stdout or "[]")
    ours = re.compile(r"^v[gpwt]([0-9a-f]{8})[ab]$")
    for link in links:
        ifname = link.get("ifname", "")
        match = ours.match(ifname)
        if (match and match.group(1) in hashes) or ifname in vm_ports:
            found.append(f"root-namespace device {ifname}")
    if os.path.isdir(lab_dir):
        found += [f"state file {os.path.join(lab_dir, e)}" for e in sorted(os.listdir(lab_dir))]
    return found


# --- the run --------------------------------------------------------------------------------------

def run_campaign(faults: int, stitches: int, seed: int, max_passes: int = 4, max_repair_s: float = 15.0,
                 sequence: list[str] | None = None, kinds: tuple[str, ...] = KINDS, migrate: bool = True,
                 log=print) -> dict:
    """Lab up, stitches established, `faults` faults (random kinds, or `sequence`), lab down, leaks."""
    ZOMBIES_BEFORE.clear()
    ZOMBIES_BEFORE.update(zombie_children())
    rng = random.Random(seed)
    world = World(stitches)
    work = tempfile.mkdtemp(prefix="vns-faults-")
    name = f"flt{os.getpid() % 100000}"
    lab_file, lab_dir = os.path.join(work, "lab.yaml"), os.path.join(work, "lab")
    with open(lab_file, "w") as handle:
        handle.write(to_yaml(world.lab_docs()))
    vm_ports = {member_ifname(name, f"{TENANT}/{net.name}", m.name)
                for net in world.networks.values() for m in net.members}
    services, campaign, results = None, None, []
    started = time.monotonic()
    setup_s = None
    try:
        builder.up(lab_file, name=name, scale=0.01, directory=lab_dir)
        services = open_local(f"sqlite://{work}/state.db", "linux", lab_dir)
        services.apply(parse_documents(to_yaml(world.lab_docs() + world.stitch_docs())))
        campaign = Campaign(world, services, rng, max(max_passes, 10), max(max_repair_s, 60.0), kinds, migrate)
        converged, passes, why, errors = campaign.converge(time.monotonic())
        if not converged:
            raise RuntimeError(f"the stitches did not come up: {why} {errors}")
        campaign.max_passes, campaign.max_repair_s = max_passes, max_repair_s
        setup_s = time.monotonic() - started
        log(f"lab {name}: {len(NODES)} nodes, {len(world.networks)} networks, {stitches} stitches up in "
            f"{setup_s:.1f} s ({passes} passes)")
        total = len(sequence) if sequence is not None else faults
        for index in range(total):
            kind = sequence[index] if sequence is not None else campaign.choose()
            result = campaign.run_fault(index, kind)
            results.append(result)
            log(_line(result))
    finally:
        if campaign is not None:
            campaign.remember_names()
        driver = campaign.driver if campaign is not None else None
        if services is not None:
            services.close()
        builder.down(lab_dir, name=name)
        if driver is not None:  # `lab down` killed the wireguard-go this process started: reap them
            driver.reap(wait_s=2.0)
        leaks = leaked_objects(name, lab_dir, campaign.wg_names if campaign else set(),
                               campaign.hashes if campaign else set(), vm_ports)
        shutil.rmtree(work, ignore_errors=True)
    return summarize(results, leaks, time.monotonic() - started, setup_s, stitches, len(world.networks))


def _line(r: dict) -> str:
    outcome = f"repaired {r['repair_s']:.2f} s" if r["repaired"] else "NOT repaired"
    lost = "" if r["pings_lost"] is None else f", {r['pings_lost']} pings lost"
    extra = f", wrongly alive: {r['wrongly_alive']}" if r["wrongly_alive"] else ""
    why = "" if r["repaired"] else f"  [{'; '.join(r['why_not'][:2])}] reset→{r['reset']['converged']}"
    crashed = next((e for e in r["op_errors"] if e.startswith("pass crashed")), None)
    if crashed:
        why += f" {{{crashed}}}"
    if r.get("stale_new"):
        why += f"  stale: {', '.join(r['stale_new'][:4])}"
    return f"{r['index']:4d} {r['kind']:<16} {r['detail'][:62]:<62} {outcome} ({r['passes']} passes{lost}){extra}{why}"


def summarize(results: list[dict], leaks: list[str], wall_s: float, setup_s: float | None, stitches: int,
              networks: int) -> dict:
    repaired = [r for r in results if r["repaired"]]
    times = [r["repair_s"] for r in repaired]
    pass_times = [r["last_pass_done_s"] for r in repaired]
    lost = [r["pings_lost"] for r in repaired if r["pings_lost"] is not None]  # an outage never repaired has no end
    lost_unrepaired = [r["pings_lost"] for r in results if not r["repaired"] and r["pings_lost"] is not None]
    revocations = [r for r in results if r["revoked"]]
    by_kind = {}
    for kind in FAULT_KINDS:
        mine = [r for r in results if r["kind"] == kind]
        if not mine:
            continue
        kind_times = [r["repair_s"] for r in mine if r["repaired"]]
        kind_lost = [r["pings_lost"] for r in mine if r["repaired"] and r["pings_lost"] is not None]
        by_kind[kind] = {"faults": len(mine), "repaired": len(kind_times),
                         "repair_p50_s": nearest_rank(kind_times, 0.5), "repair_p99_s": nearest_rank(kind_times, 0.99),
                         "pings_lost": sum(kind_lost), "pings_lost_max": max(kind_lost, default=None)}
    return {
        "faults": len(results), "stitches": stitches, "networks": networks, "nodes": len(NODES),
        "repaired": len(repaired), "repaired_pct": round(100.0 * len(repaired) / len(results), 2) if results else None,
        "repair_s": {"p50": nearest_rank(times, 0.5), "p99": nearest_rank(times, 0.99), "max": max(times, default=None),
                     "mean": round(statistics.fmean(times), 3) if times else None},
        # the same, to the end of the pass after which the check passed (without the check's own time)
        "repaired_by_pass_s": {"p50": nearest_rank(pass_times, 0.5), "p99": nearest_rank(pass_times, 0.99)},
        "passes": {"p50": nearest_rank([r["passes"] for r in repaired], 0.5),
                   "max": max((r["passes"] for r in repaired), default=None)},
        "pings_lost": {"interval_s": PING_INTERVAL_S, "faults_measured": len(lost), "total": sum(lost),
                       "per_fault_p50": nearest_rank(lost, 0.5), "per_fault_p99": nearest_rank(lost, 0.99),
                       "max": max(lost, default=None),
                       "until_give_up_in_faults_not_repaired": sum(lost_unrepaired)},
        "revocations": len(revocations), "revoked_stitch_checks": sum(len(r["revoked"]) for r in revocations),
        "wrongly_alive": sum(len(r["wrongly_alive"]) for r in results),
        "leaks": leaks,
        # objects of stitches that no recorded stitch owns, checked after every fault (lab still up)
        "stale": {"faults_leaving_new": sum(1 for r in results if r.get("stale_new")),
                  "new_by_type": _by_type(what for r in results for what in r.get("stale_new", [])),
                  "first": [{"index": r["index"], "kind": r["kind"], "detail": r["detail"], "new": r["stale_new"][:6]}
                            for r in results if r.get("stale_new")][:5],
                  "after_last_fault": results[-1].get("stale", []) if results else []},
        "resets": sum(1 for r in results if r["reset"] is not None),
        "resets_failed": sum(1 for r in results if r["reset"] is not None and not r["reset"]["converged"]),
        "op_errors": sum(len(r["op_errors"]) for r in results),
        "by_kind": by_kind,
        "not_repaired": [{k: r[k] for k in ("index", "kind", "detail", "why_not", "op_errors", "reset")}
                         for r in results if not r["repaired"]],
        "setup_s": round(setup_s, 2) if setup_s is not None else None, "wall_s": round(wall_s, 1),
        "results": results,
    }


STALE_TYPES = ("HTB class", "tc filter", "device", "rules of table", "unreachable rule", "nft chain", "nft map entry",
               "wireguard-go")


def _by_type(items) -> dict[str, int]:
    counts: dict[str, int] = {}
    for what in items:
        kind = next((t for t in STALE_TYPES if what.startswith(t)), "other")
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def render(figures: dict) -> str:
    def s(value, unit=" s"):
        return "-" if value is None else f"{value:.2f}{unit}"
    lines = [
        f"faults repaired:        {figures['repaired']}/{figures['faults']} ({figures['repaired_pct']} %)   goal 100 %",
        f"time to repair:         p50 {s(figures['repair_s']['p50'])}, p99 {s(figures['repair_s']['p99'])}, "
        f"max {s(figures['repair_s']['max'])} (to the end of the repairing pass: "
        f"p50 {s(figures['repaired_by_pass_s']['p50'])}, p99 {s(figures['repaired_by_pass_s']['p99'])})",
        f"pings lost in repair:   {figures['pings_lost']['total']} over {figures['pings_lost']['faults_measured']} faults "
        f"(one echo / {PING_INTERVAL_S * 1e3:.0f} ms; per fault p50 {figures['pings_lost']['per_fault_p50']}, "
        f"p99 {figures['pings_lost']['per_fault_p99']}, max {figures['pings_lost']['max']}; repaired faults only)",
        f"wrongly alive:          {figures['wrongly_alive']} of {figures['revoked_stitch_checks']} revoked stitches "
        f"({figures['revocations']} revocations)   goal 0",
        f"leaked kernel objects:  {len(figures['leaks'])} after lab down   goal 0" + "".join(f"\n    {x}" for x in figures["leaks"]),
        f"                        while up: {figures['stale']['faults_leaving_new']} faults left objects no stitch owns "
        f"{figures['stale']['new_by_type']}; after the last fault: {len(figures['stale']['after_last_fault'])}   goal 0",
        f"resets after a fault not repaired: {figures['resets']} ({figures['resets_failed']} did not converge either)",
        "", f"{'kind':<16} {'faults':>6} {'repaired':>8} {'p50 s':>7} {'p99 s':>7} {'lost':>5} {'max lost':>8}",
    ]
    for kind, row in figures["by_kind"].items():
        lines.append(f"{kind:<16} {row['faults']:>6} {row['repaired']:>8} {s(row['repair_p50_s'], ''):>7} "
                     f"{s(row['repair_p99_s'], ''):>7} {row['pings_lost']:>5} {str(row['pings_lost_max']):>8}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faults", type=int, default=200)
    parser.add_argument("--stitches", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-passes", type=int, default=4, help="passes after a fault before giving up")
    parser.add_argument("--max-repair-s", type=float, default=15.0, help="seconds after a fault before giving up")
    parser.add_argument("--apply-only-moves", action="store_true",
                        help="move a VM by applying the changed network only, leaving its old NIC in place")
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated fault kinds to draw from")
    parser.add_argument("--json", default=str(ROOT / "out" / "bench" / "faults.json"))
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/faults.py needs root (network namespaces)", file=sys.stderr)
        return 2
    kinds = tuple(k for k in args.kinds.split(",") if k)
    unknown = [k for k in kinds if k not in KINDS + POLICY_KINDS]
    if unknown:
        parser.error(f"unknown fault kinds {unknown} (valid: {', '.join(KINDS + POLICY_KINDS)})")
    command = " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv])
    load_before = os.getloadavg()
    figures = run_campaign(args.faults, args.stitches, args.seed, args.max_passes, args.max_repair_s, kinds=kinds,
                           migrate=not args.apply_only_moves)
    figures.update({"command": command, "seed": args.seed, "max_passes": args.max_passes,
                    "moves": "apply only" if args.apply_only_moves else "old NIC detached, then apply",
                    "max_repair_s": args.max_repair_s,
                    "machine": {"cpus": os.cpu_count(), "kernel": platform.release(),
                                "load_before": [round(x, 2) for x in load_before],
                                "load_after": [round(x, 2) for x in os.getloadavg()]}})
    print()
    print(render(figures))
    print(f"\ncommand: {command}\nwall time: {figures['wall_s']} s (setup {figures['setup_s']} s)")
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as handle:
        json.dump(figures, handle, indent=2)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
