"""One controller replica for bench/etcd_replay_failover.py: `vnstitch serve --proactive` as the
server builds it (create_app: API, reconciler, proactive loop, leader election, replicated
telemetry), over an etcd:// store, whose clock is the replayed day's: the bench writes the
simulated time to the key `ReplayClock//now` and every replica reads it from there (polled every
10 ms), so the replicas and the bench agree on which interval it is whoever leads.

Usage: python bench/replay_replica.py --store URL --port P --dir DIR [--ttl S] [--id NAME]
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

CLOCK_KEY = ("ReplayClock", "", "now")


class StoreClock:
    """The replayed time, as the bench last wrote it (0 before it wrote any)."""

    def __init__(self, store, poll_s: float = 0.01):
        self.store, self.poll_s, self.now = store, poll_s, 0.0
        threading.Thread(target=self._poll, daemon=True).start()

    def _poll(self) -> None:
        while True:
            try:
                record = self.store.get(*CLOCK_KEY)
                if record is not None:
                    self.now = float(record.value["t"])
            except Exception:  # noqa: BLE001 - etcd hiccup: keep the last time
                pass
            time.sleep(self.poll_s)

    def __call__(self) -> float:
        return self.now


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", required=True, help="this replica's telemetry, models and simulator state")
    parser.add_argument("--ttl", type=float, default=2.0)
    parser.add_argument("--id", default=None)
    parser.add_argument("--tick", type=float, default=0.05)
    args = parser.parse_args()

    import uvicorn

    from vnstitch.api.app import create_app
    from vnstitch.api.settings import Settings
    from vnstitch.cli.serve_cmd import _run_resigning
    from vnstitch.store import open_store

    os.makedirs(args.dir, exist_ok=True)
    store = open_store(args.store)
    clock = StoreClock(store)
    settings = Settings(store_url=args.store, tick_s=args.tick, reconcile_min_interval_s=0.01, rate_limit_per_s=0,
                        leader_election=True, leader_ttl_s=args.ttl, replica_id=args.id or f"r{args.port}",
                        proactive=True, telemetry_from_driver=False,
                        telemetry_url=f"sqlite://{os.path.abspath(args.dir)}/telemetry.db",
                        model_dir=os.path.join(args.dir, "models"),
                        driver_state=os.path.join(args.dir, "sim.json"),
                        advertise_url=f"http://127.0.0.1:{args.port}")
    app = create_app(settings, store=store, clock=clock)
    config = uvicorn.Config(app, host="127.0.0.1", port=args.port, log_level="warning", timeout_graceful_shutdown=5)
    _run_resigning(config, app.state.ctx.worker)


if __name__ == "__main__":
    main()
