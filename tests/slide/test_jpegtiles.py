from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import openslide
import pytest
import tifffile

from wsdal_wsi.errors import SlideError
from wsdal_wsi.slide import open_slide
from wsdal_wsi.slide._jpegtiles import (
    CpuDecoder,
    JpegTileReader,
    TileDecoder,
    TorchDecoder,
    jpeg_stream,
)
from wsdal_wsi.slide._pixels import read_level_rgb

from .conftest import pattern_image, write_pyramid


def _probe(path: Path) -> JpegTileReader | None:
    slide = openslide.OpenSlide(str(path))
    try:
        return JpegTileReader.probe(path, slide.level_dimensions)
    finally:
        slide.close()


def _compare_with_openslide(path: Path, regions: list[tuple[int, int, int, int, int]]) -> None:
    reader = _probe(path)
    assert reader is not None
    slide = openslide.OpenSlide(str(path))
    try:
        for level, x, y, w, h in regions:
            ds = slide.level_downsamples[level]
            ours = reader.read(level, x, y, w, h)
            reference = read_level_rgb(slide, level, round(x * ds), round(y * ds), w, h)
            assert ours.shape == (h, w, 3) and ours.dtype == np.uint8
            # Both decode with libjpeg-turbo: the same pixels (allow a decoder's rounding).
            assert np.abs(ours.astype(int) - reference.astype(int)).max() <= 1, (level, x, y)
    finally:
        slide.close()
        reader.close()


def test_same_pixels_as_openslide_on_a_jpeg_pyramid(jpeg_slide_path: Path) -> None:
    _compare_with_openslide(
        jpeg_slide_path,
        [
            (0, 0, 0, 300, 200),
            (0, 250, 129, 300, 300),  # across tile borders
            (0, 900, 950, 200, 120),  # past the right and bottom edges: white
            (1, 100, 37, 200, 200),
            (2, -40, -30, 100, 100),  # before the top-left corner: white
        ],
    )


def test_same_pixels_as_openslide_on_cmu1(cmu1_path: Path) -> None:
    """Aperio SVS: RGB JPEG tiles with shared JPEG tables, 240-px tiles, ragged edges."""
    _compare_with_openslide(cmu1_path, [(0, 0, 0, 512, 512), (0, 2000, 2800, 400, 300)])


def test_only_jpeg_tiled_tiffs_are_eligible(
    pattern_slide_path: Path, tcga_path: Path, jpeg_slide_path: Path
) -> None:
    assert _probe(pattern_slide_path) is None  # deflate tiles
    assert _probe(tcga_path) is None  # JPEG 2000 tiles
    reader = _probe(jpeg_slide_path)
    assert reader is not None
    reader.close()
    with open_slide(jpeg_slide_path) as slide:
        assert slide.info()["reader"] == "raw JPEG tiles"
    with open_slide(jpeg_slide_path, fast_tiles=False) as slide:
        assert slide.info()["reader"] == "OpenSlide"
    with open_slide(pattern_slide_path) as slide:
        assert slide.info()["reader"] == "OpenSlide"


@pytest.mark.parametrize(
    ("location", "size", "target_mpp"),
    [
        ((0.0, 0.0), (256, 256), 0.25),  # native: the tiles themselves
        ((130.0, 77.0), (300, 200), 0.5),  # level 1, whole pixels
        ((10.3, 20.7), (300, 200), 0.25),  # sub-pixel origin
        ((-20.0, 700.0), (200, 180), 0.6),  # resampled, partly outside
        ((5.0, 5.0), (40, 40), 6.0),  # 6x below level 2: block reduction first
    ],
)
def test_read_region_same_with_and_without_fast_tiles(
    jpeg_slide_path: Path, location: tuple[float, float], size: tuple[int, int], target_mpp: float
) -> None:
    with open_slide(jpeg_slide_path) as fast, open_slide(jpeg_slide_path, fast_tiles=False) as slow:
        a = fast.read_region(location, size, target_mpp=target_mpp)
        b = slow.read_region(location, size, target_mpp=target_mpp)
    assert a.shape == b.shape == (size[1], size[0], 3)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 2


def test_threads_and_cache(jpeg_slide_path: Path) -> None:
    rng = np.random.default_rng(3)
    locations = [(float(x), float(y)) for x, y in rng.uniform(-100, 900, (32, 2))]
    with open_slide(jpeg_slide_path, fast_tiles=False) as reference:
        expected = [reference.read_region(loc, (128, 96)) for loc in locations]
    with open_slide(jpeg_slide_path) as slide:
        for _ in range(2):  # the second pass comes from the decoded-tile cache
            with ThreadPoolExecutor(4) as pool:
                got = list(pool.map(lambda loc: slide.read_region(loc, (128, 96)), locations))
            for a, b in zip(got, expected, strict=True):
                assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def _damaged_jpeg_slide(tmp_path: Path, tile_index: int) -> Path:
    """A 1024 x 1024 px JPEG pyramid (256-px tiles) with one level-0 tile zeroed."""
    path = write_pyramid(
        tmp_path / "broken.tiff",
        pattern_image((1024, 1024), 0.25),
        mpp=0.25,
        compression="jpeg",
        tile_px=256,
    )
    data = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        offset = int(page.dataoffsets[tile_index])
        count = int(page.databytecounts[tile_index])
    data[offset : offset + count] = b"\x00" * count  # no JPEG at all
    path.write_bytes(bytes(data))
    return path


def test_damaged_jpeg_tile_is_a_slide_error(tmp_path: Path) -> None:
    path = _damaged_jpeg_slide(tmp_path, 15)  # the bottom-right tile
    with open_slide(path) as slide:
        assert slide.info()["reader"] == "raw JPEG tiles"
        slide.read_region((0, 0), (200, 200))  # intact tiles read fine
        with pytest.raises(SlideError, match=r"broken\.tiff: cannot read level 0"):
            slide.read_region((800, 800), (200, 200))


def test_self_check_falls_back_without_breaking_openslide(tmp_path: Path) -> None:
    """A damaged tile under the open-time self-check: OpenSlide reads, intact areas work."""
    path = _damaged_jpeg_slide(tmp_path, 5)  # under the centre of level 0
    with open_slide(path) as slide:
        assert slide.info()["reader"] == "OpenSlide"
        assert slide.read_region((0, 0), (200, 200)).std() > 10
        with pytest.raises(SlideError, match=r"broken\.tiff: cannot read level 0"):
            slide.read_region((300, 300), (200, 200))


def test_openslide_error_state_is_detected(tmp_path: Path) -> None:
    from wsdal_wsi.slide._pixels import openslide_failed

    path = _damaged_jpeg_slide(tmp_path, 15)
    handle = openslide.OpenSlide(str(path))
    try:
        assert not openslide_failed(handle)
        with pytest.raises(openslide.OpenSlideError):
            handle.read_region((800, 800), 0, (200, 200))
        assert openslide_failed(handle)  # sticky: why open_slide reopens after a self-check
    finally:
        handle.close()


# ----------------------------------------------------------------------------- batched decoding
# TorchDecoder on the CPU is the same batching code that decodes with nvJPEG on CUDA.


class _CountingDecoder(TorchDecoder):
    """TorchDecoder that records the size of every batch it is given."""

    def __init__(self) -> None:
        super().__init__("cpu")
        self.sizes: list[int] = []

    def decode(self, level, items):
        self.sizes.append(len(items))
        return super().decode(level, items)


@pytest.mark.parametrize("fixture", ["jpeg_slide_path", "cmu1_path"])
def test_torch_decoder_gives_the_cpu_decoders_pixels(fixture: str, request) -> None:
    """Self-made YCbCr tiles, and Aperio's RGB tiles with shared JPEG tables (CMU-1)."""
    path = request.getfixturevalue(fixture)
    reference, batched = _probe(path), _probe(path)
    decoder = _CountingDecoder()
    assert batched.use_decoder(decoder) is None
    assert batched.decoder is decoder
    try:
        for level, x, y, w, h in [
            (0, 0, 0, 700, 500),
            (0, 130, 250, 260, 300),
            (1, 10, 20, 200, 150),
        ]:
            if level >= len(batched._levels):
                continue
            ours = batched.read(level, x, y, w, h)
            theirs = reference.read(level, x, y, w, h)
            # both decode with libjpeg-turbo: the very same pixels
            np.testing.assert_array_equal(ours, theirs)
    finally:
        reference.close()
        batched.close()


def test_a_read_decodes_its_new_tiles_in_one_batch(jpeg_slide_path: Path) -> None:
    reader = _probe(jpeg_slide_path)
    decoder = _CountingDecoder()
    assert reader.use_decoder(decoder) is None
    decoder.sizes.clear()  # the self-check's batches
    try:
        reader.read(0, 100, 100, 400, 300)  # 256-px tiles: columns 0-1, rows 0-1
        assert decoder.sizes == [4] and reader.batches == 1
        reader.read(0, 100, 100, 400, 300)  # all cached: no decoding
        assert decoder.sizes == [4] and reader.batches == 1
        reader.read(0, 300, 100, 400, 300)  # columns 1-2: only column 2 is new
        assert decoder.sizes == [4, 2]
        reader.read(0, 2000, 2000, 50, 50)  # outside the level: nothing to decode
        assert decoder.sizes == [4, 2]
    finally:
        reader.close()


def test_jpeg_stream_splices_tables_and_marks_rgb(cmu1_path: Path) -> None:
    import torch
    from torchvision.io import decode_jpeg

    with tifffile.TiffFile(cmu1_path) as tif:
        page = tif.pages[0]
        tables = page.jpegtables
        with open(cmu1_path, "rb") as fh:
            fh.seek(page.dataoffsets[3])
            tile = fh.read(page.databytecounts[3])
        reference = page.decode(tile, 3, jpegtables=tables)[0]
    reference = reference.reshape(reference.shape[-3:])[..., :3]
    assert tables and not tile[2:].startswith(tables[2:6])  # the tile lacks the tables
    stream = jpeg_stream(tile, tables=tables, rgb=True)
    assert stream.startswith(b"\xff\xd8\xff\xee\x00\x0eAdobe") and stream.count(b"\xff\xd9") == 1
    got = decode_jpeg(torch.frombuffer(bytearray(stream), dtype=torch.uint8))
    np.testing.assert_array_equal(got.permute(1, 2, 0).numpy(), reference)
    # Without the Adobe marker the decoder takes R, G, B for Y, Cb, Cr: other colours.
    wrong = decode_jpeg(
        torch.frombuffer(bytearray(jpeg_stream(tile, tables=tables, rgb=False)), dtype=torch.uint8)
    )
    assert np.abs(wrong.permute(1, 2, 0).numpy().astype(int) - reference).max() > 50
    with pytest.raises(ValueError, match="SOI"):
        jpeg_stream(tile[2:], tables=tables, rgb=True)


class _WrongDecoder(TileDecoder):
    name = "wrong"

    def decode(self, level, items):
        return [np.clip(t.astype(int) + 40, 0, 255).astype(np.uint8)
                for t in CpuDecoder().decode(level, items)]  # fmt: skip


def test_a_decoder_with_other_pixels_is_refused(jpeg_slide_path: Path) -> None:
    reader = _probe(jpeg_slide_path)
    try:
        reason = reader.use_decoder(_WrongDecoder())
        assert reason is not None and "wrong: pixels differ by up to 40" in reason
        assert isinstance(reader.decoder, CpuDecoder)
    finally:
        reader.close()


def test_slide_decodes_tiles_on_a_device_where_the_raw_tile_path_applies(
    jpeg_slide_path: Path, pattern_slide_path: Path
) -> None:
    with open_slide(jpeg_slide_path) as slide, open_slide(jpeg_slide_path) as plain:
        assert slide.info()["tile_decoder"].startswith("cpu (libjpeg-turbo)")
        assert slide.decode_tiles_on("cpu") is None
        assert slide.info()["tile_decoder"] == "cpu (torchvision decode_jpeg)"
        np.testing.assert_array_equal(
            slide.read_region((37.0, 11.0), (500, 400)), plain.read_region((37.0, 11.0), (500, 400))
        )
    with open_slide(pattern_slide_path) as slide:  # deflate tiles: OpenSlide reads them
        assert "OpenSlide" in slide.decode_tiles_on("cpu")
        assert slide.info()["tile_decoder"] is None
