"""A bulk apply remembers each path search by what decides it (issue 17). Stitches that fill links until
later ones must take longer paths, or find none, are admitted exactly as without the memo: the same
paths, reservations and refusals."""

from __future__ import annotations

import pytest

from vnstitch.controller import service
from vnstitch.controller.service import Controller
from vnstitch.domain.ledger import LEDGER_KIND
from vnstitch.store.memory import MemoryStore
from tests.helpers import stitch, vnet

NODES = ("NYCMng", "LOSAng", "CHINng", "WASHng", "ATLAng", "DNVRng", "SNVAng", "STTLng")


def admitted(abilene, clock, memo: bool, monkeypatch) -> tuple[list, dict, dict]:
    """Per-stitch outcomes, each stitch's path and what each link holds, with or without the memo."""
    if not memo:
        monkeypatch.setattr(service._MemoFinder, "paths", lambda self, *a, **k: self.finder.paths(*a, **k))
    controller = Controller(MemoryStore(), clock=clock)
    links = [link.model_copy(update={"spec": link.spec.model_copy(update={"capacity": 100e6})}) for link in abilene.links]
    assert [str(c) for c in controller.apply(list(abilene.nodes) + links)]
    networks = [vnet(f"n{i}", 500 + i, f"10.{i}.0.0/24", [(f"m{i}", node, f"10.{i}.0.10")])
                for i, node in enumerate(NODES)]
    stitches = [stitch(f"s{j}", f"n{j % 8}", f"n{(j * 3 + 1) % 8}", bandwidth=f"{20 + 10 * (j % 3)}Mbps",
                       maxLatency="40ms" if j % 4 else "80ms", symmetric=bool(j % 5))
                for j in range(60) if j % 8 != (j * 3 + 1) % 8]
    outcomes = [str(r) for r in controller.apply_each(networks + stitches)]
    controller.refresh()
    paths = {r.name: (r.value["status"].get("path"), r.value["status"].get("reservedBandwidth"))
             for r in controller.cache.list("Stitch")}
    held = {r.name: (r.value.get("forward"), r.value.get("reverse")) for r in controller.cache.list(LEDGER_KIND)}
    monkeypatch.undo()
    return outcomes, paths, held


def test_filling_links_gives_the_same_paths_and_refusals(abilene, clock, monkeypatch):
    with_memo = admitted(abilene, clock, True, monkeypatch)
    without = admitted(abilene, clock, False, monkeypatch)
    assert with_memo == without
    outcomes = with_memo[0]
    assert any("created" in o for o in outcomes) and any("created" not in o for o in outcomes)  # both happened
    assert len({tuple(p or ()) for p, _ in with_memo[1].values()}) > 8  # and paths varied as links filled


@pytest.mark.parametrize("symmetric", [True, False])
def test_the_bottleneck_is_the_residual_given(abilene, clock, symmetric):
    controller = Controller(MemoryStore(), clock=clock)
    controller.apply(list(abilene.nodes) + list(abilene.links))
    controller.refresh()
    finder = controller.pathfinder()
    residual = controller._residual_vector().copy()
    batch = service._Batch(controller.cache)
    memo = service._MemoFinder(finder, controller, batch)
    first = memo.paths("NYCMng", "LOSAng", bandwidth_bps=1e6, symmetric=symmetric, residual=residual)
    residual[:] = residual * 0.5  # still room everywhere: the same search, another bottleneck
    again = memo.paths("NYCMng", "LOSAng", bandwidth_bps=1e6, symmetric=symmetric, residual=residual)
    assert again == finder.paths("NYCMng", "LOSAng", bandwidth_bps=1e6, symmetric=symmetric, residual=residual)
    assert again[0].nodes == first[0].nodes and again[0].bottleneck_bps == first[0].bottleneck_bps / 2
