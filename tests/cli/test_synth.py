from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from wsdal_wsi.cli import app

runner = CliRunner()


def test_synth_writes_a_dataset_folder(tmp_path):
    out = tmp_path / "synth"
    result = runner.invoke(
        app,
        [
            "synth",
            str(out),
            "--slides",
            "2",
            "--size",
            "1024x768",
            "--seed",
            "3",
            "--workers",
            "1",
            "--mitoses-per-mm2",
            "120",
            "--lookalikes-per-mm2",
            "120",
            "--missed-fraction",
            "0.2",
            "--negative-click-fraction",
            "0.5",
            "--regions",
            "1",
            "--region-area-mm2",
            "0.02",
            "--stain-variation",
            "0.5",
            "--blur-um",
            "0.2",
            "--jpeg-quality",
            "85",
        ],
    )
    assert result.exit_code == 0, result.output
    names = ["synth_000", "synth_001"]
    for name in names:
        assert (out / f"{name}.tiff").is_file() and (out / f"{name}.geojson").is_file()
        assert (out / "truth" / f"{name}.geojson").is_file()
        assert (out / "truth" / f"{name}.noise.json").is_file()
    manifest = json.loads((out / "synth.json").read_text())
    assert [s["name"] for s in manifest["slides"]] == names
    assert manifest["seed"] == 3 and manifest["params"]["width_px"] == 1024
    assert manifest["params"]["jpeg_quality"] == 85 and manifest["noise"]["regions"] == 1
    assert manifest["noise"]["missed_fraction"] == 0.2
    assert "synth_000.tiff" in result.stdout and "synth.json" in result.stdout


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--size", "10x"], "'10x'"),
        (["--size", "100x100"], "'100x100'"),
        (["--missed-fraction", "1.5"], "1.5"),
        (["--tumour-fraction", "0"], "tumour_fraction"),
        (["--negative-class", "a:b"], "'a:b'"),
    ],
)
def test_bad_values_exit_2_with_the_value(tmp_path, args, fragment):
    result = runner.invoke(app, ["synth", str(tmp_path / "o"), "--workers", "1", *args])
    assert result.exit_code == 2, result.output
    assert fragment in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "o" / "synth.json").exists()


def test_help_documents_every_option_with_its_unit():
    result = runner.invoke(app, ["synth", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    text = result.stdout
    for option in (
        "--slides",
        "--size",
        "--seed",
        "--mpp",
        "--mitoses-per-mm2",
        "--lookalikes-per-mm2",
        "--tumour-fraction",
        "--stain-variation",
        "--blur-um",
        "--missed-fraction",
        "--false-click-fraction",
        "--click-offset-um",
        "--negative-click-fraction",
        "--regions",
        "--workers",
    ):
        assert option in text
    for unit in ("µm/px", "mm²", "µm", "pixels"):
        assert unit in text
