"""`vnstitch telemetry push` (local mode): any loader format in, samples in the telemetry store."""

from __future__ import annotations

import time

import numpy as np
import pytest

from vnstitch.cli.main import main
from vnstitch.domain.vnet import VirtualNetwork
from vnstitch.forecast.datasets import ABILENE_NODES
from vnstitch.telemetry.store import SQLiteTelemetryStore
from tests.api.payloads import vnet


@pytest.fixture
def networks(controller, store):
    """Networks pop-<node> for the 12 Abilene nodes, in tenant acme."""
    resources = []
    for i, node in enumerate(ABILENE_NODES):
        body = vnet(f"pop-{node}", 100 + i, f"10.{i}.0.0/24", [])
        body["metadata"]["tenant"] = "acme"
        resources.append(VirtualNetwork.model_validate(body))
    controller.apply(resources)
    return store


def telemetry_of(store) -> SQLiteTelemetryStore:
    return SQLiteTelemetryStore(store.path.replace("state.db", "state.telemetry.db"))


def push(store, *args) -> int:
    return main(["--store", f"sqlite://{store.path}", "telemetry", "push", *args, "--tenant", "acme", "--quiet"])


def test_bundled_abilene_shifted_to_now_lands_as_rates(networks, capsys):
    assert push(networks, "abilene", "--last", "3", "--shift-to-now", "--network-prefix", "pop-") == 0
    assert "pushed 396 samples of 132 pairs" in capsys.readouterr().out
    telemetry = telemetry_of(networks)
    end = (time.time() // 300) * 300
    got = telemetry.rates("acme", [("pop-ATLAM5", "pop-CHINng"), ("pop-NYCMng", "pop-WASHng")], end, 4, 300)
    assert np.isnan(got[0]).all() and np.isfinite(got[1:]).all() and (got[1:] >= 0).all()
    assert push(networks, "abilene", "--last", "3", "--shift-to-now", "--network-prefix", "pop-") == 0
    assert "0 new or changed" in capsys.readouterr().out  # pushing again is harmless


def test_hist_with_nodes_and_interval_and_a_csv_long_table(networks, tmp_path, capsys):
    hist = tmp_path / "tm.hist"
    hist.write_text("0 2e6 3e6 0\n0 4e6 5e6 0\n")  # two 2×2 matrices in bit/s
    assert push(networks, str(hist), "--nodes", "ATLAM5,CHINng", "--interval", "15m", "--shift-to-now",
                "--network-prefix", "pop-") == 0
    telemetry = telemetry_of(networks)
    end = (time.time() // 900) * 900
    got = telemetry.rates("acme", [("pop-ATLAM5", "pop-CHINng"), ("pop-CHINng", "pop-ATLAM5")], end, 2, 900)
    np.testing.assert_allclose(got, [[2e6, 3e6], [4e6, 5e6]])
    now = time.time()
    csv = tmp_path / "long.csv"
    csv.write_text("timestamp,source,destination,value\n"
                   f"{np.datetime64(int(now) - 600, 's')},WASHng,NYCMng,1.5\n")
    assert push(networks, str(csv), "--network-prefix", "pop-") == 0
    [sample] = [s for s in telemetry.latest("acme") if s.src == "pop-WASHng"]
    assert sample.rate_bps == 1.5e6


def test_an_unknown_network_names_the_sample_and_stores_nothing(networks, capsys):
    assert push(networks, "abilene", "--last", "2", "--shift-to-now", "--network-prefix", "site-") == 1
    err = capsys.readouterr().err
    assert "samples[0].src" in err and "unknown virtual network 'site-ATLAM5' in tenant 'acme'" in err
    assert telemetry_of(networks).count() == 0


def test_old_data_needs_shift_to_now(networks, capsys):
    assert push(networks, "abilene", "--last", "1", "--network-prefix", "pop-") == 1
    assert "retention" in capsys.readouterr().err


def test_hist_without_nodes_is_refused(networks, tmp_path, capsys):
    hist = tmp_path / "tm.hist"
    hist.write_text("0 1 1 0\n")
    assert push(networks, str(hist)) == 1
    assert "--nodes" in capsys.readouterr().err
