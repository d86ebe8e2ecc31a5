"""Use-case services shared by the CLI and the API: apply, delete, query, admit stitches.

Admission is decided by planning.admission (pure, over a snapshot); this layer reads through a
batch that records every read, builds that snapshot over it, writes what the decision returns and
commits in one store transaction guarded by the revisions of everything read (retrying when the
store moved), so concurrent controllers never over-reserve a link.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable, TypeVar

from vnstitch.controller.cache import StateCache
from vnstitch.domain import ledger as ledgers
from vnstitch.domain.ledger import LEDGER_KIND, LinkLedger
from vnstitch.domain.registry import KnownDocument, kind_class
from vnstitch.domain.resources import Resource
from vnstitch.domain.stitch import State, Stitch, StitchStatus, transition
from vnstitch.domain.substrate import Link, Node
from vnstitch.domain.vnet import VirtualNetwork
from vnstitch.errors import Conflict, InvalidInput, NotFound, VnstitchError
from vnstitch.planning import admission
from vnstitch.planning.admission import Admitted, Residual, slo_breached
from vnstitch.store import Compare, Delete, Put, Record, Store
from vnstitch.store.applied import AppliedTable, fingerprint

T = TypeVar("T")
KIND_ORDER = {"Node": 0, "Link": 1, "VirtualNetwork": 2, "Stitch": 3, "ForecastPolicy": 4, "Intent": 5, "Proposal": 6,
              "AnomalyPolicy": 7, "Anomaly": 8}
CACHED_KINDS = ("Node", "Link", "VirtualNetwork", "Stitch", "ForecastPolicy", "Intent", "Proposal", "AnomalyPolicy",
                "Anomaly", LEDGER_KIND)
KIND_ORDER["Site"], CACHED_KINDS = 20, CACHED_KINDS + ("Site",)  # issue 14 (docs/SITES.md)
KIND_ORDER["SiteStitch"], CACHED_KINDS = 21, CACHED_KINDS + ("SiteStitch",)  # read by the route managers
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
        # Indexes that keep a bulk apply linear. Each only ever grows and every hit is checked against
        # what the batch reads now, so apply_each's restore of `staged` after a refusal cannot mislead them.
        self.parsed: dict[tuple[str, str, str], tuple[dict, Resource]] = {}  # staged value → its model
        self.sources: dict[tuple[str, str, str], tuple[dict, Resource]] = {}  # staged value → resource given
        self.substrate_keys: set[tuple[str, str, str]] = set()  # Node and Link keys ever staged
        self.finder: tuple[list, object] | None = None  # (staged substrate it was built over, PathFinder)
        self._vnids: dict[int, dict[tuple[str, str, str], None]] | None = None  # VNID → networks that had it
        self._stitches_on: dict[tuple[str, str], list[Record]] | None = None  # (tenant, network) → stitches
        self.known_unchanged: set[tuple[str, str, str]] = set()  # KnownDocuments found unchanged unparsed
        self.path_memo: tuple[object, dict] | None = None  # (PathFinder, its answers), see _MemoFinder

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
        if kind in ("Node", "Link"):
            self.substrate_keys.add((kind, namespace, name))
        elif kind == "VirtualNetwork" and value is not None and self._vnids is not None:
            self._vnids.setdefault(value["spec"]["vnid"], {})[(kind, namespace, name)] = None

    def changes_substrate(self) -> bool:
        return any(key in self.staged for key in self.substrate_keys)

    def staged_substrate(self) -> list[tuple[tuple[str, str, str], dict | None]]:
        return [(key, self.staged[key]) for key in sorted(self.substrate_keys) if key in self.staged]

    def networks_with_vnid(self, vnid: int) -> list[tuple[tuple[str, str, str], dict]]:
        """(key, value) of every network this batch sees with `vnid`: stored ones first, by tenant and name
        (staged versions read first), then those only staged, in the order they were staged."""
        keys = list(self._vnid_index().get(vnid, ()))
        stored = sorted((k for k in keys if self.cache.get(*k) is not None), key=lambda k: (k[1], k[2]))
        found = []
        for key in stored + [k for k in keys if self.cache.get(*k) is None]:
            value = self.staged[key] if key in self.staged else self.cache.get(*key).value
            if value and value["spec"]["vnid"] == vnid:
                found.append((key, value))
        return found

    def _vnid_index(self) -> dict[int, dict[tuple[str, str, str], None]]:
        if self._vnids is None:
            self._vnids = {}
            for record in self.cache.list("VirtualNetwork"):
                self._vnids.setdefault(record.value["spec"]["vnid"], {})[record.key] = None
            for (kind, namespace, name), value in self.staged.items():
                if kind == "VirtualNetwork" and value is not None:
                    self._vnids.setdefault(value["spec"]["vnid"], {})[(kind, namespace, name)] = None
        return self._vnids

    def vnid_used_by_another(self, vnid: int, own: tuple[str, str, str]) -> bool:
        """Does a network other than `own` have `vnid` as this batch sees it (networks_with_vnid, without
        building its answer where the index holds no other network)?"""
        if all(key == own for key in self._vnid_index().get(vnid, ())):
            return False
        return any(key != own for key, _ in self.networks_with_vnid(vnid))

    def stitches_on(self, namespace: str, network: str) -> list[Record]:
        """Stored stitches with an end on network `namespace/network`, by tenant and name (an index over
        the stored values; the caller decides on the parsed model)."""
        if self._stitches_on is None:
            self._stitches_on = {}
            for record in self.cache.list("Stitch"):
                spec = record.value["spec"]
                for end in {((e.get("tenant") or record.namespace), e["network"]) for e in (spec["from"], spec["to"])}:
                    self._stitches_on.setdefault(end, []).append(record)
        return self._stitches_on.get((namespace, network), [])

    def ops(self) -> list:
        return [Put(*key, value) if value is not None else Delete(*key) for key, value in self.staged.items()]


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


class _View:
    """Admission's snapshot (planning.admission.Snapshot) over one batch: every read goes through the
    batch, so the commit's compare-and-swap guards exactly what the decision read. Batch None: over the
    cache alone, for checks and queries that write nothing. Parsed models come from the controller's
    per-revision cache."""

    def __init__(self, controller: "Controller", batch: _Batch | None):
        self._controller, self._batch = controller, batch
        self._finder = None
        self._ledger_view: _LedgerView | None = None

    @property
    def finder(self):
        if self._finder is None:
            finder = self._controller._finder_for(self._batch)
            if self._batch is not None and finder is self._controller._pathfinder:
                finder = _MemoFinder(finder, self._controller, self._batch)
            self._finder = finder
        return self._finder

    @property
    def arc_links(self) -> dict[tuple[str, str], str]:
        self.finder  # a batch that changes the substrate maps its arcs with the finder it builds
        return self._controller._arcs_for(self._batch)

    @property
    def ledgers(self) -> _LedgerView:
        if self._batch is not None:
            return self._controller.ledgers(self._batch)  # one per batch, shared by its admissions
        if self._ledger_view is None:
            self._ledger_view = self._controller.ledgers(None)
        return self._ledger_view

    def network(self, namespace: str, name: str) -> VirtualNetwork | None:
        return self._controller._read_typed(self._batch, VirtualNetwork, namespace, name)  # guarded: its policy

    def link(self, name: str) -> Link | None:
        return self._controller._read_typed(self._batch, Link, "", name, guard=False)

    def node(self, name: str) -> Node | None:
        return self._controller._read_typed(self._batch, Node, "", name, guard=False)

    def stitch(self, namespace: str, name: str) -> Stitch | None:
        return self._controller._read_typed(self._batch, Stitch, namespace, name)

    def stitches(self) -> list[Stitch]:
        return self._controller._stored_stitches()

    def holdings(self, stitch: str) -> dict[tuple[str, str], int]:
        return self.ledgers.holdings_of(stitch)

    def residual(self, released: Iterable[str] = ()) -> Residual:
        vector = self._controller.residual(self.ledgers, ignore=released)
        positions = self._controller._arc_positions
        if getattr(self.finder, "finder", self.finder) is self._controller._pathfinder:
            return Residual(vector, positions)
        return Residual({arc: float(vector[i]) for arc, i in positions.items()})  # a one-off finder: by arc


class _MemoFinder:
    """The controller's PathFinder for one batch, its best lowest-latency path (`paths(..., k=1)`) remembered
    by what decides it: the ends, the bounds and which arcs have the bandwidth free. In a bulk apply most
    stitches ask the same question of a residual that changed only where it does not matter; the answer
    is the finder's, with the bottleneck read off the residual given. Everything else goes to the finder."""

    def __init__(self, finder, controller: "Controller", batch: _Batch):
        self.finder, self._controller = finder, controller
        if batch.path_memo is None or batch.path_memo[0] is not finder:
            batch.path_memo = (finder, {})
        self._memo = batch.path_memo[1]

    def __getattr__(self, name: str):
        return getattr(self.finder, name)

    def paths(self, src: str, dst: str, *, metric: str = "latency", bandwidth_bps: float = 0.0,
              symmetric: bool = True, max_latency_s: float | None = None, allowed_zones=None,
              exclude_nodes=(), exclude_links=(), residual=None, k: int = 1) -> list:
        asked = dict(metric=metric, bandwidth_bps=bandwidth_bps, symmetric=symmetric, max_latency_s=max_latency_s,
                     allowed_zones=allowed_zones, exclude_nodes=exclude_nodes, exclude_links=exclude_links,
                     residual=residual, k=k)
        positions = self._controller._arc_positions
        if metric != "latency" or k != 1 or type(residual).__name__ != "ndarray" or len(residual) != len(positions) \
                or not bandwidth_bps >= 0 or not (max_latency_s is None or max_latency_s >= 0) \
                or isinstance(exclude_nodes, str) or isinstance(exclude_links, str):
            return self.finder.paths(src, dst, **asked)
        key = (src, dst, float(bandwidth_bps), bool(symmetric), max_latency_s,
               None if allowed_zones is None else frozenset(allowed_zones), tuple(exclude_nodes), tuple(exclude_links),
               (residual >= bandwidth_bps).tobytes())
        found = self._memo.get(key)
        if found is None:
            found = self._memo[key] = self.finder.paths(src, dst, **asked)
        if not found or not found[0].arcs:
            return list(found)
        free = [float(residual[positions[arc]]) for arc in found[0].arcs]
        if symmetric:
            free = [min(bps, float(residual[positions[(arc[1], arc[0])]])) for bps, arc in zip(free, found[0].arcs)]
        return [dataclasses.replace(found[0], bottleneck_bps=min(free))]


def _own_or_other(caller: str, namespace: str, name: str, what: str = "network") -> str:
    """An object's name when it is the caller's tenant's, else only that it belongs to another tenant."""
    return f"{namespace}/{name}" if namespace == caller else f"a {what} of another tenant"


def _ends_on(stitch: Stitch, namespace: str, network: str) -> list:
    """The stitch's endpoints that lie on network `namespace/network`."""
    return [end for end in (stitch.spec.from_, stitch.spec.to)
            if (end.tenant or stitch.namespace) == namespace and end.network == network]


def _may_need_a_member_of(record: Record, namespace: str, network: str, members: set[str]) -> bool:
    """Does the stored stitch name a member of network `namespace/network` outside `members`? Read off the
    stored value to skip parsing the stitches that plainly do not (the parsed model decides the rest)."""
    spec = record.value["spec"]
    return any(end.get("member") and end["member"] not in members for end in (spec["from"], spec["to"])
               if (end.get("tenant") or record.namespace, end["network"]) == (namespace, network))


_TERMINATED = State.TERMINATED.value


def terminated(value: dict | None) -> bool:
    """Is this stored stitch finished (torn down, reservation released, kept only for inspection)?"""
    return bool(value) and (value.get("status") or {}).get("state") == _TERMINATED


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
        self._parsed: dict[tuple[str, str, str], tuple[int, Resource]] = {}  # key → (revision, parsed model)
        self._ledger_dirty: set[str] = set()
        self.substrate_version = 0  # bumped on every node or link change (re-planning keys on it)
        self.cache = StateCache(store, CACHED_KINDS, on_change=self._on_change)
        # Compares every reconciler write carries (leader election sets one on the leader key's
        # create revision, so a deposed leader's writes fail instead of landing).
        self.fence: list[Compare] = []

    # cache and derived views -------------------------------------------------------------
    def _on_change(self, kind: str, old: Record | None, new: Record | None) -> None:
        self._parsed.pop((new or old).key, None)
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
        if batch is None or not batch.changes_substrate():
            return self.pathfinder()
        staged = batch.staged_substrate()
        if batch.finder is not None and len(batch.finder[0]) == len(staged) and all(
                key == seen_key and value is seen for (key, value), (seen_key, seen) in zip(staged, batch.finder[0])):
            return batch.finder[1]  # built over these very staged nodes and links (and batch.arc_links with it)
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
        finder = PathFinder([Node.model_validate(v) for v in nodes.values()], links)
        batch.finder = (staged, finder)
        return finder

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
    def apply(self, resources: list[Resource | KnownDocument], dry_run: bool = False,
              progress: Callable[[int, int], None] | None = None,
              applied: dict[tuple[str, str, str], str] | None = None) -> list[Change]:
        """Create or update resources all-or-nothing; validates references, policy and capacity.
        `progress(done, total)` is called every 1,000 resources staged and once all are (before the commit).
        A KnownDocument (a document an earlier apply recorded, not parsed) is unchanged when its object
        still is as that apply left it, and is parsed and staged like any resource otherwise. `applied`:
        key → digest of the document each resource came from alone; those digests and the KnownDocuments'
        are recorded with the change (vnstitch.store.applied), same transaction. An apply that changes
        nothing writes only digests not recorded yet (none, once a file was applied with them)."""
        ordered = sorted(resources, key=lambda r: KIND_ORDER[r.KIND])
        seen: set[tuple[str, str, str]] = set()
        for res in ordered:
            key = (res.KIND, res.namespace, res.name)
            if key in seen:
                raise InvalidInput(f"{res.KIND} '{res.name}' appears twice in the input", field="metadata.name")
            seen.add(key)
        def stage(batch: _Batch, now: float) -> list[Change]:
            changes = []
            for res in ordered:
                changes.append(self._stage_known(batch, res, now) if isinstance(res, KnownDocument)
                               else self._stage(batch, res, now))
                if progress is not None and (len(changes) % 1000 == 0 or len(changes) == len(ordered)):
                    progress(len(changes), len(ordered))
            if applied is not None and not dry_run:
                self._stage_applied(batch, ordered, applied)
            return changes

        return self._transact(stage, dry_run=dry_run)

    def _stage_known(self, batch: _Batch, doc: KnownDocument, now: float) -> Change:
        """Unchanged, unparsed, when the stored object has the fingerprint the document's text gave and
        every check the parsed document would meet is sure to pass; else parsed and staged as usual."""
        key = (doc.KIND, doc.namespace, doc.name)
        current = batch.read(*key)
        record = self.cache.get(*key) if key not in batch.staged else None
        same = record is not None and record.revision == doc.revision  # the very version it was recorded with
        if current is not None and (same or fingerprint(current) == doc.fingerprint) and self._stays(batch, doc, current):
            batch.known_unchanged.add((doc.KIND, doc.namespace, doc.name))
            return Change(doc.KIND, doc.namespace, doc.name, "unchanged")
        return self._stage(batch, doc.parse(), now)

    @staticmethod
    def _stays(batch: _Batch, doc: KnownDocument, current: dict) -> bool:
        """Would staging the document, whose spec, labels and annotations are `current`'s, pass every check
        and find it unchanged (see _stage_stitch, _stage_vnet)? False sends it the slow way, which decides."""
        if doc.KIND == "Stitch":
            return not terminated(current) and not current["metadata"].get("deletionTimestamp")
        if doc.KIND != "VirtualNetwork":
            return False
        spec, own = current["spec"], ("VirtualNetwork", doc.namespace, doc.name)
        members = {m["name"] for m in spec.get("members", ())}
        return all(batch.read("Node", "", m["node"], guard=False) is not None for m in spec.get("members", ())) \
            and not batch.vnid_used_by_another(spec["vnid"], own) \
            and not any(not terminated(r.value) and _may_need_a_member_of(r, doc.namespace, doc.name, members)
                        for r in batch.stitches_on(doc.namespace, doc.name))

    def _stage_applied(self, batch: _Batch, ordered: list, applied: dict[tuple[str, str, str], str]) -> None:
        """Stage the digest of each document this apply read alone with its object's fingerprint as staged
        (or stored, when unchanged), in the shards that change, each guarded by the revision it was read at."""
        entries = {}
        for res in ordered:
            key = (res.KIND, res.namespace, res.name)
            digest = res.digest if isinstance(res, KnownDocument) else applied.get(key)
            if digest is None:
                continue
            if key in batch.staged:
                if batch.staged[key] is not None:
                    entries[key] = (digest, fingerprint(batch.staged[key]), None)  # written by this transaction
            elif key in batch.known_unchanged:  # found unchanged by that very fingerprint
                revision = self.cache.get(*key).revision
                if revision != res.revision:  # (else recorded just so already)
                    entries[key] = (digest, res.fingerprint, revision)
            elif self.cache.get(*key) is not None:
                record = self.cache.get(*key)
                entries[key] = (digest, fingerprint(record.value), record.revision)
        if not entries:
            return
        compares, puts = AppliedTable.read(self.store).writes(entries)
        for compare, put in zip(compares, puts):
            key = (put.kind, put.namespace, put.name)
            batch.compares[key], batch.staged[key] = compare, put.value

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
                 "VirtualNetwork": self._stage_vnet, "Stitch": self._stage_stitch, "Intent": self._stage_intent,
                 "Proposal": self._stage_proposal, "AnomalyPolicy": self._stage_anomaly_policy,
                 "Anomaly": self._stage_anomaly, "Site": self._stage_site,
                 "SiteStitch": self._stage_site_stitch}[res.KIND]
        current = batch.read(res.KIND, res.namespace, res.name)
        new_value = stage(batch, res, current, now)
        if new_value is None:
            return Change(res.KIND, res.namespace, res.name, "unchanged")
        batch.write(res.KIND, res.namespace, res.name, new_value)
        batch.sources[(res.KIND, res.namespace, res.name)] = (new_value, res)
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

    def _stage_site(self, batch: _Batch, site, current: dict | None, now: float) -> dict | None:
        """A Site as given, once it fits beside the other sites (stored, and staged by this apply): its own
        AS and addresses, none of its nodes in another site (sites/config.py, as a route manager's file)."""
        from vnstitch.domain.site import Site
        from vnstitch.sites.config import check_sites

        names = {r.name for r in batch.cache.list("Site")} | {k[2] for k in batch.staged if k[0] == "Site"}
        others = []
        for name in sorted(names - {site.name}):
            value = batch.read("Site", "", name)
            if value is not None:
                others.append(Site.model_validate(value))
        check_sites([*others, site], source=None)
        return self._envelope(site, current, now)

    def _stage_site_stitch(self, batch: _Batch, stitch, current: dict | None, now: float) -> dict | None:
        """A stitch across sites as given, once its `from` is a network of its tenant: the route managers
        negotiate it and record the outcome in their status (docs/SITES.md); `to` may be another tenant's
        network that this store does not hold (an owning site's), so it is not looked up here."""
        if self._vnet(batch, stitch.namespace, stitch.spec.from_.network) is None:
            raise InvalidInput(f"unknown network '{stitch.spec.from_.network}' in tenant '{stitch.namespace}'",
                               field="spec.from.network")
        return self._envelope(stitch, current, now)

    def _stage_forecast_policy(self, batch: _Batch, policy, current: dict | None, now: float) -> dict | None:
        """A policy's spec as given (its status stays: only the proactive loop writes it)."""
        for index, name in enumerate(policy.spec.networks or ()):
            if self._vnet(batch, policy.namespace, name) is None:
                raise InvalidInput(f"unknown network '{name}'", field=f"spec.networks[{index}]")
        return self._envelope(policy, current, now, status=(current or {}).get("status"))

    def _stage_intent(self, batch: _Batch, intent, current: dict | None, now: float) -> dict | None:
        """An intent's spec after its checks (references, translators, contradictions with the tenant's other
        intents, feasibility on the substrate); its status stays: only the intent engine writes it."""
        from vnstitch.intent import checks
        from vnstitch.intent.engine import graph_of
        from vnstitch.intent.translators import default_registry

        value = self._envelope(intent, current, now, status=(current or {}).get("status"))
        if value is None:
            return None
        graph, others = graph_of(self, batch.staged)  # with what this apply stages before it (its networks)
        checks.check_intent(intent, others, graph, _View(self, batch), default_registry(), now)
        return value

    def _stage_proposal(self, batch: _Batch, proposal, current: dict | None, now: float) -> dict | None:
        raise InvalidInput("proposals are made by the intent engine; answer one with "
                           "`vnstitch proposal accept|reject NAME` (POST /v1/proposals/NAME/accept)", field="kind")

    def _stage_anomaly_policy(self, batch: _Batch, policy, current: dict | None, now: float) -> dict | None:
        """A policy's spec as given (its status stays: only the anomaly engine writes it)."""
        for index, name in enumerate(policy.spec.networks or ()):
            if self._vnet(batch, policy.namespace, name) is None:
                raise InvalidInput(f"unknown network '{name}'", field=f"spec.networks[{index}]")
        return self._envelope(policy, current, now, status=(current or {}).get("status"))

    def _stage_anomaly(self, batch: _Batch, anomaly, current: dict | None, now: float) -> dict | None:
        raise InvalidInput("anomalies are recorded by the anomaly engine; answer one with `vnstitch anomaly approve|"
                           "keep NAME` (POST /v1/anomalies/NAME/approve|keep)", field="kind")

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
        for key, _ in batch.networks_with_vnid(vnet.spec.vnid):
            if key != ("VirtualNetwork", vnet.namespace, vnet.name):
                raise InvalidInput(f"VNID {vnet.spec.vnid} is already used by {_own_or_other(vnet.namespace, key[1], key[2])}",
                                   field="spec.vnid")
        if current is not None:
            members = {m.name for m in vnet.spec.members}
            for record in batch.stitches_on(vnet.namespace, vnet.name):
                if terminated(record.value) or not _may_need_a_member_of(record, vnet.namespace, vnet.name, members):
                    continue  # finished (holds nothing, kept for inspection only), or its members all stay
                for end in _ends_on(self._typed(Stitch, record), vnet.namespace, vnet.name):
                    if end.member and end.member not in members:
                        raise Conflict(f"member '{end.member}' is used by stitch "
                                       f"{_own_or_other(vnet.namespace, record.namespace, record.name, 'stitch')}",
                                       field="spec.members")
        return self._envelope(vnet, current, now)

    # typed reads ------------------------------------------------------------------------
    def _typed(self, cls: type[T], record: Record) -> T:
        """The stored object parsed into its model, once per revision."""
        hit = self._parsed.get(record.key)
        if hit is not None and hit[0] == record.revision:
            return hit[1]
        model = cls.model_validate(record.value)
        self._parsed[record.key] = (record.revision, model)
        return model

    def _read_typed(self, batch: _Batch | None, cls: type[T], namespace: str, name: str, guard: bool = True) -> T | None:
        """An object as this batch sees it (staged first; `guard`: the commit requires it unchanged)."""
        key = (cls.KIND, namespace, name)
        if batch is not None:
            if guard:
                batch.read(*key)
            if key in batch.staged:
                value = batch.staged[key]
                if not value:
                    return None
                hit = batch.parsed.get(key)
                if hit is None or hit[0] is not value:  # parsed once per staged version
                    source = batch.sources.get(key)
                    # Staged from a resource of this apply: its spec is validated already (a model instance
                    # is taken as it is), only the envelope around it is new.
                    if source is not None and source[0] is value:
                        model = self._from_source(cls, value, source[1])
                    else:
                        model = cls.model_validate(value)
                    hit = batch.parsed[key] = (value, model)
                return hit[1]
        record = self.cache.get(*key)
        return self._typed(cls, record) if record is not None else None

    @staticmethod
    def _from_source(cls: type[T], value: dict, source: Resource) -> T:
        """The model of a value staged from `source`: its spec is `source`'s, validated already; only the
        envelope around it (metadata) is new. A network is built around them without validating the spec
        again (its address checks are most of a bulk apply's pydantic time); other kinds are validated."""
        if cls is VirtualNetwork and set(value) == {"apiVersion", "kind", "metadata", "spec"} \
                and type(source) is VirtualNetwork and value["kind"] == VirtualNetwork.KIND:
            metadata = VirtualNetwork.model_fields["metadata"].annotation.model_validate(value["metadata"])
            return VirtualNetwork.model_construct({"api_version", "kind", "metadata", "spec"},
                                                  api_version=value["apiVersion"], kind=value["kind"],
                                                  metadata=metadata, spec=source.spec)
        return cls.model_validate({**value, "spec": source.spec})

    def _vnet(self, batch: _Batch | None, namespace: str, name: str) -> VirtualNetwork | None:
        return self._read_typed(batch, VirtualNetwork, namespace, name)

    def _stored_stitches(self) -> list[Stitch]:
        """Every stitch in the cache, parsed (staged writes not included)."""
        return [self._typed(Stitch, r) for r in self.cache.list("Stitch")]

    # stitch admission -------------------------------------------------------------------
    def _stage_stitch(self, batch: _Batch, stitch: Stitch, current: dict | None, now: float) -> dict | None:
        """Stored form of an admitted stitch, with its reservation and pre-emptions staged; None: unchanged."""
        if current is not None and not terminated(current) and not current["metadata"].get("deletionTimestamp") \
                and self._envelope(stitch, current, now) is None:
            return None  # unchanged (what `replaces` and the envelope below decide), without parsing the stored one
        stored = self._read_typed(batch, Stitch, stitch.namespace, stitch.name) if current is not None else None
        stored = admission.replaces(stitch, stored)
        envelope = self._envelope(stitch, current if stored is not None else None, now)
        if envelope is None:
            return None
        admitted = admission.admit_stitch(_View(self, batch), stitch, stored, now)
        return self._write_admitted(batch, envelope, admitted, now)

    def _write_admitted(self, batch: _Batch, value: dict, admitted: Admitted, now: float) -> dict:
        """Stage what an admission decided: ledgers, pre-empted stitches; returns the stitch's new value."""
        ledger_map = self.ledgers(batch)
        for link, ledger in admitted.ledgers.items():
            ledger_map.set(link, ledger)
            batch.write(LEDGER_KIND, "", link, ledger.to_value())
        for victim, status in admitted.preempted.items():
            namespace, name = victim.split("/", 1)
            old = batch.read("Stitch", namespace, name)
            batch.write("Stitch", namespace, name, {**old, "metadata": {**old["metadata"], "deletionTimestamp": now},
                                                    "status": status.model_dump(by_alias=True, mode="json")})
        return {**value, "status": admitted.status.model_dump(by_alias=True, mode="json")}

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
            users = [r for r in self.cache.list("Stitch")
                     if not terminated(r.value) and _ends_on(self._typed(Stitch, r), namespace, name)]
            if users:
                raise Conflict(self._in_use_message(name, namespace, users), field="metadata.name")
        elif kind == "Node":
            links = [r.name for r in self.cache.list("Link") if name in r.value["spec"]["endpoints"]]
            vnets = [f"{r.namespace}/{r.name}" for r in self.cache.list("VirtualNetwork")
                     if any(m.node == name for m in self._typed(VirtualNetwork, r).spec.members)]
            if links or vnets:
                raise Conflict(f"node '{name}' is used by {', '.join((links + vnets)[:5])}", field="metadata.name")
        elif kind == "Proposal":
            raise InvalidInput("a proposal is answered, not deleted: `vnstitch proposal reject NAME`; the intent "
                               "engine withdraws it when its intent no longer needs it", field="kind")
        elif kind == "Anomaly":
            raise InvalidInput("an anomaly is a record, not deleted by hand: it ends when its traffic returns to "
                               "normal (`vnstitch anomaly keep NAME` keeps its actions)", field="kind")
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
        """See planning.admission.replan_reason (over the cache as it is now)."""
        return admission.replan_reason(_View(self, None), stitch)

    def replan(self, record: Record, reason: str) -> str:
        """Admit a stored stitch again (planning.admission.replan), or on an SLO breach move it to another
        path that meets its bounds (planning.admission.reroute; it stays, DEGRADED, when there is none).
        Returns what happened: 'replanned', 'rerouted', 'withdrawn', 'unchanged' or 'gone'."""
        decide = admission.reroute if reason.startswith("SLO breach") else admission.replan
        namespace, name = record.namespace, record.name

        def stage(batch: _Batch, now: float) -> str:
            current = batch.read("Stitch", namespace, name)
            stitch = self._read_typed(batch, Stitch, namespace, name)
            if stitch is None or stitch.metadata.deletion_timestamp:
                return "gone"
            decision = decide(_View(self, batch), stitch, reason, now)
            if decision is None:
                return "unchanged"
            batch.write("Stitch", namespace, name, self._write_admitted(batch, current, decision, now))
            return decision.outcome

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
        """See planning.admission.availability (over the cache as it is now); reserves nothing."""
        self.refresh()
        return admission.availability(_View(self, None), tenant, from_end, to_end, bandwidth_bps,
                                      max_latency_s, symmetric, encrypted)


__all__ = ["Controller", "Change", "VnstitchError", "slo_breached", "terminated"]
