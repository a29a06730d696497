"""``wsdal count`` through the CLI, on an output folder made with the report functions."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from wsdal_wsi.cli import app
from wsdal_wsi.report import read_summary, slide_files

runner = CliRunner()


def _builder():
    path = Path(__file__).resolve().parents[1] / "report" / "conftest.py"
    spec = importlib.util.spec_from_file_location("_wsdal_report_outdir", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module.build_out_dir


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return _builder()(tmp_path_factory.mktemp("count") / "OUT")


@pytest.fixture
def out(template, tmp_path):
    import shutil

    return Path(shutil.copytree(template, tmp_path / "OUT"))


def test_count_recounts_and_prints_a_table(out):
    result = runner.invoke(app, ["count", str(out), "--window", "rect", "--area-mm2", "0.3"])
    assert result.exit_code == 0, result.output
    assert "alpha" in result.stdout and "gamma" in result.stdout and "failed" in result.stdout
    assert "counts.xlsx" in result.stdout
    s = read_summary(slide_files(out, "alpha").summary)
    assert s.hotspot.window == "rect" and s.hotspot.area_mm2 == 0.3


def test_hpf_mode_and_json(out):
    result = runner.invoke(app, ["count", str(out), "--hpf-diameter-mm", "0.44", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [d["key"] for d in data] == ["alpha", "beta", "gamma"]
    assert data[2]["status"] == "failed" and data[2]["score"] is None
    s = read_summary(slide_files(out, "beta").summary)
    assert s.hotspot.score.mode == "hpf" and s.hotspot.field_diameter_mm == 0.44


@pytest.mark.parametrize(
    "args, message",
    [
        (["--hpf-diameter-mm", "0.45"], "0.45 mm; supported field diameters"),
        (["--window", "square"], "window must be one of circle, rect, got 'square'"),
        (["--min-tissue-fraction", "2"], "tissue fraction must be in [0, 1], got 2.0"),
        (["--threshold", "0.1"], "--threshold 0.1 is below 0.6"),
    ],
)
def test_bad_options_exit_2_with_a_message(out, args, message):
    result = runner.invoke(app, ["count", str(out), *args])
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_not_a_prediction_output_exits_2(tmp_path):
    result = runner.invoke(app, ["count", str(tmp_path)])
    assert result.exit_code == 2
    assert "not a wsdal prediction output folder" in result.stderr
    result = runner.invoke(app, ["count", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "not a folder" in result.stderr


def test_a_slide_that_cannot_be_recounted_exits_1(out):
    slide_files(out, "alpha").tissue.write_bytes(b"garbage")
    result = runner.invoke(app, ["count", str(out)])
    assert result.exit_code == 1
    assert "1 slide(s) could not be recounted: alpha" in result.stderr
    assert read_summary(slide_files(out, "beta").summary).hotspot is not None
