"""Validating the geometry of a QuPath GeoJSON feature, and building its shapely form.

Part of the reader (:mod:`wsdal_wsi.qupath.geojson_read`): every coordinate must
be a finite number that fits a float, a polygon ring needs three distinct points,
and GeometryCollections may nest only a few levels (QuPath writes one), so that a
hostile file cannot exhaust the recursion of the reader.
"""

from __future__ import annotations

import math
from typing import Any

from shapely.geometry import (
    GeometryCollection,
    LineString,
    MultiLineString,
    MultiPoint,
    MultiPolygon,
    Point,
    Polygon,
)
from shapely.geometry.base import BaseGeometry

__all__ = ["FeatureError", "build_geometry", "validate_geometry"]


class FeatureError(Exception):
    """A problem in one feature; the reader turns it into AnnotationFormatError with the file
    and the feature's index."""


def _finite(v: Any) -> float | None:
    """``v`` as a finite float, or None (not a number, a bool, NaN, infinite, too large)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    try:
        f = float(v)
    except OverflowError:  # an integer beyond any float
        return None
    return f if math.isfinite(f) else None


def _position(pos: Any) -> tuple[float, float]:
    if type(pos) is list and len(pos) >= 2:  # the common case, fast
        x, y = pos[0], pos[1]
        tx, ty = type(x), type(y)
        if (tx is float or tx is int) and (ty is float or ty is int):
            try:
                if math.isfinite(x) and math.isfinite(y):
                    return (float(x), float(y))
            except OverflowError:  # an integer beyond any float: said below
                pass
    if not isinstance(pos, (list, tuple)) or len(pos) < 2:
        raise FeatureError(f"bad position {pos!r:.80} (expected [x, y])")
    x, y = _finite(pos[0]), _finite(pos[1])
    if x is None or y is None:
        bad = pos[0] if x is None else pos[1]
        raise FeatureError(f"bad coordinate {bad!r:.40} in position {pos!r:.80}")
    return x, y


def _positions(coords: Any, what: str) -> list[tuple[float, float]]:
    if not isinstance(coords, list):
        raise FeatureError(f"{what} coordinates must be an array, got {type(coords).__name__}")
    return [_position(p) for p in coords]


def _rings(coords: Any) -> list[list[tuple[float, float]]]:
    if not isinstance(coords, list) or not coords:
        raise FeatureError(
            f"Polygon coordinates must be a non-empty array of rings, got {coords!r}"
        )
    rings = [_positions(r, "Polygon ring") for r in coords]
    for k, ring in enumerate(rings):
        if len(set(ring)) < 3:
            raise FeatureError(f"Polygon ring {k} has fewer than 3 distinct points")
    return rings


#: GeometryCollections nested deeper than this are refused (QuPath writes one level).
_MAX_COLLECTION_DEPTH = 8


def validate_geometry(geo: Any, depth: int = 0) -> tuple[str, Any]:
    """Validate a GeoJSON geometry; return ``(type, coordinates)`` with finite float pairs."""
    if geo is None:
        raise FeatureError("no geometry (null)")
    if not isinstance(geo, dict):
        raise FeatureError(f"geometry must be an object, got {type(geo).__name__}")
    kind = geo.get("type")
    if not isinstance(kind, str):
        raise FeatureError(f"geometry 'type' must be a string, got {kind!r:.40}")
    if kind == "GeometryCollection":
        parts = geo.get("geometries")
        if not isinstance(parts, list):
            raise FeatureError("GeometryCollection without a 'geometries' array")
        if depth >= _MAX_COLLECTION_DEPTH:
            raise FeatureError(f"GeometryCollections nested more than {_MAX_COLLECTION_DEPTH} deep")
        return kind, [validate_geometry(g, depth + 1) for g in parts]
    if "coordinates" not in geo:
        raise FeatureError(f"{kind} geometry has no 'coordinates'")
    coords = geo["coordinates"]
    if kind == "Point":
        return kind, _position(coords)
    if kind in ("MultiPoint", "LineString"):
        return kind, _positions(coords, kind)
    if kind == "MultiLineString":
        if not isinstance(coords, list):
            raise FeatureError("MultiLineString coordinates must be an array")
        return kind, [_positions(c, "MultiLineString") for c in coords]
    if kind == "Polygon":
        return kind, _rings(coords)
    if kind == "MultiPolygon":
        if not isinstance(coords, list) or not coords:
            raise FeatureError("MultiPolygon coordinates must be a non-empty array")
        return kind, [_rings(c) for c in coords]
    raise FeatureError(f"unsupported geometry type {kind!r}")


def build_geometry(kind: str, coords: Any) -> BaseGeometry:
    """The shapely geometry of validated ``(type, coordinates)``."""
    if kind == "Point":
        return Point(coords)
    if kind == "MultiPoint":
        return MultiPoint(coords) if coords else MultiPoint()
    if kind == "LineString":
        return LineString(coords)
    if kind == "MultiLineString":
        return MultiLineString(coords)
    if kind == "Polygon":
        return Polygon(coords[0], coords[1:])
    if kind == "MultiPolygon":
        return MultiPolygon([Polygon(p[0], p[1:]) for p in coords])
    return GeometryCollection([build_geometry(k, c) for k, c in coords])
