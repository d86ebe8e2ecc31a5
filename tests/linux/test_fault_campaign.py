"""A short fault campaign (bench/faults.py, the same code): one fault of each kind under three
established stitches; the reconciler must make the network true again after every one, and nothing
of a stitch may outlive it (while the lab runs, and after `lab down`)."""

from __future__ import annotations

import importlib.util
import sys

from tests.linux.conftest import REPO

SEQUENCE = ["kill-wireguard", "delete-veth", "delete-vxlan", "flush-nft-chain", "flush-nft-table",
            "delete-route", "move-member", "revoke-policy", "restore-policy"]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_faults", REPO / "bench" / "faults.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module   # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_one_fault_of_each_kind_is_repaired_and_nothing_leaks():
    bench = _bench()
    lines: list[str] = []
    figures = bench.run_campaign(0, stitches=3, seed=1, sequence=SEQUENCE, log=lines.append)
    assert [r["kind"] for r in figures["results"]] == SEQUENCE
    not_repaired = [f"{r['kind']} ({r['detail']}): {'; '.join(r['why_not'][:3])}" for r in figures["not_repaired"]]
    assert not not_repaired, "not repaired:\n" + "\n".join(not_repaired)
    assert figures["revoked_stitch_checks"] >= 1, "the revocation withdrew a stitch"
    assert figures["wrongly_alive"] == 0, [r["wrongly_alive"] for r in figures["results"]]
    assert figures["leaks"] == [], figures["leaks"]
    assert figures["stale"]["faults_leaving_new"] == 0, figures["stale"]["first"]
