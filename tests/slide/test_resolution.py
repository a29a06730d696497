from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import tifffile

from wsdal_wsi.slide.resolution import is_tiff_file, mpp_from_properties, mpp_from_tiff_tags


def test_properties_give_the_resolution() -> None:
    assert mpp_from_properties({"openslide.mpp-x": "0.2527", "openslide.mpp-y": "0.2527"}) == (
        pytest.approx(0.2527)
    )
    assert mpp_from_properties({"openslide.mpp-x": "0.5"}) == 0.5
    assert mpp_from_properties({}) is None
    assert mpp_from_properties({"openslide.mpp-x": "0", "openslide.mpp-y": "nan"}) is None


def test_non_square_pixels_use_the_mean_and_warn(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        mpp = mpp_from_properties({"openslide.mpp-x": "0.24", "openslide.mpp-y": "0.26"}, where="s")
    assert mpp == pytest.approx(0.25)
    assert "not square" in caplog.text


def test_implausible_values_are_ignored(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert mpp_from_properties({"openslide.mpp-x": "352.8", "openslide.mpp-y": "352.8"}) is None
    assert "not a microscope resolution" in caplog.text


def _tiff(path: Path, **options: object) -> Path:
    tifffile.imwrite(path, np.zeros((32, 32, 3), np.uint8), photometric="rgb", **options)
    return path


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"resolution": (40_000, 40_000), "resolutionunit": "CENTIMETER"}, 0.25),
        ({"resolution": (50_800, 50_800), "resolutionunit": "INCH"}, 0.5),
        ({"resolution": (2, 2), "resolutionunit": "NONE"}, None),
        ({"resolution": (72, 72), "resolutionunit": "INCH"}, None),  # an editor's default
        ({}, None),
    ],
)
def test_tiff_tags(tmp_path: Path, options: dict, expected: float | None) -> None:
    path = _tiff(tmp_path / "image.tif", **options)
    assert is_tiff_file(path)
    result = mpp_from_tiff_tags(path)
    if expected is None:
        assert result is None
    else:
        assert result == pytest.approx(expected)


def test_non_tiff_files_have_no_tags(tmp_path: Path) -> None:
    path = tmp_path / "x.svs"
    path.write_text("hello")
    assert not is_tiff_file(path)
    assert mpp_from_tiff_tags(path) is None
    assert not is_tiff_file(tmp_path / "missing.tif")


def test_real_slide_with_unit_but_no_resolution_tags(tcga_path: Path) -> None:
    assert is_tiff_file(tcga_path)
    assert mpp_from_tiff_tags(tcga_path) is None
