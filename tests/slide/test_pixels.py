from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import openslide
import pytest

from wsdal_wsi.slide._pixels import _argb_to_rgb, _rgba_to_rgb, read_level_rgb, resample_rgb


def _argb(r: int, g: int, b: int, a: int) -> int:
    """A premultiplied ARGB word as OpenSlide writes it."""
    return (a << 24) | (r << 16) | (g << 8) | b


@pytest.mark.skipif(sys.byteorder != "little", reason="test words are built little-endian")
def test_argb_words_become_rgb_on_white() -> None:
    words = np.array(
        [[_argb(10, 20, 30, 255), _argb(0, 0, 0, 0)], [_argb(50, 25, 0, 128), _argb(1, 2, 3, 255)]],
        dtype=np.uint32,
    )
    rgb = _argb_to_rgb(words)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[0, 0], [10, 20, 30])
    np.testing.assert_array_equal(rgb[0, 1], [255, 255, 255])  # transparent -> white
    np.testing.assert_array_equal(rgb[1, 0], [50 + 127, 25 + 127, 127])  # half over white
    np.testing.assert_array_equal(rgb[1, 1], [1, 2, 3])


def test_straight_rgba_becomes_rgb_on_white() -> None:
    rgba = np.array([[[10, 20, 30, 255], [0, 0, 0, 0], [100, 50, 0, 128]]], np.uint8)
    rgb = _rgba_to_rgb(rgba)
    np.testing.assert_array_equal(rgb[0, 0], [10, 20, 30])
    np.testing.assert_array_equal(rgb[0, 1], [255, 255, 255])
    np.testing.assert_array_equal(rgb[0, 2], [177, 152, 127])


def test_low_level_and_public_reads_agree(pattern_slide_path: Path) -> None:
    slide = openslide.OpenSlide(str(pattern_slide_path))
    try:
        for level, x, y in [(0, 1000, 700), (1, -64, 30), (2, 3, 5)]:
            fast = read_level_rgb(slide, level, x, y, 80, 90)
            public = read_level_rgb(slide, level, x, y, 80, 90, use_c=False)
            assert fast.flags.c_contiguous and fast.flags.writeable
            np.testing.assert_array_equal(fast, public)
        assert (read_level_rgb(slide, 0, 1000, 700, 80, 90)[:, 30:] == 255).all()
    finally:
        slide.close()


def test_resample_with_a_box_is_a_subpixel_shift() -> None:
    ramp = np.tile(np.arange(0, 200, 2, dtype=np.uint8)[None, :, None], (10, 1, 3))
    shifted = resample_rgb(ramp, (20, 4), (10.5, 3.0, 30.5, 7.0))
    # Pixel i of the output is centred on source position 10.5 + i + 0.5 -> value 2 * (10.5 + i).
    np.testing.assert_allclose(shifted[0, :, 0], 2 * (10.5 + np.arange(20)), atol=1)
    assert shifted.flags.writeable and shifted.shape == (4, 20, 3)
