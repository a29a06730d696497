"""Exact counts of points and tissue in a counting window centred on every cell of a grid.

The engine of the hotspot search (:func:`wsdal_wsi.counting.find_hotspot`);
pure NumPy/SciPy, no I/O. Level-0 pixels throughout.

Tissue
    A boolean mask ``(h, w)`` whose pixel ``(i, j)`` covers the level-0 square
    ``[j·ds, (j+1)·ds) × [i·ds, (i+1)·ds)`` (``ds`` = level-0 px per mask px).
    A point is *in tissue* when the mask pixel holding it is True; outside the
    mask is glass.
Analysis grid
    Square cells aligned with the tissue mask (a mask pixel split into m x m
    cells, or k x k mask pixels merged into one cell) whose centres are the
    candidate window centres. Each cell knows how many tissue mask pixels it
    holds.
Window counts
    :func:`window_point_counts` gives, for every cell centre ``c``, the number
    of points in the closed window centred at ``c``, tested with exactly the
    float formula a brute-force loop uses (``dx*dx + dy*dy <= r*r`` or
    ``|dx| <= w/2 and |dy| <= h/2``), via per-row difference arrays:
    O(N · r / cell + cells) time.
    :func:`window_tissue_units` gives the tissue mask pixels in the cells whose
    centre lies in the window (cell offsets ``(di, dj)`` with
    ``(dj·cell)² + (di·cell)² <= r²``, or the rectangle test), exactly: a
    summed-area table for rectangles, an FFT convolution rounded to integers
    for discs.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.fft as sfft
import shapely
from shapely.geometry import MultiPolygon, Polygon

from wsdal_wsi.errors import ConfigError, InputError
from wsdal_wsi.units import px2_to_mm2, px_to_um, um_to_px

__all__ = [
    "AnalysisGrid",
    "TissueGrid",
    "as_points",
    "as_tissue",
    "build_grid",
    "window_half_sizes_level0",
    "window_kernel",
    "window_point_counts",
    "window_tissue_units",
]

log = logging.getLogger(__name__)

_MAX_GRID_CELLS = 16_000_000
_POINT_ROWS_PER_CHUNK = 2_000_000
_FFT_WORKERS = 2


@dataclass(frozen=True)
class TissueGrid:
    """A tissue mask and its scale (the :class:`wsdal_wsi.slide.TissueMask` contract).

    Attributes
    ----------
    mask : numpy.ndarray
        ``(h, w)`` bool; True = tissue.
    downsample : float
        Level-0 pixels per mask pixel.
    """

    mask: np.ndarray
    downsample: float

    def contains(self, xy_level0: np.ndarray) -> np.ndarray:
        """``(N,)`` bool: whether each level-0 point ``(N, 2)`` lies on a tissue pixel."""
        xy = as_points(xy_level0)
        ij = np.floor(xy[:, ::-1] / self.downsample)
        h, w = self.mask.shape
        ok = (ij[:, 0] >= 0) & (ij[:, 0] < h) & (ij[:, 1] >= 0) & (ij[:, 1] < w)
        out = np.zeros(len(xy), dtype=bool)
        idx = ij[ok].astype(np.int64)
        out[ok] = self.mask[idx[:, 0], idx[:, 1]]
        return out

    def area_mm2(self, mpp: float) -> float:
        """Tissue area (mm²) at slide resolution ``mpp`` (µm/px)."""
        return px2_to_mm2(float(np.count_nonzero(self.mask)) * self.downsample**2, mpp)

    def pixels_in(self, geometry: Polygon | MultiPolygon) -> int:
        """Number of tissue pixels whose centre lies in ``geometry`` (level-0, boundary in)."""
        ds = self.downsample
        h, w = self.mask.shape
        x0, y0, x1, y1 = geometry.bounds
        j0, i0 = max(0, math.floor(x0 / ds - 0.5)), max(0, math.floor(y0 / ds - 0.5))
        j1, i1 = min(w, math.ceil(x1 / ds + 0.5)), min(h, math.ceil(y1 / ds + 0.5))
        if j1 <= j0 or i1 <= i0:
            return 0
        ii, jj = np.nonzero(self.mask[i0:i1, j0:j1])
        if len(ii) == 0:
            return 0
        shapely.prepare(geometry)
        inside = shapely.intersects_xy(geometry, (jj + j0 + 0.5) * ds, (ii + i0 + 0.5) * ds)
        return int(np.count_nonzero(inside))


def as_tissue(tissue: Any, downsample: float | None = None) -> TissueGrid | None:
    """Normalise a tissue argument: a ``TissueMask``-like object, an array + downsample, or None.

    Parameters
    ----------
    tissue : object with ``.mask`` and ``.downsample``, or numpy.ndarray ``(h, w)`` bool, or None
    downsample : float, optional
        Level-0 px per mask px; required (only) when ``tissue`` is an array.
    """
    if tissue is None:
        return None
    if hasattr(tissue, "mask") and hasattr(tissue, "downsample"):
        mask, ds = tissue.mask, tissue.downsample if downsample is None else downsample
    else:
        mask, ds = tissue, downsample
        if ds is None:
            raise ConfigError(
                "a tissue mask given as an array needs its downsample (level-0 px per mask px)"
            )
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.size == 0:
        raise InputError(f"tissue mask must be a non-empty 2-D array, got shape {mask.shape}")
    ds = float(ds)
    if not math.isfinite(ds) or ds <= 0:
        raise ConfigError(f"tissue mask downsample must be a positive number, got {downsample!r}")
    return TissueGrid(mask=mask.astype(bool, copy=False), downsample=ds)


def as_points(points: Any) -> np.ndarray:
    arr = np.asarray(points, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 2), dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise InputError(
            f"detections must be an (N, 2) array of level-0 (x, y), got shape {arr.shape}"
        )
    if not np.isfinite(arr).all():
        raise InputError("detections contain non-finite coordinates")
    return arr


def window_half_sizes_level0(window: str, area_px2: float) -> tuple[float, float]:
    """Half-width and half-height (level-0 px) of a window of ``area_px2`` px².

    A circle gives ``(r, r)``; a 4:3 rectangle ``(w/2, h/2)`` with ``w·h = area``.
    """
    if window == "circle":
        r = math.sqrt(area_px2 / math.pi)
        return r, r
    return math.sqrt(area_px2 * 4.0 / 3.0) / 2.0, math.sqrt(area_px2 * 3.0 / 4.0) / 2.0


@dataclass(frozen=True)
class AnalysisGrid:
    """Candidate window centres: the centres of a regular grid of square cells.

    Cell ``(i, j)`` has its centre at level-0 ``(x0 + (j + 0.5)·cell, y0 + (i + 0.5)·cell)``.

    Attributes
    ----------
    origin_level0 : (float, float)
        ``(x0, y0)``, level-0 px.
    cell_level0 : float
        Cell size (level-0 px).
    shape : (int, int)
        ``(rows, cols)``.
    tissue_units : numpy.ndarray or None
        ``(rows, cols)`` int32: tissue mask pixels in each cell (None: no mask).
    units_per_cell : int
        Mask pixels per cell (the denominator of a cell's tissue share).
    """

    origin_level0: tuple[float, float]
    cell_level0: float
    shape: tuple[int, int]
    tissue_units: np.ndarray | None = field(default=None, repr=False)
    units_per_cell: int = 1

    def centre_x(self, j: np.ndarray | int) -> np.ndarray:
        """Level-0 x of the centres of columns ``j``."""
        return self.origin_level0[0] + (np.asarray(j) + 0.5) * self.cell_level0

    def centre_y(self, i: np.ndarray | int) -> np.ndarray:
        """Level-0 y of the centres of rows ``i``."""
        return self.origin_level0[1] + (np.asarray(i) + 0.5) * self.cell_level0


def build_grid(
    *,
    mpp: float,
    grid_um: float,
    tissue: TissueGrid | None,
    extent_level0: tuple[float, float, float, float] | None = None,
) -> AnalysisGrid:
    """Build the analysis grid (see the module docstring).

    With a tissue mask, the grid covers the mask and its cell is the mask
    pixel divided or multiplied by an integer, close to ``grid_um``; without,
    it covers ``extent_level0 = (x0, y0, x1, y1)`` with cells of ``grid_um``.
    Grids are kept under 16 M cells (larger cells on huge slides; logged).
    """
    target_px = um_to_px(grid_um, mpp)
    if tissue is None:
        if extent_level0 is None:
            raise ConfigError("a hotspot search without a tissue mask needs an extent")
        x0, y0, x1, y1 = extent_level0
        cell = max(target_px, math.sqrt(max(x1 - x0, 1.0) * max(y1 - y0, 1.0) / _MAX_GRID_CELLS))
        shape = (max(1, math.ceil((y1 - y0) / cell)), max(1, math.ceil((x1 - x0) / cell)))
        return AnalysisGrid((float(x0), float(y0)), float(cell), shape)
    h, w = tissue.mask.shape
    ds = tissue.downsample
    m = math.ceil(ds / target_px) if ds > target_px else 1
    m = min(m, max(1, math.isqrt(_MAX_GRID_CELLS // (h * w))))
    if m > 1:  # refine: each mask pixel becomes m x m cells
        units = np.repeat(np.repeat(tissue.mask, m, axis=0), m, axis=1).astype(np.int32)
        return AnalysisGrid((0.0, 0.0), ds / m, units.shape, units, 1)
    # merge k x k mask pixels per cell (more on huge masks, to stay under the cell cap)
    k = max(1, int(target_px // ds), math.ceil(math.sqrt(h * w / _MAX_GRID_CELLS)))
    hp, wp = -(-h // k) * k, -(-w // k) * k
    padded = np.zeros((hp, wp), dtype=np.int32)
    padded[:h, :w] = tissue.mask
    units = padded.reshape(hp // k, k, wp // k, k).sum(axis=(1, 3), dtype=np.int32)
    if k * ds > target_px * 1.5:
        log.info("hotspot grid coarsened to %.1f µm cells for a large slide", px_to_um(k * ds, mpp))
    return AnalysisGrid((0.0, 0.0), k * ds, units.shape, units, k * k)


def _exact_bound(t: np.ndarray, inside, *, lower: bool) -> np.ndarray:
    """First (``lower``) or last index ``k`` with ``inside(k)``, from its float estimate ``t``.

    ``ceil(t)`` / ``floor(t)`` is right except where ``t`` lies within rounding
    error of an integer; only there the exact test ``inside(k, sel)`` decides
    (the inside set is a run of consecutive indices, so one step each way is
    enough).
    """
    k = (np.ceil(t) if lower else np.floor(t)).astype(np.int64)
    sel = np.nonzero(np.abs(t - np.rint(t)) < 1e-4)[0]
    if len(sel):
        ks = k[sel]
        step = -1 if lower else 1
        ks = np.where(inside(ks + step, sel), ks + step, ks)
        ks = np.where(inside(ks, sel), ks, ks - step)
        k[sel] = ks
    return k


def _axis_range(centre_of, p, half, cell, origin):
    """Index range [lo, hi] of grid centres c with ``|c - p| <= half`` (exact float test)."""

    def inside(k, sel):
        return np.abs(centre_of(k) - p[sel]) <= half

    lo = _exact_bound((p - half - origin) / cell - 0.5, inside, lower=True)
    hi = _exact_bound((p + half - origin) / cell - 0.5, inside, lower=False)
    return lo, hi


def window_point_counts(
    points: np.ndarray, grid: AnalysisGrid, *, window: str, half_sizes_level0: tuple[float, float]
) -> np.ndarray:
    """Exact number of points in the window centred on every grid cell centre.

    A point ``p`` is in the window centred at ``c`` when ``(cx-px)² + (cy-py)²
    <= r²`` (circle, ``r = half_sizes_level0[0]``) or ``|cx-px| <= w/2`` and
    ``|cy-py| <= h/2`` (rectangle), computed in float64 exactly so.

    Parameters
    ----------
    points : numpy.ndarray
        ``(N, 2)`` float64 level-0 ``(x, y)``.
    grid : AnalysisGrid
    window : {"circle", "rect"}
    half_sizes_level0 : (float, float)
        From :func:`window_half_sizes_level0`.

    Returns
    -------
    numpy.ndarray
        ``grid.shape`` int32 counts.
    """
    rows, cols = grid.shape
    xy = as_points(points)
    cell, (x0, y0) = grid.cell_level0, grid.origin_level0
    hx, hy = half_sizes_level0
    if window == "rect":
        diff = np.zeros((rows + 1, cols + 1), dtype=np.int64)
        if len(xy):
            ilo, ihi = _axis_range(grid.centre_y, xy[:, 1], hy, cell, y0)
            jlo, jhi = _axis_range(grid.centre_x, xy[:, 0], hx, cell, x0)
            ilo, ihi = np.clip(ilo, 0, rows), np.clip(ihi + 1, 0, rows)
            jlo, jhi = np.clip(jlo, 0, cols), np.clip(jhi + 1, 0, cols)
            ok = (ilo < ihi) & (jlo < jhi)
            ilo, ihi, jlo, jhi = ilo[ok], ihi[ok], jlo[ok], jhi[ok]
            for ii, jj, sign in ((ilo, jlo, 1), (ilo, jhi, -1), (ihi, jlo, -1), (ihi, jhi, 1)):
                np.add.at(diff, (ii, jj), sign)
        return diff.cumsum(axis=0).cumsum(axis=1)[:rows, :cols].astype(np.int32)
    r2 = hx * hx
    n_rows = 2 * math.ceil(hx / cell) + 3
    offsets = np.arange(n_rows, dtype=np.int64)
    flat = np.zeros(rows * (cols + 1), dtype=np.int64)
    chunk = max(1, _POINT_ROWS_PER_CHUNK // n_rows)
    for start in range(0, len(xy), chunk):
        px, py = xy[start : start + chunk, 0:1], xy[start : start + chunk, 1:2]
        first = np.ceil((py - hx - y0) / cell - 0.5).astype(np.int64) - 1
        ii = first + offsets  # (n, n_rows): every row the disc can reach
        dy = grid.centre_y(ii) - py
        dy2 = dy * dy
        ok = np.nonzero(((dy2 <= r2) & (ii >= 0) & (ii < rows)).ravel())[0]
        ii = ii.ravel()[ok]
        dy2 = dy2.ravel()[ok]
        pxs = np.broadcast_to(px, (len(px), n_rows)).ravel()[ok]
        half = np.sqrt(r2 - dy2)

        def inside(j, sel, pxs=pxs, dy2=dy2):
            dx = grid.centre_x(j) - pxs[sel]
            return dx * dx + dy2[sel] <= r2

        jlo = _exact_bound((pxs - half - x0) / cell - 0.5, inside, lower=True)
        jhi = _exact_bound((pxs + half - x0) / cell - 0.5, inside, lower=False)
        jlo, jhi = np.clip(jlo, 0, cols), np.clip(jhi + 1, 0, cols)
        keep = jlo < jhi
        base = ii[keep] * (cols + 1)
        flat += np.bincount(base + jlo[keep], minlength=flat.size)
        flat -= np.bincount(base + jhi[keep], minlength=flat.size)
    return flat.reshape(rows, cols + 1).cumsum(axis=1)[:, :cols].astype(np.int32)


def window_kernel(
    grid: AnalysisGrid, *, window: str, half_sizes_level0: tuple[float, float]
) -> np.ndarray:
    """``(2a+1, 2b+1)`` bool: the cell offsets ``(di, dj)`` inside a window centred on a cell.

    Offset ``(di, dj)`` is in when ``(dj·cell)² + (di·cell)² <= r²`` (circle) or
    ``|dj·cell| <= w/2`` and ``|di·cell| <= h/2`` (rectangle).
    """
    hx, hy = half_sizes_level0
    cell = grid.cell_level0
    a, b = int(hy // cell) + 1, int(hx // cell) + 1
    dy = np.arange(-a, a + 1, dtype=np.float64)[:, None] * cell
    dx = np.arange(-b, b + 1, dtype=np.float64)[None, :] * cell
    if window == "circle":
        return dx * dx + dy * dy <= hx * hx
    return (np.abs(dx) <= hx) & (np.abs(dy) <= hy)


def window_tissue_units(
    grid: AnalysisGrid, *, window: str, half_sizes_level0: tuple[float, float]
) -> tuple[np.ndarray, int]:
    """Tissue mask pixels in the window centred on every cell, and the window's total.

    Returns
    -------
    tissue : numpy.ndarray
        ``grid.shape`` int64: tissue mask pixels in the cells whose centre is in
        the window (cells beyond the grid count as glass).
    total : int
        Mask pixels in those cells (the same for every centre).
    """
    if grid.tissue_units is None:
        raise ConfigError("the analysis grid has no tissue mask")
    kernel = window_kernel(grid, window=window, half_sizes_level0=half_sizes_level0)
    total = int(kernel.sum()) * grid.units_per_cell
    units = grid.tissue_units
    if window == "rect":  # a summed-area table: exact in integers
        a, b = (kernel.shape[0] - 1) // 2, (kernel.shape[1] - 1) // 2
        ka = int(np.nonzero(kernel.any(axis=1))[0][-1]) - a  # rows reach +-ka
        kb = int(np.nonzero(kernel.any(axis=0))[0][-1]) - b
        rows, cols = units.shape
        sat = np.zeros((rows + 2 * ka + 1, cols + 2 * kb + 1), dtype=np.int64)
        sat[ka + 1 : ka + 1 + rows, kb + 1 : kb + 1 + cols] = units
        sat = sat.cumsum(axis=0).cumsum(axis=1)
        s, e = 2 * ka + 1, 2 * kb + 1
        tissue = sat[s:, e:] - sat[:-s, e:] - sat[s:, :-e] + sat[:-s, :-e]
        return tissue, total
    return _fft_convolve_same(units, kernel), total


def _fft_convolve_same(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Exact integer 'same' convolution of non-negative integer arrays (float64 FFT, rounded).

    The FFT's error (about 1e-11 here) is far below 0.5, so rounding gives the
    exact integer sums.
    """
    (h, w), (kh, kw) = image.shape, kernel.shape
    shape = (sfft.next_fast_len(h + kh - 1, real=True), sfft.next_fast_len(w + kw - 1, real=True))
    spec = sfft.rfft2(image.astype(np.float64), s=shape, workers=_FFT_WORKERS)
    spec *= sfft.rfft2(kernel.astype(np.float64), s=shape, workers=_FFT_WORKERS)
    full = sfft.irfft2(spec, s=shape, workers=_FFT_WORKERS)
    del spec
    a, b = kh // 2, kw // 2
    return np.rint(full[a : a + h, b : b + w]).astype(np.int64)
