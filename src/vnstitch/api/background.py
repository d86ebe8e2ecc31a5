"""The reconciler inside the server: a thread that runs a pass on every tick and on store
changes (debounced), logs every exception it meets (never swallows one) and keeps going.

With leader election (several replicas on one etcd cluster) only the leader runs passes,
each write fenced on the leader key; `resign()` hands leadership over (SIGTERM)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from vnstitch.controller.reconciler import Reconciler

log = logging.getLogger("vnstitch.api.reconciler")


class ReconcileWorker:
    def __init__(self, reconciler: Reconciler, tick_s: float, min_interval_s: float = 0.1,
                 clock: Callable[[], float] = time.time, housekeeping: Callable[[], None] | None = None,
                 election=None, relist_s: float = 300.0, proactive=None, intents=None, anomalies=None):
        self.reconciler = reconciler
        self.proactive = proactive        # controller.proactive.ProactiveLoop, run by the leader before each pass
        self.intents = intents            # intent.engine.IntentEngine, run by the leader after the proactive loop
        self.anomalies = anomalies        # anomaly.engine.AnomalyEngine, run by the leader after the intent engine
        self.election = election          # controller.election.LeaderElection, or None: always run
        self.relist_s = relist_s          # full re-list of the cache this often (a watch alone can miss)
        self.tick_s = tick_s
        self.min_interval_s = min_interval_s
        self.clock = clock
        self.housekeeping = housekeeping
        self.passes = 0
        self.failures = 0
        self.last_error: str | None = None
        self.last_pass_at: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._topology_key: tuple | None = None
        self._stopped = False
        self._relist_due = False
        self._warmed_at = 0.0
        self._stop_lock = threading.Lock()
        if election is not None:
            election.on_change = self._on_leadership

    def start(self) -> None:
        if self.election is not None:
            self.election.start()
        self._thread = threading.Thread(target=self._loop, name="vnstitch-reconciler", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop passes, then resign leadership (so the next leader starts after our last write)."""
        with self._stop_lock:  # a second caller (signal, then lifespan) waits for the first
            if self._stopped:
                return
            self._stop.set()
            if self._thread is not None:
                self._thread.join(timeout_s)
                if self._thread.is_alive():
                    log.error("reconciler thread did not stop within %.0f s", timeout_s)
            if self.election is not None:
                self.election.resign()
            if self.proactive is not None:
                self.proactive.close()
            try:
                self.reconciler.driver.close()
            except Exception:  # noqa: BLE001 - shutting down; report and go on
                log.exception("closing the driver failed")
            self._stopped = True

    resign = stop

    @property
    def leading(self) -> bool:
        return self.election is None or self.election.is_leader()

    def _warm_standby(self) -> None:
        """Keep a follower's cache and path finder current, so its first pass as leader is quick."""
        if time.monotonic() - self._warmed_at < 1.0:
            return
        self._warmed_at = time.monotonic()
        try:
            self.reconciler.controller.refresh()
            self.reconciler.controller.pathfinder()
        except Exception:  # noqa: BLE001 - logged; a follower keeps serving
            log.exception("warming the standby failed")

    def _on_leadership(self, leading: bool) -> None:
        """Fence the controller's writes on our leader key (or on nothing that can hold)."""
        self.reconciler.controller.fence = self.election.fence()
        if leading:
            self._relist_due = True  # a new leader starts from a full re-list

    def _intent_waiting(self) -> bool:
        """Is an intent due now (new, changed, or its assurance interval up)? Then the pass skips the debounce."""
        if self.intents is None:
            return False
        try:
            self.reconciler.controller.refresh()
            return self.intents.seconds_until_due(self.clock()) == 0.0
        except Exception:  # noqa: BLE001 - the store is unreadable: the debounce and the tick go on
            log.exception("reading the intents failed")
            return False

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _sync_topology(self) -> None:
        """Hand substrate changes to drivers that model the substrate (the simulator)."""
        set_topology = getattr(self.reconciler.driver, "set_topology", None)
        if set_topology is None:
            return
        links = self.reconciler.controller.cache.list("Link")
        key = tuple((r.name, r.revision) for r in links)
        if key != self._topology_key:
            from vnstitch.domain.substrate import Link

            set_topology([Link.model_validate(r.value) for r in links])
            self._topology_key = key

    def run_pass(self) -> None:
        """One pass; exceptions are logged with their traceback and counted, not raised."""
        try:
            self.reconciler.controller.refresh()
            self._sync_topology()
            now = self.clock()
            if self.proactive is not None:
                try:
                    for run in self.proactive.step(now):
                        log.info("forecast policy %s interval %d: %s", run.policy, run.step, run.message)
                except Exception:  # noqa: BLE001 - e.g. the store is down: logged, the pass goes on
                    self.failures += 1
                    log.exception("proactive loop failed")
            if self.intents is not None:
                try:
                    for run in self.intents.step(self.clock()):
                        if run.actions:
                            log.info("intent %s/%s: %s; %s", run.tenant, run.intent, run.state, "; ".join(run.actions))
                except Exception:  # noqa: BLE001 - logged; the reconcile pass goes on
                    self.failures += 1
                    log.exception("intent engine failed")
            if self.anomalies is not None:
                try:
                    for run in self.anomalies.step(self.clock()):
                        if run.opened or run.ended or run.actions:
                            log.info("anomaly policy %s/%s: opened %s, ended %s; %s", run.tenant, run.policy,
                                     run.opened, run.ended, "; ".join(run.actions))
                except Exception:  # noqa: BLE001 - logged; the reconcile pass goes on
                    self.failures += 1
                    log.exception("anomaly engine failed")
            # read the clock again: the transitions this pass records happen after what the proactive
            # step and the intent engine wrote (a stitch created at t must not go ESTABLISHING before t)
            moved = self.proactive is not None or self.intents is not None or self.anomalies is not None
            result = self.reconciler.reconcile_once(self.clock() if moved else now)
            for op, error in result.errors:
                log.warning("reconcile op failed: %s", error)
            self.last_error = None
        except Exception as exc:  # noqa: BLE001 - logged loudly below, the loop must survive
            self.failures += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("reconcile pass failed")
        finally:
            self.passes += 1
            self.last_pass_at = self.clock()

    def _loop(self) -> None:
        store = self.reconciler.controller.store
        last_housekeeping = time.monotonic()
        last_relist = time.monotonic()
        while not self._stop.is_set():
            if not self.leading:
                if not self.election.wait_leading(0.2):  # followers serve the API only
                    self._stop.wait(0.05)
                    self._warm_standby()
                continue
            controller = self.reconciler.controller
            if self.election is not None:
                controller.fence = self.election.fence()
            if self._relist_due or time.monotonic() - last_relist > self.relist_s:
                self._relist_due, last_relist = False, time.monotonic()
                controller.cache.relist()
            started = time.monotonic()
            self.run_pass()
            pass_s = time.monotonic() - started
            if self.housekeeping and time.monotonic() - last_housekeeping > 60:
                last_housekeeping = time.monotonic()
                try:
                    self.housekeeping()
                except Exception:  # noqa: BLE001
                    log.exception("housekeeping failed")
            try:
                revision = store.revision()  # after our own status writes
            except Exception:  # noqa: BLE001
                log.exception("reading the store revision failed")
                self._stop.wait(1.0)
                continue
            wait_s = self.tick_s
            if self.proactive is not None:  # wake for the next control interval of any policy
                wait_s = min(wait_s, max(0.05, self.proactive.seconds_until_due(self.clock())))
            if self.intents is not None:  # … and for the next assessment of any intent
                try:
                    wait_s = min(wait_s, max(0.05, self.intents.seconds_until_due(self.clock())))
                except Exception:  # noqa: BLE001 - the cache is unreadable: the tick wakes us
                    log.exception("intent schedule unreadable")
            if self.anomalies is not None:  # … and for the next interval of any anomaly policy
                try:
                    wait_s = min(wait_s, max(0.05, self.anomalies.seconds_until_due(self.clock())))
                except Exception:  # noqa: BLE001
                    log.exception("anomaly schedule unreadable")
            deadline = time.monotonic() + wait_s
            while not self._stop.is_set() and time.monotonic() < deadline:
                try:
                    changed = store.wait(revision, min(0.5, self.tick_s))
                except Exception:  # noqa: BLE001
                    log.exception("waiting on the store failed")
                    self._stop.wait(1.0)
                    changed = False
                if changed:
                    if self._intent_waiting():  # a new or changed intent: its first report comes at once
                        break
                    # Debounce (passes are level-triggered): let a burst of writes land first, and
                    # idle at least as long as the last pass took, so that under a stream of writes
                    # the reconciler takes at most about half of a core from the API.
                    self._stop.wait(max(self.min_interval_s, pass_s))
                    break
