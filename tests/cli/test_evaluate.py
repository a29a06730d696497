"""Tests of ``wsdal evaluate`` through Typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from wsdal_wsi.cli import app
from wsdal_wsi.qupath import points_feature, write_features, write_results_geojson

runner = CliRunner()


def make_folders(tmp_path: Path, *, mpp: float | None = 0.25) -> tuple[Path, Path]:
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    pred.mkdir()
    truth.mkdir()
    prov = None if mpp is None else {"slide": {"mpp": mpp}}
    # slide1: 2 TP, 1 FP; slide2: 0 TP, 1 FP, 1 FN; slide3: truth only.
    write_results_geojson(
        pred / "slide1.geojson",
        detections=np.array([[100, 100, 0.9], [400, 410, 0.8], [900, 900, 0.7]]),
        provenance=prov,
    )
    write_features(truth / "slide1.geojson", [points_feature([[100, 104], [400, 400]], "Mitosis")])
    write_results_geojson(
        pred / "slide2.geojson", detections=np.array([[0, 0, 0.9]]), provenance=prov
    )
    write_features(truth / "slide2.geojson", [points_feature([[500, 500]], "Mitosis")])
    write_features(truth / "slide3.geojson", [points_feature([[5, 5]], "Mitosis")])
    return pred, truth


def test_table(tmp_path):
    pred, truth = make_folders(tmp_path)
    result = runner.invoke(app, ["evaluate", str(pred), str(truth)], terminal_width=160)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "within 7.5 µm" in out
    lines = {line.split("│")[1].strip(): line for line in out.splitlines() if "│" in line}
    row = [c.strip() for c in lines["slide1"].split("│")[1:-1]]
    assert row[:9] == ["slide1", "2", "3", "2", "1", "0", "0.667", "1.000", "0.800"]
    row = [c.strip() for c in lines["slide2"].split("│")[1:-1]]
    assert row[3:9] == ["0", "1", "1", "0.000", "0.000", "0.000"]
    # slide3 has truth and no prediction: its mitosis is a false negative, as MIDOG counts it
    row = [c.strip() for c in lines["slide3 *"].split("│")[1:-1]]
    assert row[1:6] == ["1", "0", "0", "0", "1"] and row[9] == "-"
    total = [c.strip() for c in lines["total"].split("│")[1:-1]]
    assert total[3:9] == ["2", "2", "2", "0.500", "0.500", "0.500"]
    assert "1 on one side only, counted as MIDOG does: * no predictions" in " ".join(out.split())
    assert "no predictions for" in result.stderr and "slide3.geojson" in result.stderr
    assert "its mitoses (1) count as false negatives" in result.stderr
    # --paired-only: slide3 is left out, and the note says so
    paired = runner.invoke(app, ["evaluate", str(pred), str(truth), "--paired-only"])
    assert "not counted (--paired-only)" in paired.stderr
    lines = {ln.split("│")[1].strip(): ln for ln in paired.stdout.splitlines() if "│" in ln}
    total = [c.strip() for c in lines["total"].split("│")[1:-1]]
    assert total[3:9] == ["2", "2", "1", "0.500", "0.667", "0.571"]


def test_json(tmp_path):
    pred, truth = make_folders(tmp_path)
    result = runner.invoke(app, ["evaluate", str(pred), str(truth), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["tp"], data["fp"], data["fn"]) == (2, 2, 2)
    assert data["precision"] == pytest.approx(0.5)
    assert data["recall"] == pytest.approx(0.5)
    assert data["f1"] == pytest.approx(0.5)
    assert [i["image"] for i in data["images"]] == ["slide1", "slide2", "slide3"]
    assert data["images"][0]["mpp"] == 0.25
    assert data["truth_only"][0].endswith("slide3.geojson")


def test_radius_and_mpp_options(tmp_path):
    pred, truth = make_folders(tmp_path)
    # 2.4 µm at 0.25 µm/px = 9.6 px: slide1's 10 px match is lost.
    result = runner.invoke(app, ["evaluate", str(pred), str(truth), "--radius-um", "2.4", "--json"])
    assert json.loads(result.stdout)["tp"] == 1
    # --mpp 0.1: 7.5 µm = 75 px.
    result = runner.invoke(app, ["evaluate", str(pred), str(truth), "--mpp", "0.1", "--json"])
    data = json.loads(result.stdout)
    assert data["images"][0]["radius_px"] == pytest.approx(75.0)
    assert data["images"][0]["mpp_source"] == "--mpp"


def test_class_option(tmp_path):
    pred, truth = make_folders(tmp_path)
    result = runner.invoke(app, ["evaluate", str(pred), str(truth), "--class", "Tumor", "--json"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert (data["tp"], data["fp"], data["fn"]) == (0, 0, 0)


def test_missing_folder_exits_2(tmp_path):
    result = runner.invoke(app, ["evaluate", str(tmp_path / "nope"), str(tmp_path)])
    assert result.exit_code == 2
    assert "nope does not exist" in result.stderr
    assert "Traceback" not in result.output


def test_no_pairs_exits_2(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    result = runner.invoke(app, ["evaluate", str(tmp_path / "a"), str(tmp_path / "b")])
    assert result.exit_code == 2
    assert "no image has a GeoJSON file in both" in result.stderr


def test_malformed_file_exits_2(tmp_path):
    pred, truth = make_folders(tmp_path)
    (pred / "slide2.geojson").write_text("not json", "utf-8")
    result = runner.invoke(app, ["evaluate", str(pred), str(truth)])
    assert result.exit_code == 2
    assert "slide2.geojson" in result.stderr and "not valid JSON" in result.stderr


def test_unknown_resolution_exits_2(tmp_path):
    pred, truth = make_folders(tmp_path, mpp=None)
    result = runner.invoke(app, ["evaluate", str(pred), str(truth)])
    assert result.exit_code == 2
    assert "slide1.geojson" in result.stderr and "--mpp" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--radius-um", "0"], "--radius-um must be a positive"), (["--mpp", "-1"], "--mpp must")],
)
def test_bad_options_exit_2(tmp_path, args, message):
    pred, truth = make_folders(tmp_path)
    result = runner.invoke(app, ["evaluate", str(pred), str(truth), *args])
    assert result.exit_code == 2
    assert message in result.stderr
