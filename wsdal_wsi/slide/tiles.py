"""A grid of tiles over a slide at a target resolution, for streaming inference.

All tiles live on one **global target-pixel lattice**: global target pixel
``(gx, gy)`` covers the level-0 square from ``(gx, gy) * level0_per_px`` to
``(gx + 1, gy + 1) * level0_per_px``. Positions are continuous: a point at
``(gx, gy)`` (floats) is at level-0 ``(gx, gy) * level0_per_px``, and the centre
of pixel ``(i, j)`` is at ``(i + 0.5, j + 0.5)``.

The slide is cut into **cores** of ``tile_size_px`` squares (smaller at the right
and bottom edges). Cores are half-open boxes that partition the slide: every
level-0 point lies in exactly one. Each tile is read with ``margin_px`` around
its core, so a detector sees the context of objects near the core's edge; a
point found in the margin of one tile belongs to the core of another, and
:meth:`Tile.in_core` gives every point to exactly one tile. Because all tiles
sample the same lattice, a point seen by two tiles has the same global (and
level-0) coordinates in both, whatever the tile size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from wsdal_wsi.errors import ConfigError
from wsdal_wsi.units import DEFAULT_TARGET_MPP

__all__ = ["Tile", "tile_grid"]


@dataclass(frozen=True)
class Tile:
    """One tile of a grid: where to read, and which part of the read it owns.

    Attributes
    ----------
    origin_px : (int, int)
        Global target-px (x, y) of the read's top-left corner (may be negative:
        the margin of an edge tile lies outside the slide and reads white).
    size_px : (int, int)
        Read size (w, h) in target px: the core plus a margin on each side.
    core_px : (int, int, int, int)
        Global target-px core box ``(x0, y0, x1, y1)``, half-open.
    level0_per_px : float
        Level-0 px per target px (``target_mpp / slide mpp``).
    tissue_fraction : float or None
        Fraction of tissue-mask pixels in the core (``None`` without a mask).
    """

    origin_px: tuple[int, int]
    size_px: tuple[int, int]
    core_px: tuple[int, int, int, int]
    level0_per_px: float
    tissue_fraction: float | None = None

    @property
    def location_level0(self) -> tuple[float, float]:
        """Level-0 (x, y) of the read's top-left corner, for ``Slide.read_region``."""
        return (self.origin_px[0] * self.level0_per_px, self.origin_px[1] * self.level0_per_px)

    @property
    def core_level0(self) -> tuple[float, float, float, float]:
        """The core box in level-0 px ``(x0, y0, x1, y1)``, half-open."""
        f = self.level0_per_px
        x0, y0, x1, y1 = self.core_px
        return (x0 * f, y0 * f, x1 * f, y1 * f)

    @property
    def core_local_px(self) -> tuple[int, int, int, int]:
        """The core box in the read array's pixel frame ``(x0, y0, x1, y1)``."""
        ox, oy = self.origin_px
        x0, y0, x1, y1 = self.core_px
        return (x0 - ox, y0 - oy, x1 - ox, y1 - oy)

    def in_core(self, xy_px_local: np.ndarray) -> np.ndarray:
        """Whether points of the read array lie in this tile's core.

        Parameters
        ----------
        xy_px_local : array_like
            ``(N, 2)`` (x, y) in the read array's continuous pixel frame
            (target px; pixel ``(i, j)`` spans ``[i, i + 1) x [j, j + 1)``).

        Returns
        -------
        numpy.ndarray
            ``(N,) bool``.
        """
        xy = np.asarray(xy_px_local, dtype=np.float64).reshape(-1, 2)
        gx = xy[:, 0] + self.origin_px[0]
        gy = xy[:, 1] + self.origin_px[1]
        x0, y0, x1, y1 = self.core_px
        return (gx >= x0) & (gx < x1) & (gy >= y0) & (gy < y1)

    def to_level0(self, xy_px_local: np.ndarray) -> np.ndarray:
        """Convert points of the read array to level-0 (x, y).

        Parameters
        ----------
        xy_px_local : array_like
            ``(N, 2)`` (x, y) in the read array's continuous pixel frame.

        Returns
        -------
        numpy.ndarray
            ``(N, 2) float64`` level-0 (x, y).
        """
        xy = np.asarray(xy_px_local, dtype=np.float64).reshape(-1, 2)
        return (xy + np.asarray(self.origin_px, dtype=np.float64)) * self.level0_per_px


def _positive_int(name: str, value: object, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def tile_grid(
    slide: object,
    *,
    target_mpp: float = DEFAULT_TARGET_MPP,
    tile_size_px: int = 1024,
    margin_px: int = 40,
    tissue: object | None = None,
    min_tissue_fraction: float = 0.0,
) -> list[Tile]:
    """Cut a slide into tiles at a target resolution.

    Parameters
    ----------
    slide : wsdal_wsi.slide.Slide
        An open slide with a known resolution.
    target_mpp : float
        Resolution of the tiles in µm/px.
    tile_size_px : int
        Side of a core in target px.
    margin_px : int
        Context read around each core on every side, in target px.
    tissue : TissueMask, optional
        When given, tiles whose core holds no tissue are dropped.
    min_tissue_fraction : float
        With ``tissue``: keep a tile only when at least this fraction of the mask
        pixels its core touches is tissue (and always at least one pixel).

    Returns
    -------
    list of Tile
        Row by row, top to bottom and left to right.

    Raises
    ------
    ResolutionError
        The slide's resolution is unknown.
    ConfigError
        A bad option value.
    """
    tile_size_px = _positive_int("tile_size_px", tile_size_px, minimum=1)
    margin_px = _positive_int("margin_px", margin_px, minimum=0)
    if not (
        isinstance(min_tissue_fraction, (int, float)) and 0.0 <= float(min_tissue_fraction) <= 1.0
    ):
        raise ConfigError(f"min_tissue_fraction must be in [0, 1], got {min_tissue_fraction!r}")
    f = slide.level0_per_px(target_mpp)  # type: ignore[attr-defined]
    width, height = slide.dimensions  # type: ignore[attr-defined]
    # Target-px extent of the slide; the tolerance keeps an exact fit exact.
    width_px = max(1, math.ceil(width / f - 1e-9))
    height_px = max(1, math.ceil(height / f - 1e-9))
    tiles: list[Tile] = []
    for y0 in range(0, height_px, tile_size_px):
        y1 = min(y0 + tile_size_px, height_px)
        for x0 in range(0, width_px, tile_size_px):
            x1 = min(x0 + tile_size_px, width_px)
            fraction = None
            if tissue is not None:
                fraction = tissue.fraction_in((x0 * f, y0 * f, x1 * f, y1 * f))  # type: ignore[attr-defined]
                if fraction <= 0.0 or fraction < min_tissue_fraction:
                    continue
            tiles.append(
                Tile(
                    origin_px=(x0 - margin_px, y0 - margin_px),
                    size_px=(x1 - x0 + 2 * margin_px, y1 - y0 + 2 * margin_px),
                    core_px=(x0, y0, x1, y1),
                    level0_per_px=f,
                    tissue_fraction=fraction,
                )
            )
    return tiles
