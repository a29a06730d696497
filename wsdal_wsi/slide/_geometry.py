"""Geometry of a read at a target resolution: which level, which pixels, which resampling box.

A read asks for the output pixels ``(i, j)``, ``0 <= i < w``, ``0 <= j < h``, of a
lattice with spacing ``level0_per_px`` (level-0 px per output px) whose pixel
``(i, j)`` covers the level-0 square starting at ``origin + (i, j) *
level0_per_px``. Its centre is at ``origin + (i + 0.5, j + 0.5) * level0_per_px``.
Two reads whose origins differ by a whole number of output pixels therefore
sample the same global lattice, which is what makes tiles agree where they
overlap.

The pixels come from one pyramid level (the coarsest that is still at least as
fine as the target) and are resampled with Pillow's bicubic filter, whose
support widens when it downsamples (antialiasing). Pillow takes a floating-point
source box, which carries the sub-pixel origin.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from wsdal_wsi.errors import ConfigError

__all__ = [
    "LEVEL_TOLERANCE",
    "REDUCE_ABOVE",
    "ReadPlan",
    "check_request",
    "choose_level",
    "plan_read",
]

#: A level counts as "at least as fine as the target" when its downsample exceeds
#: the wanted one by at most this fraction. OpenSlide's downsamples of odd-sized
#: pyramids are not exact powers (e.g. 2.0005 for a nominal 2): without the
#: tolerance such a level would be skipped for a finer one 4x the size.
LEVEL_TOLERANCE = 0.01

#: Bicubic support radius in source pixels (for scale <= 1; times the scale above).
_BICUBIC_SUPPORT = 2.0

#: Offsets closer than this to a whole pixel count as whole (no resampling).
_INTEGER_EPS = 1e-6

#: Downsampling by more than this from the chosen level (a slide without a
#: suitable pyramid level, a thumbnail, a mask) first averages blocks of
#: ``floor(scale / 2)`` px, aligned on the level's global pixel grid, then
#: resamples the remaining 2-4x with the antialiased bicubic filter: the same
#: image, several times faster than a 30-px-wide bicubic kernel.
REDUCE_ABOVE = 4.0


@dataclass(frozen=True)
class ReadPlan:
    """Which pixels of which level to read, and how they map to the output.

    Attributes
    ----------
    level : int
        Pyramid level read.
    downsample : float
        Its level-0 px per level px.
    level_x, level_y : int
        Top-left corner of the read in the level's own pixels.
    read_w, read_h : int
        Size of the read in the level's pixels.
    region : (float, float, float, float)
        The output's extent ``(left, top, right, bottom)`` in the level's
        pixel-edge coordinates (pixel ``k`` spans ``[k, k + 1)``).
    direct : bool
        The read is the output: same lattice, whole-pixel position, no resampling.
    reduce : int
        Average blocks of ``reduce`` x ``reduce`` px of the read before
        resampling (1: none). The read starts on, and spans, whole blocks of the
        level's global block grid.
    """

    level: int
    downsample: float
    level_x: int
    level_y: int
    read_w: int
    read_h: int
    region: tuple[float, float, float, float]
    direct: bool
    reduce: int = 1

    def openslide_location(self) -> tuple[int, int]:
        """Level-0 (x, y) to give OpenSlide for this read (whole level-0 px)."""
        return (round(self.level_x * self.downsample), round(self.level_y * self.downsample))

    def box(self, start_x: float, start_y: float) -> tuple[float, float, float, float]:
        """Pillow's source box, for a read that really starts at level px ``(start_x, start_y)``.

        OpenSlide starts a read at ``location / downsample``, which is not a
        whole level pixel when the downsample is not a whole number; the raw-tile
        reader starts exactly at ``(level_x, level_y)``. The box is in the pixels
        of the read after the block reduction.
        """
        left, top, right, bottom = self.region
        r = self.reduce
        return (
            (left - start_x) / r,
            (top - start_y) / r,
            (right - start_x) / r,
            (bottom - start_y) / r,
        )


def choose_level(level_downsamples: Sequence[float], level0_per_px: float) -> int:
    """Index of the coarsest level that is still at least as fine as the target.

    Parameters
    ----------
    level_downsamples : sequence of float
        Level-0 px per level px, increasing (level 0 first, 1.0).
    level0_per_px : float
        Wanted level-0 px per output px.

    Returns
    -------
    int
        The level to read; 0 when the target is finer than level 0 (upsampling).
    """
    best = 0
    for index, downsample in enumerate(level_downsamples):
        if downsample <= level0_per_px * (1.0 + LEVEL_TOLERANCE):
            best = index
    return best


def _near_integer(value: float) -> bool:
    return abs(value - round(value)) < _INTEGER_EPS


def plan_read(
    location_level0: tuple[float, float],
    size_px: tuple[int, int],
    *,
    level0_per_px: float,
    level_downsamples: Sequence[float],
) -> ReadPlan:
    """Plan the read of ``size_px`` output pixels at ``level0_per_px`` from ``location_level0``.

    Parameters
    ----------
    location_level0 : (float, float)
        Level-0 (x, y) of the output's top-left corner (not pixel centre).
    size_px : (int, int)
        Output (w, h) in pixels.
    level0_per_px : float
        Level-0 px per output px.
    level_downsamples : sequence of float
        The slide's level downsamples.

    Returns
    -------
    ReadPlan
    """
    x0, y0 = location_level0
    w, h = size_px
    level = choose_level(level_downsamples, level0_per_px)
    downsample = float(level_downsamples[level])
    scale = level0_per_px / downsample  # level px per output px
    u0, v0 = x0 / downsample, y0 / downsample
    u1, v1 = u0 + w * scale, v0 + h * scale
    region = (u0, v0, u1, v1)
    if abs(scale - 1.0) < 1e-9 and all(_near_integer(c) for c in (x0, y0, u0, v0)):
        # The level's own lattice, at a whole pixel of both the level and level 0.
        return ReadPlan(level, downsample, round(u0), round(v0), w, h, region, True)
    reduce = math.floor(scale / 2) if scale > REDUCE_ABOVE else 1
    margin = math.ceil(_BICUBIC_SUPPORT * max(scale, 1.0)) + 2 + reduce
    # Read whole reduction blocks of the level's global grid, so that every read
    # averages the same blocks.
    k0 = (math.floor(u0) - margin) // reduce * reduce
    l0 = (math.floor(v0) - margin) // reduce * reduce
    k1 = -(-(math.ceil(u1) + margin) // reduce) * reduce
    l1 = -(-(math.ceil(v1) + margin) // reduce) * reduce
    return ReadPlan(level, downsample, k0, l0, k1 - k0, l1 - l0, region, False, reduce)


def check_request(
    location_level0: tuple[float, float], size_px: tuple[int, int], level0_per_px: float
) -> tuple[float, float, int, int, float]:
    """Validate a read request: ``(x0, y0, w, h, level0_per_px)`` as numbers, or ConfigError."""
    try:
        x0, y0 = (float(v) for v in location_level0)
    except (TypeError, ValueError):
        raise ConfigError(
            f"location_level0 must be a level-0 (x, y) pair, got {location_level0!r}"
        ) from None
    if not (math.isfinite(x0) and math.isfinite(y0)):
        raise ConfigError(f"location_level0 must be finite, got {location_level0!r}")
    try:
        w, h = size_px
    except (TypeError, ValueError):
        raise ConfigError(f"size_px must be a (w, h) pair, got {size_px!r}") from None
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (w, h)):
        raise ConfigError(f"size_px must be whole pixels, got {size_px!r}")
    if w < 1 or h < 1:
        raise ConfigError(f"size_px must be at least (1, 1), got {size_px!r}")
    scale = float(level0_per_px)
    if not math.isfinite(scale) or scale <= 0:
        raise ConfigError(f"level0_per_px must be a positive number, got {level0_per_px!r}")
    return x0, y0, int(w), int(h), scale
