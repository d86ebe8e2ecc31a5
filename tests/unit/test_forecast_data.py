"""Loaders and input validation for forecasting data."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

from vnstitch.forecast import (ForecastInputError, TrafficSeries, UnknownPairError, load_bundled_abilene, load_cfr_rl,
                               load_hist, load_long_table, load_sndlib_xml)
from vnstitch.forecast.datasets import ABILENE_NODES, load_dataset


def test_bundled_abilene_matches_the_published_numbers():
    series = load_bundled_abilene()
    assert (series.n_steps, series.n_pairs, series.interval_seconds) == (4032, 144, 300.0)
    assert str(series.timestamps[0]) == "2004-03-01T00:00:00" and str(series.timestamps[-1]) == "2004-03-14T23:55:00"
    row = series.values_mbps[0, :12]
    np.testing.assert_allclose(row[1:4], [0.5222, 1.6413, 0.3357], atol=1e-4)
    chin_losa = series.pair_index(("CHINng", "LOSAng"))
    np.testing.assert_allclose(series.values_mbps[:5, chin_losa], [27.776, 27.465, 25.030, 24.987, 25.317], atol=1e-3)
    assert series.observed.all()


def test_from_array_rejects_nan_negative_and_bad_shape():
    good = np.ones((10, 4))
    with pytest.raises(ForecastInputError, match="NaN.*step 3"):
        TrafficSeries.from_array(np.where(np.arange(10)[:, None] == 3, np.nan, good))
    with pytest.raises(ForecastInputError, match="negative"):
        TrafficSeries.from_array(-good)
    with pytest.raises(ForecastInputError, match="shape"):
        TrafficSeries.from_array(np.ones(10))
    with pytest.raises(ForecastInputError, match="pair names"):
        TrafficSeries.from_array(good, pairs=[("a", "b")])
    with pytest.raises(ForecastInputError, match="increase"):
        TrafficSeries.from_array(good, timestamps=np.array(["2024-01-01T00:00"] * 10, dtype="datetime64[s]"))


def test_nan_is_allowed_where_marked_unobserved():
    values = np.ones((6, 2))
    values[2, 1] = np.nan
    observed = np.isfinite(values)
    series = TrafficSeries.from_array(values, observed=observed)
    assert not series.observed[2, 1] and series.values_mbps[2, 1] == 0.0


def test_irregular_timestamps_become_gaps_on_the_grid():
    stamps = np.array(["2024-01-01T00:00", "2024-01-01T00:05", "2024-01-01T00:20"], dtype="datetime64[s]")
    series = TrafficSeries.from_array(np.ones((3, 1)), stamps)
    assert series.n_steps == 5 and series.observed[:, 0].tolist() == [True, True, False, False, True]


def test_long_csv_with_gaps_and_different_lengths(tmp_path):
    rows = [("2024-01-01 00:00", "a", "b", 10.0), ("2024-01-01 00:05", "a", "b", 11.0),
            ("2024-01-01 00:10", "a", "b", 12.0), ("2024-01-01 00:05", "b", "a", 3.0),
            ("2024-01-01 00:10", "b", "a", 4.0)]
    path = tmp_path / "tm.csv"
    pd.DataFrame(rows, columns=["timestamp", "source", "destination", "value"]).to_csv(path, index=False)
    series = load_long_table(path)
    assert series.pairs == (("a", "b"), ("b", "a"))
    assert series.observed.tolist() == [[True, False], [True, True], [True, True]]
    assert series.values_mbps[2].tolist() == [12.0, 4.0]
    with pytest.raises(UnknownPairError, match="x->y"):
        series.pair_index("x->y")
    dup = pd.DataFrame(rows + [rows[0]], columns=["timestamp", "source", "destination", "value"])
    dup.to_csv(path, index=False)
    with pytest.raises(ForecastInputError, match="2 rows"):
        load_long_table(path)
    neg = pd.DataFrame([(*rows[0][:3], -1.0)], columns=["timestamp", "source", "destination", "value"])
    neg.to_csv(path, index=False)
    with pytest.raises(ForecastInputError, match="negative"):
        load_long_table(path)


def test_cfr_rl_text_is_converted_to_mbps(tmp_path):
    path = tmp_path / "AbileneTM.gz"
    raw = np.arange(3 * 144, dtype=float).reshape(3, 144)
    with gzip.open(path, "wt") as fh:
        fh.writelines(" ".join(f"{v:g}" for v in row) + "\n" for row in raw)
    series = load_cfr_rl(path)
    np.testing.assert_allclose(series.values_mbps, raw * 8 / 3e6)
    assert series.pairs[13] == (ABILENE_NODES[1], ABILENE_NODES[1])
    with gzip.open(path, "wt") as fh:
        fh.write("1 2 3\n")
    with pytest.raises(ForecastInputError, match="3 numbers, expected 12"):
        load_cfr_rl(path)


def test_hist_in_bits_per_second(tmp_path):
    path = tmp_path / "geant.hist"
    path.write_text("0 2e6 3e6 0\n0 4e6 5e6 0\n")
    series = load_hist(path, nodes=["x", "y"], interval_seconds=900)
    assert series.interval_seconds == 900 and series.pairs[1] == ("x", "y")
    np.testing.assert_allclose(series.values_mbps[1], [0, 4, 5, 0])


SNDLIB = """<?xml version="1.0"?>
<network xmlns="http://sndlib.zib.de/network" version="1.0">
 <meta><granularity>5min</granularity><time>{time}</time><unit>MBITPERSEC</unit></meta>
 <networkStructure><nodes coordinatesType="geographical">
  <node id="A"><coordinates><x>0</x><y>0</y></coordinates></node>
  <node id="B"><coordinates><x>1</x><y>1</y></coordinates></node>
 </nodes></networkStructure>
 <demands>
  <demand id="A_B"><source>A</source><target>B</target><demandValue> {ab} </demandValue></demand>
  <demand id="B_A"><source>B</source><target>{dst}</target><demandValue> 1.5 </demandValue></demand>
 </demands>
</network>
"""


def test_sndlib_xml_folder(tmp_path):
    for time, ab in (("20040301-0005", 2.0), ("20040301-0000", 1.0), ("20040301-0015", 4.0)):
        (tmp_path / f"d-{time}.xml").write_text(SNDLIB.format(time=time, ab=ab, dst="A"))
    series = load_sndlib_xml(tmp_path)
    assert series.pairs == (("A", "A"), ("A", "B"), ("B", "A"), ("B", "B"))
    assert series.values_mbps[:, 1].tolist() == [1.0, 2.0, 0.0, 4.0]
    assert series.observed[:, 1].tolist() == [True, True, False, True]
    (tmp_path / "d-bad.xml").write_text(SNDLIB.format(time="20040301-0020", ab=1, dst="Z"))
    with pytest.raises(ForecastInputError, match="B->Z"):
        load_sndlib_xml(tmp_path)


def test_load_dataset_names():
    assert load_dataset("abilene").n_pairs == 144
    with pytest.raises(ForecastInputError, match="data-dir"):
        load_dataset("abilene-full")
    with pytest.raises(ForecastInputError, match="format"):
        load_dataset("traffic.weird")
