"""The reconciler inside the server: a thread that runs a pass on every tick and on store
changes, logs every exception it meets (never swallows one) and keeps going."""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from vnstitch.controller.reconciler import Reconciler

log = logging.getLogger("vnstitch.api.reconciler")


class ReconcileWorker:
    def __init__(self, reconciler: Reconciler, tick_s: float, min_interval_s: float = 0.05,
                 clock: Callable[[], float] = time.time, housekeeping: Callable[[], None] | None = None):
        self.reconciler = reconciler
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

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="vnstitch-reconciler", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.error("reconciler thread did not stop within %.0f s", timeout_s)
        try:
            self.reconciler.driver.close()
        except Exception:  # noqa: BLE001 - shutting down; report and go on
            log.exception("closing the driver failed")

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
            result = self.reconciler.reconcile_once(self.clock())
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
        while not self._stop.is_set():
            self.run_pass()
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
            deadline = time.monotonic() + self.tick_s
            while not self._stop.is_set() and time.monotonic() < deadline:
                try:
                    changed = store.wait(revision, min(0.5, self.tick_s))
                except Exception:  # noqa: BLE001
                    log.exception("waiting on the store failed")
                    self._stop.wait(1.0)
                    changed = False
                if changed:
                    self._stop.wait(self.min_interval_s)  # let a burst of writes land first
                    break
