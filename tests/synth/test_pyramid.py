from __future__ import annotations

import math

import numpy as np
import openslide
import pytest
import tifffile
from scipy import ndimage

from wsdal_wsi.synth.pyramid import Band, downsample2, encode_tiles, level_shapes, write_pyramid


def test_level_shapes():
    assert level_shapes(2048, 1536) == [(2048, 1536), (1024, 768), (512, 384)]
    shapes = level_shapes(100_000, 100_000)
    assert len(shapes) == 7 and max(shapes[-1]) <= 2048 and max(shapes[-2]) > 2048
    assert level_shapes(20_001, 999)[1] == (10_001, 500)


def test_downsample_is_a_box_filter_with_edges_replicated():
    img = np.arange(5 * 3 * 3, dtype=np.uint8).reshape(5, 3, 3)
    half = downsample2(img)
    assert half.shape == (3, 2, 3)
    assert half[0, 0, 0] == round(img[:2, :2, 0].mean())
    assert half[2, 1, 1] == img[4, 2, 1]  # corner: the pixel itself, replicated


def _bands(img: np.ndarray, band_px: int, tile: int):
    for y0 in range(0, img.shape[0], band_px):
        strip = img[y0 : y0 + band_px]
        yield Band(tiles=encode_tiles(strip, tile_px=tile, quality=95), half=downsample2(strip))


def test_written_pyramid_opens_in_openslide_at_the_right_resolution(tmp_path):
    rng = np.random.default_rng(0)
    h, w = 700, 1100
    # Smooth content so JPEG (4:2:0) keeps it well at every level.
    noise = rng.normal(size=(h, w, 3))
    img = ndimage.gaussian_filter(noise, (12, 12, 0))
    img = np.clip(145 + img / img.std() * 35, 0, 255).astype(np.uint8)
    path = tmp_path / "p.tiff"
    shapes = write_pyramid(
        path,
        _bands(img, 256, 128),
        width_px=w,
        height_px=h,
        mpp=0.5,
        tile_px=128,
        quality=95,
        description="wsdal-wsi synthetic slide test",
    )
    assert shapes == level_shapes(w, h)
    with openslide.OpenSlide(str(path)) as osr:
        assert osr.properties["openslide.vendor"] == "generic-tiff"
        assert float(osr.properties["openslide.mpp-x"]) == pytest.approx(0.5)
        assert osr.level_count == 3 and osr.level_dimensions == tuple(shapes)
        assert "wsdal-wsi synthetic slide" in osr.properties["tiff.ImageDescription"]
        lvl0 = np.asarray(osr.read_region((0, 0), 0, (w, h)).convert("RGB")).astype(int)
        assert np.abs(lvl0 - img).mean() < 3
        lvl2 = np.asarray(osr.read_region((0, 0), 2, shapes[2]).convert("RGB")).astype(int)
        ref = downsample2(downsample2(img)).astype(int)
        assert np.abs(lvl2 - ref).mean() < 3
    with tifffile.TiffFile(path) as tf:
        assert tf.is_bigtiff and len(tf.pages) == 3
        page = tf.pages[0]
        assert page.is_tiled and page.tilewidth == 128 and page.compression == 7  # JPEG
        assert page.photometric == 6  # YCbCr (4:2:0)


def test_too_few_tiles_is_an_error(tmp_path):
    img = np.full((256, 256, 3), 200, np.uint8)
    bands = [
        Band(tiles=encode_tiles(img[:128], tile_px=128, quality=90), half=downsample2(img[:128]))
    ]
    with pytest.raises(RuntimeError, match="tiles"):
        write_pyramid(
            tmp_path / "bad.tiff",
            bands,
            width_px=256,
            height_px=256,
            mpp=0.25,
            tile_px=128,
            quality=90,
            description="x",
        )


def test_encode_tiles_pads_partial_tiles():
    img = np.zeros((100, 300, 3), np.uint8)
    tiles = encode_tiles(img, tile_px=128, quality=90)
    assert len(tiles) == math.ceil(300 / 128)
    assert all(t[:2] == b"\xff\xd8" for t in tiles)  # JPEG streams
