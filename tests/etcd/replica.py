"""One controller replica for the etcd tests and bench: the real API server and reconciler over
an etcd:// store, with every fenced (reconciler) write logged as a JSON line:
{"t": wall time, "pid", "fence": leader create revision, "ok": accepted?, "revision"}.

On SIGCONT it also tries one write fenced on the last leader key it held (a zombie's write).
Usage: python -m tests.etcd.replica --store URL --port P --log FILE [--ttl S] [--id NAME]
       [--telemetry FILE (replicated telemetry) --proactive]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
import time

from vnstitch.store import Compare, Put, Store, open_store


class RecordingStore(Store):
    """Delegates to a store; logs each transaction that carries the leader fence."""

    def __init__(self, inner: Store, log_path: str):
        self.inner = inner
        self.replicated = getattr(inner, "replicated", False)
        self._log = open(log_path, "a", buffering=1)
        self._lock = threading.Lock()

    def txn(self, compares, ops):
        fences = [c.revision for c in compares if c.kind == "Leader"]
        result = self.inner.txn(compares, ops)
        if fences:
            self.note(fences[0], result.succeeded, result.revision, len(ops))
        return result

    def note(self, fence, ok, revision, ops, **extra):
        line = json.dumps({"t": time.time(), "pid": os.getpid(), "fence": fence, "ok": ok,
                           "revision": revision, "ops": ops, **extra})
        with self._lock:
            self._log.write(line + "\n")

    def get(self, *a, **k): return self.inner.get(*a, **k)
    def list(self, *a, **k): return self.inner.list(*a, **k)
    def revision(self): return self.inner.revision()
    def events_since(self, *a, **k): return self.inner.events_since(*a, **k)
    def wait(self, *a, **k): return self.inner.wait(*a, **k)
    def lease_grant(self, *a, **k): return self.inner.lease_grant(*a, **k)
    def lease_keepalive(self, *a, **k): return self.inner.lease_keepalive(*a, **k)
    def lease_revoke(self, *a, **k): return self.inner.lease_revoke(*a, **k)
    def close(self): self.inner.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--ttl", type=float, default=2.0)
    parser.add_argument("--id", default=None)
    parser.add_argument("--tick", type=float, default=0.5)
    parser.add_argument("--telemetry", help="this replica's telemetry file; with it, telemetry is replicated")
    parser.add_argument("--proactive", action="store_true")
    args = parser.parse_args()

    import uvicorn

    from vnstitch.api.app import create_app
    from vnstitch.api.settings import Settings
    from vnstitch.cli.serve_cmd import _run_resigning

    store = RecordingStore(open_store(args.store), args.log)
    settings = Settings(store_url=args.store, tick_s=args.tick, rate_limit_per_s=0, leader_election=True,
                        leader_ttl_s=args.ttl, replica_id=args.id or f"r{args.port}", proactive=args.proactive,
                        telemetry_url=f"sqlite://{args.telemetry}" if args.telemetry else None,
                        advertise_url=f"http://127.0.0.1:{args.port}" if args.telemetry else None,
                        model_dir=f"{args.telemetry}.models" if args.telemetry else None)
    app = create_app(settings, store=store)
    election = app.state.ctx.worker.election
    held = {"fence": None}

    def remember_fence():  # what a paused leader would still believe it holds
        while True:
            if election.is_leader() and election.fence_revision:
                held["fence"] = election.fence_revision
            time.sleep(0.02)

    def zombie_write(*_):
        fence = held["fence"]
        if fence is None:
            return
        def attempt():
            result = store.inner.txn([Compare("Leader", "", "reconciler", fence)],
                                     [Put("ZombieProbe", "", f"p{os.getpid()}", {"t": time.time()})])
            store.note(fence, result.succeeded, result.revision, 1, probe=True)
        threading.Thread(target=attempt, daemon=True).start()

    threading.Thread(target=remember_fence, daemon=True).start()
    signal.signal(signal.SIGCONT, zombie_write)
    config = uvicorn.Config(app, host="127.0.0.1", port=args.port, log_level="warning", timeout_graceful_shutdown=5)
    _run_resigning(config, app.state.ctx.worker)


if __name__ == "__main__":
    main()
