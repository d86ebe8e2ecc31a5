"""Dashboard in headless Chromium: first paint and time to an interactive topology with N stitches on Kdl, then
live updates at 1 Hz (traffic carried through the simulator every second, so every stitch's measured figures
move and the watch stream carries them) — frame times, long tasks, JS heap and how far the page lags the store.

Usage: python bench/dashboard.py [--stitches 1000] [--loads 5] [--live-seconds 180] [--json FILE]
Needs /usr/bin/chromium and playwright (the `test` extra); the server runs in this process (create_app under
uvicorn on 127.0.0.1, sim driver, SQLite in a temp dir), as tests/browser do.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
KDL = ROOT.parent / "shared" / "data" / "topologies" / "topology_zoo" / "Kdl.graphml"

from tests.browser.conftest import CHROMIUM, LAUNCH_ARGS  # noqa: E402
from tests.browser.server import Traffic, start_server  # noqa: E402

FRAME_PROBE = """() => { const s = window.__frames = {gaps: [], long: 0, longMs: 0}; let last = performance.now();
  const tick = (t) => { s.gaps.push(t - last); last = t; requestAnimationFrame(tick); }; requestAnimationFrame(tick);
  new PerformanceObserver((list) => { for (const e of list.getEntries()) { s.long += 1; s.longMs += e.duration; } })
    .observe({entryTypes: ['longtask']}); }"""


def seed(served, stitches: int, networks: int, rng: random.Random) -> list[tuple[str, str]]:
    nodes = [n["metadata"]["name"] for n in served.ok("admin", "GET", "/v1/substrate/nodes")["items"]]
    docs = [{"kind": "VirtualNetwork", "metadata": {"name": f"n{i}"},
             "spec": {"vnid": 10 + i, "cidr": f"10.{i // 256}.{i % 256}.0/24",
                      "members": [{"name": "vm", "node": rng.choice(nodes), "address": f"10.{i // 256}.{i % 256}.2"}]}}
            for i in range(networks)]
    served.ok("acme", "POST", "/v1/apply", json={"items": docs})
    pairs = []
    for i in range(stitches):
        a, b = rng.sample(range(networks), 2)
        pairs.append((f"n{a}", f"n{b}"))
    for first in range(0, stitches, 100):
        served.ok("acme", "POST", "/v1/apply", json={"items": [
            {"kind": "Stitch", "metadata": {"name": f"s{i}"},
             "spec": {"type": "bandwidth", "from": {"network": a}, "to": {"network": b}, "bandwidth": 50e6}}
            for i, (a, b) in enumerate(pairs[first:first + 100], start=first)]})
    deadline = time.monotonic() + 600
    while True:
        items = served.ok("acme", "GET", "/v1/stitches", params={"limit": 1000})
        active = sum(s["status"]["state"] == "ACTIVE" for s in items["items"])
        if active >= stitches * 0.95 or time.monotonic() > deadline:
            return pairs
        time.sleep(1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--topology", default=str(KDL))
    parser.add_argument("--stitches", type=int, default=1000)
    parser.add_argument("--networks", type=int, default=200)
    parser.add_argument("--loads", type=int, default=5, help="page loads timed (median reported)")
    parser.add_argument("--live-seconds", type=int, default=180)
    parser.add_argument("--json")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        served = start_server(Path(tmp), args.topology, proactive=False, tick_s=1.0, default_capacity_bps=100e9,
                              quota_stitches=args.stitches + 10)
        try:
            t0 = time.perf_counter()
            pairs = seed(served, args.stitches, args.networks, rng)
            print(f"seeded {args.stitches} stitches in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS + ["--enable-precise-memory-info"])
                loads = []
                for _ in range(args.loads):
                    context = browser.new_context(viewport={"width": 1400, "height": 900})
                    context.add_init_script(f"sessionStorage.setItem('vnstitch.token', {json.dumps(served.tokens['acme'])})")
                    page = context.new_page()
                    page.goto(served.url + "/ui/")
                    page.wait_for_selector("#view-topology[data-ready=true]", timeout=60_000)
                    page.locator("line.link").first.dispatch_event("mousemove")  # interactive: a hover answers
                    assert page.locator("#tooltip").is_visible()
                    figures = page.evaluate("""() => ({
                        fcp: performance.getEntriesByName('first-contentful-paint')[0]?.startTime,
                        interactive: performance.getEntriesByName('vnstitch:topology-interactive')[0]?.startTime,
                        stitches: window.vnstitchDashboard.stitches.size,
                        drawn: document.querySelectorAll('polyline.stitch').length,
                        links: document.querySelectorAll('line.link').length})""")
                    loads.append(figures)
                    if len(loads) == args.loads:  # to look at: the graph layout of Kdl with 1,000 stitches
                        (ROOT / "out" / "bench").mkdir(parents=True, exist_ok=True)
                        page.screenshot(path=str(ROOT / "out" / "bench" / "dashboard-kdl.png"))
                    context.close()
                print(f"loads: {loads}", file=sys.stderr)

                # live: every stitch's pair carries traffic that changes each second
                demand_of = {pair: rng.uniform(5e6, 45e6) for pair in pairs}

                def demands(second: int):
                    return {(f"acme/{a}", f"acme/{b}"): bps * (1 + 0.3 * ((second + i) % 3 - 1))
                            for i, ((a, b), bps) in enumerate(demand_of.items())}
                served.traffic = Traffic(served, demands, period_s=1.0).start()
                context = browser.new_context(viewport={"width": 1400, "height": 900})
                context.add_init_script(f"sessionStorage.setItem('vnstitch.token', {json.dumps(served.tokens['acme'])})")
                page = context.new_page()
                cdp = context.new_cdp_session(page)
                cdp.send("Performance.enable")
                page.goto(served.url + "/ui/")
                page.wait_for_selector("#view-topology[data-ready=true]", timeout=60_000)
                page.evaluate(FRAME_PROBE)
                heap, lags, events = [], [], []
                started = time.monotonic()
                first_events = page.evaluate("window.vnstitchDashboard.events")
                while time.monotonic() - started < args.live_seconds:
                    time.sleep(10)
                    metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
                    heap.append(round(metrics["JSHeapUsedSize"] / 2**20, 1))
                    store_rv = served.store.revision()
                    page_rv = page.evaluate("Math.max(...[...window.vnstitchDashboard.stitches.values()].map(s => s.metadata.resourceVersion || 0))")
                    lags.append(store_rv - page_rv)
                    events.append(page.evaluate("window.vnstitchDashboard.events"))
                    print(f"  {time.monotonic() - started:.0f} s: heap {heap[-1]} MiB, events {events[-1]}, "
                          f"revision lag {lags[-1]}, live={page.get_attribute('#live', 'data-state')}", file=sys.stderr)
                frames = page.evaluate("(() => { const s = window.__frames; const g = s.gaps.slice(1).sort((a, b) => a - b);"
                                       " return {n: g.length, p50: g[Math.floor(g.length * .5)], p95: g[Math.floor(g.length * .95)],"
                                       " p99: g[Math.floor(g.length * .99)], max: g[g.length - 1], over50: g.filter(x => x > 50).length,"
                                       " long: s.long, longMs: s.longMs}; })()")
                live_state = page.get_attribute("#live", "data-state")
                carried = served.traffic.carried
                context.close()
                browser.close()
        finally:
            served.stop()
    elapsed = args.live_seconds
    result = {
        "topology": Path(args.topology).name, "stitches": args.stitches,
        "first_paint_ms_median": round(statistics.median(l["fcp"] for l in loads), 1),
        "interactive_ms_median": round(statistics.median(l["interactive"] for l in loads), 1),
        "interactive_ms_max": round(max(l["interactive"] for l in loads), 1),
        "stitches_drawn": loads[-1]["drawn"], "links_drawn": loads[-1]["links"],
        "live_seconds": elapsed, "traffic_intervals_carried": carried,
        "events_per_s": round((events[-1] - first_events) / elapsed, 1) if events else None,
        "frame_ms": {k: round(v, 1) for k, v in frames.items() if isinstance(v, (int, float))},
        "heap_mib": {"first": heap[0], "last": heap[-1], "max": max(heap), "samples": heap},
        "revision_lag_max": max(lags), "revision_lag_last": lags[-1], "live_mark_at_end": live_state,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "command": "python " + " ".join(sys.argv),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
