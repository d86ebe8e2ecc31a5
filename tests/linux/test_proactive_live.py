"""Issue 10 §5, the proactive loop live on the lab: `vnstitch serve --proactive --driver linux` reads the
kernel counters while blue→red follows a real Abilene pair (WASHng→IPLSng, Sunday 2004-03-07 from 19:10,
one 5-minute interval every 2 s) next to a constant green→yellow background on the thin link n1→n3
(40 Mbit/s). The same traffic runs twice on one lab, each time under a serve of its own over a fresh
store: the ForecastPolicy off, then auto (off first: a forecast stitch's teardown takes the VMs' route
with it). Figures: python -m vnstitch.experiments.proactive_live --mode both (docs/PROACTIVE.md)."""

from __future__ import annotations

import os
import socket

from tests.linux.conftest import leftovers
from vnstitch.experiments import proactive_live as live


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_forecast_stitch_is_active_before_the_link_saturates(tmp_path):
    from vnstitch.lab import builder

    name = f"pl{os.getpid() % 10000}"
    directory = str(tmp_path / "lab")
    try:
        builder.up(str(live.LAB_FILE), name=name, directory=directory)   # scale 0.01: 4 Gbps → 40 Mbit/s
        off = live.summarize(live.run_live("off", directory, tmp_path / "off", port=_free_port(), log=print,
                                           first=live.first_interval("off")))
        print(live.describe_summary(off))
        auto = live.summarize(live.run_live("auto", directory, tmp_path / "auto", port=_free_port(), log=print))
        print(live.describe_summary(auto))
    finally:
        builder.down(directory, name=name)
        assert leftovers(name) == [], f"lab {name} left {leftovers(name)}"

    # The traffic does pass the thin link's capacity, in the same intervals in both runs.
    assert off["firstCongested"] is not None and off["firstCongested"] == auto["firstCongested"], (off, auto)
    assert off["activeAt"] is None and off["activeSeenAt"] is None, "mode off: no forecast stitch"

    # The forecast stitch was ACTIVE (by its status history and by the API, whichever came later)
    # before the first interval in which the offered load passed the link's capacity.
    assert auto["leadS"] is not None and auto["leadS"] > 0, auto

    # While the link would be saturated, the stitched pair's goodput held its reservation (the one in
    # force all through each interval, as the payload it carries over WireGuard).
    rows = auto["congested"]
    assert all(r["reservedPayloadBps"] > 0 for r in rows), rows
    held = [r["deliveredBps"] / min(r["offeredBps"], r["reservedPayloadBps"]) for r in rows]
    total = sum(r["deliveredBps"] for r in rows) / sum(min(r["offeredBps"], r["reservedPayloadBps"]) for r in rows)
    assert total >= 0.9 and min(held) >= 0.75, (total, held)
    # … and the thin link no longer saturated: the background lost (next to) nothing.
    assert auto["backgroundLoss"] <= 0.01, auto

    # The same traffic with the loop off lost packets, the pair and the background alike.
    assert off["blueLoss"] >= 0.05 and off["backgroundLoss"] >= 0.05, off
