"""``wsdal report``: the batch files rebuilt from the slide summaries, nothing recounted."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from wsdal_wsi.cli import app

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
    return _builder()(tmp_path_factory.mktemp("report") / "OUT")


def test_report_rebuilds_the_batch_files_from_the_summaries(template, tmp_path):
    out = Path(shutil.copytree(template, tmp_path / "OUT"))
    summaries = {p: p.read_bytes() for p in out.glob("*.summary.json")}
    for name in ("counts.csv", "counts.xlsx", "index.html"):
        (out / name).unlink(missing_ok=True)
    result = runner.invoke(app, ["report", str(out)])
    assert result.exit_code == 0, result.output
    assert f"{len(summaries)} slide(s)" in result.stdout
    csv = (out / "counts.csv").read_text(encoding="utf-8-sig")
    for path in summaries:
        assert path.name.removesuffix(".summary.json") in csv
    assert (out / "counts.xlsx").is_file() and (out / "index.html").is_file()
    assert {p: p.read_bytes() for p in out.glob("*.summary.json")} == summaries  # untouched


def test_an_unreadable_summary_is_named_and_exits_1(template, tmp_path):
    out = Path(shutil.copytree(template, tmp_path / "OUT"))
    (out / "damaged.summary.json").write_text("{not json")
    result = runner.invoke(app, ["report", str(out)])
    assert result.exit_code == 1
    assert "damaged.summary.json" in result.stderr
    assert (out / "counts.csv").is_file()


def test_not_a_prediction_output_exits_2(tmp_path):
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "not a wsdal prediction output folder" in result.stderr
