"""Mitosis counts for grading: per region, per slide, and in the hotspot window.

Pure functions over level-0 detection points ``(N, 2)``, the slide's resolution
``mpp`` (µm/px), a tissue mask and region polygons; no slide I/O.

Definitions (what the numbers mean)
-----------------------------------
Tissue
    A boolean mask ``(h, w)`` whose pixel ``(i, j)`` covers the level-0 square
    ``[j·ds, (j+1)·ds) × [i·ds, (i+1)·ds)`` (``ds`` = level-0 px per mask px).
    A detection is *in tissue* when the mask pixel holding it is True (outside
    the mask: not tissue). Tissue area = tissue pixels × ds².
Region counts
    A detection counts for a region when it lies inside the region's polygon
    (boundary included): the count is what QuPath shows inside the region.
    (Detections exist only where prediction looked: the tissue and one mask
    pixel around it, so a figure at the very edge of the tissue is counted
    where the pathologist sees it.) The density denominator is the region's
    *tissue* area (mask pixels whose centre lies in the polygon × ds²), so
    glass inside a hand-drawn region does not dilute the density; the region's
    full polygon area is reported beside it. Without a mask, the polygon area
    is the denominator.
Hotspot
    The placement of a counting window (a circle or a 4:3 rectangle, axis
    aligned, of area ``area_mm2``, or of 10 HPF of a field diameter) that holds
    the most detections, among the placements whose window is at least
    ``min_tissue_fraction`` tissue (default 0.5: a window may reach over the
    tissue edge, but cannot sit half on glass). A detection is in the window
    when it lies in the closed disc / rectangle; the count is what QuPath shows
    inside the hotspot annotation, whose polygon is cut to the image where the
    window reaches beyond it (no detection lies outside the image).
Search (exact on a stated grid)
    Candidate window centres are the centres of an *analysis grid* aligned
    with the tissue mask, whose cell is about ``grid_um`` (default 10 µm: the
    mask pixel refined by an integer factor, or an integer number of mask
    pixels merged). For every candidate the count is exact (each detection is
    tested against the window by the same float formula a brute-force loop
    uses, through difference arrays: O(N·r/cell + cells)), and the tissue
    fraction is exact under its definition: the share of tissue among the mask
    pixels of the analysis cells whose centre lies in the window (a summed-area
    table for rectangles, an FFT convolution rounded to integers for circles).
    Compared with sliding the window continuously, the grid loses at most what
    moving the window to the nearest grid centre loses: the count is never
    more than the continuous maximum, and never less than the continuous
    maximum of a window shrunk by half a cell on each side (rectangle) or by
    half a cell diagonal in radius (circle: 5.7 µm for 8 µm cells, under 1 %
    of the 0.8 mm radius of a 2 mm² circle). (The tissue rule is evaluated
    at the grid centres.) Ties go to the window with more tissue, then to
    the first in reading order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon, shape
from shapely.ops import unary_union

from wsdal_wsi.counting.grid import as_points, as_tissue
from wsdal_wsi.counting.hotspot import (
    Hotspot,
    HotspotSettings,
    find_hotspot,
    finite_or_none,
    geojson_geometry,
)
from wsdal_wsi.counting.uncertainty import CountRange, count_range
from wsdal_wsi.errors import InputError
from wsdal_wsi.progress import NULL_PROGRESS, Progress
from wsdal_wsi.units import check_mpp, px2_to_mm2

__all__ = [
    "ClassCount",
    "Region",
    "RegionCount",
    "SlideCounts",
    "count_by_class",
    "count_regions",
    "count_slide",
]


@dataclass(frozen=True)
class Region:
    """An area to count in (a pathologist's annotation), level-0.

    Attributes
    ----------
    geometry : shapely Polygon or MultiPolygon
        Level-0 pixels.
    class_name : str or None
        Its QuPath class (e.g. ``"Region"``, ``"Tumor"``).
    name : str or None
        Its QuPath name.
    """

    geometry: Polygon | MultiPolygon
    class_name: str | None = None
    name: str | None = None


# ---------------------------------------------------------------------------- regions


@dataclass(frozen=True)
class RegionCount:
    """The count of one region (or one class's union of regions).

    Attributes
    ----------
    name, class_name : str or None
    area_mm2 : float
        Polygon area (mm²).
    tissue_area_mm2 : float or None
        Tissue inside the polygon (mm²); None without a tissue mask.
    mitoses : int
        Detections inside the polygon.
    per_mm2 : float or None
        ``mitoses`` / tissue area (polygon area without a mask); None if that is 0.
    geometry : shapely Polygon or MultiPolygon, or None
        Level-0; None for a class's row read back from a summary (its union is
        not stored).
    """

    name: str | None
    class_name: str | None
    area_mm2: float
    tissue_area_mm2: float | None
    mitoses: int
    per_mm2: float | None
    geometry: Polygon | MultiPolygon | None = field(default=None, repr=False, compare=False)

    @property
    def label(self) -> str:
        """``name`` if any, else the class, else ``"Region"``."""
        return self.name or self.class_name or "Region"

    def to_dict(self, *, with_geometry: bool = True) -> dict[str, Any]:
        """JSON-able form (geometry as a GeoJSON mapping, level-0; NaN as None)."""
        return {
            "name": self.name,
            "class_name": self.class_name,
            "area_mm2": self.area_mm2,
            "tissue_area_mm2": self.tissue_area_mm2,
            "mitoses": self.mitoses,
            "per_mm2": finite_or_none(self.per_mm2),
            "geometry": geojson_geometry(self.geometry)
            if with_geometry and self.geometry is not None
            else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RegionCount:
        """Inverse of :meth:`to_dict`."""
        geometry = data.get("geometry")
        return cls(
            name=data.get("name"),
            class_name=data.get("class_name"),
            area_mm2=float(data["area_mm2"]),
            tissue_area_mm2=data.get("tissue_area_mm2"),
            mitoses=int(data["mitoses"]),
            per_mm2=data.get("per_mm2"),
            geometry=None if geometry is None else shape(geometry),
        )


ClassCount = RegionCount  # a class's count: the same fields, over the union of its regions


def _count_in(geometry, xy, *, mpp, tissue, name, class_name) -> RegionCount:
    if not isinstance(geometry, (Polygon, MultiPolygon)) or geometry.is_empty:
        raise InputError(
            f"region {name or class_name!r}: needs a non-empty Polygon or MultiPolygon"
        )
    shapely.prepare(geometry)
    inside = (
        int(np.count_nonzero(shapely.intersects_xy(geometry, xy[:, 0], xy[:, 1]))) if len(xy) else 0
    )
    area = px2_to_mm2(geometry.area, mpp)
    tissue_area = (
        None
        if tissue is None
        else px2_to_mm2(tissue.pixels_in(geometry) * tissue.downsample**2, mpp)
    )
    denom = area if tissue_area is None else tissue_area
    return RegionCount(
        name=name,
        class_name=class_name,
        area_mm2=area,
        tissue_area_mm2=tissue_area,
        mitoses=inside,
        per_mm2=inside / denom if denom > 0 else None,
        geometry=geometry,
    )


def count_regions(
    points: np.ndarray,
    regions: Iterable[Any],
    *,
    mpp: float,
    tissue: Any = None,
    tissue_downsample: float | None = None,
) -> list[RegionCount]:
    """Count detections per region (see the module docstring for the rules).

    Parameters
    ----------
    points : numpy.ndarray
        ``(N, 2)`` float, level-0 ``(x, y)`` of the detections.
    regions : iterable of Region (or anything with ``geometry``, ``class_name``, ``name``)
    mpp : float
        Slide resolution (µm/px).
    tissue, tissue_downsample
        See :func:`as_tissue`: the tissue areas (density denominators); None: the
        polygon areas.

    Returns
    -------
    list of RegionCount
        In the order of ``regions``.
    """
    mpp = check_mpp(mpp)
    tis = as_tissue(tissue, tissue_downsample)
    xy = as_points(points)
    return [
        _count_in(r.geometry, xy, mpp=mpp, tissue=tis, name=r.name, class_name=r.class_name)
        for r in regions
    ]


def count_by_class(
    points: np.ndarray,
    regions: Iterable[Any],
    *,
    mpp: float,
    tissue: Any = None,
    tissue_downsample: float | None = None,
) -> list[ClassCount]:
    """Count detections per region class, over the union of that class's regions.

    Overlapping regions of one class count their shared detections once.
    Arguments as :func:`count_regions`; returns one :data:`ClassCount` per
    class (``name`` None), sorted by class name.
    """
    by_class: dict[str, list] = {}
    for r in regions:
        by_class.setdefault(r.class_name or "Unclassified", []).append(r.geometry)
    merged = [Region(unary_union(geoms), class_name=c) for c, geoms in sorted(by_class.items())]
    return count_regions(
        points, merged, mpp=mpp, tissue=tissue, tissue_downsample=tissue_downsample
    )


# ---------------------------------------------------------------------------- per slide


@dataclass(frozen=True)
class SlideCounts:
    """Everything counted on one slide.

    Attributes
    ----------
    detections : int
        All detections.
    in_tissue : int
        Detections in tissue (all of them without a mask).
    tissue_area_mm2 : float or None
        None without a tissue mask.
    per_mm2 : float or None
        ``in_tissue / tissue_area_mm2`` (None without tissue area).
    regions : list of RegionCount
        One per region, in input order.
    classes : list of ClassCount
        One per region class (union of its regions).
    hotspot : Hotspot or None
    settings : HotspotSettings
    hotspot_range : CountRange or None
        The count range of the hotspot from its candidates' calibrated probabilities
        (None without a hotspot or without probabilities).
    """

    detections: int
    in_tissue: int
    tissue_area_mm2: float | None
    per_mm2: float | None
    regions: list[RegionCount]
    classes: list[ClassCount]
    hotspot: Hotspot | None
    settings: HotspotSettings
    hotspot_range: CountRange | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form: the summary's ``detections``/``tissue`` numbers, regions, hotspot."""
        return {
            "detections": self.detections,
            "in_tissue": self.in_tissue,
            "tissue_area_mm2": self.tissue_area_mm2,
            "per_mm2": finite_or_none(self.per_mm2),
            "regions": [r.to_dict() for r in self.regions],
            "classes": [c.to_dict(with_geometry=False) for c in self.classes],
            "hotspot": None if self.hotspot is None else self.hotspot.to_dict(),
            "hotspot_range": None if self.hotspot_range is None else self.hotspot_range.to_dict(),
            "settings": self.settings.to_dict(),
        }


def count_slide(
    points: np.ndarray,
    *,
    mpp: float,
    tissue: Any = None,
    tissue_downsample: float | None = None,
    regions: Iterable[Any] = (),
    settings: HotspotSettings = HotspotSettings(),
    slide_dimensions: tuple[int, int] | None = None,
    probabilities: np.ndarray | None = None,
    near_points: np.ndarray | None = None,
    near_probabilities: np.ndarray | None = None,
    progress: Progress | None = None,
) -> SlideCounts:
    """Count one slide: whole tissue, regions, region classes and the hotspot.

    Parameters
    ----------
    points : numpy.ndarray
        ``(N, 2)`` float, level-0 ``(x, y)`` of the detections (already
        thresholded).
    mpp : float
        Slide resolution (µm/px).
    tissue, tissue_downsample
        See :func:`as_tissue`.
    regions : iterable of Region
    settings : HotspotSettings
    slide_dimensions : (int, int), optional
        Level-0 ``(w, h)`` (used without a tissue mask).
    probabilities : numpy.ndarray, optional
        ``(N,)`` calibrated p(mitosis) of ``points``: with them the hotspot gets its
        count range (:mod:`wsdal_wsi.counting.uncertainty`).
    near_points, near_probabilities : numpy.ndarray, optional
        ``(M, 2)`` level-0 near misses and their ``(M,)`` calibrated probabilities
        (candidates below the threshold: they widen the range upwards).
    progress : Progress, optional

    Returns
    -------
    SlideCounts
    """
    mpp = check_mpp(mpp)
    tis = as_tissue(tissue, tissue_downsample)
    xy = as_points(points)
    regions = list(regions)
    with (progress or NULL_PROGRESS).task("Counting", total=3) as task:
        in_tis = int(np.count_nonzero(tis.contains(xy))) if tis is not None else len(xy)
        tissue_area = tis.area_mm2(mpp) if tis is not None else None
        region_counts = count_regions(xy, regions, mpp=mpp, tissue=tis)
        class_counts = count_by_class(xy, regions, mpp=mpp, tissue=tis) if regions else []
        task.advance()
        hotspot = find_hotspot(
            xy, mpp=mpp, tissue=tis, settings=settings, slide_dimensions=slide_dimensions
        )
        task.advance(2)
    rng = None
    if hotspot is not None and probabilities is not None:
        rng = _hotspot_range(hotspot, xy, probabilities, near_points, near_probabilities, settings)
    return SlideCounts(
        detections=len(xy),
        in_tissue=in_tis,
        tissue_area_mm2=tissue_area,
        per_mm2=in_tis / tissue_area if tissue_area else None,
        regions=region_counts,
        classes=class_counts,
        hotspot=hotspot,
        settings=settings,
        hotspot_range=rng,
    )


def _hotspot_range(
    hotspot: Hotspot,
    xy: np.ndarray,
    prob: np.ndarray,
    near_xy: np.ndarray | None,
    near_prob: np.ndarray | None,
    settings: HotspotSettings,
) -> CountRange:
    """The count range of the candidates (detections and near misses) in the window (every
    one the window holds, as its count)."""
    pts = [xy]
    ps = [np.asarray(prob, dtype=np.float64).reshape(-1)]
    if near_xy is not None and near_prob is not None:
        pts.append(as_points(near_xy))
        ps.append(np.asarray(near_prob, dtype=np.float64).reshape(-1))
    all_xy, all_p = np.concatenate(pts), np.concatenate(ps)
    if len(all_p) != len(all_xy):
        raise InputError(f"{len(all_xy)} candidate points but {len(all_p)} probabilities")
    return count_range(all_p[hotspot.contains(all_xy)], settings=settings)
