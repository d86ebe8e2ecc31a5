"""The one interface the CLI and the API speak: `Services`, served locally over a `Controller` and a
`Reconciler` (`LocalServices`), or over HTTP (`vnstitch.api.client.RemoteController`).

Plans and passes cross it as plain values (`PlanReport`, `PassReport`) so that both sides render alike."""

from __future__ import annotations

import functools
import threading
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, Protocol, runtime_checkable

from vnstitch.controller.service import Change, Controller, terminated

if TYPE_CHECKING:
    from vnstitch.controller.reconciler import Reconciler
    from vnstitch.domain.resources import Resource
    from vnstitch.drivers.base import Driver
    from vnstitch.pathing.paths import Availability

__all__ = ["Services", "LocalServices", "PlannedOp", "PlanReport", "PassReport", "Change",
           "SerializedDriver", "open_local", "request_key_rotation"]


@dataclass(frozen=True)
class PlannedOp:
    """One data-plane op as people and clients see it: what, on which object, and why."""

    action: str    # re-plan | ensure-network | remove-network | ensure-stitch | set-rate | remove-stitch
    target: str    # "tenant/name" of the network or stitch
    summary: str   # the op in one line, without its reason
    reason: str

    @classmethod
    def of(cls, op) -> "PlannedOp":
        from vnstitch.planning.ops import describe

        summary = describe(replace(op, reason=""))
        target = getattr(op, "stitch", None) or op.network
        return cls(summary.split(" ", 1)[0], target, summary, op.reason)

    @classmethod
    def replan(cls, stitch: str, reason: str) -> "PlannedOp":
        """A stitch to admit again (new path and reservation, or withdrawal) before the ops run."""
        return cls("re-plan", stitch, f"re-plan stitch {stitch}", reason)

    def __str__(self) -> str:  # as Plan.lines() words it
        if self.action == "re-plan":
            return f"{self.summary}: {self.reason}"
        return f"{self.summary}  ({self.reason})" if self.reason else self.summary


@dataclass(frozen=True)
class PlanReport:
    """What a reconcile pass would do now: re-plans first, then data-plane ops, each with its reason.
    `leading` is False on a standby replica's answer."""

    ops: tuple[PlannedOp, ...] = ()
    leading: bool = True

    @classmethod
    def of(cls, plan, leading: bool = True) -> "PlanReport":
        replans = tuple(PlannedOp.replan(key, reason) for key, reason in plan.replans)
        return cls(replans + tuple(PlannedOp.of(op) for op in plan.ops), leading)

    def render(self) -> str:
        if not self.ops:
            return "No changes: the data plane matches the desired state."
        return "\n".join(f"{i + 1:3d}. {op}" for i, op in enumerate(self.ops))


@dataclass(frozen=True)
class PassReport:
    """What one reconcile pass did: its plan, the ops that failed (with the error), status changes."""

    plan: PlanReport
    failures: tuple[tuple[PlannedOp, str], ...] = ()
    transitions: tuple[str, ...] = ()
    released: tuple[str, ...] = ()
    replanned: tuple[tuple[str, str, str], ...] = ()   # (stitch, why, outcome)


@runtime_checkable
class Services(Protocol):
    """Every operation the CLI needs. Tenant None means the default tenant locally, the token's over HTTP."""

    def apply(self, resources: list["Resource"], dry_run: bool = False,
              progress: Callable[[int, int], None] | None = None) -> list[Change]:
        """Create or update, all or nothing; `progress(done, total)` as resources are checked (local only)."""

    def get(self, kind: str, name: str, tenant: str | None = None) -> "Resource": ...

    def list(self, kind: str, tenant: str | None = None) -> list["Resource"]: ...

    def delete(self, kind: str, name: str, tenant: str | None = None) -> Change: ...

    def availability(self, tenant: str | None, from_end, to_end, bandwidth_bps: float,
                     max_latency_s: float | None = None, symmetric: bool = True,
                     encrypted: bool = True) -> "Availability": ...

    def predicted_graph(self, tenant: str | None = None, at: float | None = None,
                        policy: str | None = None) -> dict | None:
        """The proactive loop's predicted graph (its `spec`) in force at `at` (default: the latest), or
        None when it has not run."""

    def approve(self, tenant: str | None, name: str) -> dict:
        """Apply one suggested decision of a policy in suggest mode; what landed."""

    def rotate_keys(self, name: str, tenant: str | None = None) -> float:
        """Ask for new WireGuard keys on a stitch (the reconciler rotates them); the request's unix time."""

    def probe_intent(self, intent: "Resource") -> dict:
        """TMF921 ProbeIntent: could the intent be met now, and the best on offer; changes nothing."""

    def answer_proposal(self, tenant: str | None, name: str, accept: bool, note: str = "") -> "Resource":
        """Accept or reject a proposal sent to `tenant`; the answered proposal."""

    def answer_anomaly(self, tenant: str | None, name: str, what: str, value: bool = True) -> "Resource":
        """'approve' an anomaly's suggested actions, or 'keep' its actions after it ends (value False: release)."""

    def vngraph(self, tenant: str | None = None) -> dict:
        """The virtual network graph as `tenant` sees it."""

    def plan(self) -> PlanReport:
        """The ops the reconciler would apply now, each with its reason; applies nothing."""

    def reconcile_once(self) -> PassReport:
        """One reconcile pass (local only: a server reconciles on its own)."""

    def reconcile_forever(self, stop: threading.Event, interval_s: float,
                          started: Callable[[], None] | None = None) -> None:
        """The reconcile loop until `stop` is set (local only); `started()` once it runs."""

    def close(self) -> None: ...


class LocalServices:
    """Services over a Controller in this process; the driver (and reconciler) open on first need."""

    def __init__(self, controller: Controller, driver: "Driver | None" = None,
                 open_driver: Callable[[], "Driver"] | None = None, clock: Callable[[], float] = time.time):
        self.controller = controller
        self.clock = clock
        self._driver = driver
        self._open_driver = open_driver
        self._owns_driver = driver is None   # a driver handed in (the server's) is closed by its owner
        self._reconciler: Reconciler | None = None

    @property
    def reconciler(self) -> "Reconciler":
        if self._reconciler is None:
            from vnstitch.controller.reconciler import Reconciler

            if self._driver is None:
                if self._open_driver is None:
                    from vnstitch.errors import InvalidInput

                    raise InvalidInput("these services have no data-plane driver", field="--driver")
                self._driver = self._open_driver()
            self._reconciler = Reconciler(self.controller, self._driver)
        return self._reconciler

    # resources ---------------------------------------------------------------------------
    def apply(self, resources, dry_run: bool = False, progress=None) -> list[Change]:
        return self.controller.apply(resources, dry_run=dry_run, progress=progress)

    def get(self, kind: str, name: str, tenant: str | None = None):
        return self.controller.get(kind, name, tenant)

    def list(self, kind: str, tenant: str | None = None):
        return self.controller.list(kind, tenant)

    def delete(self, kind: str, name: str, tenant: str | None = None) -> Change:
        return self.controller.delete(kind, name, tenant)

    def availability(self, tenant, from_end, to_end, bandwidth_bps: float, max_latency_s=None, symmetric=True,
                     encrypted=True):
        from vnstitch.domain.resources import DEFAULT_TENANT

        return self.controller.availability(tenant or DEFAULT_TENANT, from_end, to_end, bandwidth_bps,
                                            max_latency_s, symmetric=symmetric, encrypted=encrypted)

    def predicted_graph(self, tenant: str | None = None, at: float | None = None,
                        policy: str | None = None) -> dict | None:
        from vnstitch.controller.proactive import predicted_graph_at

        record = predicted_graph_at(self.controller.store, tenant, at, policy)
        return record.value if record else None

    def approve(self, tenant: str | None, name: str) -> dict:
        from vnstitch.controller.proactive import approve_suggestion
        from vnstitch.domain.resources import DEFAULT_TENANT

        run = approve_suggestion(self.controller, tenant or DEFAULT_TENANT, name)
        return {"applied": run.applied, "refused": run.refused}

    def rotate_keys(self, name: str, tenant: str | None = None) -> float:
        from vnstitch.domain.resources import DEFAULT_TENANT

        return request_key_rotation(self.controller, tenant or DEFAULT_TENANT, name)

    def probe_intent(self, intent) -> dict:
        from vnstitch.intent.engine import probe

        return probe(self.controller, intent)

    def answer_proposal(self, tenant: str | None, name: str, accept: bool, note: str = ""):
        from vnstitch.domain.resources import DEFAULT_TENANT
        from vnstitch.intent.engine import answer_proposal

        tenant = tenant or DEFAULT_TENANT
        return answer_proposal(self.controller, tenant, name, accept, by=tenant, note=note)

    def answer_anomaly(self, tenant: str | None, name: str, what: str, value: bool = True):
        from vnstitch.anomaly.engine import answer_anomaly
        from vnstitch.domain.resources import DEFAULT_TENANT

        return answer_anomaly(self.controller.store, tenant or DEFAULT_TENANT, name, what, value)

    def vngraph(self, tenant: str | None = None) -> dict:
        from vnstitch.intent.engine import graph_of

        self.controller.refresh()
        return graph_of(self.controller)[0].view(tenant)

    # reconciling -------------------------------------------------------------------------
    def plan(self) -> PlanReport:
        return PlanReport.of(self.reconciler.plan())

    def reconcile_once(self, anomalies=None) -> PassReport:
        """`anomalies`: an anomaly.engine.AnomalyEngine to run after the intent engine, as the server does;
        by default, when the store holds an AnomalyPolicy, one over the local telemetry store (what a local
        `vnstitch telemetry push` wrote), so a local pass does what the server's does."""
        from vnstitch.intent.engine import IntentEngine

        IntentEngine(self.controller).step(self.clock())  # compile and assess intents first, as the server does
        telemetry = None
        if anomalies is None and self.controller.list("AnomalyPolicy"):
            from vnstitch.anomaly.engine import AnomalyEngine
            from vnstitch.telemetry.store import open_telemetry_store

            telemetry = open_telemetry_store(None, state_store=self.controller.store)
            anomalies = AnomalyEngine(self.controller, telemetry, lambda: self.reconciler.driver)
        try:
            if anomalies is not None:
                anomalies.step(self.clock())
        finally:
            if telemetry is not None:
                telemetry.close()
        result = self.reconciler.reconcile_once(self.clock())
        return PassReport(PlanReport.of(result.plan),
                          tuple((PlannedOp.of(op), error) for op, error in result.errors),
                          tuple(result.transitions), tuple(result.released), tuple(result.replanned))

    def reconcile_forever(self, stop: threading.Event, interval_s: float,
                          started: Callable[[], None] | None = None) -> None:
        """The server's loop (ReconcileWorker), so there is one: passes on ticks and store changes."""
        # ReconcileWorker lives in api/background.py until it moves to controller/loop (target layout).
        from vnstitch.api.background import ReconcileWorker

        from vnstitch.intent.engine import IntentEngine

        worker = ReconcileWorker(self.reconciler, interval_s, clock=self.clock, intents=IntentEngine(self.controller))
        worker.start()
        if started is not None:
            started()
        try:
            while not stop.wait(0.5):
                if not worker.alive:
                    raise RuntimeError("the reconcile thread died")
        finally:
            worker.stop()  # closes the driver
            self._owns_driver = False

    def close(self) -> None:
        if self._owns_driver and self._driver is not None:
            self._driver.close()
            self._owns_driver = False


def request_key_rotation(controller: Controller, tenant: str, name: str) -> float:
    """Record a rotate-keys request on a stitch: its annotation vnstitch.io/rotate-keys-requested = now,
    written with compare-and-swap on its revision (the spec and its generation stay: nothing is admitted
    again). The reconciler compiles it into the op's `keys_after`. Returns the request's unix time."""
    from vnstitch.domain.stitch import State, Stitch
    from vnstitch.errors import Conflict, InvalidInput, NotFound
    from vnstitch.planning.desired import ROTATE_KEYS_ANNOTATION
    from vnstitch.store import Compare, Put

    for _ in range(8):
        record = controller.store.get("Stitch", tenant, name)
        if record is None or terminated(record.value):
            raise NotFound(f"stitch '{name}' not found", field="metadata.name")
        stitch = Stitch.model_validate(record.value)
        if stitch.metadata.deletion_timestamp or stitch.status.state is State.TERMINATING:
            raise Conflict(f"stitch '{name}' is being deleted", field="metadata.name")
        if not stitch.spec.encrypted:
            raise InvalidInput(f"stitch '{name}' is not encrypted (encryption: none): it has no keys to rotate",
                               field="spec.encryption")
        now = controller.clock()
        meta = record.value["metadata"]
        value = {**record.value, "metadata": {**meta, "annotations": {**meta.get("annotations", {}),
                                                                      ROTATE_KEYS_ANNOTATION: f"{now:.6f}"}}}
        if controller.store.txn([Compare("Stitch", tenant, name, record.revision)],
                                [Put("Stitch", tenant, name, value)]).succeeded:
            return now
    raise Conflict(f"stitch '{name}' kept changing under the request; try again", field="metadata.name")


class SerializedDriver:
    """A driver shared by the reconcile loop and plan requests: one call at a time, so that an
    `observe` never runs in the middle of an `apply` (neither driver is safe against that)."""

    def __init__(self, driver: "Driver"):
        self._driver = driver
        self._lock = threading.RLock()

    def __getattr__(self, name: str) -> Any:
        if name in ("_driver", "_lock"):  # not set yet (a copy): no recursion
            raise AttributeError(name)
        attr = getattr(self._driver, name)
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        def locked(*args, **kwargs):
            with self._lock:
                return attr(*args, **kwargs)
        return locked


def open_local(store_url: str, driver: str = "sim", driver_state: str | None = None,
               clock: Callable[[], float] = time.time) -> LocalServices:
    """Local services over the store at `store_url`; the driver opens when a plan or pass needs it."""
    from vnstitch.store import open_store

    controller = Controller(open_store(store_url), clock=clock)

    def open_driver():
        from vnstitch.domain.substrate import Link
        from vnstitch.drivers import create_driver

        controller.refresh()
        links = [Link.model_validate(r.value) for r in controller.cache.list("Link")] if driver == "sim" else None
        return create_driver(driver, driver_state, topology=links)

    return LocalServices(controller, open_driver=open_driver, clock=clock)
