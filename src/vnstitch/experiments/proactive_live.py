"""The proactive loop live on the Linux lab: UDP traffic follows a real Abilene pair, the controller stitches.

blue→red is driven by a paced UDP sender at the rates of a real Abilene pair, one 5-minute interval every
2 s (the ForecastPolicy's interval is the compressed one), with a constant green→yellow background
on the same thin link n1→n3 (examples/proactive-lab.yaml). `vnstitch serve --proactive --driver
linux` reads the stitches' kernel counters, forecasts and, in mode auto, establishes a bandwidth
stitch for blue→red before the offered load passes the link's capacity. The test
tests/linux/test_proactive_live.py and the by-hand steps of docs/PROACTIVE.md use this module:

    python -m vnstitch.experiments.proactive_live --mode both              # starts its own serve
    python -m vnstitch.experiments.proactive_live --server URL --token T   # a serve you started
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[3]
LAB_FILE = REPO / "examples" / "proactive-lab.yaml"
POLICY_FILE = REPO / "examples" / "proactive-policy.yaml"
TENANT = "acme"
POLICY_LABEL = "vnstitch.io/forecast-policy"
BOTTLENECK = ("n1", "n3")


@dataclass(frozen=True)
class Scenario:
    """What is played: an Abilene pair's 5-minute rates from `start`, × traffic_scale (the modelled
    rate; the lab sends it × its scale), one interval every interval_s; the policy is applied at the
    start of interval `policy_at` (so its training window holds traffic only, never the idle stitch)."""

    source: str = "WASHng"
    destination: str = "IPLSng"
    start: str = "20040307-1910"       # Sunday 2004-03-07 19:10, the evening rise
    intervals: int = 13
    traffic_scale: float = 43.0        # modelled bit/s = Abilene bit/s × 43 (the replay's --scale)
    background_bps: float = 0.8e9      # green→yellow, modelled (8 Mbit/s in a 0.01 lab)
    interval_s: float = 2.0
    policy_at: int = 4
    datagram: int = 1200               # UDP payload bytes per datagram


def first_interval(mode: str, scenario: Scenario = Scenario()) -> int:
    """Where a run starts: with the policy off nothing learns, so the warm-up that fills the auto
    policy's training window is not played (the intervals from policy_at on are the same traffic)."""
    return scenario.policy_at if mode == "off" else 0


def abilene_rates(scenario: Scenario) -> list[float]:
    """The modelled bit/s of each interval: the pair's real 5-minute means from the bundled slice."""
    from vnstitch.forecast.datasets import load_bundled_abilene

    series = load_bundled_abilene()
    column = series.pairs.index((scenario.source, scenario.destination))
    stamps = [str(t)[:16] for t in series.timestamps]
    wanted = f"{scenario.start[:4]}-{scenario.start[4:6]}-{scenario.start[6:8]}T{scenario.start[9:11]}:{scenario.start[11:13]}"
    first = stamps.index(wanted)
    mbps = series.values_mbps[first:first + scenario.intervals, column]
    return [float(v) * 1e6 * scenario.traffic_scale for v in mbps]


def wire_bytes(payload: int, encrypted: bool) -> int:
    """Bytes one UDP datagram of `payload` bytes takes on a substrate veth (what HTB counts): the inner
    IP packet (+28) in VXLAN (+8 VXLAN, +14 inner Ethernet) or WireGuard (padded to 16, +32), then
    outer UDP, IP and Ethernet (+42)."""
    inner = payload + 28
    return (-(-inner // 16) * 16 + 32 if encrypted else inner + 22) + 42


@dataclass
class FlowSample:
    offered_bps: float      # UDP payload sent in the interval, over its length
    delivered_bps: float    # of that, what arrived (whenever it arrived: datagrams carry their interval)
    packets: int
    lost: int


@dataclass
class Interval:
    index: int
    start: float                                   # unix s (the policy's interval boundary)
    rates_bps: dict[str, float]                    # asked of the sender (lab bit/s)
    flows: dict[str, FlowSample] = field(default_factory=dict)
    stitch_state: str = ""                         # the forecast stitch of blue→red, mid-interval
    reserved_bps: float = 0.0                      # its reservation then (modelled bit/s)


@dataclass
class LiveRun:
    mode: str
    scenario: Scenario
    scale: float
    capacity_bps: float                            # the bottleneck's HTB rate (lab bit/s)
    intervals: list[Interval]
    stitches: list[dict]                           # the forecast stitches at the end (wire form)
    policy_status: dict
    first_active_seen: float | None = None         # unix s the API first answered ACTIVE for blue→red's


# Why not iperf3: each iperf3 test opens its own TCP control connection through the same tunnel, and
# in a saturated HTB class (a reservation a little under the offered load) its set-up waits seconds in
# the queue, so per-interval tests start late, overlap the next one or hang, and the schedule is lost.
# These two programs have no control channel: the sender paces each interval's datagrams (a 4-byte
# interval number and a 4-byte sequence number in front) from absolute start times, the receiver
# counts what arrives per interval number, so a late datagram still counts for the interval it was
# sent in.
SENDER = """
import json, socket, sys, time
dst, port, size, t0, interval = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
rates = json.loads(sys.argv[6])
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
pad = bytes(size - 8)
sent = []
for index, rate in enumerate(rates):
    start, end = t0 + index * interval, t0 + (index + 1) * interval
    due, gap, count = start, size * 8.0 / rate if rate > 0 else None, 0
    time.sleep(max(0.0, start - time.time()))
    while gap is not None:
        now = time.time()
        while due <= now and due < end:
            try:   # a datagram the sender's own netfilter drops fails with EPERM: it goes on sending
                sock.sendto(index.to_bytes(4, "big") + count.to_bytes(4, "big") + pad, (dst, port))
            except OSError:
                pass
            count, due = count + 1, due + gap
        if due >= end:
            break
        time.sleep(max(0.0, min(due, end) - time.time()))
    sent.append(count)
    time.sleep(max(0.0, end - time.time()))
print(json.dumps(sent))
"""
RECEIVER = """
import json, socket, sys, time
port, intervals, deadline = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
sock.bind(("0.0.0.0", port))
print("ready", file=sys.stderr, flush=True)
got = [0] * intervals
while True:
    left = deadline - time.time()
    if left <= 0:
        break
    sock.settimeout(left)
    try:
        data = sock.recv(65535)
    except socket.timeout:
        break
    index = int.from_bytes(data[:4], "big")
    if 0 <= index < intervals:
        got[index] += 1
print(json.dumps(got))
"""


@dataclass(frozen=True)
class _Flow:
    name: str
    src_ns: str
    dst_ns: str
    dst_ip: str
    port: int


def _netns(ns: str, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


def play(flows: list[_Flow], rates: dict[str, list[float]], scenario: Scenario,
         at_start: Callable[[int], None] = lambda index: None,
         at_middle: Callable[[Interval], None] = lambda interval: None,
         log: Callable[[str], None] = lambda line: None, drain_s: float = 1.5, first: int = 0) -> list[Interval]:
    """Play intervals first… of the schedule from the next interval boundary (aligned as the
    controller's: multiples of interval_s since the epoch): per flow one paced UDP sender in its source
    VM, one receiver in its destination VM (SENDER, RECEIVER), each interval at its rate."""
    interval_s, n = scenario.interval_s, scenario.intervals - first
    begin = (time.time() // interval_s + 1) * interval_s
    if begin - time.time() < 1.0:
        begin += interval_s
    t0 = begin - first * interval_s                      # when interval 0 would have started
    deadline = begin + n * interval_s + drain_s
    receivers, senders = {}, {}
    try:
        for flow in flows:
            proc = subprocess.Popen(_netns(flow.dst_ns, sys.executable, "-c", RECEIVER, str(flow.port), str(n),
                                           f"{deadline:.3f}"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            receivers[flow.name] = proc
            if proc.stderr.readline().strip() != "ready":
                raise RuntimeError(f"receiver of {flow.name} did not start: {proc.stderr.read()[-500:]}")
        for flow in flows:
            senders[flow.name] = subprocess.Popen(
                _netns(flow.src_ns, sys.executable, "-c", SENDER, flow.dst_ip, str(flow.port), str(scenario.datagram),
                       f"{begin:.3f}", f"{interval_s:g}", json.dumps([round(r) for r in rates[flow.name][first:]])),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out = []
        for index in range(first, scenario.intervals):
            start = t0 + index * interval_s
            time.sleep(max(0.0, start - time.time()))
            interval = Interval(index, start, {flow.name: rates[flow.name][index] for flow in flows})
            out.append(interval)
            at_start(index)
            time.sleep(max(0.0, start + interval_s / 2 - time.time()))
            at_middle(interval)
        for flow in flows:
            sent_out, sent_err = senders[flow.name].communicate(timeout=drain_s + 10)
            got_out, got_err = receivers[flow.name].communicate(timeout=drain_s + 10)
            try:
                sent, got = json.loads(sent_out), json.loads(got_out)
            except ValueError:
                raise RuntimeError(f"flow {flow.name}: sender said {sent_err[-300:]!r}, "
                                   f"receiver said {got_err[-300:]!r}") from None
            bits = scenario.datagram * 8 / interval_s
            for interval, count, arrived in zip(out, sent, got):
                interval.flows[flow.name] = FlowSample(count * bits, min(arrived, count) * bits, count,
                                                       max(0, count - arrived))
        for interval in out:
            log(describe_interval(interval))
        return out
    finally:
        for proc in [*senders.values(), *receivers.values()]:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def describe_interval(interval: Interval) -> str:
    parts = [f"#{interval.index:<2}"]
    for name, flow in interval.flows.items():
        loss = flow.lost / flow.packets if flow.packets else 0.0
        parts.append(f"{name} {flow.offered_bps / 1e6:5.1f}→{flow.delivered_bps / 1e6:5.1f} Mbit/s "
                     f"(lost {loss:5.1%})")
    if interval.stitch_state:
        parts.append(f"stitch {interval.stitch_state} {interval.reserved_bps / 1e9:.2f} Gbps")
    return "  ".join(parts)


# --- the controller --------------------------------------------------------------------------

def _documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _resources(docs: list[dict]):
    from vnstitch.domain.registry import parse_resource

    return [parse_resource(doc) for doc in docs]


def _vnstitch() -> list[str]:
    found = shutil.which("vnstitch", path=os.path.dirname(sys.executable))
    return [found] if found else [sys.executable, "-m", "vnstitch.cli.main"]


class Serve:
    """`vnstitch serve --proactive --driver linux` on 127.0.0.1, over a fresh SQLite store."""

    def __init__(self, workdir: Path, state_dir: str, port: int, tick_s: float = 0.5):
        from vnstitch.api.auth import create_token
        from vnstitch.store import open_store

        workdir.mkdir(parents=True, exist_ok=True)
        store_url = f"sqlite://{workdir / 'state.db'}"
        store = open_store(store_url)
        try:
            self.token, _ = create_token(store, TENANT, "admin", description="proactive_live")
        finally:
            store.close()
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = workdir / "serve.log"
        argv = [*_vnstitch(), "-v", "--store", store_url, "--driver", "linux", "serve", "--proactive",
                "--port", str(port), "--tick", f"{tick_s:g}"]
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "VNSTITCH_LAB_DIR": state_dir})
        self._wait_healthy()

    def _wait_healthy(self, timeout_s: float = 30.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vnstitch serve exited ({self.proc.returncode}): {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"vnstitch serve not healthy after {timeout_s:g} s: {self.log_path.read_text()[-2000:]}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def _wait_active(client, names: list[str], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        states = {s.name: s.status.state.value for s in client.list("Stitch", TENANT)}
        if all(states.get(name) == "ACTIVE" for name in names):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"user stitches not ACTIVE after {timeout_s:g} s: {states}")
        time.sleep(0.1)


def run_live(mode: str, state_dir: str, workdir: Path | None = None, server: str | None = None,
             token: str | None = None, port: int = 18471, scenario: Scenario = Scenario(),
             lab_file: Path = LAB_FILE, policy_file: Path = POLICY_FILE,
             log: Callable[[str], None] = lambda line: None, first: int = 0) -> LiveRun:
    """One run on a lab that is up: the lab's resources applied (user stitches ACTIVE), the schedule
    played from interval `first`, the ForecastPolicy (mode `mode`) applied at interval policy_at (or
    at `first`, if later). Without `server` a serve of its own runs over a fresh store in `workdir`
    for the length of the run."""
    from vnstitch.api.client import RemoteController
    from vnstitch.drivers.linux.layout import load_layout

    layout = load_layout(state_dir)
    if layout is None:
        raise RuntimeError(f"no lab in {state_dir}: run `vnstitch lab up {lab_file}` first")
    serve = None
    if server is None:
        serve = Serve(workdir or Path(state_dir) / "live", state_dir, port)
        server, token = serve.url, serve.token
    client = RemoteController(server, token=token)
    try:
        lab_docs = _documents(lab_file)
        client.apply(_resources(lab_docs))
        _wait_active(client, [d["metadata"]["name"] for d in lab_docs if d.get("kind") == "Stitch"])
        [policy_doc] = [d for d in _documents(policy_file) if d.get("kind") == "ForecastPolicy"]
        policy_doc["spec"]["mode"] = mode
        policy_name = policy_doc["metadata"]["name"]
        networks = {d["metadata"]["name"]: d["spec"]["members"][0] for d in lab_docs if d.get("kind") == "VirtualNetwork"}

        def flow(name: str, src: str, dst: str, base_port: int) -> _Flow:
            return _Flow(name, layout.vm_ns(networks[src]["name"]), layout.vm_ns(networks[dst]["name"]),
                         networks[dst]["address"], base_port)

        flows = [flow("blue", "blue", "red", 5301), flow("green", "green", "yellow", 5302)]
        rates = {"blue": [r * layout.scale for r in abilene_rates(scenario)],
                 "green": [scenario.background_bps * layout.scale] * scenario.intervals}

        def at_start(index: int) -> None:
            if index == max(scenario.policy_at, first):
                _put(server, token, "forecastpolicies", policy_doc)

        watcher = _Watcher(server, token, policy_name)

        def at_middle(interval: Interval) -> None:
            interval.stitch_state, interval.reserved_bps = watcher.now()

        log(f"{mode}: {scenario.source}→{scenario.destination} from {scenario.start}, ×{scenario.traffic_scale:g}, "
            f"one 5-minute interval every {scenario.interval_s:g} s; background {scenario.background_bps / 1e9:g} Gbps; "
            f"policy {policy_name} (mode {mode}) at interval {scenario.policy_at}")
        try:
            intervals = play(flows, rates, scenario, at_start, at_middle, log, first=first)
        finally:
            watcher.stop()
        stitches = [_wire(s) for s in _forecast_stitches(client, policy_name)]
        policy = _get(server, token, "forecastpolicies", policy_name)
        link = next(l for l in layout.links if {l.a, l.b} == set(BOTTLENECK))
        return LiveRun(mode, scenario, layout.scale, link.rate_bps, intervals, stitches, policy.get("status") or {},
                       watcher.first_active)
    finally:
        client.close()
        if serve is not None:
            serve.close()


class _Watcher:
    """Polls the API (every 0.25 s) for the forecast stitch of blue→red: its state and reservation now,
    and when the API first answered ACTIVE (the status is written after the kernel holds the stitch)."""

    def __init__(self, server: str, token: str | None, policy: str, period_s: float = 0.25):
        import threading

        from vnstitch.api.client import RemoteController

        self.client = RemoteController(server, token=token)
        self.policy, self.period_s = policy, period_s
        self.first_active: float | None = None
        self._current = ("", 0.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="proactive-live-watch", daemon=True)
        self._thread.start()

    def now(self) -> tuple[str, float]:
        return self._current

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            try:
                found = [s for s in _forecast_stitches(self.client, self.policy)
                         if s.metadata.annotations.get("vnstitch.io/pair") == "blue>red"]
            except Exception:  # noqa: BLE001 - a slow answer: the next poll
                continue
            answered = time.time()
            if found:
                self._current = (found[0].status.state.value, found[0].status.reserved_bandwidth)
                if self._current[0] == "ACTIVE" and self.first_active is None:
                    self.first_active = answered
            else:
                self._current = ("", 0.0)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.client.close()


def _put(server: str, token: str | None, plural: str, doc: dict) -> None:
    """PUT /v1/<plural>/<name>: POST /v1/apply (what `vnstitch apply` uses) takes only nodes, links,
    networks and stitches."""
    import httpx

    from vnstitch.api.client import raise_for_error

    [resource] = _resources([doc])
    response = httpx.put(f"{server}/v1/{plural}/{resource.metadata.name}", params={"tenant": resource.metadata.tenant},
                         json=_wire(resource), headers={"Authorization": f"Bearer {token}"} if token else {},
                         timeout=10.0)
    raise_for_error(response)


def _get(server: str, token: str | None, plural: str, name: str) -> dict:
    """GET /v1/<plural>/<name> (RemoteController knows nodes, links, networks and stitches only)."""
    import httpx

    from vnstitch.api.client import raise_for_error

    response = httpx.get(f"{server}/v1/{plural}/{name}", params={"tenant": TENANT},
                         headers={"Authorization": f"Bearer {token}"} if token else {}, timeout=10.0)
    raise_for_error(response)
    return response.json()


def _forecast_stitches(client, policy: str) -> list:
    return [s for s in client.list("Stitch", TENANT) if s.metadata.labels.get(POLICY_LABEL) == policy]


def _wire(resource) -> dict:
    return resource.model_dump(mode="json", by_alias=True)


# --- what happened ----------------------------------------------------------------------------

def summarize(run: LiveRun) -> dict:
    """First congested interval (the two pairs' offered load, as the thin link would carry it over their
    VXLAN stitches, above its rate), when the forecast stitch of blue→red first went ACTIVE, and per
    congested interval blue's offered and delivered rate, its loss and the reservation in force all
    through it (the smaller of the ones seen mid-interval before and in it), as the payload rate it
    carries over WireGuard, the stitch's encapsulation; rates in lab bit/s."""
    payload = run.scenario.datagram
    best_effort = wire_bytes(payload, encrypted=False) / payload

    def offered(iv: Interval, name: str) -> float:
        flow = iv.flows.get(name)
        return iv.rates_bps[name] if flow is None else flow.offered_bps

    congested = [iv for iv in run.intervals
                 if sum(offered(iv, name) for name in iv.rates_bps) * best_effort > run.capacity_bps]
    active_at = None
    for stitch in run.stitches:
        if stitch["metadata"].get("annotations", {}).get("vnstitch.io/pair") != "blue>red":
            continue
        for entry in stitch["status"]["history"]:
            if entry["to"] == "ACTIVE" and (active_at is None or entry["time"] < active_at):
                active_at = entry["time"]
    stitched = payload / wire_bytes(payload, encrypted=True)
    by_index = {iv.index: iv for iv in run.intervals}
    rows = []
    for iv in congested:
        blue, green = iv.flows["blue"], iv.flows["green"]
        # in force for the whole interval: a resize lands a moment after the boundary
        before = by_index[iv.index - 1].reserved_bps if iv.index - 1 in by_index else 0.0
        reserved = min(before, iv.reserved_bps) * run.scale * stitched
        rows.append({"index": iv.index, "start": iv.start, "offeredBps": blue.offered_bps,
                     "deliveredBps": blue.delivered_bps, "lost": blue.lost, "packets": blue.packets,
                     "backgroundLost": green.lost, "backgroundPackets": green.packets,
                     "reservedPayloadBps": reserved, "state": iv.stitch_state})

    def loss(lost: str, packets: str) -> float:
        total = sum(r[packets] for r in rows)
        return sum(r[lost] for r in rows) / total if total else 0.0

    first = congested[0] if congested else None
    seen = [t for t in (active_at, run.first_active_seen) if t is not None]
    return {"mode": run.mode, "capacityBps": run.capacity_bps, "firstCongested": first.index if first else None,
            "firstCongestedAt": first.start if first else None, "activeAt": active_at,
            "activeSeenAt": run.first_active_seen,
            "leadS": (first.start - max(seen)) if first and seen else None,
            "congested": rows, "blueLoss": loss("lost", "packets"),
            "backgroundLoss": loss("backgroundLost", "backgroundPackets"),
            "policyMessage": run.policy_status.get("message", "")}


def describe_summary(summary: dict) -> str:
    lines = [f"{summary['mode']}: bottleneck {summary['capacityBps'] / 1e6:.0f} Mbit/s; first congested interval "
             f"#{summary['firstCongested']}"]
    if summary["activeAt"] is not None and summary["firstCongestedAt"] is not None:
        lines.append(f"  forecast stitch blue→red ACTIVE {summary['leadS']:.1f} s before it (status history, "
                     f"and the API answering ACTIVE, whichever is later)")
    elif summary["mode"] != "off":
        lines.append("  no forecast stitch went ACTIVE")
    for row in summary["congested"]:
        lines.append(f"  #{row['index']:<2} blue offered {row['offeredBps'] / 1e6:5.1f}  delivered "
                     f"{row['deliveredBps'] / 1e6:5.1f}  reservation {row['reservedPayloadBps'] / 1e6:5.1f} Mbit/s "
                     f"(payload)  lost {row['lost'] / max(row['packets'], 1):5.1%}  background lost "
                     f"{row['backgroundLost'] / max(row['backgroundPackets'], 1):5.1%}")
    lines.append(f"  congested intervals: blue lost {summary['blueLoss']:.1%}, background lost {summary['backgroundLoss']:.1%}")
    lines.append(f"  policy: {summary['policyMessage']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vnstitch.experiments.proactive_live", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["auto", "off", "suggest", "both"], default="auto",
                        help="the policy's mode; both: off, then auto (each with a serve of its own)")
    parser.add_argument("--state-dir", default=None, help="the lab's state dir (default $VNSTITCH_LAB_DIR or /run/vnstitch/lab)")
    parser.add_argument("--server", default=os.environ.get("VNSTITCH_URL"),
                        help="a running `vnstitch serve --proactive --driver linux` ($VNSTITCH_URL); default: start one")
    parser.add_argument("--token", default=os.environ.get("VNSTITCH_TOKEN"), help="its admin token ($VNSTITCH_TOKEN)")
    parser.add_argument("--workdir", default="out/proactive-live", help="store and logs of the serve it starts")
    parser.add_argument("--port", type=int, default=18471)
    parser.add_argument("--json", help="write the runs and their summaries here")
    args = parser.parse_args(argv)
    from vnstitch.drivers.linux.layout import state_dir

    lab_dir = state_dir(args.state_dir)
    modes = ["off", "auto"] if args.mode == "both" else [args.mode]
    if args.server and len(modes) > 1:
        parser.error("--mode both starts its own serve per run; with --server run one mode at a time")
    out = []
    for mode in modes:
        run = run_live(mode, lab_dir, Path(args.workdir) / mode, args.server, args.token, args.port,
                       log=lambda line: print(line, file=sys.stderr), first=first_interval(mode))
        summary = summarize(run)
        print(describe_summary(summary))
        out.append({"run": asdict(run), "summary": summary})
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
