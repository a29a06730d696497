"""Fast path: JPEG-tiled TIFF-family slides read as raw tiles and decoded directly.

OpenSlide's per-region overhead, not JPEG decoding, limits how fast a slide can
be streamed (``performance.md``: about 44 MP/s per thread through OpenSlide,
several times that for libjpeg-turbo on the raw tiles). For slides whose pyramid
levels are plain JPEG-tiled TIFF pages (generic pyramidal TIFF, Aperio SVS with
JPEG tiles, and the synthetic slides of :mod:`wsdal_wsi.synth`) this reader
takes each tile's bytes from the file (``os.pread``, thread-safe) and decodes
them with tifffile's decoder (imagecodecs' libjpeg-turbo, which handles the
shared JPEG tables and the colour space). It returns the level's own pixels at
whole-pixel positions; everything else (resampling, white outside) is the same
code as the OpenSlide path, which stays the reader for every other format and
the reference the tests compare this one with.

A read decodes every tile it needs that is not cached in **one batch**, by a
decoder (:class:`TileDecoder`): on the CPU tifffile's (:class:`CpuDecoder`, the
default), or torchvision's ``decode_jpeg`` on a list of complete JPEG streams
(:class:`TorchDecoder`): on CUDA that is nvJPEG, which decodes a batch of tiles on
the GPU (``performance.md``: 1.37 GP/s on an H100 host, against 0.2 GP/s for one
libjpeg-turbo thread), with the same batching code on the CPU. A TIFF JPEG tile is
not a complete JPEG file: its shared tables (the JPEGTables tag) are spliced in,
and tiles stored as RGB without a colour transform (Aperio's) get an Adobe marker
saying so (:func:`jpeg_stream`). :meth:`JpegTileReader.use_decoder` installs a
decoder only when it gives the CPU decoder's pixels on sample tiles of every level
(within a JPEG decoder's rounding), else keeps the CPU one and says why.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from wsdal_wsi.slide._pixels import read_level_rgb
from wsdal_wsi.slide.resolution import is_tiff_file, quiet_tifffile

__all__ = [
    "FAST_TILE_VENDORS",
    "CpuDecoder",
    "JpegTileReader",
    "TileDecoder",
    "TorchDecoder",
    "decode_tiles_on",
    "fast_tile_reader",
    "jpeg_stream",
]

log = logging.getLogger(__name__)

_JPEG = 7
_RGB, _YCBCR = 2, 6
_SOI, _EOI = b"\xff\xd8", b"\xff\xd9"
#: APP14 "Adobe" segment with transform 0: the three components are R, G, B (no YCbCr).
_ADOBE_RGB = b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x00"
#: Largest difference from the CPU decoder's pixels a decoder may show on the sample
#: tiles (IDCT and chroma upsampling may round differently in another JPEG decoder).
DECODER_TOLERANCE = 8


@dataclass(frozen=True)
class _Level:
    width: int
    height: int
    tile_w: int
    tile_h: int
    across: int
    offsets: np.ndarray
    counts: np.ndarray
    tables: bytes | None
    decode: Any
    photometric: int


def jpeg_stream(tile: bytes, *, tables: bytes | None, rgb: bool) -> bytes:
    """A complete JPEG file of a TIFF JPEG tile: shared tables spliced in, RGB marked.

    Parameters
    ----------
    tile : bytes
        The tile's bytes as stored (a JPEG stream, possibly without tables).
    tables : bytes or None
        The page's JPEGTables (a JPEG stream of tables only: SOI, DQT/DHT, EOI).
    rgb : bool
        The components are R, G, B without a colour transform (TIFF photometric
        RGB): an Adobe APP14 marker with transform 0 tells the decoder so.
    """
    if not tile.startswith(_SOI):
        raise ValueError("a JPEG tile must start with an SOI marker")
    head = _SOI + (_ADOBE_RGB if rgb else b"")
    if tables:
        inner = tables[2:] if tables.startswith(_SOI) else tables
        inner = inner[:-2] if inner.endswith(_EOI) else inner
        head += inner
    return head + tile[2:]


class TileDecoder:
    """Decodes a batch of one level's tiles: ``decode(level, items)`` -> ``(h, w, 3) uint8`` each.

    ``items`` is a list of ``(tile index, bytes)``; tiles come back in that order.
    """

    name = "decoder"

    def decode(self, level: _Level, items: list[tuple[int, bytes]]) -> list[np.ndarray]:
        raise NotImplementedError


class CpuDecoder(TileDecoder):
    """tifffile's decoder (imagecodecs' libjpeg-turbo), tile by tile on the calling thread."""

    name = "cpu (libjpeg-turbo)"

    def decode(self, level: _Level, items: list[tuple[int, bytes]]) -> list[np.ndarray]:
        out = []
        for index, data in items:
            decoded = level.decode(data, index, jpegtables=level.tables)[0]
            out.append(np.ascontiguousarray(decoded.reshape(decoded.shape[-3:])[..., :3]))
        return out


class TorchDecoder(TileDecoder):
    """torchvision's ``decode_jpeg`` on a whole batch (nvJPEG on CUDA, libjpeg-turbo on the CPU).

    Parameters
    ----------
    device : str
        ``"cuda"``, ``"cuda:N"`` or ``"cpu"`` (the same batching, for tests and as
        a reference).
    """

    def __init__(self, device: str = "cuda") -> None:
        import torch  # a slide module without torch at import time: only this decoder needs it
        from torchvision.io import ImageReadMode, decode_jpeg

        self._torch = torch
        self._decode_jpeg = decode_jpeg
        self._mode = ImageReadMode.RGB
        self.device = str(device)
        self.name = f"{self.device} (torchvision decode_jpeg)"
        # nvJPEG's handle is shared: one batch at a time (reader threads take turns)
        self._lock = threading.Lock()

    def decode(self, level: _Level, items: list[tuple[int, bytes]]) -> list[np.ndarray]:
        torch = self._torch
        rgb = level.photometric == _RGB
        streams = [
            torch.frombuffer(
                bytearray(jpeg_stream(data, tables=level.tables, rgb=rgb)), dtype=torch.uint8
            )
            for _, data in items
        ]
        with self._lock:
            images = self._decode_jpeg(streams, mode=self._mode, device=self.device)
            if all(im.shape == images[0].shape for im in images):
                host = torch.stack(images).permute(0, 2, 3, 1).cpu().numpy()  # one copy
                return [np.ascontiguousarray(h) for h in host]
            return [im.permute(1, 2, 0).cpu().numpy().copy() for im in images]


class _TileCache:
    """A small thread-safe LRU of decoded tiles (neighbouring reads share margin tiles)."""

    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes
        self._bytes = 0
        self._items: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[int, int]) -> np.ndarray | None:
        with self._lock:
            tile = self._items.get(key)
            if tile is not None:
                self._items.move_to_end(key)
            return tile

    def put(self, key: tuple[int, int], tile: np.ndarray) -> None:
        with self._lock:
            if key in self._items:
                return
            self._items[key] = tile
            self._bytes += tile.nbytes
            while self._bytes > self._max and self._items:
                _, old = self._items.popitem(last=False)
                self._bytes -= old.nbytes


class JpegTileReader:
    """Raw-tile reader of a JPEG-tiled pyramidal TIFF. Create with :meth:`probe`.

    Reads are thread-safe. :meth:`close` releases the file.
    """

    def __init__(self, path: Path, tif: Any, levels: list[_Level], cache_mb: float) -> None:
        self.path = path
        self._tif = tif
        self._levels = levels
        self._fd = os.open(path, os.O_RDONLY)
        self._cache = _TileCache(int(cache_mb * 2**20))
        self.decoder: TileDecoder = CpuDecoder()
        self.batches = 0  # decoder calls (one per read that needed new tiles)

    @classmethod
    def probe(
        cls, path: Path, level_dimensions: Sequence[tuple[int, int]], *, cache_mb: float = 64.0
    ) -> JpegTileReader | None:
        """A reader when every level of the slide is a JPEG-tiled TIFF page, else ``None``.

        Parameters
        ----------
        path : Path
            The slide file.
        level_dimensions : sequence of (int, int)
            OpenSlide's (w, h) of each level; each must match exactly one tiled
            page of the file.
        cache_mb : float
            Memory for decoded tiles shared by neighbouring reads.
        """
        if not is_tiff_file(path):
            return None

        try:
            with quiet_tifffile():
                tif = tifffile.TiffFile(path)
        except Exception:  # not a TIFF tifffile can parse: OpenSlide reads it
            return None
        try:
            levels = []
            pages = [p for p in tif.pages if getattr(p, "is_tiled", False)]
            for width, height in level_dimensions:
                matches = [p for p in pages if (p.imagewidth, p.imagelength) == (width, height)]
                level = _level(matches[0]) if len(matches) == 1 else None
                if level is None:
                    tif.close()
                    return None
                levels.append(level)
            return cls(path, tif, levels, cache_mb)
        except Exception as exc:  # anything unexpected: fall back to OpenSlide
            log.debug("%s: no raw JPEG tile path (%s)", path, exc)
            tif.close()
            return None

    def read(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        """Pixels ``[x, x + w) x [y, y + h)`` of ``level`` (level px): ``(h, w, 3) uint8``.

        Pixels outside the level are white. The tiles it needs that are not cached
        are decoded in one batch.
        """
        spec = self._levels[level]
        out = np.full((h, w, 3), 255, np.uint8)
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + w, spec.width), min(y + h, spec.height)
        if x1 <= x0 or y1 <= y0:
            return out
        wanted = [
            (row, col)
            for row in range(y0 // spec.tile_h, (y1 - 1) // spec.tile_h + 1)
            for col in range(x0 // spec.tile_w, (x1 - 1) // spec.tile_w + 1)
        ]
        tiles = self._tiles(level, spec, [row * spec.across + col for row, col in wanted])
        for (row, col), tile in zip(wanted, tiles, strict=True):
            if tile is None:
                continue  # an empty tile: white, as OpenSlide shows it
            tx, ty = col * spec.tile_w, row * spec.tile_h
            sx0, sy0 = max(x0, tx), max(y0, ty)
            sx1 = min(x1, tx + tile.shape[1])
            sy1 = min(y1, ty + tile.shape[0])
            out[sy0 - y : sy1 - y, sx0 - x : sx1 - x] = tile[
                sy0 - ty : sy1 - ty, sx0 - tx : sx1 - tx
            ]
        return out

    def _tiles(self, level: int, spec: _Level, indices: list[int]) -> list[np.ndarray | None]:
        """The decoded tiles ``indices`` of ``level`` (None: empty); the missing in one batch."""
        found: dict[int, np.ndarray | None] = {}
        missing: list[tuple[int, bytes]] = []
        for index in indices:
            cached = self._cache.get((level, index))
            if cached is not None:
                found[index] = cached
                continue
            count = int(spec.counts[index])
            if count == 0:
                found[index] = None
                continue
            data = os.pread(self._fd, count, int(spec.offsets[index]))
            if len(data) != count:
                raise OSError(f"short read of tile {index} of level {level}")
            missing.append((index, data))
        if missing:
            self.batches += 1
            for (index, _), tile in zip(missing, self.decoder.decode(spec, missing), strict=True):
                self._cache.put((level, index), tile)
                found[index] = tile
        return [found[i] for i in indices]

    def use_decoder(self, decoder: TileDecoder, *, samples: int = 4) -> str | None:
        """Decode with ``decoder`` from now on, if it gives the CPU decoder's pixels.

        Up to ``samples`` non-empty tiles of every level are decoded both ways;
        ``decoder`` is kept when no pixel differs by more than
        :data:`DECODER_TOLERANCE`. Returns None when installed, else the reason
        (the CPU decoder stays).
        """
        reference = CpuDecoder()
        try:
            for spec in self._levels:
                nonempty = np.flatnonzero(spec.counts > 0)
                picks = (
                    nonempty[
                        np.linspace(0, len(nonempty) - 1, min(samples, len(nonempty))).astype(int)
                    ]
                    if len(nonempty)
                    else []
                )
                items = [
                    (int(i), os.pread(self._fd, int(spec.counts[i]), int(spec.offsets[i])))
                    for i in picks
                ]
                if not items:
                    continue
                theirs = decoder.decode(spec, items)
                ours = reference.decode(spec, items)
                for a, b in zip(ours, theirs, strict=True):
                    if a.shape != b.shape:
                        raise ValueError(f"tile shape {b.shape} instead of {a.shape}")
                    diff = int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())
                    if diff > DECODER_TOLERANCE:
                        raise ValueError(f"pixels differ by up to {diff} from the CPU decoder's")
        except Exception as exc:  # any failure of the other decoder: keep the CPU one
            reason = f"{decoder.name}: {exc}"
            log.info("%s: decoding tiles on the CPU (%s)", self.path, reason)
            return reason
        self.decoder = decoder
        return None

    def close(self) -> None:
        """Release the file."""
        os.close(self._fd)
        self._tif.close()


def _level(page: Any) -> _Level | None:
    """The raw-tile description of a page, or ``None`` when it is not plain JPEG RGB tiles."""
    if (
        page.compression != _JPEG
        or page.photometric not in (_RGB, _YCBCR)
        or page.samplesperpixel != 3
        or page.bitspersample != 8
        or page.planarconfig != 1
        or getattr(page, "tiledepth", 1) != 1
    ):
        return None
    offsets = np.asarray(page.dataoffsets, dtype=np.int64)
    counts = np.asarray(page.databytecounts, dtype=np.int64)
    across = -(-page.imagewidth // page.tilewidth)
    down = -(-page.imagelength // page.tilelength)
    if offsets.size != across * down or counts.size != offsets.size:
        return None
    return _Level(
        width=page.imagewidth,
        height=page.imagelength,
        tile_w=page.tilewidth,
        tile_h=page.tilelength,
        across=across,
        offsets=offsets,
        counts=counts,
        tables=page.jpegtables,
        decode=page.decode,
        photometric=int(page.photometric),
    )


#: OpenSlide formats whose levels are exactly the file's tiled TIFF pages, tile for
#: tile (others, like Ventana's overlapping tiles, place tiles in their own way).
FAST_TILE_VENDORS = frozenset({"generic-tiff", "aperio"})


def fast_tile_reader(osr: Any, path: Path) -> JpegTileReader | None:
    """The raw-tile reader of an open slide, when its format allows it and it agrees.

    Parameters
    ----------
    osr : openslide.OpenSlide
        The slide, open.
    path : Path
        Its file.

    Returns
    -------
    JpegTileReader or None
        ``None`` for other formats, or when the open-time self-check (the centre
        of level 0 and the corner of every level, read both ways) finds other
        pixels than OpenSlide's or cannot read them.
    """
    if osr.properties.get("openslide.vendor") not in FAST_TILE_VENDORS:
        return None
    level_dimensions = [(int(w), int(h)) for w, h in osr.level_dimensions]
    tiles = JpegTileReader.probe(path, level_dimensions)
    if tiles is None:
        return None
    # Self-check: the centre of level 0 and the corner of every level, both ways.
    width, height = level_dimensions[0]
    probes = [(0, max(0, width // 2 - 32), max(0, height // 2 - 32))]
    probes += [(level, 0, 0) for level in range(len(level_dimensions))]
    try:
        for level, x, y in probes:
            ds = float(osr.level_downsamples[level])
            ours = tiles.read(level, x, y, 64, 64)
            theirs = read_level_rgb(osr, level, round(x * ds), round(y * ds), 64, 64)
            if np.abs(ours.astype(np.int16) - theirs.astype(np.int16)).max() > 2:
                raise ValueError(f"level {level} differs from OpenSlide's pixels")
    except Exception as exc:
        log.info("%s: reading through OpenSlide (raw JPEG tiles unusable: %s)", path, exc)
        tiles.close()
        return None
    return tiles


def decode_tiles_on(tiles: JpegTileReader | None, device: str) -> str | None:
    """Decode ``tiles``' JPEG tiles with torchvision on ``device`` (nvJPEG on ``"cuda"``).

    Returns None when in use, else why not: no raw-tile path (the slide is read
    through OpenSlide), no such decoder, or other pixels than the CPU decoder's.
    """
    if tiles is None:
        return "the slide is read through OpenSlide (no raw JPEG tiles)"
    try:
        decoder = TorchDecoder(device)
    except (ImportError, RuntimeError) as exc:
        return f"no torchvision JPEG decoder on {device} ({exc})"
    return tiles.use_decoder(decoder)
