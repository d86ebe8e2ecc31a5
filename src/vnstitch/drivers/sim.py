"""Simulator driver: executes ops on in-memory tables and answers reachability and rate questions.

It is an interpreter, not a call recorder: a stitch exists only after EnsureStitch ran,
traffic crosses between virtual networks only over a stitch that joins them, and a
traffic matrix fed to `carry` loads the links of the paths that really exist.
"""

from __future__ import annotations

import dataclasses

import errno
import ipaddress
import json
import os
import tempfile
import time
from dataclasses import dataclass, field, fields
from typing import Callable, Iterable, Mapping

import networkx as nx

from vnstitch.domain.substrate import Link, Node
from vnstitch.pathing.paths import PathFinder
from vnstitch.planning.observed import Observed, ObservedFilter, ObservedNetwork, ObservedStitch
from vnstitch.errors import DriverError, NotFound
from vnstitch.planning.ops import (
    EnsureFilter, EnsureNetwork, EnsureStitch, MemberPlacement, Op, QosRule, RemoveFilter, RemoveNetwork, RemoveStitch,
    ServiceRule, SetStitchRate, StitchEnd,
)


@dataclass(frozen=True)
class Reach:
    """Answer to 'does traffic from A reach B': over which stitch and links, at what rate."""

    reachable: bool
    reason: str
    stitch: str | None = None
    path: tuple[str, ...] = ()
    rate_bps: float | None = None  # guaranteed rate; None = best effort


@dataclass
class TrafficReport:
    """Result of carrying one traffic matrix for one interval (all rates in bit/s)."""

    link_load_bps: dict[tuple[str, str], float] = field(default_factory=dict)       # offered load per arc
    link_capacity_bps: dict[tuple[str, str], float] = field(default_factory=dict)
    stitch_carried_bps: dict[str, float] = field(default_factory=dict)
    isolated_bps: dict[tuple[str, str], float] = field(default_factory=dict)        # no stitch, no route
    delivered_bps: dict[tuple[str, str], float] = field(default_factory=dict)       # per network pair
    dropped_bps: dict[tuple[str, str], float] = field(default_factory=dict)
    route: dict[tuple[str, str], tuple[str | None, tuple[str, ...]]] = field(default_factory=dict)
    link_delay_s: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)  # queueing:
    # (guaranteed class, best-effort class) per arc, on top of the link's propagation latency

    def overloaded(self) -> dict[tuple[str, str], float]:
        """Arcs loaded above capacity → excess bit/s."""
        return {arc: load - self.link_capacity_bps[arc] for arc, load in self.link_load_bps.items()
                if arc in self.link_capacity_bps and load > self.link_capacity_bps[arc]}


PACKET_BITS = 1500 * 8   # the mean packet the queueing model serves
BUFFER_S = 0.050          # an egress buffer holds this much drain time: the delay of a full queue


def queueing_delay(load_bps: float, capacity_bps: float, buffer_s: float = BUFFER_S) -> float:
    """Mean waiting time at an egress queue (M/M/1: service time · ρ/(1-ρ)), capped by the buffer:
    a link loaded at or above its capacity keeps its buffer full, so packets wait `buffer_s`."""
    if capacity_bps <= 0 or load_bps <= 0:
        return 0.0
    rho = load_bps / capacity_bps
    if rho >= 1.0:
        return buffer_s
    return min(buffer_s, PACKET_BITS / capacity_bps * rho / (1.0 - rho))


class SimDriver:
    name = "sim"
    capabilities = frozenset({"encryption", "rate_limit", "counters", "reachability", "filters"})

    def __init__(self, state_path: str | None = None, topology: Iterable | None = None,
                 clock: Callable[[], float] = time.time):
        self.state_path = state_path
        self.clock = clock  # unix time: when an encrypted stitch's keys are made
        self.networks: dict[str, dict] = {}
        self.stitches: dict[str, dict] = {}
        self.filters_state: dict[str, dict] = {}  # anomaly filters: name → op fields + dropped counters
        self._graph = nx.DiGraph()
        self._routes: dict[tuple[str, str], tuple[str, ...]] = {}
        self._latencies: dict[tuple[str, ...], float | None] = {}
        self.pair_bytes: dict[tuple[str, str], list[int]] = {}  # (src, dst) → [offered, delivered] bytes
        if topology is not None:
            self.set_topology(topology)
        if state_path and os.path.exists(state_path):
            self._load()

    # substrate ------------------------------------------------------------------------
    def set_topology(self, links: Iterable) -> None:
        """Substrate links (domain `Link` objects) used for intra-network routes and link loads."""
        graph = nx.DiGraph()
        by_pair: dict[frozenset[str], Link] = {}
        for link in links:
            a, b = link.spec.endpoints
            for u, v in ((a, b), (b, a)):
                graph.add_edge(u, v, capacity=link.spec.capacity, latency=link.spec.latency)
            # a second link between the same two nodes replaces the first, as it does in `graph`; every
            # link carries traffic whatever its state: the simulator models the wires, not the drain
            by_pair[frozenset((a, b))] = link.model_copy(update={"spec": link.spec.model_copy(update={"state": "up"})})
        self._graph = graph
        self._path_finder = PathFinder([Node(metadata={"name": name}) for name in graph.nodes], by_pair.values())
        self._routes = {}
        self._latencies = {}

    # ops --------------------------------------------------------------------------------
    def apply(self, op: Op) -> bool:
        if isinstance(op, EnsureNetwork):
            changed = self._ensure_network(op)
        elif isinstance(op, RemoveNetwork):
            changed = self._remove_network(op)
        elif isinstance(op, EnsureStitch):
            changed = self._ensure_stitch(op)
        elif isinstance(op, SetStitchRate):
            changed = self._set_rate(op)
        elif isinstance(op, RemoveStitch):
            changed = self.stitches.pop(op.stitch, None) is not None
        elif isinstance(op, EnsureFilter):
            changed = self._ensure_filter(op)
        elif isinstance(op, RemoveFilter):
            changed = self.filters_state.pop(op.filter, None) is not None
        else:
            raise DriverError(f"sim driver cannot execute {type(op).__name__}", errno=errno.EOPNOTSUPP)
        if changed:
            self._save()
        return changed

    def _ensure_network(self, op: EnsureNetwork) -> bool:
        want = {"vnid": op.vnid, "cidr": op.cidr,
                "members": {m.name: {"node": m.node, "address": m.address} for m in op.members}}
        for key, other in self.networks.items():
            if key != op.network and other["vnid"] == op.vnid:
                raise DriverError(f"VNI {op.vnid} already in use by {key}", errno=errno.EEXIST)
        if self.networks.get(op.network) == want:
            return False
        self.networks[op.network] = want
        return True

    def _remove_network(self, op: RemoveNetwork) -> bool:
        users = [k for k, s in self.stitches.items() if op.network in (s["a"]["network"], s["b"]["network"])]
        if users:
            raise DriverError(f"network {op.network} still carries stitches {', '.join(users)}", errno=errno.EBUSY)
        return self.networks.pop(op.network, None) is not None

    def _ensure_stitch(self, op: EnsureStitch) -> bool:
        for end in (op.a, op.b):
            net = self.networks.get(end.network)
            if net is None:
                raise DriverError(f"network {end.network} has no data-plane state", errno=errno.ENOENT)
            if end.member and end.member not in net["members"]:
                raise DriverError(f"VM {end.member} is not attached to {end.network}", errno=errno.ENOENT)
        if len(op.path) < 1 or op.path[0] != op.a.node or op.path[-1] != op.b.node:
            raise DriverError(f"path {op.path} does not join {op.a.node} and {op.b.node}", errno=errno.EINVAL)
        missing = [arc for arc in zip(op.path, op.path[1:]) if self._graph.number_of_nodes() and not self._graph.has_edge(*arc)]
        if missing:
            raise DriverError(f"no substrate link {missing[0][0]}→{missing[0][1]}", errno=errno.ENETUNREACH)
        want = {"type": op.type, "a": _end_dict(op.a), "b": _end_dict(op.b), "path": list(op.path),
                "rate_bps": op.rate_bps, "encrypted": op.encrypted, "symmetric": op.symmetric,
                "services": [dataclasses.asdict(r) for r in op.services],
                "qos": [{**dataclasses.asdict(r), "ports": list(r.ports)} for r in op.qos]}
        have = self.stitches.get(op.stitch)
        keys_due = have is not None and op.encrypted and have.get("keys_at", 0.0) < op.keys_after
        if have is not None and {k: have.get(k) for k in want} == want and not have.get("broken") and not keys_due:
            return False
        counters = {"tx_bytes": have["tx_bytes"], "rx_bytes": have["rx_bytes"]} if have else {"tx_bytes": 0, "rx_bytes": 0}
        keys = {}
        if op.encrypted:  # keys made for this op count as at least as new as it asks (as the linux driver's)
            kept = have.get("keys_at") if have is not None and have.get("encrypted") and not keys_due else None
            keys = {"keys_at": kept if kept is not None else max(self.clock(), op.keys_after),
                    "key_rotations": (have or {}).get("key_rotations", 0) + (1 if keys_due else 0)}
        self.stitches[op.stitch] = {**want, **counters, **keys}
        return True

    def _ensure_filter(self, op: EnsureFilter) -> bool:
        if op.action not in ("drop", "limit") or (op.action == "limit" and op.rate_bps <= 0):
            raise DriverError(f"filter {op.filter}: action must be drop, or limit with a rate above 0",
                              errno=errno.EINVAL)
        try:
            ipaddress.ip_network(op.src, strict=False), ipaddress.ip_network(op.dst, strict=False)
        except ValueError as exc:
            raise DriverError(f"filter {op.filter}: {exc}", errno=errno.EINVAL) from None
        want = {"node": op.node, "src": op.src, "dst": op.dst, "action": op.action, "rate_bps": op.rate_bps,
                "allow": [dataclasses.asdict(r) for r in op.allow]}
        have = self.filters_state.get(op.filter)
        if have is not None and {k: have.get(k) for k in want} == want:
            return False
        counters = {k: (have or {}).get(k, 0) for k in ("dropped_packets", "dropped_bytes")}
        self.filters_state[op.filter] = {**want, **counters}
        return True

    def filters(self) -> dict[str, ObservedFilter]:
        """The anomaly filters in force, with what each dropped."""
        return {key: ObservedFilter(key, f["node"], f["src"], f["dst"], f["action"], f["rate_bps"],
                                    tuple(ServiceRule(**r) for r in f["allow"]), f["dropped_packets"],
                                    f["dropped_bytes"]) for key, f in self.filters_state.items()}

    def _filter_for(self, src: str, dst: str) -> tuple[str, dict] | None:
        """The filter that catches traffic from address/CIDR `src` to `dst` (both inside its ranges)."""
        for key, f in sorted(self.filters_state.items()):
            if _inside(src, f["src"]) and _inside(dst, f["dst"]):
                return key, f
        return None

    def _set_rate(self, op: SetStitchRate) -> bool:
        have = self.stitches.get(op.stitch)
        if have is None:
            raise DriverError(f"stitch {op.stitch} does not exist", errno=errno.ENOENT)
        if have["rate_bps"] == op.rate_bps:
            return False
        have["rate_bps"] = op.rate_bps
        return True

    def observe(self) -> Observed:
        observed = Observed()
        for key, net in self.networks.items():
            observed.networks[key] = ObservedNetwork(
                key, net["vnid"], frozenset(m["node"] for m in net["members"].values()), frozenset(net["members"]),
                frozenset((name, m["node"]) for name, m in net["members"].items()))
        for key, s in self.stitches.items():
            latency = self._path_latency(s["path"])
            if latency is not None:  # what a probe through it would see: propagation + queueing
                latency += s.get("queue_s", 0.0)
            broken = s.get("broken", "")
            observed.stitches[key] = ObservedStitch(
                key, s["type"], tuple(s["path"]), s["rate_bps"], s["encrypted"], not broken,
                s["tx_bytes"], s["rx_bytes"], latency_s=latency, throughput_bps=s.get("throughput_bps"),
                loss=s.get("loss"), problem=broken, keys_at=s.get("keys_at"),
                services=tuple(ServiceRule(**r) for r in s.get("services", ())),
                qos=tuple(QosRule(**{**r, "ports": tuple(r["ports"])}) for r in s.get("qos", ())))
        observed.filters = self.filters()
        return observed

    def close(self) -> None:
        self._save()

    def fault(self, stitch: str, problem: str) -> None:
        """Break a stitch as a dead tunnel process would: it carries nothing until an EnsureStitch
        rebuilds it (fault-injection for tests and the fault benchmark)."""
        if stitch not in self.stitches:
            raise DriverError(f"stitch {stitch} does not exist", errno=errno.ENOENT)
        self.stitches[stitch]["broken"] = problem
        self._save()

    # questions ------------------------------------------------------------------------
    def reach(self, src: str, dst: str) -> Reach:
        """Does traffic from VM `src` reach VM `dst` ('tenant/network/member')?"""
        src_net, _, src_vm = src.rpartition("/")
        dst_net, _, dst_vm = dst.rpartition("/")
        for net, vm in ((src_net, src_vm), (dst_net, dst_vm)):
            if net not in self.networks or vm not in self.networks[net]["members"]:
                return Reach(False, f"{net}/{vm} is not attached to the data plane")
        caught = self._filter_for(self.networks[src_net]["members"][src_vm]["address"],
                                  self.networks[dst_net]["members"][dst_vm]["address"])
        if caught is not None and caught[1]["action"] == "drop":
            return Reach(False, f"dropped by filter {caught[0]}")
        src_node = self.networks[src_net]["members"][src_vm]["node"]
        dst_node = self.networks[dst_net]["members"][dst_vm]["node"]
        if src_net == dst_net:
            path = self._shortest(src_node, dst_node)
            return Reach(True, "same virtual network", None, path, None)
        best: Reach | None = None
        for key, s in sorted(self.stitches.items()):
            direction = None if s.get("broken") else self._joins(s, src_net, src_vm, dst_net, dst_vm)
            if direction is None:
                continue
            path = tuple(s["path"]) if direction == "forward" else tuple(reversed(s["path"]))
            full = self._shortest(src_node, path[0])[:-1] + path + self._shortest(path[-1], dst_node)[1:]
            guaranteed = s["rate_bps"] if s["rate_bps"] and (direction == "forward" or s["symmetric"]) else None
            candidate = Reach(True, f"over {s['type']} stitch {key}", key, full, guaranteed)
            if best is None or (candidate.rate_bps or 0) > (best.rate_bps or 0):
                best = candidate
        return best or Reach(False, f"no stitch joins {src_net} and {dst_net}")

    @staticmethod
    def _joins(s: dict, src_net: str, src_vm: str, dst_net: str, dst_vm: str) -> str | None:
        """'forward' / 'reverse' when stitch `s` carries src → dst, else None."""
        for direction, x, y in (("forward", s["a"], s["b"]), ("reverse", s["b"], s["a"])):
            if x["network"] != src_net or y["network"] != dst_net:
                continue
            if s["type"] == "direct" and (x["member"] != src_vm or y["member"] != dst_vm):
                continue
            return direction
        return None

    def carry(self, demands_bps: Mapping[tuple[str, str], float], interval_s: float = 300.0,
              default_route: bool = False) -> TrafficReport:
        """Carry one interval of network-to-network traffic (keys 'tenant/network').

        Traffic on a stitch gets up to its reserved rate; the rest (and, with `default_route`,
        traffic of unstitched pairs over the shortest path, as a routed backbone would) is best
        effort and shares what the guaranteed traffic leaves of each link. Where best effort
        exceeds that, each link drops the same fraction of it, and a flow loses what its
        most congested link drops (a bottleneck model: downstream links see the thinned flow).
        """
        report = TrafficReport(link_capacity_bps={(u, v): d["capacity"] for u, v, d in self._graph.edges(data=True)})
        guaranteed: dict[tuple[str, str], float] = {}
        best_effort: dict[tuple[str, str], float] = {}
        flows = []  # (pair, stitch, arcs, guaranteed bps, best-effort bps)
        filtered: dict[tuple[str, str], float] = {}   # what filters dropped of each pair
        for pair, bps in demands_bps.items():
            if bps <= 0:
                continue
            caught = self._filter_network_pair(*pair)
            if caught is not None:
                passed = 0.0 if caught["action"] == "drop" else min(bps, caught["rate_bps"])
                dropped = bps - passed
                caught["dropped_bytes"] += int(dropped * interval_s / 8)
                caught["dropped_packets"] += int(dropped * interval_s / PACKET_BITS)
                filtered[pair] = dropped
                bps = passed
                if bps <= 0:
                    report.dropped_bps[pair] = dropped
                    continue
            routes = self._network_routes(*pair)
            if not routes and default_route:
                routes = [(None, self._shortest(self._attach_node(pair[0]), self._attach_node(pair[1])))]
            if not routes:
                report.isolated_bps[pair] = bps
                report.dropped_bps[pair] = bps + filtered.get(pair, 0.0)
                continue
            report.route[pair] = routes[0]
            # several stitches for one pair (a TE split): traffic divides in proportion to their rates
            rates = [self.stitches[key]["rate_bps"] if key else 0.0 for key, _ in routes]
            total_rate = sum(rates)
            for (stitch, path), rate in zip(routes, rates):
                share = bps * (rate / total_rate if total_rate else 1.0 / len(routes))
                sure = 0.0
                if stitch:
                    s = self.stitches[stitch]
                    forward = s["a"]["network"] == pair[0]
                    if s["rate_bps"] > 0 and (forward or s["symmetric"]):
                        sure = min(share, s["rate_bps"])
                    report.stitch_carried_bps[stitch] = report.stitch_carried_bps.get(stitch, 0.0) + share
                arcs = list(zip(path, path[1:]))
                for arc in arcs:
                    guaranteed[arc] = guaranteed.get(arc, 0.0) + sure
                    best_effort[arc] = best_effort.get(arc, 0.0) + share - sure
                flows.append((pair, stitch, arcs, sure, share - sure))
        drop_fraction = {}
        for arc in set(guaranteed) | set(best_effort):
            offered = guaranteed.get(arc, 0.0) + best_effort.get(arc, 0.0)
            report.link_load_bps[arc] = offered
            capacity = report.link_capacity_bps.get(arc, float("inf"))
            room = max(0.0, capacity - guaranteed.get(arc, 0.0))
            extra = best_effort.get(arc, 0.0)
            drop_fraction[arc] = (extra - room) / extra if extra > room else 0.0
            if capacity != float("inf"):  # reserved traffic is served first (HTB): it queues behind itself only
                report.link_delay_s[arc] = (queueing_delay(guaranteed.get(arc, 0.0), capacity),
                                            queueing_delay(offered, capacity))
        offered_on: dict[str, float] = {}
        delivered_on: dict[str, float] = {}
        waited_on: dict[str, float] = {}  # Σ bps · queueing delay over the stitch's flows
        for pair, stitch, arcs, sure, extra in flows:
            survive = 1.0 - max((drop_fraction[arc] for arc in arcs), default=0.0)  # its bottleneck
            delivered = sure + extra * survive
            report.delivered_bps[pair] = report.delivered_bps.get(pair, 0.0) + delivered
            report.dropped_bps[pair] = (report.dropped_bps.get(pair, 0.0) + sure + extra - delivered
                                        + filtered.pop(pair, 0.0))
            if stitch:
                self.stitches[stitch]["tx_bytes"] += int(delivered * interval_s / 8)
                offered_on[stitch] = offered_on.get(stitch, 0.0) + sure + extra
                delivered_on[stitch] = delivered_on.get(stitch, 0.0) + delivered
                delays = [report.link_delay_s.get(arc, (0.0, 0.0)) for arc in arcs]
                waited_on[stitch] = waited_on.get(stitch, 0.0) + (
                    sure * sum(d[0] for d in delays) + extra * sum(d[1] for d in delays))
        # what each stitch carried this interval: its measured throughput, loss and queueing delay
        # (its traffic within the reservation sees the guaranteed class's queue, the rest the best-effort
        # one, weighted by rate; an idle stitch, as a probe would, the class its reservation puts it in)
        for key, s in self.stitches.items():
            offered = offered_on.get(key, 0.0)
            s["throughput_bps"] = delivered_on.get(key, 0.0)
            s["loss"] = (offered - delivered_on.get(key, 0.0)) / offered if offered > 0 else 0.0
            if offered > 0:
                s["queue_s"] = waited_on.get(key, 0.0) / offered
            else:
                cls = 0 if s["rate_bps"] > 0 else 1
                s["queue_s"] = sum(report.link_delay_s.get(arc, (0.0, 0.0))[cls]
                                   for arc in zip(s["path"], s["path"][1:]))
        self._count_pair_bytes(demands_bps, report, interval_s)
        return report

    # per-pair counters (what telemetry.sim.SimCountersSource reads) ------------------------
    def _count_pair_bytes(self, demands_bps: Mapping[tuple[str, str], float], report: TrafficReport,
                          interval_s: float) -> None:
        """Cumulative bytes each network pair offered and got through, as kernel counters would count."""
        for pair, bps in demands_bps.items():
            if bps <= 0:
                continue
            counters = self.pair_bytes.setdefault(pair, [0, 0])
            counters[0] += int(round(bps * interval_s / 8))
            counters[1] += int(round(report.delivered_bps.get(pair, 0.0) * interval_s / 8))

    def _pair_bytes_state(self) -> list:
        return [[src, dst, offered, delivered] for (src, dst), (offered, delivered) in self.pair_bytes.items()]

    def _load_pair_bytes(self, state: dict) -> None:
        self.pair_bytes = {(src, dst): [offered, delivered]
                           for src, dst, offered, delivered in state.get("pair_bytes", [])}

    def _filter_network_pair(self, src_net: str, dst_net: str) -> dict | None:
        """A filter whose ranges hold these networks' address spaces (or, for a member's address, its network)."""
        src, dst = self.networks.get(src_net), self.networks.get(dst_net)
        if src is None or dst is None:
            return None
        for f in (f for _, f in sorted(self.filters_state.items())):
            if _overlaps(src["cidr"], f["src"]) and _overlaps(dst["cidr"], f["dst"]):
                return f
        return None

    def _attach_node(self, network: str) -> str:
        members = self.networks[network]["members"].values()
        counts: dict[str, int] = {}
        for member in members:
            counts[member["node"]] = counts.get(member["node"], 0) + 1
        return min(counts, key=lambda node: (-counts[node], node))

    def _network_routes(self, src_net: str, dst_net: str) -> list[tuple[str | None, tuple[str, ...]]]:
        """Every network-level stitch that carries src → dst, with its path in that direction."""
        if src_net == dst_net:
            return [(None, ())]
        routes = []
        for key, s in sorted(self.stitches.items()):
            if s["type"] == "direct" or s.get("broken"):
                continue
            for direction, x, y in (("forward", s["a"], s["b"]), ("reverse", s["b"], s["a"])):
                if x["network"] == src_net and y["network"] == dst_net:
                    routes.append((key, tuple(s["path"]) if direction == "forward" else tuple(reversed(s["path"]))))
                    break
        return routes

    def default_path(self, a: str, b: str) -> tuple[str, ...]:
        """The route unstitched traffic takes between two substrate nodes (lowest latency, `PathFinder`)."""
        return self._shortest(a, b)

    def path_latency(self, path) -> float:
        """Propagation latency of a node path in seconds (0 without a topology)."""
        return self._path_latency(list(path)) or 0.0

    def _shortest(self, a: str, b: str) -> tuple[str, ...]:
        """Lowest-latency node path from the controller's path engine (memoised until the topology
        changes); (a, b) when no path joins them or a node is off the substrate."""
        if a == b or not self._graph.number_of_nodes():  # nodes only after set_topology built _path_finder
            return (a,) if a == b else (a, b)
        if (a, b) not in self._routes:
            try:
                found = self._path_finder.paths(a, b, metric="latency", k=1)
            except NotFound:
                found = []
            self._routes[(a, b)] = found[0].nodes if found else (a, b)
        return self._routes[(a, b)]

    def _path_latency(self, path: list[str]) -> float | None:
        """Propagation latency of a path (memoised until the topology changes: observe() asks for every
        stitch on every reconcile pass)."""
        key = tuple(path)
        if key not in self._latencies:
            try:
                self._latencies[key] = (sum(self._graph[u][v]["latency"] for u, v in zip(key, key[1:]))
                                        if self._graph.number_of_nodes() else None)
            except KeyError:
                self._latencies[key] = None
        return self._latencies[key]

    # persistence (the simulator's "kernel" survives controller restarts) -----------------
    def _save(self) -> None:
        if not self.state_path:
            return
        directory = os.path.dirname(os.path.abspath(self.state_path))
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".sim-")
        with os.fdopen(fd, "w") as handle:
            json.dump({"networks": self.networks, "stitches": self.stitches,
                       "pair_bytes": self._pair_bytes_state(), "filters": self.filters_state}, handle)
        os.replace(tmp, self.state_path)

    def _load(self) -> None:
        try:
            with open(self.state_path) as handle:
                state = json.load(handle)
        except (OSError, ValueError) as exc:
            raise DriverError(f"cannot read simulator state {self.state_path}: {exc}") from None
        self.networks = state.get("networks", {})
        self.stitches = state.get("stitches", {})
        self.filters_state = state.get("filters", {})
        self._load_pair_bytes(state)


def _inside(address: str, cidr: str) -> bool:
    try:
        return ipaddress.ip_network(address, strict=False).subnet_of(ipaddress.ip_network(cidr, strict=False))
    except (ValueError, TypeError):
        return False


def _overlaps(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_network(a, strict=False).overlaps(ipaddress.ip_network(b, strict=False))
    except (ValueError, TypeError):
        return False


def _end_dict(end: StitchEnd) -> dict:
    """A stitch end as the state file holds it (its fields are plain values: no deep copy needed)."""
    return {f.name: getattr(end, f.name) for f in fields(end)}


__all__ = ["SimDriver", "Reach", "TrafficReport", "MemberPlacement", "StitchEnd"]
