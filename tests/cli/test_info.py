from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from wsdal_wsi.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def good_tiff(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-level JPEG-tiled TIFF at 0.25 µm/px (512 x 384 px)."""
    path = tmp_path_factory.mktemp("info") / "good.tiff"
    rng = np.random.default_rng(0)
    image = rng.integers(100, 230, (384, 512, 3), dtype=np.uint8)
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        for level in range(3):
            tw.write(
                image[:: 2**level, :: 2**level],
                tile=(128, 128),
                photometric="rgb",
                compression="jpeg",
                resolution=(1e4 / (0.25 * 2**level),) * 2,
                resolutionunit="CENTIMETER",
                subfiletype=1 if level else 0,
                metadata=None,
            )
    return path


def _fails_cleanly(args: list[str], *fragments: str) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    assert result.stdout == ""
    return lines[0]


def test_good_synthetic_tiff(good_tiff: Path) -> None:
    result = runner.invoke(app, ["info", str(good_tiff)])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "generic-tiff" in out
    assert "512 x 384 px (level 0), 0.13 x 0.10 mm" in out
    assert "Levels       3" in out
    assert "level 2    128 x 96 px, downsample 4" in out
    assert "0.25 µm/px (slide properties)" in out
    assert "Objective    unknown" in out
    assert "Read with    raw JPEG tiles" in out


def test_json(good_tiff: Path) -> None:
    result = runner.invoke(app, ["info", str(good_tiff), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["dimensions"] == [512, 384]
    assert data["level_count"] == 3
    assert data["mpp"] == pytest.approx(0.25)
    assert data["mpp_source"] == "slide properties"


def test_user_mpp_never_replaces_the_files_own(good_tiff: Path) -> None:
    result = runner.invoke(app, ["info", str(good_tiff), "--mpp", "0.3"])
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())
    assert "0.25 µm/px (slide properties); --mpp 0.3 not used: the slide records its own" in out


def test_cmu1(cmu1_path: Path) -> None:
    result = runner.invoke(app, ["info", str(cmu1_path)])
    assert result.exit_code == 0, result.output
    assert "aperio" in result.stdout
    assert "2220 x 2967 px" in result.stdout
    assert "0.499 µm/px (slide properties)" in result.stdout
    assert "Objective    20x" in result.stdout
    assert "Read with    raw JPEG tiles" in result.stdout  # Aperio JPEG tiles


def test_tcga_without_and_with_mpp(tcga_path: Path) -> None:
    result = runner.invoke(app, ["info", str(tcga_path)])
    assert result.exit_code == 0, result.output
    assert "Resolution   unknown: pass --mpp" in result.stdout
    assert "Read with    OpenSlide" in result.stdout  # JPEG 2000 tiles
    result = runner.invoke(app, ["info", str(tcga_path), "--mpp", "0.5", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["mpp"] == 0.5
    assert data["mpp_source"] == "user (--mpp)"
    assert data["file_mpp"] is None
    assert data["level_count"] == 2


def test_missing_file(tmp_path: Path) -> None:
    _fails_cleanly(["info", str(tmp_path / "missing.svs")], "missing.svs", "no such file")


def test_text_file_named_svs(tmp_path: Path) -> None:
    path = tmp_path / "notes.svs"
    path.write_text("not a slide\n")
    _fails_cleanly(["info", str(path)], f"{path}:", "text file")


def test_truncated_tiff(good_tiff: Path, tmp_path: Path) -> None:
    data = good_tiff.read_bytes()
    path = tmp_path / "cut.tiff"
    path.write_bytes(data[: len(data) * 2 // 3])
    _fails_cleanly(["info", str(path)], f"{path}:", "truncated")


def test_directory(tmp_path: Path) -> None:
    _fails_cleanly(["info", str(tmp_path)], str(tmp_path), "is a directory")


def test_bad_mpp(good_tiff: Path) -> None:
    _fails_cleanly(["info", str(good_tiff), "--mpp", "0"], "--mpp", "got 0")
