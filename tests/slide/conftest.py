"""Tiny pyramidal test TIFFs, written with tifffile in a temporary folder.

Every test slide is generated here (no network, no real data): known patterns
whose correct pixels at any resolution can be computed, with and without
resolution tags, lossless or JPEG-compressed, and damaged files.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import tifffile

#: Level-0 size (w, h) and resolution of the pattern slide.
PATTERN_SIZE = (1024, 768)
PATTERN_MPP = 0.5

#: Marker squares of the pattern slide: (x_um, y_um, side_um, rgb), top-left corners.
MARKERS = (
    (100.0, 60.0, 40.0, (230, 20, 20)),
    (300.0, 220.0, 48.0, (20, 200, 30)),
)


def pattern_rgb(x_um: np.ndarray, y_um: np.ndarray) -> np.ndarray:
    """A smooth colour pattern (periods >= 17 µm) at positions in µm: ``(..., 3) float64``."""
    two_pi = 2 * math.pi
    red = 150 + 60 * np.sin(two_pi * x_um / 23 + 0.3) * np.cos(two_pi * y_um / 31)
    green = 110 + 50 * np.sin(two_pi * (x_um + y_um) / 19)
    blue = 170 + 40 * np.cos(two_pi * x_um / 41 - two_pi * y_um / 17)
    return np.stack([red, green, blue], axis=-1)


def pattern_image(size: tuple[int, int], mpp: float) -> np.ndarray:
    """The pattern sampled at pixel centres: ``(h, w, 3) uint8``."""
    w, h = size
    x_um = (np.arange(w) + 0.5) * mpp
    y_um = (np.arange(h) + 0.5) * mpp
    return np.clip(np.rint(pattern_rgb(x_um[None, :], y_um[:, None])), 0, 255).astype(np.uint8)


def marker_image(size: tuple[int, int], mpp: float) -> np.ndarray:
    """White with the :data:`MARKERS` squares: ``(h, w, 3) uint8``."""
    w, h = size
    image = np.full((h, w, 3), 255, np.uint8)
    for x_um, y_um, side_um, rgb in MARKERS:
        x0, y0 = round(x_um / mpp), round(y_um / mpp)
        side = round(side_um / mpp)
        image[y0 : y0 + side, x0 : x0 + side] = rgb
    return image


def downsample2(image: np.ndarray) -> np.ndarray:
    """Halve an image by 2 x 2 box averaging (odd edges replicated)."""
    h, w = image.shape[:2]
    padded = np.pad(image, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge").astype(np.float32)
    box = (padded[0::2, 0::2] + padded[1::2, 0::2] + padded[0::2, 1::2] + padded[1::2, 1::2]) / 4
    return np.rint(box).astype(np.uint8)


def write_pyramid(
    path: Path,
    image: np.ndarray,
    *,
    mpp: float | None,
    n_levels: int = 3,
    tile_px: int = 128,
    compression: str | None = "zlib",
    unit: str = "CENTIMETER",
    description: str | None = None,
) -> Path:
    """Write ``image`` as a tiled pyramidal TIFF that OpenSlide opens.

    Parameters
    ----------
    path : Path
        Output file.
    image : numpy.ndarray
        ``(h, w, 3) uint8`` level 0.
    mpp : float or None
        Level-0 µm/px written as resolution tags (``None``: no tags).
    n_levels : int
        Levels, each half the previous (2 x 2 box averages).
    tile_px : int
        Tile side (a multiple of 16).
    compression : str or None
        tifffile compression (``"zlib"`` lossless, ``"jpeg"``, ``None``).
    unit : str
        ``"CENTIMETER"`` or ``"INCH"``.
    description : str, optional
        ImageDescription of level 0 (e.g. an Aperio header).
    """
    um_per_unit = 10_000.0 if unit == "CENTIMETER" else 25_400.0
    level = image
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        for index in range(n_levels):
            options: dict = {}
            if mpp is not None:
                options["resolution"] = (um_per_unit / (mpp * 2**index),) * 2
                options["resolutionunit"] = unit
            if compression == "jpeg":
                options["compressionargs"] = {"level": 95}
            tw.write(
                level,
                tile=(tile_px, tile_px),
                photometric="rgb",
                compression=compression,
                subfiletype=1 if index else 0,
                description=description if index == 0 else None,
                metadata=None,
                **options,
            )
            level = downsample2(level)
    return path


@pytest.fixture(scope="session")
def slide_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session folder for the generated slides."""
    return tmp_path_factory.mktemp("slides")


@pytest.fixture(scope="session")
def pattern_slide_path(slide_dir: Path) -> Path:
    """Lossless 3-level TIFF of :func:`pattern_image`, 1024 x 768 px at 0.5 µm/px."""
    image = pattern_image(PATTERN_SIZE, PATTERN_MPP)
    return write_pyramid(slide_dir / "pattern.tiff", image, mpp=PATTERN_MPP)


@pytest.fixture(scope="session")
def marker_slide_path(slide_dir: Path) -> Path:
    """Lossless 4-level TIFF of :func:`marker_image` at 0.5 µm/px (1024 x 768 px)."""
    image = marker_image(PATTERN_SIZE, PATTERN_MPP)
    return write_pyramid(slide_dir / "markers.tiff", image, mpp=PATTERN_MPP, n_levels=4)


@pytest.fixture(scope="session")
def jpeg_slide_path(slide_dir: Path) -> Path:
    """JPEG-tiled 3-level TIFF of the pattern at 0.25 µm/px, inch resolution unit."""
    image = pattern_image((1024, 1024), 0.25)
    return write_pyramid(
        slide_dir / "jpeg.tiff", image, mpp=0.25, compression="jpeg", unit="INCH", tile_px=256
    )


@pytest.fixture(scope="session")
def no_resolution_slide_path(slide_dir: Path) -> Path:
    """A pyramidal TIFF without resolution tags (512 x 384 px)."""
    image = pattern_image((512, 384), 0.5)
    return write_pyramid(slide_dir / "nores.tiff", image, mpp=None)


@pytest.fixture(scope="session")
def aperio_tags_slide_path(slide_dir: Path) -> Path:
    """An Aperio-style SVS without MPP in its header, but with 0.25 µm/px TIFF tags."""
    image = pattern_image((512, 512), 0.25)
    description = (
        "Aperio Image Library v12.0.5 \n512x512 [0,0 512x512] (256x256) JPEG/RGB Q=90|AppMag = 40"
    )
    return write_pyramid(
        slide_dir / "aperio.svs",
        image,
        mpp=0.25,
        compression="jpeg",
        tile_px=256,
        description=description,
    )


@pytest.fixture
def text_svs_path(tmp_path: Path) -> Path:
    """A text file named ``.svs``."""
    path = tmp_path / "notes.svs"
    path.write_text("This is not a slide.\nJust some notes.\n")
    return path


@pytest.fixture(params=[0.5, 0.97], ids=["half", "tail"])
def truncated_tiff_path(
    request: pytest.FixtureRequest, pattern_slide_path: Path, tmp_path: Path
) -> Path:
    """The pattern slide cut short (at half its size, and missing its last 3 %)."""
    data = pattern_slide_path.read_bytes()
    path = tmp_path / "truncated.tiff"
    path.write_bytes(data[: int(len(data) * request.param)])
    return path
