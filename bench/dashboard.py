"""Dashboard in headless Chromium: first paint and time to an interactive topology with N stitches on Kdl (with
where the time goes: fetches, layout, the first render), the stitch table's first render, then live updates at
1 Hz (traffic carried through the simulator every second, so every stitch's measured figures move and the watch
stream carries them) — frame times, long tasks, JS heap and DOM size per minute, and how far the page lags the store.

Usage: python bench/dashboard.py [--stitches 1000] [--loads 5] [--live-seconds 600] [--before-ui DIR] [--json FILE]
--before-ui DIR also serves an earlier copy of static/ui/ (e.g. `git archive REV src/vnstitch/api/static/ui | tar -x
-C DIR`, then DIR/src/vnstitch/api/static/ui) at /ui-before/ on the same server and times its loads interleaved
with the current ones, so that before and after share the machine's load.
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

FRAME_PROBE = """() => { const s = window.__frames = {at: [], gaps: [], long: [], start: performance.now()};
  let last = performance.now();
  const tick = (t) => { s.at.push(t - s.start); s.gaps.push(t - last); last = t; requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
  new PerformanceObserver((list) => { for (const e of list.getEntries()) s.long.push([e.startTime - s.start, e.duration]); })
    .observe({entryTypes: ['longtask']}); }"""

# per minute of the live run: frame gap percentiles, frames over 50 ms, long tasks and their share of the time
FRAME_STATS = """() => { const s = window.__frames; const out = [];
  const pct = (g, q) => g[Math.min(g.length - 1, Math.floor(g.length * q))];
  const minutes = Math.ceil((performance.now() - s.start) / 60000);
  for (let m = 0; m < minutes; m++) {
    const g = s.gaps.filter((_, i) => i > 0 && s.at[i] >= m * 60000 && s.at[i] < (m + 1) * 60000).sort((a, b) => a - b);
    const long = s.long.filter(([t]) => t >= m * 60000 && t < (m + 1) * 60000);
    if (!g.length) continue;
    out.push({minute: m + 1, frames: g.length, p50: pct(g, .5), p95: pct(g, .95), p99: pct(g, .99), max: g[g.length - 1],
              over50: g.filter((x) => x > 50).length, longTasks: long.length, longMs: long.reduce((a, [, d]) => a + d, 0)});
  }
  const g = s.gaps.slice(1).sort((a, b) => a - b);
  return {minutes: out, all: {frames: g.length, p50: pct(g, .5), p95: pct(g, .95), p99: pct(g, .99), max: g[g.length - 1],
    over50: g.filter((x) => x > 50).length, longTasks: s.long.length, longMs: s.long.reduce((a, [, d]) => a + d, 0)}}; }"""

# one load: the page's own marks (static/ui/js/app.js, topology.js, panel-topology.js) and its API fetches
LOAD_FIGURES = """() => { const at = (name) => performance.getEntriesByName(name)[0]?.startTime ?? null;
  const measures = (name) => performance.getEntriesByName(name).map((m) => m.duration);
  const fetches = {}; for (const r of performance.getEntriesByType('resource')) {
    const path = new URL(r.name).pathname; if (path.startsWith('/v1/') && !(path in fetches)) fetches[path] = [r.startTime, r.responseEnd]; }
  return {fcp: at('first-contentful-paint'), start: at('vnstitch:start'), substrate: at('vnstitch:substrate-fetched'),
    stitchesAt: at('vnstitch:stitches-fetched'), interactive: at('vnstitch:topology-interactive'),
    layout: measures('vnstitch:layout')[0] ?? null, render: Math.max(0, ...measures('vnstitch:render')), fetches,
    stitches: window.vnstitchDashboard.stitches.size, drawn: document.querySelectorAll('polyline.stitch').length,
    links: document.querySelectorAll('line.link').length}; }"""

# the stitch table: from the click on its tab to the frame with its rows painted
TABLE_PROBE = """() => new Promise((resolve) => { const t0 = performance.now();
  document.querySelector('[data-tab=stitches]').click();
  const check = () => { const rows = document.querySelectorAll('#stitch-rows tr').length;
    if (rows) setTimeout(() => resolve([performance.now() - t0, rows, document.querySelector('#stitch-count').textContent]), 0);
    else requestAnimationFrame(check); };
  requestAnimationFrame(check); })"""


def mount_ui(app, prefix: str, directory: str) -> None:
    """Serve `directory` (an earlier static/ui/) at /prefix/ with the dashboard's own headers (CSP included)."""
    from fastapi.responses import Response

    from vnstitch.api.routes.ui import HEADERS, TYPES

    root = Path(directory).resolve()

    def serve(path: str = "") -> Response:
        file = (root / (path or "index.html")).resolve()
        if root not in file.parents or not file.is_file() or file.suffix not in TYPES:
            return Response(status_code=404)
        return Response(file.read_bytes(), media_type=TYPES[file.suffix], headers=HEADERS)
    app.add_api_route(f"/{prefix}/", serve, include_in_schema=False)
    app.add_api_route(f"/{prefix}/{{path:path}}", serve, include_in_schema=False)


def median_of(loads: list[dict], key) -> float | None:
    values = [key(load) for load in loads]
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 1) if values else None


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


def summarise(loads: list[dict]) -> dict:
    """Medians (and ranges) over the loads of one UI: the interactive time and where it went."""
    def fetch(path):
        return lambda load: (load["fetches"][path][1] - load["fetches"][path][0]) if path in load["fetches"] else None
    out = {
        "first_paint_ms_median": median_of(loads, lambda l: l["fcp"]),
        "interactive_ms_median": median_of(loads, lambda l: l["interactive"]),
        "interactive_ms": [round(l["interactive"]) for l in loads],
        "stitches_drawn": loads[-1]["drawn"], "links_drawn": loads[-1]["links"],
        "table_first_render_ms_median": median_of(loads, lambda l: l.get("table_ms")),
        "table_rows_in_dom": loads[-1].get("table_rows"),
    }
    if all(l.get("start") is not None for l in loads):  # the breakdown needs the marks of the current UI
        out["breakdown_ms_median"] = {
            "page and modules (navigation to start)": median_of(loads, lambda l: l["start"]),
            "whoami + substrate fetched": median_of(loads, lambda l: l["substrate"] - l["start"]),
            "GET /v1/substrate/nodes": median_of(loads, fetch("/v1/substrate/nodes")),
            "GET /v1/substrate/links": median_of(loads, fetch("/v1/substrate/links")),
            "GET /v1/substrate/layout": median_of(loads, fetch("/v1/substrate/layout")),
            "layout (in the page)": median_of(loads, lambda l: l["layout"]),
            "GET /v1/stitches (1,000)": median_of(loads, fetch("/v1/stitches")),
            "substrate fetched to stitches fetched": median_of(loads, lambda l: l["stitchesAt"] - l["substrate"]),
            "first render with the stitches (JS)": median_of(loads, lambda l: l["render"]),
            "stitches fetched to interactive (render + paint)": median_of(loads, lambda l: l["interactive"] - l["stitchesAt"]),
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--topology", default=str(KDL))
    parser.add_argument("--stitches", type=int, default=1000)
    parser.add_argument("--networks", type=int, default=200)
    parser.add_argument("--loads", type=int, default=5, help="page loads timed (median reported)")
    parser.add_argument("--live-seconds", type=int, default=600)
    parser.add_argument("--before-ui", metavar="DIR", help="an earlier static/ui/ to time beside the current one")
    parser.add_argument("--json")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    rng = random.Random(7)
    started_at = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        served = start_server(Path(tmp), args.topology, proactive=False, tick_s=1.0, default_capacity_bps=100e9,
                              quota_stitches=args.stitches + 10)
        if args.before_ui:
            mount_ui(served.app, "ui-before", args.before_ui)
        try:
            t0 = time.perf_counter()
            pairs = seed(served, args.stitches, args.networks, rng)
            print(f"seeded {args.stitches} stitches in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS + ["--enable-precise-memory-info"])

                def load(prefix: str) -> dict:
                    context = browser.new_context(viewport={"width": 1400, "height": 900})  # fresh: no cached layout
                    context.add_init_script(f"sessionStorage.setItem('vnstitch.token', {json.dumps(served.tokens['acme'])})")
                    page = context.new_page()
                    page.goto(f"{served.url}/{prefix}/")
                    page.wait_for_selector("#view-topology[data-ready=true]", timeout=60_000)
                    page.locator("line.link").first.dispatch_event("mousemove")  # interactive: a hover answers
                    assert page.locator("#tooltip").is_visible() and "capacity" in page.locator("#tooltip").text_content()
                    figures = page.evaluate(LOAD_FIGURES)
                    assert figures["drawn"] >= 0.95 * args.stitches and figures["stitches"] >= args.stitches, figures
                    if prefix == "ui":  # to look at: the graph layout of Kdl with 1,000 stitches
                        (ROOT / "out" / "bench").mkdir(parents=True, exist_ok=True)
                        page.screenshot(path=str(ROOT / "out" / "bench" / "dashboard-kdl.png"))
                    figures["table_ms"], figures["table_rows"], _ = page.evaluate(TABLE_PROBE)
                    context.close()
                    return figures

                uis = ["ui"] + (["ui-before"] if args.before_ui else [])
                # the server's first read of each list renders every object once (api/reads.py memo), a cost the
                # first visitor after a restart pays: timed here, then left out of the medians
                cold = {ui: load(ui)["interactive"] for ui in uis}
                print(f"  cold loads (not in the medians): {cold}", file=sys.stderr)
                loads = {ui: [] for ui in uis}
                for i in range(args.loads):
                    for ui in (uis if i % 2 == 0 else uis[::-1]):  # interleaved, alternating who goes first
                        loads[ui].append(load(ui))
                        print(f"  {ui} load {i + 1}: interactive {loads[ui][-1]['interactive']:.0f} ms", file=sys.stderr)

                # live: every stitch's pair carries traffic that changes each second
                demand_of = {pair: rng.uniform(5e6, 45e6) for pair in pairs}

                def demands(second: int):
                    return {(f"acme/{a}", f"acme/{b}"): bps * (1 + 0.3 * ((second + i) % 3 - 1))
                            for i, ((a, b), bps) in enumerate(demand_of.items())}
                samples, frames, live_state, carried, first_events = [], None, None, 0, 0
                if args.live_seconds > 0:
                    served.traffic = Traffic(served, demands, period_s=1.0).start()
                    context = browser.new_context(viewport={"width": 1400, "height": 900})
                    context.add_init_script(f"sessionStorage.setItem('vnstitch.token', {json.dumps(served.tokens['acme'])})")
                    page = context.new_page()
                    cdp = context.new_cdp_session(page)
                    cdp.send("Performance.enable")
                    page.goto(served.url + "/ui/")
                    page.wait_for_selector("#view-topology[data-ready=true]", timeout=60_000)
                    page.evaluate(FRAME_PROBE)
                    started = time.monotonic()
                    first_events = page.evaluate("window.vnstitchDashboard.events")
                    while time.monotonic() - started < args.live_seconds:
                        time.sleep(10)
                        metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
                        store_rv = served.store.revision()
                        page_rv = page.evaluate("Math.max(...[...window.vnstitchDashboard.stitches.values()].map(s => s.metadata.resourceVersion || 0))")
                        sample = {"s": round(time.monotonic() - started), "heap_mib": round(metrics["JSHeapUsedSize"] / 2**20, 1),
                                  "dom_nodes": int(metrics["Nodes"]), "listeners": int(metrics["JSEventListeners"]),
                                  "events": page.evaluate("window.vnstitchDashboard.events"), "lag": store_rv - page_rv,
                                  "carried": served.traffic.carried}
                        samples.append(sample)
                        print(f"  {sample['s']} s: heap {sample['heap_mib']} MiB, DOM {sample['dom_nodes']}, events "
                              f"{sample['events']}, revision lag {sample['lag']}, live={page.get_attribute('#live', 'data-state')}",
                              file=sys.stderr)
                    frames = page.evaluate(FRAME_STATS)
                    live_state = page.get_attribute("#live", "data-state")
                    carried = served.traffic.carried
                    context.close()
                browser.close()
        finally:
            served.stop()
    elapsed = args.live_seconds
    result = {
        "topology": Path(args.topology).name, "stitches": args.stitches, "loads": args.loads,
        "cold_first_load_interactive_ms": {ui: round(ms) for ui, ms in cold.items()},
        "current": summarise(loads["ui"]),
        **({"before": summarise(loads["ui-before"])} if args.before_ui else {}),
        "raw_loads": loads,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "date": started_at, "load_average_at_start": [round(x, 2) for x in load_before],
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "command": "python " + " ".join(sys.argv),
    }
    if samples:
        heap = [s["heap_mib"] for s in samples]
        minute_heap = {}
        for sample in samples:  # the highest heap seen in each minute (GC sawtooth: the lows say less)
            minute = (sample["s"] - 1) // 60 + 1
            minute_heap[minute] = max(minute_heap.get(minute, 0), sample["heap_mib"])
        result["live"] = {
            "seconds": elapsed, "traffic_intervals_carried": carried,
            "events_per_s": round((samples[-1]["events"] - first_events) / elapsed, 1),
            "frames": frames["all"], "frames_per_minute": frames["minutes"],
            "heap_mib": {"first": heap[0], "last": heap[-1], "min": min(heap), "max": max(heap),
                         "max_per_minute": minute_heap},
            "dom_nodes": {"first": samples[0]["dom_nodes"], "last": samples[-1]["dom_nodes"],
                          "max": max(s["dom_nodes"] for s in samples)},
            "revision_lag_max": max(s["lag"] for s in samples), "revision_lag_last": samples[-1]["lag"],
            "live_mark_at_end": live_state, "samples": samples,
        }
    print(json.dumps({k: v for k, v in result.items() if k != "raw_loads"}, indent=2))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
