"""The hotspot: the counting window, at least half tissue, that holds the most detections.

See :mod:`wsdal_wsi.counting` for the definitions (tissue, window, admissible
placements) and :mod:`wsdal_wsi.counting.grid` for the exact grid engine. The
search is exact on its candidate grid (cell at most ``grid_um``, default
10 µm) and within half a cell per axis of the best continuous placement.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from shapely.geometry import Point, Polygon, box, mapping, shape

from wsdal_wsi.counting.grading import (
    DEFAULT_FIELD_DIAMETER_MM,
    MitoticScore,
    check_field_diameter,
    score_window,
    ten_hpf_area_mm2,
)
from wsdal_wsi.counting.grid import (
    AnalysisGrid,
    as_points,
    as_tissue,
    build_grid,
    window_half_sizes_level0,
    window_point_counts,
    window_tissue_units,
)
from wsdal_wsi.errors import ConfigError
from wsdal_wsi.units import check_mpp, mm2_to_px2, px_to_um

__all__ = [
    "WINDOW_SHAPES",
    "Hotspot",
    "HotspotSearch",
    "HotspotSettings",
    "find_hotspot",
    "finite_or_none",
    "geojson_geometry",
    "hotspot_search",
    "window_geometry",
]

#: Counting-window shapes: a disc, or an axis-aligned rectangle of aspect 4:3 (w:h).
WINDOW_SHAPES = ("circle", "rect")


def geojson_geometry(geometry: Any) -> dict[str, Any]:
    """A shapely geometry as a plain GeoJSON mapping (lists, as it reads back from JSON)."""
    return json.loads(json.dumps(mapping(geometry)))


def finite_or_none(value: Any) -> float | None:
    """``value`` as a float, or None when it is None, NaN or infinite (JSON has neither)."""
    if value is None:
        return None
    v = float(value)
    return v if math.isfinite(v) else None


# ---------------------------------------------------------------------------- hotspot settings


@dataclass(frozen=True)
class HotspotSettings:
    """How the hotspot window is chosen and scored.

    Attributes
    ----------
    window : {"circle", "rect"}
        Disc, or axis-aligned rectangle of aspect 4:3 (width:height).
    area_mm2 : float or None
        Area mode: window area (mm², default 2). ``None``: 10-HPF mode, the
        window is 10 fields of ``field_diameter_mm`` (``10 π (d/2)²``).
    field_diameter_mm : float
        Microscope field diameter (mm) whose Nottingham row scores the count
        (see :mod:`wsdal_wsi.counting.grading`); one of the table's rows (default 0.55).
    min_tissue_fraction : float
        Smallest share of tissue a window may have, in [0, 1] (default 0.5).
    grid_um : float
        Target spacing (µm) of candidate window centres (default 10).
    """

    window: str = "circle"
    area_mm2: float | None = 2.0
    field_diameter_mm: float = DEFAULT_FIELD_DIAMETER_MM
    min_tissue_fraction: float = 0.5
    grid_um: float = 10.0

    def __post_init__(self) -> None:
        if self.window not in WINDOW_SHAPES:
            raise ConfigError(
                f"window must be one of {', '.join(WINDOW_SHAPES)}, got {self.window!r}"
            )
        if self.area_mm2 is not None:
            a = float(self.area_mm2)
            if not math.isfinite(a) or not 0 < a <= 100:
                raise ConfigError(f"hotspot area must be in (0, 100] mm², got {self.area_mm2!r}")
            object.__setattr__(self, "area_mm2", a)
        object.__setattr__(self, "field_diameter_mm", check_field_diameter(self.field_diameter_mm))
        f = float(self.min_tissue_fraction)
        if not math.isfinite(f) or not 0 <= f <= 1:
            raise ConfigError(
                f"minimum tissue fraction must be in [0, 1], got {self.min_tissue_fraction!r}"
            )
        object.__setattr__(self, "min_tissue_fraction", f)
        g = float(self.grid_um)
        if not math.isfinite(g) or not 0 < g <= 200:
            raise ConfigError(f"hotspot grid spacing must be in (0, 200] µm, got {self.grid_um!r}")
        object.__setattr__(self, "grid_um", g)

    @property
    def mode(self) -> str:
        """``"area"`` or ``"hpf"``."""
        return "hpf" if self.area_mm2 is None else "area"

    @property
    def window_area_mm2(self) -> float:
        """The window's area (mm²)."""
        return ten_hpf_area_mm2(self.field_diameter_mm) if self.area_mm2 is None else self.area_mm2

    def describe(self) -> str:
        """A short human-readable description, e.g. ``"2 mm² circle"``."""
        shape = "circle" if self.window == "circle" else "4:3 rectangle"
        if self.area_mm2 is None:
            d, a = self.field_diameter_mm, self.window_area_mm2
            return f"10 HPF (Ø {d:.2f} mm, {a:.2f} mm²) {shape}"
        return f"{self.area_mm2:g} mm² {shape} (score: 10 HPF Ø {self.field_diameter_mm:.2f} mm)"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "window": self.window,
            "mode": self.mode,
            "area_mm2": self.area_mm2,
            "field_diameter_mm": self.field_diameter_mm,
            "window_area_mm2": self.window_area_mm2,
            "min_tissue_fraction": self.min_tissue_fraction,
            "grid_um": self.grid_um,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HotspotSettings:
        """Inverse of :meth:`to_dict` (derived keys ignored; missing ones take the defaults)."""
        d = cls()
        return cls(
            window=data.get("window", d.window),
            area_mm2=data.get("area_mm2"),
            field_diameter_mm=data.get("field_diameter_mm", d.field_diameter_mm),
            min_tissue_fraction=data.get("min_tissue_fraction", d.min_tissue_fraction),
            grid_um=data.get("grid_um", d.grid_um),
        )

    @classmethod
    def from_options(
        cls,
        *,
        window: str | None = None,
        area_mm2: float | None = None,
        hpf_diameter_mm: float | None = None,
        min_tissue_fraction: float | None = None,
        grid_um: float | None = None,
    ) -> HotspotSettings:
        """The settings the counting options mean (``wsdal predict`` and ``wsdal count``).

        ``hpf_diameter_mm`` alone: the window is 10 HPF of that field diameter.
        ``area_mm2`` (alone or with ``hpf_diameter_mm``): a window of that area,
        scored on the Nottingham row of the diameter (default 0.55 mm). Neither:
        the default area (2 mm²). Any option left ``None`` takes its default.

        Raises
        ------
        ConfigError
            An option out of range (the message names it and the value).
        """
        d = cls()
        if hpf_diameter_mm is not None and area_mm2 is None:
            area = None
        else:
            area = d.area_mm2 if area_mm2 is None else area_mm2
        return cls(
            window=d.window if window is None else window,
            area_mm2=area,
            field_diameter_mm=d.field_diameter_mm if hpf_diameter_mm is None else hpf_diameter_mm,
            min_tissue_fraction=(
                d.min_tissue_fraction if min_tissue_fraction is None else min_tissue_fraction
            ),
            grid_um=d.grid_um if grid_um is None else grid_um,
        )


# ---------------------------------------------------------------------------- hotspot


@dataclass(frozen=True)
class Hotspot:
    """The counting window holding the most detections (among those with enough tissue).

    Attributes
    ----------
    geometry : shapely Polygon
        The window, level-0 px (a 256-gon for a circle), cut to the image where it
        reaches beyond it (:attr:`is_whole_window` is then False).
    centre_level0 : (float, float)
        Window centre, level-0 ``(x, y)``.
    window : {"circle", "rect"}
    half_sizes_level0 : (float, float)
        Radius twice for a circle; half-width and half-height for a rectangle.
    count : int
        Detections inside the window (what QuPath shows inside ``geometry``).
    area_mm2 : float
        Window area (mm²).
    per_mm2 : float
        ``count / area_mm2``.
    tissue_fraction : float or None
        Share of tissue in the window (None without a tissue mask).
    score : MitoticScore
        The Nottingham score of the count (see :mod:`wsdal_wsi.counting.grading`).
    settings : HotspotSettings
    grid_cell_um : float
        Spacing of the candidate centres actually used (µm).
    """

    geometry: Polygon = field(repr=False, compare=False)
    centre_level0: tuple[float, float]
    window: str
    half_sizes_level0: tuple[float, float]
    count: int
    area_mm2: float
    per_mm2: float
    tissue_fraction: float | None
    score: MitoticScore
    settings: HotspotSettings
    grid_cell_um: float

    @property
    def field_diameter_mm(self) -> float:
        """The field diameter whose Nottingham row scored the count (mm)."""
        return self.score.field_diameter_mm

    @property
    def is_whole_window(self) -> bool:
        """Whether ``geometry`` is the whole window (not cut at the image's edge)."""
        whole = window_geometry(self.window, self.centre_level0, self.half_sizes_level0)
        return abs(self.geometry.area - whole.area) <= 1e-9 * whole.area

    def contains(self, xy_level0: np.ndarray) -> np.ndarray:
        """``(N,)`` bool: which level-0 ``(N, 2)`` points lie in the closed window."""
        xy = np.asarray(xy_level0, dtype=np.float64).reshape(-1, 2)
        dx = xy[:, 0] - self.centre_level0[0]
        dy = xy[:, 1] - self.centre_level0[1]
        hx, hy = self.half_sizes_level0
        if self.window == "circle":
            return dx * dx + dy * dy <= hx * hx
        return (np.abs(dx) <= hx) & (np.abs(dy) <= hy)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (geometry as a GeoJSON mapping, level-0; settings not included)."""
        return {
            "geometry": geojson_geometry(self.geometry),
            "centre_level0": [float(v) for v in self.centre_level0],
            "window": self.window,
            "half_sizes_level0": [float(v) for v in self.half_sizes_level0],
            "count": self.count,
            "area_mm2": self.area_mm2,
            "per_mm2": self.per_mm2,
            "tissue_fraction": finite_or_none(self.tissue_fraction),
            "grid_cell_um": self.grid_cell_um,
            "field_diameter_mm": self.field_diameter_mm,
            "score": self.score.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, settings: HotspotSettings) -> Hotspot:
        """Inverse of :meth:`to_dict`, with the settings the hotspot was found with."""
        return cls(
            geometry=shape(data["geometry"]),
            centre_level0=tuple(float(v) for v in data["centre_level0"]),  # type: ignore[arg-type]
            window=str(data["window"]),
            half_sizes_level0=tuple(float(v) for v in data["half_sizes_level0"]),  # type: ignore[arg-type]
            count=int(data["count"]),
            area_mm2=float(data["area_mm2"]),
            per_mm2=float(data["per_mm2"]),
            tissue_fraction=data.get("tissue_fraction"),
            score=MitoticScore.from_dict(data["score"]),
            settings=settings,
            grid_cell_um=float(data["grid_cell_um"]),
        )


@dataclass(frozen=True)
class HotspotSearch:
    """Every candidate of a hotspot search (for :func:`find_hotspot`, tests and maps).

    Attributes
    ----------
    grid : AnalysisGrid
    half_sizes_level0 : (float, float)
    counts : numpy.ndarray
        ``grid.shape`` int32: detections in the window at each centre.
    tissue : numpy.ndarray or None
        ``grid.shape`` int64: tissue mask pixels in each window (None: no mask).
    tissue_total : int
        Mask pixels per window (denominator of the tissue fraction).
    admissible : numpy.ndarray
        ``grid.shape`` bool: windows with ``tissue >= min_tissue_fraction * tissue_total``.
    """

    grid: AnalysisGrid
    half_sizes_level0: tuple[float, float]
    counts: np.ndarray = field(repr=False)
    tissue: np.ndarray | None = field(repr=False)
    tissue_total: int
    admissible: np.ndarray = field(repr=False)


def hotspot_search(
    points: np.ndarray,
    *,
    mpp: float,
    tissue: Any = None,
    tissue_downsample: float | None = None,
    settings: HotspotSettings = HotspotSettings(),
    slide_dimensions: tuple[int, int] | None = None,
) -> HotspotSearch | None:
    """Count every candidate window (see the module docstring); None if there is nowhere to look.

    Parameters are those of :func:`find_hotspot`.
    """
    mpp = check_mpp(mpp)
    tis = as_tissue(tissue, tissue_downsample)
    xy = as_points(points)  # every detection the window holds counts (as QuPath shows it)
    half = window_half_sizes_level0(settings.window, mm2_to_px2(settings.window_area_mm2, mpp))
    extent = None
    if tis is None:
        if slide_dimensions is not None:
            extent = (0.0, 0.0, float(slide_dimensions[0]), float(slide_dimensions[1]))
        elif len(xy):
            lo, hi = xy.min(axis=0), xy.max(axis=0)
            extent = (lo[0] - half[0], lo[1] - half[1], hi[0] + half[0], hi[1] + half[1])
        else:
            return None
    grid = build_grid(mpp=mpp, grid_um=settings.grid_um, tissue=tis, extent_level0=extent)
    counts = window_point_counts(xy, grid, window=settings.window, half_sizes_level0=half)
    if tis is None:
        return HotspotSearch(grid, half, counts, None, 0, np.ones(grid.shape, dtype=bool))
    tissue_px, total = window_tissue_units(grid, window=settings.window, half_sizes_level0=half)
    admissible = (tissue_px > 0) & (tissue_px >= settings.min_tissue_fraction * total)
    return HotspotSearch(grid, half, counts, tissue_px, total, admissible)


def window_geometry(window: str, centre_level0: tuple[float, float], half_sizes_level0) -> Polygon:
    """The window polygon (level-0): a 256-gon disc or an axis-aligned rectangle."""
    cx, cy = centre_level0
    hx, hy = half_sizes_level0
    if window == "circle":
        return Point(cx, cy).buffer(hx, quad_segs=64)
    return box(cx - hx, cy - hy, cx + hx, cy + hy)


def _image_box(slide_dimensions: tuple[int, int] | None, tissue: Any) -> Polygon | None:
    """The image's level-0 rectangle: the slide's dimensions, else the tissue mask's extent."""
    if slide_dimensions is not None:
        return box(0.0, 0.0, float(slide_dimensions[0]), float(slide_dimensions[1]))
    if tissue is not None:
        h, w = tissue.mask.shape
        return box(0.0, 0.0, w * tissue.downsample, h * tissue.downsample)
    return None


def find_hotspot(
    points: np.ndarray,
    *,
    mpp: float,
    tissue: Any = None,
    tissue_downsample: float | None = None,
    settings: HotspotSettings = HotspotSettings(),
    slide_dimensions: tuple[int, int] | None = None,
) -> Hotspot | None:
    """Find the hotspot: the admissible window holding the most detections.

    Every detection inside the window counts, so that the count is what QuPath
    shows inside the hotspot annotation; the tissue mask decides where a window
    may be (``min_tissue_fraction``). The polygon is cut to the image (its level-0
    rectangle: ``slide_dimensions``, else the mask's extent).

    Parameters
    ----------
    points : numpy.ndarray
        ``(N, 2)`` float, level-0 ``(x, y)`` of the detections.
    mpp : float
        Slide resolution (µm/px).
    tissue, tissue_downsample
        See :func:`as_tissue`. None: no tissue rule; every detection counts and
        every centre is admissible.
    settings : HotspotSettings
        Window shape and size, field diameter, tissue rule, grid spacing.
    slide_dimensions : (int, int), optional
        Level-0 ``(w, h)``: where to search without a tissue mask (default:
        around the detections).

    Returns
    -------
    Hotspot or None
        None when no window is admissible (e.g. less tissue than
        ``min_tissue_fraction`` of a window anywhere) or, without a mask,
        when there are no detections and no slide dimensions.
    """
    search = hotspot_search(
        points,
        mpp=mpp,
        tissue=tissue,
        tissue_downsample=tissue_downsample,
        settings=settings,
        slide_dimensions=slide_dimensions,
    )
    if search is None or not search.admissible.any():
        return None
    counts = np.where(search.admissible, search.counts.astype(np.int64), -1)
    best = counts == counts.max()
    if search.tissue is not None:
        tie = np.where(best, search.tissue, -1)
        best &= tie == tie.max()
    i, j = (int(v) for v in np.unravel_index(int(np.argmax(best)), best.shape))
    grid = search.grid
    centre = (float(grid.centre_x(j)), float(grid.centre_y(i)))
    count = int(search.counts[i, j])
    frac = None if search.tissue is None else float(search.tissue[i, j]) / search.tissue_total
    area = settings.window_area_mm2
    geometry = window_geometry(settings.window, centre, search.half_sizes_level0)
    image = _image_box(slide_dimensions, as_tissue(tissue, tissue_downsample))
    if image is not None and not image.contains(geometry):
        geometry = geometry.intersection(image)  # drawn inside the image; holds the same points
    return Hotspot(
        geometry=geometry,
        centre_level0=centre,
        window=settings.window,
        half_sizes_level0=search.half_sizes_level0,
        count=count,
        area_mm2=area,
        per_mm2=count / area,
        tissue_fraction=frac,
        score=score_window(
            count,
            window_area_mm2=settings.area_mm2,
            field_diameter_mm=settings.field_diameter_mm,
        ),
        settings=settings,
        grid_cell_um=px_to_um(grid.cell_level0, mpp),
    )
