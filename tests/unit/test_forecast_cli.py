"""`forecast eval|train|predict` end to end with the fast models."""

from __future__ import annotations

import argparse
import json

from vnstitch.cli import forecast_cmd

KEYS = {"model", "horizon", "nmae", "rmse", "coverage80", "coverage90", "width90", "fit_seconds", "predict_seconds"}


def test_register_adds_the_forecast_group():
    parser = argparse.ArgumentParser()
    forecast_cmd.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["forecast", "eval", "--horizon", "1,12"])
    assert args.func is forecast_cmd.cmd_eval and args.horizon == "1,12"


def test_eval_writes_table_json_and_png(tmp_path, capsys):
    out_json, out_png = tmp_path / "r.json", tmp_path / "r.png"
    code = forecast_cmd.main(["eval", "--dataset", "abilene", "--horizon", "1,12", "--models", "last_value",
                              "--json", str(out_json), "--plot", str(out_png), "--quiet"])
    assert code == 0
    rows = json.loads(out_json.read_text())["results"]
    assert [(r["model"], r["horizon"]) for r in rows] == [("last_value", 1), ("last_value", 12)]
    assert all(set(r) == KEYS for r in rows)
    assert abs(rows[0]["nmae"] - 0.1147) < 0.002 and abs(rows[1]["nmae"] - 0.2028) < 0.002
    assert 0.85 <= rows[0]["coverage90"] <= 0.95
    assert out_png.read_bytes()[:4] == b"\x89PNG"
    assert "NMAE" in capsys.readouterr().out


def test_unknown_model_fails_listing_valid_ones(capsys):
    assert forecast_cmd.main(["eval", "--models", "prophet", "--quiet"]) == 2
    assert "valid: " in capsys.readouterr().err


def test_train_then_predict(tmp_path, capsys):
    model = tmp_path / "lv.npz"
    assert forecast_cmd.main(["train", "--model", "last_value", "--out", str(model)]) == 0
    out_csv = tmp_path / "fc.csv"
    assert forecast_cmd.main(["predict", "--model-file", str(model), "--horizon", "3", "--out", str(out_csv),
                              "--origin", "3000"]) == 0
    assert len(out_csv.read_text().splitlines()) == 1 + 144 * 3
    capsys.readouterr()
    assert forecast_cmd.main(["predict", "--model-file", str(model), "--pairs", "CHINng->LOSAng",
                              "--destinations"]) == 0
    printed = capsys.readouterr().out
    assert "CHINng" in printed and "LOSAng" in printed
    assert forecast_cmd.main(["predict", "--model-file", str(model), "--pairs", "X->Y"]) == 2
