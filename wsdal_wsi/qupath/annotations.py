"""From QuPath objects to the annotation model; reading points for evaluation.

:func:`read_annotations` is what other modules call to get what a pathologist
marked in a QuPath GeoJSON file; :func:`read_points` gives the points of a file
as arrays (ground truth or the tool's own detections) for evaluation.
"""

from __future__ import annotations

import logging
import math
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

from wsdal_wsi.qupath.geojson_read import QuPathObject, read_objects
from wsdal_wsi.qupath.model import (
    PROBABILITY_MEASUREMENT,
    AreaAnnotation,
    ClassSettings,
    ImageAnnotations,
    PointAnnotation,
    correction_of,
)

__all__ = ["PointSet", "annotations_from_objects", "read_annotations", "read_points"]

log = logging.getLogger(__name__)


def _polygons(geometry: BaseGeometry) -> Polygon | MultiPolygon | None:
    geom = geometry if geometry.is_valid else shapely.make_valid(geometry)
    if isinstance(geom, (Polygon, MultiPolygon)):
        return geom
    polys = [g for g in getattr(geom, "geoms", []) if isinstance(g, Polygon)]
    if not polys:
        return None
    return polys[0] if len(polys) == 1 else MultiPolygon(polys)


def _answer(obj: QuPathObject, classes: ClassSettings) -> str | None:
    """The correction a tool-made point object carries (None: unanswered, or not a point)."""
    if obj.geometry_type not in ("Point", "MultiPoint") or not obj.coordinates:
        return None
    return correction_of(
        object_type=obj.object_type,
        class_name=obj.class_name,
        is_locked=obj.is_locked,
        classes=classes,
    )


def annotations_from_objects(
    objects: Iterable[QuPathObject],
    *,
    classes: ClassSettings = ClassSettings(),
    skip_tool_objects: bool = True,
) -> tuple[ImageAnnotations, list[str]]:
    """Turn QuPath objects into the annotation model; also return notes on what was left out.

    Points come from Point/MultiPoint geometries of annotations and detections
    (a QuPath "Points" annotation gives one point per click); areas from
    polygons of annotations (invalid polygons are repaired with
    ``shapely.make_valid``). Polygon detections and cells, lines and TMA cores
    are left out. Objects wsdal-wsi made are left out when ``skip_tool_objects``,
    except the point objects a pathologist answered (a detection relabelled or locked,
    a ``WS-DAL check``/``WS-DAL review`` question relabelled): they become points with
    their :func:`~wsdal_wsi.qupath.model.correction_of`. Unclassified objects get
    ``classes.unclassified_as``.

    Returns
    -------
    (ImageAnnotations, list of str)
        The model and human-readable notes (``"12 line annotations ignored"``).
    """
    points: list[PointAnnotation] = []
    areas: list[AreaAnnotation] = []
    left_out: Counter[str] = Counter()
    for obj in objects:
        if skip_tool_objects and obj.tool_made:
            answer = _answer(obj, classes)
            if answer is None:
                left_out["objects made by wsdal-wsi (named 'WS-DAL...') skipped"] += 1
            else:
                points.extend(PointAnnotation(x, y, obj.class_name, answer) for x, y in obj.points)
            continue
        if obj.object_type in ("root", "tmaCore"):
            left_out[f"{obj.object_type} objects ignored"] += 1
            continue
        cls = classes.resolve(obj.class_name)
        kind = obj.geometry_type
        if kind in ("Point", "MultiPoint"):
            if not obj.coordinates:
                left_out["empty Points annotations"] += 1
            points.extend(PointAnnotation(x, y, cls) for x, y in obj.points)
        elif kind in ("Polygon", "MultiPolygon", "GeometryCollection"):
            if obj.object_type != "annotation":
                left_out[f"polygon {obj.object_type}s ignored"] += 1
                continue
            geom = obj.geometry
            poly = _polygons(geom)
            if poly is None or poly.is_empty:
                left_out["area annotations without a usable polygon ignored"] += 1
                continue
            if poly is not geom:
                left_out["invalid polygons repaired"] += 1
            areas.append(AreaAnnotation(poly, cls, name=obj.name, measurements=obj.measurements))
        else:
            left_out[f"line {obj.object_type}s ignored"] += 1
    notes = [f"{n} {what}" for what, n in sorted(left_out.items())]
    return ImageAnnotations(points=tuple(points), areas=tuple(areas)), notes


def read_annotations(
    path: str | os.PathLike[str],
    *,
    classes: ClassSettings = ClassSettings(),
    skip_tool_objects: bool = True,
) -> ImageAnnotations:
    """Read a QuPath GeoJSON file into the annotation model.

    See :func:`annotations_from_objects` for what becomes a point or an area.
    Raises :class:`~wsdal_wsi.errors.AnnotationFormatError` on a malformed file.
    """
    annotations, notes = annotations_from_objects(
        read_objects(path), classes=classes, skip_tool_objects=skip_tool_objects
    )
    for note in notes:
        log.info("%s: %s", path, note)
    return annotations


@dataclass(frozen=True)
class PointSet:
    """Points read from a GeoJSON file, as arrays (for evaluation).

    Attributes
    ----------
    xy : numpy.ndarray
        ``(N, 2)`` float64, level-0 pixels.
    probability : numpy.ndarray
        ``(N,)`` float64, the ``"WS-DAL probability"`` measurement; NaN where absent.
    class_names : tuple of (str or None)
    tool_made : numpy.ndarray
        ``(N,)`` bool: made by wsdal-wsi.
    """

    xy: np.ndarray
    probability: np.ndarray
    class_names: tuple[str | None, ...]
    tool_made: np.ndarray

    def __len__(self) -> int:
        return len(self.xy)


def read_points(
    path: str | os.PathLike[str],
    *,
    classes: Iterable[str] | None = None,
    tool_made: bool | None = None,
) -> PointSet:
    """Read the points of a GeoJSON file (annotations and detections, MultiPoints expanded).

    Parameters
    ----------
    classes : iterable of str, optional
        Keep only points of these classes.
    tool_made : bool, optional
        ``True``: only wsdal-wsi's detections; ``False``: only others; ``None``: all.
    """
    wanted = None if classes is None else set(classes)
    xy: list[tuple[float, float]] = []
    prob: list[float] = []
    names: list[str | None] = []
    made: list[bool] = []
    for obj in read_objects(path):
        if wanted is not None and obj.class_name not in wanted:
            continue
        if tool_made is not None and obj.tool_made != tool_made:
            continue
        p = obj.measurements.get(PROBABILITY_MEASUREMENT, math.nan)
        for pt in obj.points:
            xy.append(pt)
            prob.append(p)
            names.append(obj.class_name)
            made.append(obj.tool_made)
    return PointSet(
        xy=np.asarray(xy, dtype=np.float64).reshape(-1, 2),
        probability=np.asarray(prob, dtype=np.float64),
        class_names=tuple(names),
        tool_made=np.asarray(made, dtype=bool),
    )
