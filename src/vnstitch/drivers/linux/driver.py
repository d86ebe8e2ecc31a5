"""The `linux` driver: applies planner ops to the lab's namespaces and reads the kernel back."""

from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
import os
from contextlib import contextmanager
from typing import Iterator

from vnstitch.drivers.base import Observed, ObservedNetwork, ObservedStitch
from vnstitch.drivers.linux import nft, routing, stitch as stitch_mod, wireguard
from vnstitch.drivers.linux.kernel import ENOENT, Namespaces, ifindex, netns_exists, pid_alive
from vnstitch.drivers.linux.layout import (
    DRIVER_FILE, LabLayout, StitchNames, bridge_ifname, load_layout, member_ifname, short_hash, state_dir,
    write_json,
)
from vnstitch.drivers.linux.network import ensure_network, remove_bridge
from vnstitch.errors import DriverError
from vnstitch.planning.ops import (
    EnsureNetwork, EnsureStitch, MemberPlacement, Op, RemoveNetwork, RemoveStitch, SetStitchRate, StitchEnd,
)

log = logging.getLogger(__name__)


def op_to_dict(op: EnsureStitch) -> dict:
    data = dataclasses.asdict(op)
    data.pop("reason", None)
    return data


def op_from_dict(data: dict) -> EnsureStitch:
    return EnsureStitch(stitch=data["stitch"], type=data["type"], a=StitchEnd(**data["a"]), b=StitchEnd(**data["b"]),
                        path=tuple(data["path"]), rate_bps=data["rate_bps"], encrypted=data["encrypted"],
                        symmetric=data.get("symmetric", True))


class LinuxDriver:
    """Realises ops in the namespaces `vnstitch lab up` built; state lives next to the lab's."""

    name = "linux"
    capabilities = frozenset({"encryption", "rate_limit", "counters", "path_pinning", "policy", "restart_safe"})

    def __init__(self, state_dir_path: str | None = None):
        self.state_dir = state_dir(state_dir_path)
        lab = load_layout(self.state_dir)
        if lab is None:
            raise DriverError(f"no lab in {self.state_dir}: run `vnstitch lab up FILE` first", errno=ENOENT)
        self.lab: LabLayout = lab
        self.nss = Namespaces()
        self._procs: dict = {}
        self.state = self._load()

    # --- state ------------------------------------------------------------------------

    def _load(self) -> dict:
        try:
            with open(os.path.join(self.state_dir, DRIVER_FILE)) as handle:
                data = json.load(handle)
        except FileNotFoundError:
            data = {}
        data.setdefault("networks", {})
        data.setdefault("stitches", {})
        return data

    def _save(self) -> None:
        write_json(os.path.join(self.state_dir, DRIVER_FILE), self.state)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer at a time per state dir (re-read state: another instance may have applied ops)."""
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        with open(os.path.join(self.state_dir, ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self.state = self._load()
            yield

    def _context(self) -> stitch_mod.StitchContext:
        members = {key: net["members"] for key, net in self.state["networks"].items()}
        return stitch_mod.StitchContext(self.nss, self.lab, self.state_dir, members, self._procs)

    # --- apply ------------------------------------------------------------------------

    def apply(self, op: Op) -> bool:
        with self._locked():
            if isinstance(op, EnsureNetwork):
                return self._ensure_network(op)
            if isinstance(op, RemoveNetwork):
                return self._remove_network(op)
            if isinstance(op, EnsureStitch):
                return self._ensure_stitch(op)
            if isinstance(op, SetStitchRate):
                return self._set_rate(op)
            if isinstance(op, RemoveStitch):
                return self._remove_stitch(op.stitch)
        raise DriverError(f"linux driver does not know op {type(op).__name__}", errno=95)

    def _ensure_network(self, op: EnsureNetwork) -> bool:
        changed = ensure_network(self.nss, self.lab, op)
        record = {"vnid": op.vnid, "cidr": op.cidr,
                  "members": [{"name": m.name, "node": m.node, "address": m.address} for m in op.members]}
        if self.state["networks"].get(op.network) != record:
            self.state["networks"][op.network] = record
            self._save()
        ctx = self._context()
        for rec in self.state["stitches"].values():  # members that joined later get the stitch routes
            sop = op_from_dict(rec["op"])
            if sop.type == "direct":
                continue
            names = StitchNames(rec["hash"], rec["index"])
            for side, end in (("a", sop.a), ("b", sop.b)):
                if end.network == op.network:
                    changed |= stitch_mod._ensure_vm_routes(ctx, sop, names, side)
        return changed

    def _remove_network(self, op: RemoveNetwork) -> bool:
        record = self.state["networks"].get(op.network)
        if record is None:
            return False
        changed = False
        for node in self.lab.nodes:
            changed |= remove_bridge(self.nss, self.lab, record["vnid"], node)
        for member in record["members"]:
            ns = self.lab.vm_ns(member["name"])
            changed |= self.nss.remove(ns)
        del self.state["networks"][op.network]
        self._save()
        return changed

    def _allocate_index(self) -> int:
        used = {rec["index"] for rec in self.state["stitches"].values()}
        index = 0
        while index in used:
            index += 1
        return index

    def _ensure_stitch(self, op: EnsureStitch) -> bool:
        ctx = self._context()
        record = self.state["stitches"].get(op.stitch)
        if record is not None:
            old = op_from_dict(record["op"])
            if old != dataclasses.replace(op, reason=""):
                if dataclasses.replace(old, rate_bps=op.rate_bps) == dataclasses.replace(op, reason=""):
                    changed = stitch_mod.ensure_rate(ctx, old, StitchNames(record["hash"], record["index"]),
                                                     op.rate_bps)
                    record["op"] = op_to_dict(op)
                    self._save()
                    return changed or True
                self._remove_stitch(op.stitch)  # different shape: rebuild
                record = None
        fresh = record is None
        if fresh:
            record = {"index": self._allocate_index(), "hash": short_hash(self.lab.name, op.stitch),
                      "op": op_to_dict(op), "pids": {}}
            self.state["stitches"][op.stitch] = record
            self._save()  # before touching the kernel: a crash mid-build leaves a record to clean up
        names = StitchNames(record["hash"], record["index"])
        try:
            changed = stitch_mod.start_tunnel_processes(ctx, op, names, record)
            if changed:
                self._save()
            changed |= stitch_mod.ensure_tunnel_config(ctx, op, names, record)
            for side in stitch_mod.SIDES:
                changed |= stitch_mod.ensure_end(ctx, op, names, side, fresh)
            changed |= stitch_mod.ensure_path(ctx, op, names)
        except Exception as exc:
            log.warning("stitch %s failed (%s); rolling back", op.stitch, exc)
            try:
                stitch_mod.teardown(ctx, op, names, record)
            finally:
                self.state["stitches"].pop(op.stitch, None)
                self._save()
            if isinstance(exc, DriverError):
                raise
            raise DriverError(f"stitch {op.stitch}: {exc}", errno=getattr(exc, "errno", None)) from exc
        self._save()
        return changed or fresh

    def _set_rate(self, op: SetStitchRate) -> bool:
        record = self.state["stitches"].get(op.stitch)
        if record is None:
            raise DriverError(f"stitch {op.stitch} does not exist", field="stitch", errno=ENOENT)
        sop = op_from_dict(record["op"])
        changed = stitch_mod.ensure_rate(self._context(), sop, StitchNames(record["hash"], record["index"]),
                                         op.rate_bps)
        record["op"]["rate_bps"] = op.rate_bps
        self._save()
        return changed

    def _remove_stitch(self, key: str) -> bool:
        record = self.state["stitches"].get(key)
        if record is None:
            return False
        sop = op_from_dict(record["op"])
        stitch_mod.teardown(self._context(), sop, StitchNames(record["hash"], record["index"]), record)
        del self.state["stitches"][key]
        self._save()
        return True

    # --- observe ----------------------------------------------------------------------

    def observe(self) -> Observed:
        self.state = self._load()
        observed = Observed()
        for key, record in self.state["networks"].items():
            nodes = set()
            for node in self.lab.nodes:
                if ifindex(self.nss(self.lab.node_ns(node)), bridge_ifname(record["vnid"])) is not None:
                    nodes.add(node)
            if not nodes:
                continue
            members = set()
            for m in record["members"]:
                if m["node"] in nodes and netns_exists(self.lab.vm_ns(m["name"])) and ifindex(
                        self.nss(self.lab.node_ns(m["node"])), member_ifname(self.lab.name, key, m["name"])):
                    members.add(m["name"])
            observed.networks[key] = ObservedNetwork(key, record["vnid"], frozenset(nodes), frozenset(members))
        for key, record in self.state["stitches"].items():
            observed.stitches[key] = self._observe_stitch(key, record)
        return observed

    def _observe_stitch(self, key: str, record: dict) -> ObservedStitch:
        op = op_from_dict(record["op"])
        names = StitchNames(record["hash"], record["index"])
        healthy, encrypted, tx, rx = True, False, 0, 0
        for side, end in (("a", op.a), ("b", op.b)):
            ipr = self.nss(self.lab.node_ns(end.node))
            if ifindex(ipr, names.gateway_if(side)) is None:
                healthy = False
            if ifindex(ipr, names.wg_if(side)) is not None:
                encrypted = True
                if not pid_alive(record.get("pids", {}).get(side), needle=names.wg_if(side)):
                    healthy = False
            elif ifindex(ipr, names.vxlan_if(side)) is None:
                healthy = False
            if routing.count_rules(ipr, names.table) < 2:
                healthy = False
            rules = nft.read_chain(self.lab.node_ns(end.node), nft.chain_name(f"{names.hash}{side}"))
            if rules is None:
                healthy = False
            elif side == "a":
                counters = nft.chain_counters(rules)
                tx, rx = (counters + [0, 0])[:2]
        for node in op.path[1:-1]:
            if routing.count_rules(self.nss(self.lab.node_ns(node)), names.table) < 1:
                healthy = False
        rate = 0.0
        egresses = stitch_mod.shaped_egresses(self.lab, op.path, op.symmetric)
        if egresses:
            node, egress, _ = egresses[0]
            ipr = self.nss(self.lab.node_ns(node))
            cls = routing.htb_classes(ipr, ifindex(ipr, egress)).get(names.class_minor)
            if cls is not None and self.lab.scale > 0:
                rate = cls["rate_bps"] / self.lab.scale
            elif op.rate_bps > 0:
                healthy = False
        return ObservedStitch(stitch=key, type=op.type, path=op.path, rate_bps=rate, encrypted=encrypted,
                              healthy=healthy, tx_bytes=tx, rx_bytes=rx)

    def wireguard_status(self, key: str) -> dict[str, dict]:
        """Per end: listen port, peer endpoint, handshake, counters (never the private key)."""
        record = self.state["stitches"][key]
        names = StitchNames(record["hash"], record["index"])
        out = {}
        for side in stitch_mod.SIDES:
            try:
                config = wireguard.read_config(names.wg_if(side))
            except DriverError:
                continue
            config.pop("private_key", None)
            out[side] = config
        return out

    def close(self) -> None:
        """Drop netlink sockets; tunnels and wireguard-go keep running (restart-safe)."""
        self.nss.close()
        for proc in self._procs.values():
            proc.poll()
        self._procs.clear()


__all__ = ["LinuxDriver", "MemberPlacement"]
