"""`vnstitch reconcile --once` runs the anomaly engine as the server's pass does (issue 13): over the local
telemetry store that a local `vnstitch telemetry push` wrote, when the store holds an AnomalyPolicy."""

from __future__ import annotations

import time

import numpy as np

from vnstitch.cli.main import main
from tests.helpers import stitch, vnet


def test_a_local_pass_finds_and_blocks_a_forbidden_flow_from_pushed_telemetry(controller, store, tmp_path,
                                                                                 capsys):
    from vnstitch.domain.registry import parse_resource

    controller.apply([
        vnet("blue", 1001, "10.1.0.0/24", [("blue-1", "NYCMng", "10.1.0.11")]),
        vnet("red", 1002, "10.2.0.0/24", [("red-1", "LOSAng", "10.2.0.11")]),
        vnet("green", 1003, "10.3.0.0/24", [("green-1", "CHINng", "10.3.0.11")]),
        stitch("br", "blue", "red", "100Mbps"),
        parse_resource({"kind": "AnomalyPolicy", "metadata": {"name": "watch", "tenant": "acme"},
                        "spec": {"networks": ["blue", "red", "green"], "interval": "5m", "mode": "auto",
                                 "minHistory": 2}}, user_input=True)])
    url = f"sqlite://{store.path}"
    # four intervals up to the last full one: blue→red as stitched, blue→green with no stitch at all
    last = (time.time() // 300) * 300 - 300
    rows = ["timestamp,source,destination,value"]
    for k in range(4):
        start = np.datetime64(int(last - 300 * (3 - k)), "s")
        rows += [f"{start},blue,red,40", f"{start},blue,green,{'0' if k < 3 else '200'}"]
    trace = tmp_path / "trace.csv"
    trace.write_text("\n".join(rows) + "\n")
    assert main(["--store", url, "telemetry", "push", str(trace), "--tenant", "acme", "--quiet"]) == 0
    capsys.readouterr()

    assert main(["--store", url, "reconcile", "--once"]) == 0
    controller.refresh()
    floods = [a for a in controller.list("Anomaly", "acme") if a.spec.kind == "forbidden_flow"]
    assert [a.spec.pairs[0] for a in floods] == ["blue>green"], [a.spec for a in controller.list("Anomaly", "acme")]
    assert [(a.type, a.state) for a in floods[0].status.actions] == [("block", "applied")], floods[0].status
    assert controller.get("AnomalyPolicy", "watch", "acme").status.open == 1
