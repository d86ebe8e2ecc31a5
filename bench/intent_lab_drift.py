"""Intent drift on the Linux lab (root): the product brief's intent (isolate blue, reach red's tcp/8443
within 20 ms) on examples/lab.yaml, then N trials of: 50 ms on the stitch's class of a link of its
current path (both directions; src/vnstitch/lab/impair.py, no netem on this kernel) → the time until the
intent reports Degraded, and until it is Compliant again on a path off that link (the engine reroutes);
the delay is then cleared and the next trial delays the new path.

Usage: python bench/intent_lab_drift.py [--trials N] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LAB = ROOT / "examples" / "lab.yaml"
LAB_INTENT = ROOT / "examples" / "lab-intent.yaml"   # red's tcp/8443 service and the intent 'orders'
STITCH = "in-orders-reach-red-8443"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--delay-ms", type=float, default=50.0)
    parser.add_argument("--timeout-s", type=float, default=60.0, help="per phase of a trial")
    parser.add_argument("--json")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (network namespaces)")
    from vnstitch.controller.services import open_local
    from vnstitch.domain.registry import parse_documents
    from vnstitch.drivers.linux.layout import StitchNames
    from vnstitch.lab import builder, impair

    name = f"bd{os.getpid() % 10000}"
    tmp = tempfile.mkdtemp(prefix="vnstitch-bench-")
    directory = os.path.join(tmp, "lab")
    builder.up(str(LAB), name=name, scale=0.01, directory=directory)
    services = open_local(f"sqlite://{tmp}/state.db", "linux", directory)
    detect, recover, passes = [], [], []
    delayed: list[tuple[str, str]] = []
    try:
        services.apply(parse_documents(LAB.read_text()))
        services.apply(parse_documents(LAB_INTENT.read_text()))

        def status():
            return services.get("Intent", "orders", "acme").status

        def until(done, what: str) -> tuple[float, int]:
            start, n = time.monotonic(), 0
            while True:
                services.reconcile_once()
                n += 1
                if done():
                    return time.monotonic() - start, n
                if time.monotonic() - start > args.timeout_s:
                    raise SystemExit(f"not within {args.timeout_s} s: {what}")
                time.sleep(0.2)

        until(lambda: status().handling_state == "Compliant", "first Compliant")
        driver = services.reconciler.driver
        for trial in range(args.trials):
            stitch = services.get("Stitch", STITCH, "acme")
            path = list(stitch.status.path)
            record = driver.state["stitches"][f"acme/{STITCH}"]
            names = StitchNames(record["hash"], record["index"])
            u, v = path[0], path[1]
            link, egress_u, egress_v = driver.lab.link_between(u, v)
            before = status().report_count
            delayed = [(driver.lab.node_ns(u), egress_u), (driver.lab.node_ns(v), egress_v)]
            for ns, ifname in delayed:
                impair.add_class_delay(ns, ifname, f"1:{names.class_minor:x}", names.port("a"), args.delay_ms / 1e3)
            t0 = time.monotonic()
            _, n1 = until(lambda: any(r.verdict == "Degraded" and r.number > before for r in status().reports),
                          f"trial {trial}: Degraded")
            detect.append(time.monotonic() - t0)
            _, n2 = until(lambda: status().handling_state == "Compliant"
                          and list(services.get("Stitch", STITCH, "acme").status.path) != path,
                          f"trial {trial}: Compliant on another path")
            recover.append(time.monotonic() - t0)
            passes.append(n1 + n2)
            for ns, ifname in delayed:
                impair.clear(ns, ifname)
            delayed = []
            new_path = "→".join(services.get("Stitch", STITCH, "acme").status.path)
            print(f"  trial {trial + 1}: {'→'.join(path)} delayed on {link.a}–{link.b}: Degraded after "
                  f"{detect[-1]:.2f} s, Compliant on {new_path} after {recover[-1]:.2f} s", file=sys.stderr)
    finally:
        for ns, ifname in delayed:
            impair.clear(ns, ifname)
        services.close()
        builder.down(directory, name=name)
    result = {"command": "python bench/intent_lab_drift.py " + " ".join(sys.argv[1:]), "trials": len(detect),
              "delay_ms": args.delay_ms, "assurance_interval_s": 10.0, "probe_interval_s": 5.0,
              "degraded_median_s": round(float(np.median(detect)), 2),
              "degraded_p99_s": round(float(np.percentile(detect, 99)), 2),
              "compliant_again_median_s": round(float(np.median(recover)), 2),
              "compliant_again_p99_s": round(float(np.percentile(recover, 99)), 2),
              "passes_median": float(np.median(passes)),
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                         f"load average {os.getloadavg()[0]:.1f}"}
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
