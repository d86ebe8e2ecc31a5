"""Use-case services shared by the CLI and the API: apply, delete, query, admit stitches.

Admission (path + reservation + store write) happens in one store transaction guarded by
the revisions of everything it read, so concurrent controllers never over-reserve a link.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable, TypeVar

from vnstitch.controller.cache import StateCache
from vnstitch.domain import ledger as ledgers
from vnstitch.domain.ledger import LEDGER_KIND, LinkLedger
from vnstitch.domain.policy import check_policies, check_side, visible_to
from vnstitch.domain.registry import kind_class
from vnstitch.domain.resources import Resource
from vnstitch.domain.stitch import ALLOWED_TRANSITIONS, State, Stitch, StitchStatus, initial_status, transition
from vnstitch.domain.substrate import Link, Node
from vnstitch.domain.vnet import VirtualNetwork
from vnstitch.errors import Conflict, InsufficientCapacity, InvalidInput, NotFound, PolicyDenied, VnstitchError
from vnstitch.store import Compare, Delete, Put, Record, Store

T = TypeVar("T")
KIND_ORDER = {"Node": 0, "Link": 1, "VirtualNetwork": 2, "Stitch": 3, "ForecastPolicy": 4}
CACHED_KINDS = ("Node", "Link", "VirtualNetwork", "Stitch", "ForecastPolicy", LEDGER_KIND)
MAX_TXN_RETRIES = 20


@dataclass(frozen=True)
class Change:
    kind: str
    namespace: str
    name: str
    action: str  # created | configured | unchanged | deleting | deleted

    def __str__(self) -> str:
        ns = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind.lower()}/{ns}{self.name} {self.action}"


class _Batch:
    """Staged writes of one apply: an overlay over the cache plus the compares that guard it."""

    def __init__(self, cache: StateCache):
        self.cache = cache
        self.staged: dict[tuple[str, str, str], dict | None] = {}
        self.compares: dict[tuple[str, str, str], Compare] = {}
        self.ledger_view = None  # one lazily filled view of the ledgers per batch
        self.arc_links: dict[tuple[str, str], str] | None = None  # when the batch changes the substrate

    def read(self, kind: str, namespace: str, name: str, guard: bool = True) -> dict | None:
        key = (kind, namespace, name)
        if key in self.staged:
            return self.staged[key]
        record = self.cache.get(*key)
        if guard:
            self.compares.setdefault(key, Compare(kind, namespace, name, record.revision if record else 0))
        return record.value if record else None

    def write(self, kind: str, namespace: str, name: str, value: dict | None) -> None:
        self.read(kind, namespace, name)  # guard what we overwrite
        self.staged[(kind, namespace, name)] = value

    def ops(self) -> list:
        return [Put(*key, value) if value is not None else Delete(*key) for key, value in self.staged.items()]


@dataclass(frozen=True)
class _PinnedPath:
    nodes: tuple[str, ...]
    latency_s: float


class _LedgerView(dict):
    """Ledgers by link name, read lazily (staged versions first), with the residual per arc kept current."""

    def __init__(self, controller: "Controller", batch: _Batch | None):
        super().__init__()
        self._controller, self._batch = controller, batch
        self.residual = controller._residual_vector().copy()
        self.staged_links: set[str] = set()
        # Ledgers this batch already changed (e.g. by resources admitted before a refused one), and
        # links whose capacity it changes.
        for (kind, _, link), value in (batch.staged.items() if batch is not None else ()):
            if kind == LEDGER_KIND and value is not None:
                base = self[link]
                self.set(link, LinkLedger.from_value(link, base.endpoints, base.capacity_bps, value))
            elif kind == "Link" and value is not None:
                self.set(link, self[link])

    def __missing__(self, link: str) -> LinkLedger:
        base = self._controller._ledgers.get(link)
        staged = self._batch.staged.get(("Link", "", link)) if self._batch is not None else None
        if staged is not None:  # the batch changes this link: its capacity counts, not the stored one
            base = LinkLedger(link, tuple(staged["spec"]["endpoints"]), float(staged["spec"]["capacity"]),
                              base.forward_bps if base else 0, base.reverse_bps if base else 0)
        elif base is None:
            raise KeyError(link)
        self[link] = base
        return base

    def set(self, link: str, ledger: LinkLedger) -> None:
        """Stage a new version of a link's ledger and update the residual of its two arcs."""
        self[link] = ledger
        self.staged_links.add(link)
        self._controller._set_residual(self.residual, ledger)  # a link new in this batch has no slot yet

    def holdings_of(self, stitch: str) -> dict[tuple[str, str], int]:
        """Arc → bit/s the stitch ('tenant/name') holds, as staged in this batch or stored."""
        namespace, name = stitch.split("/", 1)
        if self._batch is not None:
            return ledgers.held_by(self._batch.read("Stitch", namespace, name, guard=False))
        record = self._controller.cache.get("Stitch", namespace, name)
        return ledgers.held_by(record.value if record else None)


def _own_or_other(caller: str, namespace: str, name: str, what: str = "network") -> str:
    """An object's name when it is the caller's tenant's, else only that it belongs to another tenant."""
    return f"{namespace}/{name}" if namespace == caller else f"a {what} of another tenant"


def slo_breached(stitch: Stitch) -> bool:
    """DEGRADED because a measured latency or loss broke the stitch's bound (planning.status says so)."""
    message = stitch.status.message
    return stitch.status.state is State.DEGRADED and (message.startswith("latency ") or message.startswith("loss "))


def terminated(value: dict | None) -> bool:
    """Is this stored stitch finished (torn down, reservation released, kept only for inspection)?"""
    return bool(value) and (value.get("status") or {}).get("state") == State.TERMINATED.value


class Controller:
    """Services over a store. Thread-safe; every public method refreshes from the store."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time):
        self.store = store
        self.clock = clock
        self._lock = threading.RLock()
        self._substrate_dirty = True
        self._pathfinder = None
        self._arc_links: dict[tuple[str, str], str] = {}
        self._ledgers: dict[str, LinkLedger] = {}           # link → its ledger, kept current from events
        self._arc_positions: dict[tuple[str, str], int] = {}  # arc → index in the PathFinder's vectors
        self._residual_arr = None                           # free bit/s per arc, PathFinder order
        self._vnets: dict[tuple[str, str, int], VirtualNetwork] = {}  # parsed networks by revision
        self._ledger_dirty: set[str] = set()
        self.substrate_version = 0  # bumped on every node or link change (re-planning keys on it)
        self.cache = StateCache(store, CACHED_KINDS, on_change=self._on_change)
        # Compares every reconciler write carries (leader election sets one on the leader key's
        # create revision, so a deposed leader's writes fail instead of landing).
        self.fence: list[Compare] = []

    # cache and derived views -------------------------------------------------------------
    def _on_change(self, kind: str, old: Record | None, new: Record | None) -> None:
        if kind in ("Node", "Link"):
            self._substrate_dirty = True
            self.substrate_version += 1
        if kind in ("Link", LEDGER_KIND):
            self._ledger_dirty.add((new or old).name)

    def _sync_ledgers(self) -> None:
        """Fold changed links and ledgers into the ledger and residual indexes."""
        for name in self._ledger_dirty:
            self._ledgers.pop(name, None)
            link = self.cache.get("Link", "", name)
            if link is None:
                continue
            record = self.cache.get(LEDGER_KIND, "", name)
            spec = link.value["spec"]
            ledger = LinkLedger.from_value(name, spec["endpoints"], spec["capacity"], record.value if record else None)
            self._ledgers[name] = ledger
            if self._residual_arr is not None:
                self._set_residual(self._residual_arr, ledger)
        self._ledger_dirty.clear()

    def _set_residual(self, vector, ledger: LinkLedger) -> None:
        """Write one link's two residuals into a vector in PathFinder arc order."""
        a, b = ledger.endpoints
        if (a, b) in self._arc_positions:
            vector[self._arc_positions[(a, b)]] = ledger.residual_bps("forward")
            vector[self._arc_positions[(b, a)]] = ledger.residual_bps("reverse")

    def _residual_vector(self):
        """Residual per arc as a numpy vector in the current PathFinder's arc order."""
        finder = self.pathfinder()
        if self._residual_arr is None:
            self._arc_positions = finder.arc_positions()
            self._residual_arr = finder.capacity_vector()
            for ledger in self._ledgers.values():
                self._set_residual(self._residual_arr, ledger)
        return self._residual_arr

    def refresh(self) -> None:
        with self._lock:
            self.cache.refresh()
            self._sync_ledgers()

    def pathfinder(self):
        """PathFinder over the current substrate, rebuilt only when nodes or links change."""
        from vnstitch.pathing.paths import PathFinder

        with self._lock:
            if self._substrate_dirty or self._pathfinder is None:
                nodes = [Node.model_validate(r.value) for r in self.cache.list("Node")]
                links = [Link.model_validate(r.value) for r in self.cache.list("Link")]
                self._pathfinder = PathFinder(nodes, links)
                self._residual_arr = None
                self._arc_links = {}
                for link in links:
                    a, b = link.spec.endpoints
                    self._arc_links[(a, b)] = self._arc_links[(b, a)] = link.metadata.name
                self._substrate_dirty = False
            return self._pathfinder

    def arc_links(self) -> dict[tuple[str, str], str]:
        """Arc → name of the link that carries it (built with the PathFinder)."""
        self.pathfinder()
        return self._arc_links

    def ledgers(self, batch: _Batch | None = None) -> "_LedgerView":
        """Every link's ledger (empty for links nobody reserved yet), staged writes included."""
        if batch is None:
            return _LedgerView(self, None)
        if batch.ledger_view is None:
            batch.ledger_view = _LedgerView(self, batch)
        return batch.ledger_view

    def _links(self, batch: _Batch | None) -> dict[str, dict]:
        links = {r.name: r.value["spec"] for r in self.cache.list("Link")}
        if batch is not None:
            for (kind, _, name), value in batch.staged.items():
                if kind == "Link":
                    if value is None:
                        links.pop(name, None)
                    else:
                        links[name] = value["spec"]
        return links

    def _finder_for(self, batch: _Batch | None):
        """The cached PathFinder, or one over the staged substrate when this batch changes it."""
        if batch is None or not any(k[0] in ("Node", "Link") for k in batch.staged):
            return self.pathfinder()
        from vnstitch.pathing.paths import PathFinder

        nodes = {r.name: r.value for r in self.cache.list("Node")}
        for (kind, _, name), value in batch.staged.items():
            if kind == "Node":
                nodes[name] = value
        nodes = {k: v for k, v in nodes.items() if v is not None}
        links = [Link.model_validate({"kind": "Link", "metadata": {"name": name}, "spec": spec})
                 for name, spec in self._links(batch).items()]
        batch.arc_links = {}
        for link in links:
            a, b = link.spec.endpoints
            batch.arc_links[(a, b)] = batch.arc_links[(b, a)] = link.metadata.name
        return PathFinder([Node.model_validate(v) for v in nodes.values()], links)

    def _arcs_for(self, batch: _Batch | None) -> dict[tuple[str, str], str]:
        """Arc → link name as this batch sees the substrate."""
        return batch.arc_links if batch is not None and batch.arc_links is not None else self.arc_links()

    def residual(self, ledger_map: _LedgerView, ignore: Iterable[str] = ()):
        """Residual bit/s per arc (a vector in PathFinder order), counting `ignore`d stitches as released."""
        out = ledger_map.residual.copy()
        for stitch in ignore:
            for arc, bps in ledger_map.holdings_of(stitch).items():
                out[self._arc_positions[arc]] += bps
        return out

    # reads ---------------------------------------------------------------------------------
    def get(self, kind: str, name: str, tenant: str | None = None) -> Resource:
        cls = kind_class(kind)
        self.refresh()
        namespace = (tenant or "default") if cls.NAMESPACED else ""
        record = self.cache.get(cls.KIND, namespace, name)
        if record is None:
            raise NotFound(f"{cls.KIND} '{name}' not found" + (f" in tenant '{namespace}'" if namespace else ""),
                           field="metadata.name")
        return self._to_resource(cls, record)

    def list(self, kind: str, tenant: str | None = None) -> list[Resource]:
        cls = kind_class(kind)
        self.refresh()
        namespace = tenant if cls.NAMESPACED else None
        return [self._to_resource(cls, r) for r in self.cache.list(cls.KIND, namespace)]

    @staticmethod
    def _to_resource(cls: type[Resource], record: Record) -> Resource:
        resource = cls.model_validate(record.value)
        resource.metadata.resource_version = record.revision
        return resource

    # apply -----------------------------------------------------------------------------------
    def apply(self, resources: list[Resource], dry_run: bool = False) -> list[Change]:
        """Create or update resources all-or-nothing; validates references, policy and capacity."""
        ordered = sorted(resources, key=lambda r: KIND_ORDER[r.KIND])
        seen: set[tuple[str, str, str]] = set()
        for res in ordered:
            key = (res.KIND, res.namespace, res.name)
            if key in seen:
                raise InvalidInput(f"{res.KIND} '{res.name}' appears twice in the input", field="metadata.name")
            seen.add(key)
        def stage(batch: _Batch, now: float) -> list[Change]:
            return [self._stage(batch, res, now) for res in ordered]

        return self._transact(stage, dry_run=dry_run)

    def apply_each(self, resources: list[Resource], fenced: bool = False) -> list[Change | VnstitchError]:
        """Admit each resource on its own merits, all in one transaction (group commit: one fsync).

        A refused resource gets its error in the result and leaves no trace; the others land.
        """
        def stage(batch: _Batch, now: float) -> list[Change | VnstitchError]:
            results: list[Change | VnstitchError] = []
            for res in resources:
                staged, compares = dict(batch.staged), dict(batch.compares)
                try:
                    results.append(self._stage(batch, res, now))
                except VnstitchError as exc:
                    batch.staged, batch.compares, batch.ledger_view = staged, compares, None
                    results.append(exc)
            return results

        return self._transact(stage, fenced=fenced)

    def _transact(self, stage: Callable[[_Batch, float], "T"], dry_run: bool = False, fenced: bool = False) -> "T":
        """Stage against a fresh view and commit guarded by what was read; retry when the store moved.
        `fenced`: the write is the leader's (the proactive loop, re-planning) and carries the fence, so a
        deposed leader's write fails instead of landing (API writes are anyone's and carry none)."""
        for attempt in range(MAX_TXN_RETRIES):
            with self._lock:
                self.refresh()
                batch = _Batch(self.cache)
                outcome = stage(batch, self.clock())
                if dry_run or not batch.staged:
                    return outcome
                result = self.store.txn(list(batch.compares.values()) + (self.fence if fenced else []), batch.ops())
            if result.succeeded:
                return outcome
            time.sleep(min(0.05, 0.001 * 2 ** attempt))
        raise Conflict("the store kept changing under this change; try again")

    def _stage(self, batch: _Batch, res: Resource, now: float) -> Change:
        stage = {"Node": self._stage_node, "Link": self._stage_link, "ForecastPolicy": self._stage_forecast_policy,
                 "VirtualNetwork": self._stage_vnet, "Stitch": self._stage_stitch}[res.KIND]
        current = batch.read(res.KIND, res.namespace, res.name)
        new_value = stage(batch, res, current, now)
        if new_value is None:
            return Change(res.KIND, res.namespace, res.name, "unchanged")
        batch.write(res.KIND, res.namespace, res.name, new_value)
        return Change(res.KIND, res.namespace, res.name, "configured" if current else "created")

    @staticmethod
    def _envelope(res: Resource, current: dict | None, now: float, status: dict | None = None) -> dict | None:
        """Stored form of `res`; None when its spec, labels and annotations equal what is stored."""
        spec = res.model_dump(by_alias=True, mode="json", include={"spec"})["spec"]
        if current is not None and current["spec"] == spec and current["metadata"].get("labels", {}) == res.metadata.labels \
                and current["metadata"].get("annotations", {}) == res.metadata.annotations:
            return None
        meta = current["metadata"] if current else {"creationTimestamp": now, "generation": 0}
        value = {"apiVersion": res.api_version, "kind": res.KIND,
                 "metadata": {**meta, "name": res.name, "labels": res.metadata.labels,
                              "annotations": res.metadata.annotations,
                              "generation": meta.get("generation", 0) + 1},
                 "spec": spec}
        if res.NAMESPACED:
            value["metadata"]["tenant"] = res.metadata.tenant
        else:
            value["metadata"].pop("tenant", None)
        if status is not None:
            value["status"] = status
        return value

    def _stage_node(self, batch: _Batch, node: Node, current: dict | None, now: float) -> dict | None:
        return self._envelope(node, current, now)

    def _stage_forecast_policy(self, batch: _Batch, policy, current: dict | None, now: float) -> dict | None:
        """A policy's spec as given (its status stays: only the proactive loop writes it)."""
        for index, name in enumerate(policy.spec.networks or ()):
            if self._vnet(batch, policy.namespace, name) is None:
                raise InvalidInput(f"unknown network '{name}'", field=f"spec.networks[{index}]")
        return self._envelope(policy, current, now, status=(current or {}).get("status"))

    def _stage_link(self, batch: _Batch, link: Link, current: dict | None, now: float) -> dict | None:
        for index, end in enumerate(link.spec.endpoints):
            if batch.read("Node", "", end, guard=False) is None:
                raise InvalidInput(f"unknown node '{end}'", field=f"spec.endpoints[{index}]")
        a, b = link.spec.endpoints
        for record in self.cache.list("Link"):
            ends = set(record.value["spec"]["endpoints"])
            if record.name != link.name and ends == {a, b}:
                raise InvalidInput(f"link '{record.name}' already joins {a} and {b}", field="spec.endpoints")
        if current is not None:
            if set(current["spec"]["endpoints"]) != {a, b}:
                self._refuse_if_reserved(batch, link.name, "change the endpoints of")
            ledger_value = batch.read(LEDGER_KIND, "", link.name)
            if ledger_value:
                held = LinkLedger.from_value(link.name, current["spec"]["endpoints"], 0, ledger_value)
                worst = max(held.reserved_bps("forward"), held.reserved_bps("reverse"))
                if link.spec.capacity < worst:
                    raise InvalidInput(f"capacity {link.spec.capacity:g} bit/s is below the {worst:g} bit/s "
                                       "already reserved on this link", field="spec.capacity")
        return self._envelope(link, current, now)

    def _refuse_if_reserved(self, batch: _Batch, link: str, verb: str) -> None:
        value = batch.read(LEDGER_KIND, "", link)
        if value and (value.get("forward") or value.get("reverse")):
            ends = set(self.cache.get("Link", "", link).value["spec"]["endpoints"])
            holders = sorted(f"{r.namespace}/{r.name}" for r in self.cache.list("Stitch")
                             if any(set(arc) == ends for arc in ledgers.held_by(r.value)))
            raise Conflict(f"cannot {verb} link '{link}': reserved by {', '.join(holders[:5]) or 'stitches'}",
                           field="metadata.name")

    def _stage_vnet(self, batch: _Batch, vnet: VirtualNetwork, current: dict | None, now: float) -> dict | None:
        for index, member in enumerate(vnet.spec.members):
            if batch.read("Node", "", member.node, guard=False) is None:
                raise InvalidInput(f"unknown node '{member.node}'", field=f"spec.members[{index}].node")
        for record in self.cache.list("VirtualNetwork"):
            staged = batch.staged.get(record.key, record.value)
            if staged and record.key != ("VirtualNetwork", vnet.namespace, vnet.name) \
                    and staged["spec"]["vnid"] == vnet.spec.vnid:
                raise InvalidInput(f"VNID {vnet.spec.vnid} is already used by "
                                   f"{_own_or_other(vnet.namespace, record.namespace, record.name)}",
                                   field="spec.vnid")
        for key, staged in batch.staged.items():
            if key[0] == "VirtualNetwork" and staged and key != ("VirtualNetwork", vnet.namespace, vnet.name) \
                    and staged["spec"]["vnid"] == vnet.spec.vnid:
                raise InvalidInput(f"VNID {vnet.spec.vnid} is already used by {_own_or_other(vnet.namespace, key[1], key[2])}",
                                   field="spec.vnid")
        if current is not None:
            members = {m.name for m in vnet.spec.members}
            for record in self.cache.list("Stitch"):
                if terminated(record.value):
                    continue  # finished: holds nothing, kept for inspection only
                spec = record.value["spec"]
                for side in ("from", "to"):
                    end = spec[side]
                    if (end.get("tenant") or record.namespace) == vnet.namespace and end["network"] == vnet.name \
                            and end.get("member") and end["member"] not in members:
                        raise Conflict(f"member '{end['member']}' is used by stitch "
                                       f"{_own_or_other(vnet.namespace, record.namespace, record.name, 'stitch')}",
                                       field="spec.members")
        return self._envelope(vnet, current, now)

    # stitch admission -------------------------------------------------------------------
    def _vnet(self, batch: _Batch | None, namespace: str, name: str) -> VirtualNetwork | None:
        """A network as this batch sees it; stored ones are parsed once per revision."""
        key = ("VirtualNetwork", namespace, name)
        if batch is not None:
            batch.read(*key)  # guard: the policy we check must still hold at commit
            if key in batch.staged:
                value = batch.staged[key]
                return VirtualNetwork.model_validate(value) if value else None
        record = self.cache.get(*key)
        if record is None:
            return None
        cached = self._vnets.get((namespace, name, record.revision))
        if cached is None:
            if len(self._vnets) > 10_000:
                self._vnets.clear()
            cached = self._vnets[(namespace, name, record.revision)] = VirtualNetwork.model_validate(record.value)
        return cached

    def resolve_endpoint(self, batch: _Batch | None, tenant: str, end, field: str,
                         seen_from: VirtualNetwork | None = None) -> tuple[VirtualNetwork, str]:
        """The endpoint's network and the substrate node where the stitch attaches. With `seen_from`
        (the stitch's own network), another tenant's network that does not accept it is unknown."""
        namespace = end.tenant or tenant
        vnet = self._vnet(batch, namespace, end.network)
        if vnet is not None and seen_from is not None and namespace != tenant and not visible_to(vnet, seen_from):
            vnet = None  # exactly as if it did not exist: same error, and nothing of it is read below
        if vnet is None:
            raise InvalidInput(f"unknown network '{namespace}/{end.network}'", field=f"{field}.network")
        if end.member:
            member = vnet.member(end.member)
            if member is None:
                raise InvalidInput(f"network '{end.network}' has no member '{end.member}'", field=f"{field}.member")
            return vnet, member.node
        if not vnet.spec.members:
            raise InvalidInput(f"network '{end.network}' has no members to attach a stitch to",
                               field=f"{field}.network")
        counts: dict[str, int] = {}
        for member in vnet.spec.members:
            counts[member.node] = counts.get(member.node, 0) + 1
        return vnet, min(counts, key=lambda node: (-counts[node], node))

    def resolve_ends(self, batch: _Batch | None, tenant: str, from_end, to_end, encrypted: bool = True,
                     fields: tuple[str, str] = ("spec.from", "spec.to")):
        """Both ends of a stitch in `tenant` checked against both sides' policies: (a_net, a_node, b_net,
        b_node, allowed trust zones). No answer depends on whether an unseen network of another tenant
        exists: our own side is resolved and asked first, then the peer exists only if it accepts us."""
        ends = ((from_end, fields[0]), (to_end, fields[1]))
        foreign = [(end.tenant or tenant) != tenant for end, _ in ends]
        if all(foreign):
            raise InvalidInput("a stitch must have at least one endpoint in its own tenant",
                               field=f"{fields[0]}.tenant")
        own = foreign.index(False)
        (own_end, own_field), (peer_end, peer_field) = ends[own], ends[1 - own]
        own_net, own_node = self.resolve_endpoint(batch, tenant, own_end, own_field)
        if foreign[1 - own]:
            candidate = self._vnet(batch, peer_end.tenant, peer_end.network)
            if candidate is None or not visible_to(candidate, own_net):
                # Our own policy decides alone, whatever the peer's labels, before "unknown network".
                check_side(own_net, peer_end.tenant, peer_end.network, None, encrypted, own_field)
        peer_net, peer_node = self.resolve_endpoint(batch, tenant, peer_end, peer_field, seen_from=own_net)
        if own == 0:
            a_net, a_node, b_net, b_node = own_net, own_node, peer_net, peer_node
        else:
            a_net, a_node, b_net, b_node = peer_net, peer_node, own_net, own_node
        return a_net, a_node, b_net, b_node, check_policies(a_net, b_net, encrypted, fields)

    def _stage_stitch(self, batch: _Batch, stitch: Stitch, current: dict | None, now: float,
                      replan: bool = False, avoid: tuple[str, ...] = ()) -> dict | None:
        key = f"{stitch.namespace}/{stitch.name}"
        if current is not None and terminated(current) and not replan:
            current = None  # a finished stitch's record is replaced by the new one of the same name
        if current is not None and current["metadata"].get("deletionTimestamp"):
            raise Conflict(f"stitch '{stitch.name}' is being deleted; wait until it is gone", field="metadata.name")
        if current is not None and current["spec"].get("symmetric", True) != stitch.spec.symmetric:
            raise InvalidInput("symmetric cannot change on an existing stitch; delete and recreate it",
                               field="spec.symmetric")
        envelope = dict(current) if replan else self._envelope(stitch, current, now)
        if envelope is None:
            return None
        a_net, a_node, b_net, b_node, zones = self.resolve_ends(batch, stitch.namespace, stitch.spec.from_,
                                                                stitch.spec.to, stitch.spec.encrypted)
        if (a_net.metadata.tenant, a_net.metadata.name) == (b_net.metadata.tenant, b_net.metadata.name) \
                and stitch.spec.from_.member == stitch.spec.to.member:
            raise InvalidInput("a stitch must join two different endpoints; both ends name "
                               f"{stitch.spec.from_.member or a_net.metadata.name}", field="spec.to")
        spec = stitch.spec
        ledger_map = self.ledgers(batch)
        finder = self._finder_for(batch)
        preempted: list[str] = []
        if spec.path is not None:
            path = self._explicit_path(batch, spec, a_node, b_node, zones)
        else:
            path = self._choose_path(finder, spec, key, a_node, b_node, zones, ledger_map, avoid=avoid)
            if path is None and avoid:
                raise InsufficientCapacity("no other path meets the stitch's bounds", field="spec.path")
        if path is None:
            path, preempted = self._path_with_preemption(finder, spec, key, a_node, b_node, zones, ledger_map)
        # Release what this stitch and its victims held, reserve along the new path: one net change.
        wanted = {arc: ledgers.as_reservation(spec.bandwidth) for arc in ledgers.stitch_arcs(path.nodes, spec.symmetric)} \
            if spec.bandwidth > 0 else {}
        deltas = ledgers.net_deltas((ledger_map.holdings_of(key), -1), (wanted, +1),
                                    *((ledger_map.holdings_of(victim), -1) for victim in preempted))
        for link, ledger in ledgers.apply_deltas(ledger_map, self._arcs_for(batch), deltas).items():
            ledger_map.set(link, ledger)
            batch.write(LEDGER_KIND, "", link, ledger.to_value())
        for victim in preempted:
            self._stage_preemption(batch, victim, key, now)
        status = StitchStatus.model_validate(current["status"]) if current and current.get("status") \
            else initial_status(now, "accepted")
        status = status.model_copy(update={"path": list(path.nodes), "reserved_bandwidth": spec.bandwidth})
        envelope["status"] = status.model_dump(by_alias=True, mode="json")
        return envelope

    def _explicit_path(self, batch: _Batch, spec, a_node: str, b_node: str, zones):
        """The pinned route, checked: it joins the endpoints over real links within zones and latency."""
        nodes = list(spec.path)
        if not nodes or nodes[0] != a_node or nodes[-1] != b_node:
            raise InvalidInput(f"the path must run from {a_node} to {b_node}", field="spec.path")
        if len(set(nodes)) != len(nodes):
            raise InvalidInput("the path visits a node twice", field="spec.path")
        latency = 0.0
        for index, (u, v) in enumerate(zip(nodes, nodes[1:])):
            link = self._arcs_for(batch).get((u, v))
            link_value = batch.read("Link", "", link, guard=False) if link else None
            if link_value is None:
                raise InvalidInput(f"no link joins {u} and {v}", field=f"spec.path[{index + 1}]")
            link_spec = link_value["spec"]
            if link_spec.get("state", "up") != "up":
                raise InsufficientCapacity(f"link {link} on the path is {link_spec['state']}", field=f"spec.path[{index + 1}]")
            node_zone = ((batch.read("Node", "", v, guard=False) or {}).get("spec") or {}).get("trustZone", "default")
            if zones is not None and (link_spec.get("trustZone", "default") not in zones or node_zone not in zones):
                raise PolicyDenied(f"link {link} or node {v} is outside the allowed trust zones", field="spec.path")
            latency += float(link_spec.get("latency", 0.001))
        if spec.max_latency is not None and latency > spec.max_latency + 1e-12:
            raise InsufficientCapacity(f"the path takes {latency * 1e3:.3g} ms, above maxLatency", field="spec.maxLatency")
        return _PinnedPath(tuple(nodes), latency)

    def _for_finder(self, finder, residual):
        """The residual vector, or a dict when `finder` is a one-off over a staged substrate."""
        if finder is self._pathfinder:
            return residual
        return {arc: float(residual[i]) for arc, i in self._arc_positions.items()}

    def _choose_path(self, finder, spec, key, a_node, b_node, zones, ledger_map, ignore=(), avoid=()):
        residual = self._for_finder(finder, self.residual(ledger_map, ignore=(key, *ignore)))
        found = finder.paths(a_node, b_node, metric="latency", bandwidth_bps=spec.bandwidth,
                             symmetric=spec.symmetric, max_latency_s=spec.max_latency, allowed_zones=zones,
                             residual=residual, k=1, exclude_links=avoid)
        return found[0] if found else None

    def _path_with_preemption(self, finder, spec, key, a_node, b_node, zones, ledger_map):
        """Path freed by pre-empting lower-priority forecast stitches, or the reason there is none."""
        victims_all = [r for r in self.cache.list("Stitch")
                       if r.value["spec"].get("origin") == "forecast"
                       and r.value["spec"].get("priority", 100) < spec.priority
                       and f"{r.namespace}/{r.name}" != key]
        candidates = [f"{r.namespace}/{r.name}" for r in victims_all]
        path = self._choose_path(finder, spec, key, a_node, b_node, zones, ledger_map,
                                 ignore=candidates) if candidates else None
        if path is None:
            availability = finder.availability(
                a_node, b_node, bandwidth_bps=spec.bandwidth, max_latency_s=spec.max_latency,
                residual=self._for_finder(finder, self.residual(ledger_map, ignore=(key,))), allowed_zones=zones,
                symmetric=spec.symmetric)
            raise InsufficientCapacity(f"no path from {a_node} to {b_node}: {availability.reason}",
                                       field="spec.maxLatency" if "latency" in availability.reason else "spec.bandwidth")
        # Pre-empt only victims holding capacity on this path, lowest priority first, until it fits.
        arcs = set(ledgers.stitch_arcs(path.nodes, spec.symmetric))
        held = {v: ledger_map.holdings_of(v) for v in candidates}
        on_path = sorted((v for v in candidates if arcs & set(held.get(v, {}))),
                         key=lambda v: self.cache.get("Stitch", *v.split("/", 1)).value["spec"].get("priority", 100))
        chosen: list[str] = []
        for victim in on_path:
            chosen.append(victim)
            residual = self.residual(ledger_map, ignore=(key, *chosen))
            if all(residual[self._arc_positions[arc]] >= ledgers.as_reservation(spec.bandwidth) for arc in arcs):
                break
        return path, chosen

    def _stage_preemption(self, batch: _Batch, victim: str, by: str, now: float) -> None:
        namespace, name = victim.split("/", 1)
        value = batch.read("Stitch", namespace, name)
        status = StitchStatus.model_validate(value.get("status", {}))
        who = by if by.split("/", 1)[0] == namespace else "another tenant's stitch"  # name only its own
        status = transition(status, State.TERMINATING, now, f"pre-empted by higher-priority stitch {who}")
        status = status.model_copy(update={"reserved_bandwidth": 0.0})
        new = {**value, "metadata": {**value["metadata"], "deletionTimestamp": now},
               "status": status.model_dump(by_alias=True, mode="json")}
        batch.write("Stitch", namespace, name, new)

    # delete --------------------------------------------------------------------------------
    def delete(self, kind: str, name: str, tenant: str | None = None, fenced: bool = False) -> Change:
        cls = kind_class(kind)
        namespace = (tenant or "default") if cls.NAMESPACED else ""
        def stage(batch: _Batch, now: float) -> Change:
            current = batch.read(cls.KIND, namespace, name)
            if current is None:
                raise NotFound(f"{cls.KIND} '{name}' not found", field="metadata.name")
            return Change(cls.KIND, namespace, name, self._stage_delete(batch, cls.KIND, namespace, name, current, now))

        return self._transact(stage, fenced=fenced)

    def _stage_delete(self, batch: _Batch, kind: str, namespace: str, name: str, current: dict, now: float) -> str:
        if kind == "Stitch":
            if terminated(current):  # deleting a finished stitch's record purges it
                batch.write(kind, namespace, name, None)
                return "deleted"
            if current["metadata"].get("deletionTimestamp"):
                return "deleting"
            status = StitchStatus.model_validate(current.get("status", {}))
            status = transition(status, State.TERMINATING, now, "deleted by user")
            batch.write(kind, namespace, name, {**current, "metadata": {**current["metadata"], "deletionTimestamp": now},
                                                "status": status.model_dump(by_alias=True, mode="json")})
            return "deleting"
        if kind == "VirtualNetwork":
            users = [r for r in self.cache.list("Stitch") if not terminated(r.value)
                     and any((r.value["spec"][s].get("tenant") or r.namespace) == namespace
                            and r.value["spec"][s]["network"] == name for s in ("from", "to"))]
            if users:
                raise Conflict(self._in_use_message(name, namespace, users), field="metadata.name")
        elif kind == "Node":
            links = [r.name for r in self.cache.list("Link") if name in r.value["spec"]["endpoints"]]
            vnets = [f"{r.namespace}/{r.name}" for r in self.cache.list("VirtualNetwork")
                     if any(m["node"] == name for m in r.value["spec"].get("members", []))]
            if links or vnets:
                raise Conflict(f"node '{name}' is used by {', '.join((links + vnets)[:5])}", field="metadata.name")
        elif kind == "Link":
            self._refuse_if_reserved(batch, name, "delete")
            if batch.read(LEDGER_KIND, "", name) is not None:
                batch.write(LEDGER_KIND, "", name, None)
        batch.write(kind, namespace, name, None)
        return "deleted"

    @staticmethod
    def _in_use_message(network: str, namespace: str, users: list[Record]) -> str:
        """Why network `network` cannot go, naming only its own tenant's stitches (others are counted)."""
        own = sorted(r.name for r in users if r.namespace == namespace)
        elsewhere = len(users) - len(own)
        listed = ", ".join(own[:5]) + (f" and {len(own) - 5} more" if len(own) > 5 else "")
        message = f"network '{network}' is used by {len(users)} stitch{'es' if len(users) != 1 else ''}"
        message += f" ({listed})" if own else ""
        if elsewhere:
            message += f", {elsewhere} of them in other tenants"
        return message + "; delete them first"

    # reconciler support ---------------------------------------------------------------------
    def replan_reason(self, stitch: Stitch) -> str | None:
        """Why an admitted stitch no longer holds as admitted (an end moved, a link on its path went away
        or down, a policy no longer consents, the path leaves the allowed trust zones or latency), or None.
        A stitch withdrawn earlier is always worth another try when something changed."""
        status = stitch.status
        if status.state in (State.TERMINATING, State.TERMINATED) or stitch.metadata.deletion_timestamp:
            return None
        if not status.path:
            return "retry: what it depends on changed" if status.state is State.FAILED else None
        if slo_breached(stitch):
            return f"SLO breach: {status.message}"
        try:  # the same check as admission: a peer that no longer consents looks like one that is gone
            a_net, a_node, b_net, b_node, zones = self.resolve_ends(None, stitch.namespace, stitch.spec.from_,
                                                                    stitch.spec.to, stitch.spec.encrypted)
        except VnstitchError as exc:
            return str(exc)
        for end, net, node, at in ((stitch.spec.from_, a_net, a_node, status.path[0]),
                                   (stitch.spec.to, b_net, b_node, status.path[-1])):
            if end.member and node != at:
                return f"member {end.member} moved from {at} to {node}"
            if not end.member and at not in {m.node for m in net.spec.members}:
                return f"network {net.metadata.name} has no member on {at} any more"
        arcs = self.arc_links()
        latency = 0.0
        for u, v in zip(status.path, status.path[1:]):
            name = arcs.get((u, v))
            record = self.cache.get("Link", "", name) if name else None
            if record is None:
                return f"no link joins {u} and {v} any more"
            link = record.value["spec"]
            if link.get("state", "up") != "up":
                return f"link {name} is {link['state']}"
            node = self.cache.get("Node", "", v)
            node_zone = ((node.value if node else {}).get("spec") or {}).get("trustZone", "default")
            if zones is not None and (link.get("trustZone", "default") not in zones or node_zone not in zones):
                return f"link {name} or node {v} is outside the allowed trust zones"
            latency += float(link.get("latency", 0.001))
        if stitch.spec.max_latency is not None and latency > stitch.spec.max_latency + 1e-12:
            return f"the path now takes {latency * 1e3:.3g} ms, above maxLatency"
        return None

    def replan(self, record: Record, reason: str) -> str:
        """See `_replan`; on an SLO breach the stitch moves to another path that meets its bounds, and
        stays where it is (DEGRADED, with the reason) when there is none."""
        if reason.startswith("SLO breach"):
            return self._reroute(record, reason)
        return self._replan(record, reason)

    @staticmethod
    def _live_stitch(batch: _Batch, namespace: str, name: str) -> tuple[dict | None, Stitch | None]:
        """The stored stitch as this batch sees it, unless it is gone or being deleted."""
        current = batch.read("Stitch", namespace, name)
        if current is None or current["metadata"].get("deletionTimestamp"):
            return current, None
        return current, Stitch.model_validate(current)

    def _reroute(self, record: Record, reason: str) -> str:
        namespace, name = record.namespace, record.name

        def stage(batch: _Batch, now: float) -> str:
            current, stitch = self._live_stitch(batch, namespace, name)
            if stitch is None:
                return "gone"
            if stitch.spec.path is not None or not stitch.status.path:
                return "unchanged"  # a pinned path is its owner's (the proactive loop reroutes its own)
            arcs = self._arcs_for(batch)
            avoid = tuple(sorted({arcs[arc] for arc in zip(stitch.status.path, stitch.status.path[1:]) if arc in arcs}))
            try:
                value = self._stage_stitch(batch, stitch, current, now, replan=True, avoid=avoid)
            except VnstitchError:
                batch.staged.clear()
                return "unchanged"
            status = StitchStatus.model_validate(value["status"])
            status = transition(status, State.ADJUSTING, now, f"rerouted ({reason}): path {'→'.join(status.path)}")
            batch.write("Stitch", namespace, name, {**value, "status": status.model_dump(by_alias=True, mode="json")})
            return "rerouted"

        return self._transact(stage, fenced=True)

    def _replan(self, record: Record, reason: str) -> str:
        """Admit a stored stitch again against what it depends on now: a new path and reservation
        (ADJUSTING, or PENDING for a withdrawn one), or, when that is forbidden or impossible, its
        reservation released and the stitch FAILED with no path (the reconciler removes it from the data
        plane). Returns what happened: 'replanned', 'withdrawn', 'unchanged' or 'gone'."""
        namespace, name = record.namespace, record.name

        def stage(batch: _Batch, now: float) -> str:
            current, stitch = self._live_stitch(batch, namespace, name)
            if stitch is None:
                return "gone"
            old = stitch.status
            try:
                value = self._stage_stitch(batch, stitch, current, now, replan=True)
            except VnstitchError as exc:
                key = f"{namespace}/{name}"
                deltas = ledgers.net_deltas((self.ledgers(batch).holdings_of(key), -1))
                for link, ledger in ledgers.apply_deltas(self.ledgers(batch), self._arcs_for(batch), deltas).items():
                    self.ledgers(batch).set(link, ledger)
                    batch.write(LEDGER_KIND, "", link, ledger.to_value())
                why = f"withdrawn: {exc}" if str(exc) == reason else f"withdrawn ({reason}): {exc}"
                status = transition(old, State.FAILED, now, why) if old.state is not State.FAILED \
                    else old.model_copy(update={"message": why})
                status = status.model_copy(update={"path": [], "reserved_bandwidth": 0.0})
                if status == old:
                    return "unchanged"
                batch.write("Stitch", namespace, name,
                            {**current, "status": status.model_dump(by_alias=True, mode="json")})
                return "withdrawn"
            status = StitchStatus.model_validate(value["status"])
            if status.path == old.path and status.reserved_bandwidth == old.reserved_bandwidth \
                    and old.state is not State.FAILED:
                batch.staged.clear()  # nothing moved: write nothing
                return "unchanged"
            target = State.PENDING if old.state is State.FAILED else State.ADJUSTING
            if target in ALLOWED_TRANSITIONS[old.state]:
                status = transition(status, target, now, f"re-planned ({reason}): path {'→'.join(status.path)}")
            batch.write("Stitch", namespace, name, {**value, "status": status.model_dump(by_alias=True, mode="json")})
            return "replanned"

        return self._transact(stage, fenced=True)

    def finalize_stitch(self, record: Record, now: float | None = None) -> bool:
        """Teardown confirmed: the stitch becomes TERMINATED (kept for inspection until the reconciler
        purges it after the retention period) and its reservation is released, in one transaction."""
        with self._lock:
            self.refresh()
            status = StitchStatus.model_validate(record.value.get("status", {}))
            status = transition(status, State.TERMINATED, self.clock() if now is None else now, "teardown confirmed")
            status = status.model_copy(update={"reserved_bandwidth": 0.0})
            compares = [Compare("Stitch", record.namespace, record.name, record.revision)]
            ops: list = [Put("Stitch", record.namespace, record.name,
                             {**record.value, "status": status.model_dump(by_alias=True, mode="json")})]
            deltas = ledgers.net_deltas((ledgers.held_by(record.value), -1))
            for link, ledger in ledgers.apply_deltas(self.ledgers(), self.arc_links(), deltas).items():
                ledger_record = self.cache.get(LEDGER_KIND, "", link)
                compares.append(Compare(LEDGER_KIND, "", link, ledger_record.revision if ledger_record else 0))
                ops.append(Put(LEDGER_KIND, "", link, ledger.to_value()))
            return self.store.txn(compares + self.fence, ops).succeeded

    def purge(self, record: Record) -> bool:
        """Remove a finished stitch's record (it holds nothing any more); False when it changed meanwhile."""
        return self.store.txn([Compare("Stitch", record.namespace, record.name, record.revision), *self.fence],
                              [Delete("Stitch", record.namespace, record.name)]).succeeded

    STATUS_CHUNK = 64

    def write_statuses(self, updates: list[tuple[Record, StitchStatus]],
                       between: Callable[[], None] | None = None) -> int:
        """Write many statuses, one transaction (one fsync) per chunk of 64; where a stitch in a chunk
        changed meanwhile, fall back to one CAS each for that chunk. Returns how many landed (the rest
        retry next pass). Chunks keep each transaction short: the store has one writer at a time, and
        the API's creates wait behind whatever transaction is in progress. `between()` runs between
        chunks (the reconciler's pace: it lets a waiting writer in before the next chunk)."""
        landed = 0
        for start in range(0, len(updates), self.STATUS_CHUNK):
            if start and between is not None:
                between()
            chunk = updates[start:start + self.STATUS_CHUNK]
            compares = [Compare(r.kind, r.namespace, r.name, r.revision) for r, _ in chunk] + self.fence
            ops = [Put(r.kind, r.namespace, r.name, {**r.value, "status": st.model_dump(by_alias=True, mode="json")})
                   for r, st in chunk]
            if self.store.txn(compares, ops).succeeded:
                landed += len(chunk)
            else:
                landed += sum(self.write_status(record, status) for record, status in chunk)
        return landed

    def write_status(self, record: Record, status: StitchStatus) -> bool:
        """CAS the status of a stitch; False when it changed meanwhile (next pass retries)."""
        value = {**record.value, "status": status.model_dump(by_alias=True, mode="json")}
        return self.store.txn([Compare(record.kind, record.namespace, record.name, record.revision), *self.fence],
                              [Put(record.kind, record.namespace, record.name, value)]).succeeded

    # queries --------------------------------------------------------------------------------
    def availability(self, tenant: str, from_end, to_end, bandwidth_bps: float,
                     max_latency_s: float | None = None, symmetric: bool = True, encrypted: bool = True):
        """Could X bit/s at ≤ Y s be stitched between two endpoints now? Reserves nothing. Checks the
        ends and both sides' policies as admission does (an unseen peer is an unknown network)."""
        self.refresh()
        _, a_node, _, b_node, zones = self.resolve_ends(None, tenant, from_end, to_end, encrypted, ("from", "to"))
        return self.pathfinder().availability(a_node, b_node, bandwidth_bps=bandwidth_bps,
                                              max_latency_s=max_latency_s, symmetric=symmetric,
                                              allowed_zones=zones, residual=self.residual(self.ledgers()))


__all__ = ["Controller", "Change", "VnstitchError"]
