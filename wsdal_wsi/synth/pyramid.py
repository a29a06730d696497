"""Streaming writer of pyramidal tiled JPEG BigTIFF files (OpenSlide "generic-tiff").

The image is never held in memory. Level 0 arrives as *bands* (full-width
strips of whole tile rows, in order) of already-encoded JPEG tiles plus the
band downsampled 2x; tifffile writes level 0 page by page as the tiles come.
Meanwhile a cascade builds the lower levels: each level keeps at most one tile
row of pixels, encodes its finished tile rows to JPEG into a temporary file
(on disk, beside the output) and passes the row, downsampled 2x, to the next
level. When level 0 is done, every lower level is written from its temporary
file. Memory is therefore a few tile rows per level, whatever the slide size.

Layout: level ``k`` has size ``ceil(w / 2**k) x ceil(h / 2**k)`` (2x2 box
filter, edges replicated), at least 3 levels and down to 2048 px or less; tiles
are ``tile_px`` square JPEG in YCbCr with 4:2:0 chroma subsampling (the layout
of Aperio and most scanners: the smallest files and fastest decoding); the
resolution tags give ``mpp * 2**k`` µm/px per level (``resolutionunit``
centimetre), which OpenSlide reports as ``openslide.mpp-x``/``-y``; the first
page carries an ImageDescription.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import imagecodecs
import numpy as np
import tifffile
from PIL import Image

__all__ = ["Band", "downsample2", "encode_tiles", "level_shapes", "write_pyramid"]

#: A level's longest side at which the pyramid stops (px).
SMALLEST_LEVEL_PX = 2048
#: Fewest levels written, even for small images.
MIN_LEVELS = 3
#: Chroma subsampling of the JPEG tiles (YCbCr 4:2:0).
SUBSAMPLING = (2, 2)


def level_shapes(width_px: int, height_px: int) -> list[tuple[int, int]]:
    """Sizes ``(w, h)`` of the pyramid levels of a ``width_px x height_px`` image."""
    longest = max(width_px, height_px)
    n = max(MIN_LEVELS, 1 + max(0, math.ceil(math.log2(longest / SMALLEST_LEVEL_PX))))
    shapes = [(width_px, height_px)]
    for _ in range(n - 1):
        w, h = shapes[-1]
        shapes.append(((w + 1) // 2, (h + 1) // 2))
    return shapes


def encode_tiles(rgb: np.ndarray, *, tile_px: int, quality: int) -> list[bytes]:
    """JPEG-encode an image as row-major tiles (right and bottom edges padded white).

    Parameters
    ----------
    rgb : numpy.ndarray
        ``(h, w, 3)`` uint8.
    tile_px : int
        Tile side (multiple of 16).
    quality : int
        JPEG quality (1-100).

    Returns
    -------
    list of bytes
        ``ceil(h / tile_px) * ceil(w / tile_px)`` JPEG streams.
    """
    h, w = rgb.shape[:2]
    out = []
    for ty in range(0, h, tile_px):
        for tx in range(0, w, tile_px):
            tile = rgb[ty : ty + tile_px, tx : tx + tile_px]
            if tile.shape[0] != tile_px or tile.shape[1] != tile_px:
                full = np.full((tile_px, tile_px, 3), 255, dtype=np.uint8)
                full[: tile.shape[0], : tile.shape[1]] = tile
                tile = full
            out.append(
                imagecodecs.jpeg8_encode(
                    np.ascontiguousarray(tile),
                    level=quality,
                    colorspace="RGB",
                    outcolorspace="YCBCR",
                    subsampling=SUBSAMPLING,
                )
            )
    return out


def downsample2(rgb: np.ndarray) -> np.ndarray:
    """2x2 box-filter downsampling (a last odd row or column is averaged alone).

    Parameters
    ----------
    rgb : numpy.ndarray
        ``(h, w, 3)`` uint8.

    Returns
    -------
    numpy.ndarray
        ``(ceil(h / 2), ceil(w / 2), 3)`` uint8, each pixel the rounded mean
        of its 2x2 block.
    """
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        return np.zeros(((rgb.shape[0] + 1) // 2, (rgb.shape[1] + 1) // 2, 3), np.uint8)
    return np.asarray(Image.fromarray(np.ascontiguousarray(rgb)).reduce(2))


@dataclass
class Band:
    """One full-width strip of level 0.

    Attributes
    ----------
    tiles : list of bytes
        The strip's JPEG tiles, row-major over its tile rows.
    half : numpy.ndarray
        ``(ceil(band_h / 2), ceil(w / 2), 3)`` uint8: the strip downsampled 2x.
    """

    tiles: list[bytes]
    half: np.ndarray


class _Level:
    """One lower level: a row buffer, and its encoded tile rows in a temporary file."""

    def __init__(self, shape: tuple[int, int], tmpdir: Path, index: int) -> None:
        self.w, self.h = shape
        self.rows: list[np.ndarray] = []
        self.n_rows = 0
        self.rows_done = 0
        self.path = tmpdir / f"level{index}.jpegs"
        self.fh = open(self.path, "wb")
        self.lengths: list[int] = []


class _Cascade:
    """Builds levels 1..L-1 from level-1 rows as they arrive."""

    def __init__(
        self, shapes: list[tuple[int, int]], tmpdir: Path, *, tile_px: int, quality: int
    ) -> None:
        self.tile = tile_px
        self.quality = quality
        self.levels = [_Level(s, tmpdir, k + 1) for k, s in enumerate(shapes[1:])]

    def feed(self, k: int, rows: np.ndarray, *, final: bool = False) -> None:
        """Give level ``k`` (0 = pyramid level 1) its next rows."""
        lv = self.levels[k]
        if len(rows):
            if rows.shape[1] != lv.w:
                raise ValueError(f"level {k + 1} rows are {rows.shape[1]} px wide, expected {lv.w}")
            lv.rows.append(rows)
            lv.n_rows += len(rows)
        while lv.n_rows >= self.tile or (final and lv.n_rows > 0):
            buf = np.concatenate(lv.rows) if len(lv.rows) > 1 else lv.rows[0]
            take = min(self.tile, lv.n_rows)
            row, rest = buf[:take], buf[take:]
            lv.rows, lv.n_rows = ([rest] if len(rest) else []), len(rest)
            for data in encode_tiles(row, tile_px=self.tile, quality=self.quality):
                lv.fh.write(data)
                lv.lengths.append(len(data))
            lv.rows_done += take
            if k + 1 < len(self.levels):
                self.feed(k + 1, downsample2(row))
        if final and k + 1 < len(self.levels):
            self.feed(k + 1, np.zeros((0, self.levels[k + 1].w, 3), np.uint8), final=True)

    def finish(self) -> None:
        self.feed(0, np.zeros((0, self.levels[0].w, 3), np.uint8), final=True)
        for k, lv in enumerate(self.levels):
            lv.fh.close()
            if lv.rows_done != lv.h:
                raise RuntimeError(f"pyramid level {k + 1}: {lv.rows_done} rows, expected {lv.h}")

    def tiles(self, k: int) -> Iterator[bytes]:
        lv = self.levels[k]
        with open(lv.path, "rb") as fh:
            for n in lv.lengths:
                yield fh.read(n)


def write_pyramid(
    path: str | os.PathLike[str],
    bands: Iterable[Band],
    *,
    width_px: int,
    height_px: int,
    mpp: float,
    tile_px: int,
    quality: int,
    description: str,
    tmp_dir: str | os.PathLike[str] | None = None,
) -> list[tuple[int, int]]:
    """Write a pyramidal tiled JPEG BigTIFF from level-0 bands.

    Parameters
    ----------
    path : path-like
        Output file (written in place; wrap in :func:`wsdal_wsi.atomic.atomic_path`).
    bands : iterable of Band
        Level 0 top to bottom; every band but the last holds an even number of
        whole tile rows.
    width_px, height_px : int
        Level-0 size.
    mpp : float
        Level-0 resolution (µm/px).
    tile_px : int
        Tile side (multiple of 16).
    quality : int
        JPEG quality of the lower levels (level-0 tiles come encoded).
    description : str
        ImageDescription of the first page.
    tmp_dir : path-like, optional
        Where the lower levels wait (default: beside ``path``).

    Returns
    -------
    list of tuple of int
        The level sizes ``(w, h)``.
    """
    shapes = level_shapes(width_px, height_px)
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix=".pyramid-", dir=tmp_dir or path.parent) as tmp:
        cascade = _Cascade(shapes, Path(tmp), tile_px=tile_px, quality=quality)
        n_tiles = math.ceil(width_px / tile_px) * math.ceil(height_px / tile_px)

        def level0() -> Iterator[bytes]:
            count = 0
            for band in bands:
                cascade.feed(0, band.half)
                for data in band.tiles:
                    count += 1
                    yield data
            if count != n_tiles:
                raise RuntimeError(f"level 0 got {count} tiles, expected {n_tiles}")

        common = dict(
            dtype="uint8",
            tile=(tile_px, tile_px),
            compression="jpeg",
            photometric="rgb",
            subsampling=SUBSAMPLING,
            resolutionunit="CENTIMETER",
            metadata=None,
            software="wsdal-wsi",
        )
        with tifffile.TiffWriter(path, bigtiff=True) as tw:
            tw.write(
                level0(),
                shape=(height_px, width_px, 3),
                subfiletype=0,
                resolution=(1e4 / mpp, 1e4 / mpp),
                description=description,
                **common,
            )
            cascade.finish()
            for k, (w, h) in enumerate(shapes[1:], start=1):
                res = 1e4 / (mpp * width_px / w)
                tw.write(
                    cascade.tiles(k - 1),
                    shape=(h, w, 3),
                    subfiletype=1,
                    resolution=(res, res),
                    **common,
                )
    return shapes
