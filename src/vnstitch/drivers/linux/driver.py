"""The `linux` driver: applies planner ops to the lab's namespaces and reads the kernel back."""

from __future__ import annotations

import dataclasses
import fcntl
import ipaddress
import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

from vnstitch.planning.observed import Observed, ObservedFilter, ObservedNetwork, ObservedStitch
from vnstitch.drivers.linux import filters as filters_mod, guard, nft, routing, stitch as stitch_mod, wireguard
from vnstitch.drivers.linux.probe import Prober, probe_target
from vnstitch.drivers.linux.kernel import ENOENT, Namespaces, netns_exists, pid_alive
from vnstitch.drivers.linux.layout import (
    LabLayout, StitchNames, bridge_ifname, load_layout, member_ifname, short_hash, state_dir,
)
from vnstitch.drivers.linux.network import ensure_network, remove_bridge
from vnstitch.drivers.linux.statefile import StateFile
from vnstitch.errors import DriverError
from vnstitch.planning.ops import (
    EnsureFilter, EnsureNetwork, EnsureStitch, MemberPlacement, Op, QosRule, RemoveFilter, RemoveNetwork, RemoveStitch,
    ServiceRule, SetStitchRate, StitchEnd,
)

log = logging.getLogger(__name__)

MIN_SAMPLE_S = 0.2  # a throughput sample spans at least this long (s)


@dataclass(frozen=True)
class _CounterSample:
    time: float                 # clock() at the observe that read them (s)
    tx: int                     # bytes, a→b rule of the a-end chain
    rx: int                     # bytes, b→a rule
    rate_bps: float | None      # throughput computed when this sample was taken


def op_to_dict(op: EnsureStitch) -> dict:
    data = dataclasses.asdict(op)   # services and qos become lists of dicts (a QosRule's ports a list)
    data.pop("reason", None)
    for rule in data.get("qos", ()):
        rule["ports"] = list(rule["ports"])
    return data


def op_from_dict(data: dict) -> EnsureStitch:
    """The op a state record holds; records written before services and qos existed have neither (all
    traffic crosses, one class)."""
    services = tuple(ServiceRule(rule["protocol"], rule.get("port")) for rule in data.get("services") or ())
    qos = tuple(QosRule(rule["name"], rule["rank"], rule["share"], rule.get("dscp"), tuple(rule.get("ports") or ()))
                for rule in data.get("qos") or ())
    return EnsureStitch(stitch=data["stitch"], type=data["type"], a=StitchEnd(**data["a"]), b=StitchEnd(**data["b"]),
                        path=tuple(data["path"]), rate_bps=data["rate_bps"], encrypted=data["encrypted"],
                        symmetric=data.get("symmetric", True), keys_after=data.get("keys_after", 0.0),
                        key_rotation_s=data.get("key_rotation_s"), services=services, qos=qos)


def _shape(op: EnsureStitch) -> EnsureStitch:
    """What a stitch is built as: a different shape is a rebuild; the rate, the keys, the services (its
    nft chains are rewritten) and the QoS classes change in place."""
    return dataclasses.replace(op, reason="", rate_bps=0.0, keys_after=0.0, services=(), qos=())


class LinuxDriver:
    """Realises ops in the namespaces `vnstitch lab up` built; state lives next to the lab's."""

    name = "linux"
    capabilities = frozenset({"encryption", "rate_limit", "counters", "path_pinning", "policy", "restart_safe",
                              "filters"})

    def __init__(self, state_dir_path: str | None = None, clock: Callable[[], float] = time.monotonic,
                 probe_interval_s: float = 5.0, probe_count: int = 5, wall_clock: Callable[[], float] = time.time):
        self.state_dir = state_dir(state_dir_path)
        self.clock = clock   # monotonic: only intervals between observes are measured with it
        self.wall_clock = wall_clock  # unix time: when keys were made (the controller's keys_after is one)
        self._samples: dict[str, _CounterSample] = {}   # stitch → its counters at an earlier observe
        # latency and loss: each healthy stitch pinged through itself at most every probe_interval_s
        self.prober = Prober(interval_s=probe_interval_s, count=probe_count)
        lab = load_layout(self.state_dir)
        if lab is None:
            raise DriverError(f"no lab in {self.state_dir}: run `vnstitch lab up FILE` first", errno=ENOENT)
        self.lab: LabLayout = lab
        self.nss = Namespaces()
        self._procs: dict = {}
        self._uplink_bases: set[str] = set()   # node namespaces with the uplink rules (uplink.ensure_node_base)
        self._guard_seen: dict[str, tuple] = {}   # VM namespace → (set handle, destinations) at its last reading
        self._new_ends: set[str] = set()       # wireguard-go started, its namespace's MTU not yet set
        self._state_file = StateFile(self.state_dir)
        self._stamp: tuple | None = None   # the state files as we last read or wrote them
        self._dirty: set[str] = set()       # stitch records the op in progress may change
        self.state = self._load()

    # --- state ------------------------------------------------------------------------

    def _load(self) -> dict:
        data, self._stamp = self._state_file.load()
        return data

    def _save(self) -> None:
        """Journal the stitch record the op in progress is about (`_dirty`) and the rest of the state if it
        changed (statefile.py): a save costs the same at 1 or 1,000 stitches."""
        self._state_file.save(self.state, self._dirty)
        self._stamp = self._state_file.stamp()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer at a time per state dir; re-read the state when another instance changed it
        (the file is replaced atomically, so a new inode/mtime/size means a new state)."""
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        with open(os.path.join(self.state_dir, ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self._state_file.stamp() != self._stamp:
                self.state = self._load()
            yield

    def _context(self) -> stitch_mod.StitchContext:
        members = {key: net["members"] for key, net in self.state["networks"].items()}
        return stitch_mod.StitchContext(self.nss, self.lab, self.state_dir, members, self._procs,
                                        wall_clock=self.wall_clock, save=self._save,  # save: rotation steps
                                        uplink_bases=self._uplink_bases, new_ends=self._new_ends)

    # --- apply ------------------------------------------------------------------------

    def apply(self, op: Op) -> bool:
        # the one stitch record this op may change (_save encodes only it again)
        self._dirty = {op.stitch} if isinstance(op, (EnsureStitch, SetStitchRate, RemoveStitch)) else set()
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
            if isinstance(op, EnsureFilter):
                return self._ensure_filter(op)
            if isinstance(op, RemoveFilter):
                return self._remove_filter(op.filter)
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
            names = StitchNames.of(rec)
            for side, end in (("a", sop.a), ("b", sop.b)):
                if end.network == op.network:
                    changed |= stitch_mod.ensure_vm_routes(ctx, sop, names, side)
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
                if _shape(old) != _shape(op):
                    self._remove_stitch(op.stitch)  # different shape: rebuild
                    record = None
                elif dataclasses.replace(old, rate_bps=op.rate_bps) == dataclasses.replace(op, reason=""):
                    names = StitchNames.of(record)  # only the rate: set it
                    changed = stitch_mod.ensure_rate(ctx, old, names, op.rate_bps)
                    changed |= stitch_mod.ensure_qos(ctx, op, names, op.rate_bps)  # the classes share it
                    record["op"] = op_to_dict(op)
                    self._save()
                    return changed or True
                else:  # newer keys, other services or QoS classes: re-applied below in place (keys rotated)
                    record["op"] = op_to_dict(op)
        # fresh: allocated now, so nothing named after it exists and build() may skip reading lists
        fresh = record is None
        if fresh:
            stitch_mod.validate(ctx, op)
            record = {"index": self._allocate_index(), "hash": short_hash(self.lab.name, op.stitch),
                      "op": op_to_dict(op), "pids": {}}
            self.state["stitches"][op.stitch] = record
        names = StitchNames.of(record)
        try:
            if fresh:
                # wireguard-go first (it starts in the background), then record the stitch with its
                # pids before anything else: a crash mid-build leaves a record to clean up.
                stitch_mod.start_tunnel_processes(ctx, op, names, record, fresh=True)
                self._save()
            changed = stitch_mod.build(ctx, op, names, record, fresh)
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
        try:  # outside the rollback: a failed rotation leaves the stitch up on its old keys (see rotate_keys)
            rotated = stitch_mod.rotate_keys(ctx, op, names, record)
        except Exception:
            self._save()
            raise
        if changed or fresh or rotated or record["op"] != op_to_dict(op):
            record["op"] = op_to_dict(op)
            self._save()
        return changed or fresh or rotated

    def _set_rate(self, op: SetStitchRate) -> bool:
        record = self.state["stitches"].get(op.stitch)
        if record is None:
            raise DriverError(f"stitch {op.stitch} does not exist", field="stitch", errno=ENOENT)
        sop = op_from_dict(record["op"])
        ctx, names = self._context(), StitchNames.of(record)
        changed = stitch_mod.ensure_rate(ctx, sop, names, op.rate_bps)
        changed |= stitch_mod.ensure_qos(ctx, sop, names, op.rate_bps)
        record["op"]["rate_bps"] = op.rate_bps
        self._save()
        return changed

    def _remove_stitch(self, key: str) -> bool:
        record = self.state["stitches"].get(key)
        if record is None:
            return False
        sop = op_from_dict(record["op"])
        stitch_mod.teardown(self._context(), sop, StitchNames.of(record), record)
        del self.state["stitches"][key]
        self._save()
        self._hand_back_vm_routes(sop)
        return True

    def _filter_vms(self, key: str, node: str, src: str) -> list[str]:
        """The namespaces of the filter's tenant's VMs on `node` whose address lies in `src` (tenants' address
        spaces may overlap): their traffic leaves through their own guard (guard.py) before the node sees it,
        so a filter on `src` sits there too. The filter's name starts with its tenant ("acme/…")."""
        try:
            source = ipaddress.ip_network(src, strict=False)
        except ValueError:
            return []
        tenant = key.partition("/")[0]
        return sorted(self.lab.vm_ns(m["name"]) for name, net in self.state["networks"].items()
                      if name.partition("/")[0] == tenant for m in net["members"]
                      if m["node"] == node and ipaddress.ip_address(m["address"]) in source
                      and netns_exists(self.lab.vm_ns(m["name"])))

    def _ensure_filter(self, op: EnsureFilter) -> bool:
        """An anomaly's filter in the nftables of the node where its source attaches (drivers/linux/filters.py),
        and in front of the guard of each VM of that source on the node (what no stitch carries stops there)."""
        if op.node not in self.lab.nodes:
            raise DriverError(f"filter {op.filter}: node {op.node} is not in the lab", errno=ENOENT)
        vms = self._filter_vms(op.filter, op.node, op.src)
        record = {"node": op.node, "src": op.src, "dst": op.dst, "action": op.action, "rate_bps": op.rate_bps,
                  "allow": [dataclasses.asdict(r) for r in op.allow], "vms": vms}
        old = self.state["filters"].get(op.filter)
        changed = False
        if old is not None:
            if old["node"] != op.node:
                changed = filters_mod.remove_filter(self.lab.node_ns(old["node"]), op.filter)
            for vm in set(old.get("vms", ())) - set(vms):
                changed |= self._remove_vm_filter(vm, op.filter)
        changed |= filters_mod.ensure_filter(self.lab.node_ns(op.node), op.filter, op.src, op.dst, op.action,
                                             op.rate_bps, op.allow)
        for vm in vms:
            changed |= filters_mod.ensure_filter(vm, op.filter, op.src, op.dst, op.action, op.rate_bps, op.allow,
                                                 table=guard.TABLE, chain=guard.CHAIN, base=guard.BASE,
                                                 passed="return")
        if old != record:
            self.state["filters"][op.filter] = record
            self._save()
        return changed

    def _remove_vm_filter(self, vm: str, key: str) -> bool:
        if not netns_exists(vm):
            return False
        return filters_mod.remove_filter(vm, key, table=guard.TABLE, chain=guard.CHAIN)

    def _remove_filter(self, key: str) -> bool:
        record = self.state["filters"].get(key)
        if record is None:
            return False
        filters_mod.remove_filter(self.lab.node_ns(record["node"]), key)
        for vm in record.get("vms", ()):
            self._remove_vm_filter(vm, key)
        del self.state["filters"][key]
        self._save()
        return True

    def filters(self) -> dict[str, ObservedFilter]:
        """The anomaly filters this driver made, with what their counters dropped (one nft list per node and
        per VM that holds one)."""
        self.state = self._load()
        counters: dict[str, dict[str, tuple[int, int]]] = {}
        out = {}
        for key, f in self.state["filters"].items():
            packets = size = 0
            places = [(self.lab.node_ns(f["node"]), filters_mod.TABLE)] + [(vm, guard.TABLE) for vm in f.get("vms", ())]
            for ns, table in places:
                if ns not in counters:
                    counters[ns] = filters_mod.filter_counters(ns, table) if netns_exists(ns) else {}
                p, b = counters[ns].get(key, (0, 0))
                packets, size = packets + p, size + b
            out[key] = ObservedFilter(key, f["node"], f["src"], f["dst"], f["action"], f["rate_bps"],
                                      tuple(ServiceRule(**r) for r in f["allow"]), packets, size)
        return out

    def _hand_back_vm_routes(self, gone: EnsureStitch) -> None:
        """The VMs' route towards the other network was the removed stitch's (the stitch ensured last
        takes it): give it to a remaining stitch between the same networks (the one reserving most), so
        that, e.g., ending a forecast stitch does not cut off the user stitch the pair still has."""
        if gone.type == "direct":
            return
        ends = {gone.a.network, gone.b.network}
        siblings = []
        for key, record in self.state["stitches"].items():
            sop = op_from_dict(record["op"])
            if sop.type != "direct" and {sop.a.network, sop.b.network} == ends:
                siblings.append((sop.rate_bps, key, sop, record))
        if not siblings:
            return
        _, key, sop, record = max(siblings, key=lambda s: (s[0], s[1]))
        ctx, names = self._context(), StitchNames.of(record)
        for side in stitch_mod.SIDES:
            try:
                stitch_mod.ensure_vm_routes(ctx, sop, names, side)
            except DriverError as exc:  # e.g. a VM just gone: the next pass repairs what it can
                log.warning("handing the VM routes of %s back to %s: %s", gone.stitch, key, exc)

    # --- observe ----------------------------------------------------------------------

    def reap(self, wait_s: float = 0.0) -> None:
        """Reap the wireguard-go processes this driver started that have died (killed, crashed, or
        stopped by `lab down`), waiting up to `wait_s` for dying ones: no zombies."""
        deadline = time.monotonic() + wait_s
        for key, proc in list(self._procs.items()):
            while proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            if "#" in key and proc.returncode is not None:  # a replaced one, now reaped
                del self._procs[key]

    def observe(self) -> Observed:
        """Read the kernel back: one link, rule, nft and class dump per namespace, shared by all stitches."""
        self.state = self._load()
        self.reap()
        snap = _Snapshot(self.nss, self.lab, self.clock())
        observed = Observed()
        for key, record in self.state["networks"].items():
            nodes = {node for node in self.lab.nodes if bridge_ifname(record["vnid"]) in snap.links(node)}
            if not nodes:
                continue
            members, placements = set(), set()
            for m in record["members"]:
                if m["node"] in nodes and netns_exists(self.lab.vm_ns(m["name"])) and (
                        member_ifname(self.lab.name, key, m["name"]) in snap.links(m["node"])):
                    members.add(m["name"])
                    placements.add((m["name"], m["node"]))
            observed.networks[key] = ObservedNetwork(key, record["vnid"], frozenset(nodes), frozenset(members),
                                                     frozenset(placements))
        for key, record in self.state["stitches"].items():
            observed.stitches[key] = self._observe_stitch(key, record, snap)
        for key in set(self._samples) - set(observed.stitches):  # removed stitches
            del self._samples[key]
        self._probe(observed, snap.time)
        observed.filters = self.filters()
        return observed

    def _probe(self, observed: Observed, now: float) -> None:
        """Latency and loss of the healthy stitches from the prober (probe.py): the due ones pinged
        all at once, the others from its cache; an unhealthy stitch (its problem already says why)
        is not pinged, and keeps None."""
        members = {key: net["members"] for key, net in self.state["networks"].items()}
        targets = {}
        for key, have in observed.stitches.items():
            if have.healthy:
                record = self.state["stitches"][key]
                op = op_from_dict(record["op"])
                tcp_port = None
                if not _lets_icmp_through(op):  # echoes would be dropped (and counted as denied): time TCP
                    tcp_port = next((r.port for r in op.services if r.protocol == "tcp" and r.port), None)
                    if tcp_port is None:
                        continue  # no TCP port crosses either: latency and loss unknown
                targets[key] = ((op, record["hash"], record["index"]),
                                probe_target(self.lab, members, op, tcp_port))
        for key, result in self.prober.results(targets, now).items():
            observed.stitches[key] = dataclasses.replace(observed.stitches[key], latency_s=result.latency_s,
                                                         loss=result.loss)

    def _observe_stitch(self, key: str, record: dict, snap: "_Snapshot") -> ObservedStitch:
        op = op_from_dict(record["op"])
        names = StitchNames.of(record)
        problems: list[str] = []  # what is broken, first found first
        local = stitch_mod.is_local(op)
        # a local stitch never leaves its node: its traffic is as private as the node itself
        encrypted, tx, rx, counted = local and op.encrypted, 0, 0, False
        services_seen: list[tuple | None] = []   # per chain, the services its rules enforce
        denied: int | None = 0                   # drop-rule packets of both chains; None: one unreadable
        qos_seen: list[tuple] = []               # per end, the QoS classes its tunnel device holds
        for side, end in (("a", op.a), ("b", op.b)):
            links = snap.links(end.node)
            down = snap.down(end.node)
            if names.gateway_if(side) not in links:
                problems.append(f"gateway {names.gateway_if(side)} missing on {end.node}")
            elif names.gateway_if(side) in down:
                problems.append(f"gateway {names.gateway_if(side)} is down on {end.node}")
            if local:
                pass  # no tunnel: the far end's gateway veth, checked on its own turn, is the way across
            elif names.wg_if(side) in links:
                encrypted = True
                if not pid_alive(record.get("pids", {}).get(side), needle=names.wg_if(side)):
                    problems.append(f"wireguard-go for {names.wg_if(side)} on {end.node} is not running")
                elif names.wg_if(side) in down:
                    problems.append(f"WireGuard device {names.wg_if(side)} is down on {end.node}")
                elif names.uplink_if(side) not in links or names.uplink_if(side) in down:
                    problems.append(f"tunnel uplink {names.uplink_if(side)} missing or down on {end.node}")
            elif op.encrypted:
                problems.append(f"WireGuard device {names.wg_if(side)} missing on {end.node}")
            elif names.vxlan_if(side) not in links:
                problems.append(f"VXLAN device {names.vxlan_if(side)} missing on {end.node}")
            elif names.vxlan_if(side) in down:
                problems.append(f"VXLAN device {names.vxlan_if(side)} is down on {end.node}")
            if snap.rules(end.node).get(names.table, 0) < 2:
                problems.append(f"policy routing rules of table {names.table} missing on {end.node}")
            if names.table not in snap.fallbacks(end.node):   # else what T does not route reaches main
                problems.append(f"unreachable default of table {names.table} missing on {end.node}")
            if side not in stitch_mod.policy_sides(op):
                continue
            spec = stitch_mod.nft_spec(op, names, side)
            rules, problem = nft.stitch_chain_problem(snap.nft_table(end.node), *spec)
            if problem:
                problems.append(f"{problem} on {end.node}")
            services_seen.append(nft.chain_services(rules, *spec[1:5], inbound=spec[6]))
            if rules is None:
                denied = None
            else:
                out_bytes, in_bytes, dropped = nft.chain_totals(rules, spec[1])
                denied = None if denied is None else denied + dropped
                if side == "a":
                    tx, rx = out_bytes, in_bytes
                    counted = problem is None
        try:
            pinned = stitch_mod.pin_routes(self.lab, op)
        except KeyError as exc:
            pinned = {}
            problems.append(f"path leaves the lab ({exc})")
        for node in pinned:
            if node not in self.lab.nodes or snap.rules(node).get(names.table, 0) < 1:
                problems.append(f"pinned route of table {names.table} missing on {node}")
            elif names.table not in snap.fallbacks(node):
                problems.append(f"unreachable default of table {names.table} missing on {node}")
        for node in dict.fromkeys(op.path):
            base = nft.base_problem(snap.nft_table(node)) if node in self.lab.nodes else None
            if base:
                problems.append(f"{base} on {node}")
        if not problems:  # the cheap checks passed: ask the kernel where the traffic really goes
            ctx = self._context()
            for side in ("a", "b"):
                route = stitch_mod.route_problem(ctx, op, names, side)
                if route:
                    problems.append(route)
                    break
        rate = 0.0
        try:
            egresses = stitch_mod.shaped_egresses(self.lab, op.path, op.symmetric)
        except KeyError as exc:
            egresses = []
            problems.append(f"path leaves the lab ({exc})")
        if local:
            rate = op.rate_bps  # no substrate link to shape: the node forwards between its own veths
        elif egresses:
            node, egress, _ = egresses[0]
            cls = snap.classes(node, egress).get(names.class_minor)
            if cls is not None and self.lab.scale > 0:
                rate = cls["rate_bps"] / self.lab.scale / stitch_mod.wire_factor(op)
            elif op.rate_bps > 0:
                problems.append(f"HTB class {names.class_minor} missing on {node} {egress}")
        for side, node, ifname in stitch_mod.qos_devices(op, names):
            index = snap.links(node).get(ifname)
            if index is not None:
                tree = snap.qos(node, ifname, index)
                # a stitch whose rate was set to 0 has nothing to share: ensure_qos leaves no tree then
                qos_seen.append(op.qos if tree is None and op.rate_bps <= 0 else
                                routing.qos_in_force(op.qos, self.lab.scale * op.rate_bps, tree))
            elif op.qos:
                qos_seen.append(())   # no device, no classes (its absence is the problem reported)
        if not counted:
            self._samples.pop(key, None)  # no counters to trust: start again from the next readable ones
        keys_at = None if local or not op.encrypted else stitch_mod.keys_made_at(self.state_dir, names, record)
        return ObservedStitch(stitch=key, type=op.type, path=op.path, rate_bps=rate, encrypted=encrypted,
                              healthy=not problems, tx_bytes=tx, rx_bytes=rx,
                              throughput_bps=self._throughput(key, tx, rx, snap.time) if counted else None,
                              problem=problems[0] if problems else "", keys_at=keys_at,
                              services=_agreed(services_seen, op.services), qos=_agreed(qos_seen, op.qos),
                              denied_packets=denied)

    def _throughput(self, key: str, tx: int, rx: int, now: float) -> float | None:
        """Bit/s both ways through the stitch since an earlier observe, from its a-end nft counters.

        A counter below its last value was reset (the chain was rewritten): it counts from zero again,
        so its whole value is the traffic since then. Observes closer than MIN_SAMPLE_S apart (the two
        of one reconcile pass) keep the last rate and the older sample, whose interval is longer."""
        previous = self._samples.get(key)
        if previous is None:
            self._samples[key] = _CounterSample(now, tx, rx, None)
            return None
        elapsed = now - previous.time
        if elapsed < MIN_SAMPLE_S:
            return previous.rate_bps
        sent = tx - previous.tx if tx >= previous.tx else tx
        received = rx - previous.rx if rx >= previous.rx else rx
        rate = (sent + received) * 8.0 / elapsed
        self._samples[key] = _CounterSample(now, tx, rx, rate)
        return rate

    # --- counters for telemetry ---------------------------------------------------------

    def stitch_bytes(self) -> dict[tuple[str, str, str], tuple[str, int] | None]:
        """(stitch, src, dst) → (counter id, cumulative bytes) of each direction of each stitch, None
        where its chain cannot be read now; one nft dump per node.

        src/dst are network keys ("acme/blue"), and for a direct stitch also its VMs
        ("acme/blue/blue-1"). A direction is counted where it enters the stitch (the offered
        traffic, before any shaping): a→b by rule 0 of end a's chain, b→a by rule 0 of end b's
        (a local stitch has one chain: b→a is its rules from b's gateway). With services a direction has
        one accept rule per service (or the replies' one): their counters are summed. The id names the
        rules (chain and nft handles): a rewritten chain or a re-created stitch gets new handles and
        counts from zero."""
        self.state = self._load()
        snap = _Snapshot(self.nss, self.lab, self.clock())
        out: dict[tuple[str, str, str], tuple[str, int] | None] = {}
        for key, record in self.state["stitches"].items():
            op = op_from_dict(record["op"])
            names = StitchNames.of(record)
            chains = {}
            for side, end in (("a", op.a), ("b", op.b)):
                if side in stitch_mod.policy_sides(op):
                    spec = stitch_mod.nft_spec(op, names, side)
                    rules, problem = nft.stitch_chain_problem(snap.nft_table(end.node), *spec)
                    chains[side] = (spec[0], rules if problem is None else None)
            # each direction where it enters the stitch: out of its end's gateway (a local stitch's b→a
            # enters at b's gateway, which is the tunnel of end a's one chain)
            where = {"a": ("a", True), "b": ("b", True) if "b" in chains else ("a", False)}
            for side, (src, dst) in (("a", (op.a, op.b)), ("b", (op.b, op.a))):
                chain, rules = chains[where[side][0]]
                counter = None
                if rules is not None:
                    gateway = names.gateway_if(where[side][0])
                    picked = nft.direction_rules(rules, gateway, outward=where[side][1])
                    counter = (f"{chain}#{'+'.join(str(rule.get('handle')) for rule in picked)}",
                               sum(nft.chain_counters(picked)))
                out[(key, src.network, dst.network)] = counter
                if op.type == "direct" and src.member and dst.member:
                    out[(key, f"{src.network}/{src.member}", f"{dst.network}/{dst.member}")] = counter
        return out

    def unstitched_bytes(self) -> dict[tuple[str, str, str], tuple[str, int] | None]:
        """(counter, src, dst) → (counter id, cumulative bytes) of what each member sent where no stitch leads
        (its guard's per-destination counters, guard.py), by the network the destination lies in: for each
        member as its network ("acme/blue") and as itself ("acme/blue/blue-1"). A destination in no known
        network is left out. Where a member's guard cannot be read now, the destinations it had at its last
        reading are None (so telemetry keeps their last count instead of starting them again from zero)."""
        self.state = self._load()
        networks: dict[str, list] = {}   # tenant → [(cidr, network key)]: a member reaches its own tenant's only
        for key, net in self.state["networks"].items():
            networks.setdefault(key.partition("/")[0], []).append((ipaddress.ip_network(net["cidr"], strict=False), key))
        out: dict[tuple[str, str, str], tuple[str, int] | None] = {}
        members = set()
        for key, net in self.state["networks"].items():
            for member in net["members"]:
                ns = self.lab.vm_ns(member["name"])
                members.add(ns)
                read = guard.unstitched_bytes(ns) if netns_exists(ns) else None
                if read is None:   # unreadable now: what it had at its last reading, unread
                    handle, found = self._guard_seen.get(ns, (None, {}))
                    found = dict.fromkeys(found)
                else:
                    handle, found = read
                    self._guard_seen[ns] = (handle, set(found))
                for address, size in found.items():
                    ip = ipaddress.ip_address(address)
                    dst = next((k for cidr, k in networks.get(key.partition("/")[0], ()) if ip in cidr), None)
                    if dst is None or dst == key:
                        continue
                    # the set's handle in the id: a guard made again counts from zero, not from the old count
                    counter = None if size is None else (f"{ns}#{handle}#{address}", size)
                    out[(f"guard:{ns}:{address}", key, dst)] = counter
                    out[(f"guard:{ns}:{address}", f"{key}/{member['name']}", dst)] = counter
        for gone in set(self._guard_seen) - members:   # members removed since
            del self._guard_seen[gone]
        return out

    def pair_bytes(self) -> dict[tuple[str, str], int]:
        """Cumulative bytes per direction (src, dst), summed over the stitches that join them (see
        `stitch_bytes`; unreadable chains are left out). A sum hides which stitch was reset: rates
        come from `stitch_bytes` (telemetry/linux.py)."""
        out: dict[tuple[str, str], int] = {}
        for (_, src, dst), counter in self.stitch_bytes().items():
            if counter is not None:
                out[(src, dst)] = out.get((src, dst), 0) + counter[1]
        return out

    def wireguard_status(self, key: str) -> dict[str, dict]:
        """Per end: its public key (base64, from the key wireguard-go holds), listen port, peer endpoint,
        handshake, counters (never the private key)."""
        from vnstitch.drivers.linux import keys

        record = self.state["stitches"][key]
        names = StitchNames.of(record)
        out = {}
        for side in stitch_mod.SIDES:
            try:
                config = wireguard.read_config(names.wg_if(side))
            except DriverError:
                continue
            private = config.pop("private_key", None)
            config["public_key"] = keys.to_base64(keys.public_key(bytes.fromhex(private))) if private else None
            out[side] = config
        return out

    def close(self) -> None:
        """Drop netlink sockets; tunnels and wireguard-go keep running (restart-safe). The handles of
        still-running wireguard-go children are kept, so that a later reap() (after `lab down` kills
        them) leaves no zombie behind."""
        self.nss.close()
        for ifname, proc in list(self._procs.items()):
            if proc.poll() is not None:
                del self._procs[ifname]


class _Snapshot:
    """Kernel lists read once per namespace for one observe() (they grow with the stitches)."""

    def __init__(self, nss: Namespaces, lab: LabLayout, time_s: float = 0.0):
        self.nss, self.lab, self.time = nss, lab, time_s
        self._links: dict[str, dict[str, int]] = {}
        self._down: dict[str, set[str]] = {}
        self._rules: dict[str, dict[int, int]] = {}
        self._fallbacks: dict[str, set[int]] = {}
        self._nft: dict[str, dict | None] = {}
        self._classes: dict[tuple[str, str], dict] = {}
        self._roots: dict[str, dict[int, dict]] = {}
        self._qos: dict[tuple[str, str], dict | None] = {}

    def _ipr(self, node: str):
        ns = self.lab.node_ns(node)
        return self.nss(ns) if node in self.lab.nodes and netns_exists(ns) else None

    def links(self, node: str) -> dict[str, int]:
        """ip -n NODE link show → name → index."""
        if node not in self._links:
            ipr = self._ipr(node)
            msgs = [] if ipr is None else ipr.get_links()
            self._links[node] = {m.get("IFLA_IFNAME"): m["index"] for m in msgs}
            self._down[node] = {m.get("IFLA_IFNAME") for m in msgs if not m["flags"] & 1}  # not IFF_UP
        return self._links[node]

    def down(self, node: str) -> set[str]:
        """The links of `node` that are administratively down (from the same dump)."""
        self.links(node)
        return self._down[node]

    def rules(self, node: str) -> dict[int, int]:
        """ip -n NODE rule → rules per stitch table."""
        if node not in self._rules:
            ipr = self._ipr(node)
            self._rules[node] = {} if ipr is None else routing.rules_per_table(ipr)
        return self._rules[node]

    def fallbacks(self, node: str) -> set[int]:
        """ip -n NODE route show table all type unreachable → the tables with an `unreachable default`."""
        if node not in self._fallbacks:
            ipr = self._ipr(node)
            self._fallbacks[node] = set() if ipr is None else routing.unreachable_tables(ipr)
        return self._fallbacks[node]

    def nft_table(self, node: str) -> dict | None:
        """nft -j list table inet vnstitch (once per node); None when absent."""
        if node not in self._nft:
            self._nft[node] = nft.read_table(self.lab.node_ns(node)) if self._ipr(node) is not None else None
        return self._nft[node]

    def classes(self, node: str, egress: str) -> dict:
        """tc -s class show dev EGRESS."""
        if (node, egress) not in self._classes:
            index = self.links(node).get(egress)
            ipr = self._ipr(node)
            self._classes[(node, egress)] = {} if index is None or ipr is None else routing.htb_classes(ipr, index)
        return self._classes[(node, egress)]
    def root_qdiscs(self, node: str) -> dict[int, dict]:
        """tc qdisc show (one dump per node): ifindex → its root qdisc."""
        if node not in self._roots:
            ipr = self._ipr(node)
            msgs = [] if ipr is None else ipr.get_qdiscs()
            self._roots[node] = {m["index"]: m for m in msgs if m["parent"] == routing.ROOT}
        return self._roots[node]

    def qos(self, node: str, ifname: str, index: int) -> dict | None:
        """The QoS tree on a tunnel device (routing.read_qos); None without our HTB root (no more dumps)."""
        if (node, ifname) not in self._qos:
            root = self.root_qdiscs(node).get(index)
            ipr = self._ipr(node)
            self._qos[(node, ifname)] = None if root is None or ipr is None or root.get("TCA_KIND") != "htb" \
                else routing.read_qos(ipr, index, root)
        return self._qos[(node, ifname)]


def _lets_icmp_through(op: EnsureStitch) -> bool:
    """Does the stitch let the probe's ICMP echoes cross (no services, or icmp among them)?"""
    return not op.services or any(rule.protocol == "icmp" for rule in op.services)


def _agreed(seen: list, wanted: tuple) -> tuple | None:
    """What the ends together enforce: the one value they agree on, else the first that differs from
    `wanted` (so the drift names it); None when nothing was read or an end could not be read as rules."""
    if not seen or any(value is None for value in seen):
        return None
    for value in seen:
        if value != wanted:
            return value
    return wanted


__all__ = ["LinuxDriver", "MemberPlacement"]
