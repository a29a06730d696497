from __future__ import annotations

import json
import logging
import os
import pickle
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import openslide
import pytest
from PIL import Image

from wsdal_wsi.errors import ConfigError, InputError, ResolutionError, SlideError
from wsdal_wsi.slide import (
    MPP_FROM_PROPERTIES,
    MPP_FROM_TIFF_TAGS,
    MPP_FROM_USER,
    open_slide,
)
from wsdal_wsi.slide import reader as reader_module

from .conftest import MARKERS, PATTERN_MPP, PATTERN_SIZE, pattern_image, pattern_rgb

# ---------------------------------------------------------------------------- opening


def test_open_reports_pyramid_and_resolution(pattern_slide_path: Path) -> None:
    with open_slide(pattern_slide_path) as slide:
        assert slide.path == pattern_slide_path
        assert slide.name == "pattern"
        assert slide.vendor == "generic-tiff"
        assert slide.dimensions == PATTERN_SIZE
        assert slide.level_count == 3
        assert slide.level_dimensions == ((1024, 768), (512, 384), (256, 192))
        assert slide.level_downsamples == pytest.approx((1.0, 2.0, 4.0))
        assert slide.mpp == pytest.approx(PATTERN_MPP)
        assert slide.mpp_source == MPP_FROM_PROPERTIES
        assert slide.objective_power is None
        assert slide.require_mpp() == pytest.approx(0.5)
        assert slide.level0_per_px(0.25) == pytest.approx(0.5)
        info = slide.info()
    assert json.loads(json.dumps(info)) == info
    assert info["dimensions"] == [1024, 768]
    assert info["level_count"] == 3
    assert info["mpp_source"] == "slide properties"
    assert info["size_mm"] == pytest.approx([0.512, 0.384])


def test_inch_resolution_unit_is_read(jpeg_slide_path: Path) -> None:
    with open_slide(jpeg_slide_path) as slide:
        assert slide.mpp == pytest.approx(0.25)
        assert slide.level_count == 3


def test_resolution_from_tiff_tags_when_the_header_has_none(aperio_tags_slide_path: Path) -> None:
    with open_slide(aperio_tags_slide_path) as slide:
        assert slide.vendor == "aperio"
        assert "openslide.mpp-x" not in slide.properties
        assert slide.mpp == pytest.approx(0.25)
        assert slide.mpp_source == MPP_FROM_TIFF_TAGS
        assert slide.objective_power == 40.0


def test_slide_without_resolution_is_refused_until_given(no_resolution_slide_path: Path) -> None:
    with open_slide(no_resolution_slide_path) as slide:
        assert slide.mpp is None
        assert slide.mpp_source is None
        with pytest.raises(ResolutionError, match=r"nores\.tiff.*--mpp"):
            slide.require_mpp()
        with pytest.raises(ResolutionError, match="--mpp"):
            slide.read_region((0, 0), (8, 8))
        # A thumbnail needs no resolution.
        thumb, scale = slide.read_thumbnail(max_size_px=64)
        assert thumb.shape == (48, 64, 3)
        assert scale == pytest.approx(8.0)
        assert slide.info()["mpp"] is None
    with open_slide(no_resolution_slide_path, mpp=0.5) as slide:
        assert slide.mpp == 0.5
        assert slide.mpp_source == MPP_FROM_USER
        assert slide.read_region((0, 0), (8, 8), target_mpp=0.5).shape == (8, 8, 3)


def test_user_resolution_never_replaces_the_files_and_a_different_one_warns(
    pattern_slide_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING), open_slide(pattern_slide_path, mpp=0.4) as slide:
        assert slide.mpp == pytest.approx(0.5) == slide.file_mpp
        assert slide.mpp_source != MPP_FROM_USER
        assert slide.info()["user_mpp"] == 0.4
    assert "--mpp 0.4 not used: the slide records its own resolution 0.5" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING), open_slide(pattern_slide_path, mpp=0.5) as slide:
        assert slide.mpp == pytest.approx(0.5)
    assert "not used" not in caplog.text  # the same value: nothing to say


@pytest.mark.parametrize("bad", [0, -0.25, float("nan"), "abc"])
def test_bad_user_resolution_is_a_config_error(pattern_slide_path: Path, bad: object) -> None:
    with pytest.raises(ConfigError, match="--mpp"):
        open_slide(pattern_slide_path, mpp=bad)  # type: ignore[arg-type]


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.svs"
    with pytest.raises(SlideError, match=r"nope\.svs: no such file"):
        open_slide(path)


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(SlideError, match="is a directory"):
        open_slide(tmp_path)


def test_text_file_named_svs(text_svs_path: Path) -> None:
    with pytest.raises(SlideError, match=r"notes\.svs: not a slide: this is a text file"):
        open_slide(text_svs_path)


def test_truncated_tiff(truncated_tiff_path: Path) -> None:
    with pytest.raises(SlideError, match=r"truncated\.tiff: not a readable slide: truncated"):
        open_slide(truncated_tiff_path)


def test_empty_and_binary_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.svs"
    empty.write_bytes(b"")
    with pytest.raises(SlideError, match="empty file"):
        open_slide(empty)
    binary = tmp_path / "noise.ndpi"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(SlideError, match="not a whole-slide image format"):
        open_slide(binary)


def test_plain_tiff_that_is_not_a_slide(tmp_path: Path) -> None:
    import tifffile

    path = tmp_path / "strips.tif"
    tifffile.imwrite(path, np.zeros((64, 64, 3), np.uint8), photometric="rgb", rowsperstrip=8)
    try:
        slide = open_slide(path)
    except SlideError as exc:  # OpenSlide refuses untiled TIFFs: say so, with the path
        assert "strips.tif" in str(exc)
    else:  # or opens it as a one-level slide
        slide.close()


def test_errors_are_input_errors_with_exit_code_2(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        open_slide(tmp_path / "missing.tiff")
    assert info.value.exit_code == 2


# ---------------------------------------------------------------------------- reading


def _expected_pattern(x0: float, y0: float, size: tuple[int, int], f: float) -> np.ndarray:
    """The pattern at the centres of the output lattice (level-0 px of a 0.5 µm/px slide)."""
    w, h = size
    x_um = (x0 + (np.arange(w) + 0.5) * f) * PATTERN_MPP
    y_um = (y0 + (np.arange(h) + 0.5) * f) * PATTERN_MPP
    return pattern_rgb(x_um[None, :], y_um[:, None])


def test_native_resolution_read_is_exact(pattern_slide_path: Path) -> None:
    truth = pattern_image(PATTERN_SIZE, PATTERN_MPP)
    with open_slide(pattern_slide_path) as slide:
        region = slide.read_region((100, 37), (200, 120), target_mpp=0.5)
    assert region.shape == (120, 200, 3)
    assert region.dtype == np.uint8
    assert region.flags.c_contiguous and region.flags.writeable
    np.testing.assert_array_equal(region, truth[37:157, 100:300])


def test_upsampled_read_has_the_right_size_and_content(pattern_slide_path: Path) -> None:
    x0, y0, size = 123.3, 77.8, (300, 200)
    with open_slide(pattern_slide_path) as slide:
        region = slide.read_region((x0, y0), size, target_mpp=0.25)
    assert region.shape == (200, 300, 3)
    error = np.abs(region.astype(float) - _expected_pattern(x0, y0, size, 0.5))
    assert error.mean() < 1.5
    assert error.max() < 10
    # A half-pixel shift of the lattice is measurably worse: the origin is honoured.
    shifted = np.abs(region.astype(float) - _expected_pattern(x0 + 0.25, y0, size, 0.5))
    assert shifted.mean() > 2 * error.mean()


@pytest.fixture(scope="module")
def single_level_marker_path(slide_dir: Path) -> Path:
    """The marker image without a pyramid: coarse reads reduce blocks, then resample."""
    from .conftest import marker_image, write_pyramid

    image = marker_image(PATTERN_SIZE, PATTERN_MPP)
    return write_pyramid(slide_dir / "markers1.tiff", image, mpp=PATTERN_MPP, n_levels=1)


@pytest.mark.parametrize(
    ("pyramid", "target_mpp"),
    [
        ("4 levels", 0.7),
        ("4 levels", 1.0),
        ("4 levels", 1.6),
        ("4 levels", 2.0),
        ("4 levels", 3.0),
        ("1 level", 3.0),
        ("1 level", 4.5),
    ],
)
def test_downsampled_reads_put_things_where_they_are(
    marker_slide_path: Path, single_level_marker_path: Path, pyramid: str, target_mpp: float
) -> None:
    """Centroids of the marker squares land at their µm positions at every scale."""
    path = marker_slide_path if pyramid == "4 levels" else single_level_marker_path
    with open_slide(path) as slide:
        f = slide.level0_per_px(target_mpp)
        x0, y0 = 3.7, -5.2  # level-0 px; partly outside the slide (white there)
        w = int(PATTERN_SIZE[0] / f)
        h = int(PATTERN_SIZE[1] / f)
        region = slide.read_region((x0, y0), (w, h), target_mpp=target_mpp).astype(float)
    for x_um, y_um, side_um, rgb in MARKERS:
        colour = np.asarray(rgb, float)
        # Weight of "this marker's colour" per pixel: 1 inside, 0 on white, linear between.
        white = np.full(3, 255.0)
        direction = (colour - white) / np.dot(colour - white, colour - white)
        weight = np.clip(np.tensordot(region - white, direction, axes=1), 0, 1)
        weight[weight < 0.02] = 0
        ys, xs = np.mgrid[0:h, 0:w]
        # Keep only this marker's neighbourhood.
        cx_px = ((x_um + side_um / 2) / PATTERN_MPP - x0) / f
        cy_px = ((y_um + side_um / 2) / PATTERN_MPP - y0) / f
        near = (np.abs(xs + 0.5 - cx_px) < side_um / PATTERN_MPP / f) & (
            np.abs(ys + 0.5 - cy_px) < side_um / PATTERN_MPP / f
        )
        wgt = weight * near
        found_x = (wgt * (xs + 0.5)).sum() / wgt.sum()
        found_y = (wgt * (ys + 0.5)).sum() / wgt.sum()
        assert found_x == pytest.approx(cx_px, abs=0.3)
        assert found_y == pytest.approx(cy_px, abs=0.3)
        area_px = (side_um / PATTERN_MPP / f) ** 2
        assert wgt.sum() == pytest.approx(area_px, rel=0.1)


def test_downsampling_antialiases(slide_dir: Path) -> None:
    """A one-pixel checkerboard read at a quarter of the resolution is flat grey."""
    from .conftest import write_pyramid

    board = ((np.indices((512, 512)).sum(axis=0) % 2) * 255).astype(np.uint8)
    path = write_pyramid(
        slide_dir / "checker.tiff", np.repeat(board[..., None], 3, axis=2), mpp=0.25, n_levels=1
    )
    with open_slide(path) as slide:
        region = slide.read_region((64, 64), (64, 64), target_mpp=1.0)
        assert np.abs(region.astype(float) - 127.5).max() < 6
        # Far below the only level: blocks are averaged first, still flat grey.
        coarse = slide.read_region((100.3, 107.1), (16, 16), target_mpp=3.0)
    assert np.abs(coarse.astype(float) - 127.5).max() < 3


def test_piece_of_a_big_read_equals_a_direct_read(pattern_slide_path: Path) -> None:
    with open_slide(pattern_slide_path) as slide:
        for target_mpp in (0.25, 0.5, 0.8, 1.7, 5.5):  # 5.5: 2.75 x level 2
            f = slide.level0_per_px(target_mpp)
            x0, y0 = 10.3, 20.7
            big = slide.read_region((x0, y0), (300, 200), target_mpp=target_mpp)
            piece = slide.read_region((x0 + 60 * f, y0 + 50 * f), (120, 100), target_mpp=target_mpp)
            diff = np.abs(big[50:150, 60:180].astype(int) - piece.astype(int))
            assert diff.max() <= 2, target_mpp
            assert diff.mean() < 0.1, target_mpp


def test_outside_the_slide_is_white(pattern_slide_path: Path) -> None:
    with open_slide(pattern_slide_path) as slide:
        far = slide.read_region((-5000, 20000), (32, 16), target_mpp=0.25)
        assert far.shape == (16, 32, 3)
        assert (far == 255).all()
        edge = slide.read_region((1000, 750), (40, 40), target_mpp=0.5)
    assert (edge[:, 24:] == 255).all()  # level-0 x >= 1024: outside
    assert (edge[18:, :] == 255).all()  # level-0 y >= 768: outside
    assert (edge[:18, :24] != 255).any(axis=2).all()  # inside: the pattern, never white


def test_thumbnail(pattern_slide_path: Path) -> None:
    with open_slide(pattern_slide_path) as slide:
        thumb, scale = slide.read_thumbnail(max_size_px=128)
        big, big_scale = slide.read_thumbnail(max_size_px=4096)
        with pytest.raises(ConfigError, match="max_size_px"):
            slide.read_thumbnail(max_size_px=0)
    assert thumb.shape == (96, 128, 3)
    assert scale == pytest.approx(8.0)
    assert big.shape == (768, 1024, 3) and big_scale == 1.0  # never upsampled
    expected = _expected_pattern(0, 0, (128, 96), 8.0)
    # Box-averaged pyramid + antialiasing smooth the finest stripes: compare loosely.
    assert np.corrcoef(thumb.astype(float).ravel(), expected.ravel())[0, 1] > 0.8


@pytest.mark.parametrize(
    ("location", "size", "match"),
    [
        ((0, 0), (0, 10), "at least"),
        ((0, 0), (10.5, 10), "whole pixels"),
        ((float("nan"), 0), (10, 10), "finite"),
        ("here", (10, 10), "level-0"),
        ((0, 0), 10, "pair"),
    ],
)
def test_bad_read_arguments(
    pattern_slide_path: Path, location: object, size: object, match: str
) -> None:
    with open_slide(pattern_slide_path) as slide, pytest.raises(ConfigError, match=match):
        slide.read_region(location, size)  # type: ignore[arg-type]


def test_bad_target_mpp(pattern_slide_path: Path) -> None:
    with open_slide(pattern_slide_path) as slide, pytest.raises(ConfigError, match="target_mpp"):
        slide.read_region((0, 0), (4, 4), target_mpp=-1)


def test_big_reads_are_chunked_on_the_same_lattice(
    pattern_slide_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open_slide(pattern_slide_path) as slide:
        whole = slide.read_region((5.5, 3.25), (400, 300), target_mpp=0.3)
        monkeypatch.setattr(reader_module, "_MAX_READ_PX", 96 * 96)
        chunked = slide.read_region((5.5, 3.25), (400, 300), target_mpp=0.3)
    # Pillow's fixed-point filter weights differ in the last bit between the two.
    diff = np.abs(whole.astype(int) - chunked.astype(int))
    assert diff.max() <= 2
    assert (diff > 1).mean() < 0.005


def test_reads_are_thread_safe(jpeg_slide_path: Path) -> None:
    rng = np.random.default_rng(0)
    requests = [
        ((float(x), float(y)), mpp)
        for x, y, mpp in zip(
            rng.uniform(-50, 900, 24),
            rng.uniform(-50, 900, 24),
            rng.choice([0.25, 0.4, 1.0], 24),
            strict=True,
        )
    ]
    with open_slide(jpeg_slide_path) as slide:
        serial = [slide.read_region(loc, (96, 64), target_mpp=mpp) for loc, mpp in requests]
        with ThreadPoolExecutor(4) as pool:
            parallel = list(
                pool.map(lambda r: slide.read_region(r[0], (96, 64), target_mpp=r[1]), requests)
            )
    for a, b in zip(serial, parallel, strict=True):
        np.testing.assert_array_equal(a, b)


def test_close_waits_and_later_reads_fail(pattern_slide_path: Path) -> None:
    slide = open_slide(pattern_slide_path)
    started = threading.Event()

    def reader() -> None:
        started.set()
        for _ in range(5):
            slide.read_region((0, 0), (64, 64), target_mpp=0.3)

    thread = threading.Thread(target=reader)
    thread.start()
    started.wait()
    thread.join()
    slide.close()
    slide.close()  # idempotent
    assert slide.closed
    with pytest.raises(SlideError, match="closed"):
        slide.read_region((0, 0), (4, 4))


def test_slide_pickles_by_path(no_resolution_slide_path: Path) -> None:
    with open_slide(no_resolution_slide_path, mpp=0.5) as slide:
        clone = pickle.loads(pickle.dumps(slide))
        try:
            assert clone.path == slide.path
            assert clone.mpp == 0.5 and clone.mpp_source == MPP_FROM_USER
            np.testing.assert_array_equal(
                clone.read_region((3, 4), (20, 10)), slide.read_region((3, 4), (20, 10))
            )
        finally:
            clone.close()
    assert "nores.tiff" in repr(slide)


def test_damaged_tile_data_becomes_a_slide_error(pattern_slide_path: Path, tmp_path: Path) -> None:
    """Garbage inside the tile data (file size intact) fails at read time, with the path."""
    import tifffile

    data = bytearray(pattern_slide_path.read_bytes())
    with tifffile.TiffFile(pattern_slide_path) as tif:
        page = tif.pages[0]
        offset, count = page.dataoffsets[0], page.databytecounts[0]
    data[offset : offset + count] = os.urandom(count)
    path = tmp_path / "damaged.tiff"
    path.write_bytes(bytes(data))
    try:
        slide = open_slide(path)
    except SlideError as exc:  # OpenSlide may notice at open time already
        assert "damaged.tiff" in str(exc)
        return
    with slide, pytest.raises(SlideError, match=r"damaged\.tiff: cannot read level 0"):
        slide.read_region((0, 0), (64, 64), target_mpp=0.5)


# ---------------------------------------------------------------------------- real slides


def test_cmu1_resolution_and_metadata(cmu1_path: Path) -> None:
    with open_slide(cmu1_path) as slide:
        assert slide.vendor == "aperio"
        assert slide.dimensions == (2220, 2967)
        assert slide.level_count == 1
        assert slide.mpp == pytest.approx(0.499)
        assert slide.mpp_source == MPP_FROM_PROPERTIES
        assert slide.objective_power == 20.0
        assert "thumbnail" in slide.info()["associated_images"]


def test_cmu1_at_quarter_micron_has_the_right_size_and_content(cmu1_path: Path) -> None:
    x0, y0, size = 800.0, 1200.0, (512, 384)
    with open_slide(cmu1_path) as slide:
        f = slide.level0_per_px(0.25)
        region = slide.read_region((x0, y0), size, target_mpp=0.25)
        shifted = slide.read_region((x0 + 2 * f, y0), size, target_mpp=0.25)
    assert f == pytest.approx(0.25 / 0.499)
    assert region.shape == (384, 512, 3)
    # Reference: OpenSlide's own level-0 pixels of the same area, resized by Pillow.
    reference_slide = openslide.OpenSlide(str(cmu1_path))
    try:
        w0, h0 = int(size[0] * f) + 2, int(size[1] * f) + 2
        raw = reference_slide.read_region((int(x0), int(y0)), 0, (w0, h0)).convert("RGB")
    finally:
        reference_slide.close()
    box = (0.0, 0.0, size[0] * f, size[1] * f)
    reference = np.asarray(raw.resize(size, Image.Resampling.LANCZOS, box=box), dtype=float)
    error = np.abs(region.astype(float) - reference)[4:-4, 4:-4].mean()
    error_shifted = np.abs(shifted.astype(float) - reference)[4:-4, 4:-4].mean()
    assert error < 3
    assert error < 0.5 * error_shifted  # a 2-px misalignment would be visible
    assert region.std() > 20  # real tissue, not blank


def test_tcga_refused_without_mpp_and_readable_with_it(tcga_path: Path) -> None:
    with open_slide(tcga_path) as slide:
        assert slide.mpp is None
        assert slide.level_count == 2
        with pytest.raises(ResolutionError, match=r"tcga-cr-7395-01a-01-ts1\.svs.*--mpp"):
            slide.read_region((0, 0), (16, 16))
    with open_slide(tcga_path, mpp=0.5) as slide:
        assert slide.mpp_source == MPP_FROM_USER
        region = slide.read_region((2000.0, 1500.0), (256, 256), target_mpp=0.25)
        coarse = slide.read_region((2000.0, 1500.0), (64, 64), target_mpp=1.0)
    assert region.shape == (256, 256, 3)
    assert coarse.shape == (64, 64, 3)
    assert region.std() > 10 and coarse.std() > 10


def test_tcga_piece_of_a_big_read_is_nearly_a_direct_read(tcga_path: Path) -> None:
    """Level 1 of this slide has a non-integer downsample (2.0005): still nearly identical."""
    with open_slide(tcga_path, mpp=0.5) as slide:
        f = slide.level0_per_px(1.2)
        big = slide.read_region((1500.0, 1000.0), (300, 200), target_mpp=1.2)
        piece = slide.read_region((1500.0 + 70 * f, 1000.0 + 40 * f), (100, 80), target_mpp=1.2)
    diff = np.abs(big[40:120, 70:170].astype(float) - piece.astype(float))
    assert diff.mean() < 2.0
