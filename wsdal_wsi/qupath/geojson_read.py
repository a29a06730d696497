"""Reading QuPath GeoJSON in every form QuPath has written (0.2, 0.3, 0.4+).

Accepted:

- a ``FeatureCollection``, a bare array of features, a single ``Feature``, or a
  bare geometry (imported as one annotation, as QuPath does);
- ``.geojson``, ``.json``, gzip-compressed files (``.geojson.gz``) and the
  ``.zip`` files QuPath exports (every ``.geojson``/``.json`` inside);
- the object type in ``properties.objectType`` (0.4+), ``properties.object_type``
  (0.3), ``properties.type`` (an alias QuPath accepts) or packed in ``id`` (0.2,
  ``"PathAnnotationObject"``...); a missing or unknown type is an annotation;
- ``classification`` as a string (``"Tumor"``, ``"Tumor: Positive"``) or an
  object with ``name`` or ``names`` and a colour (``color`` = [r, g, b], or the
  0.2/0.3 ``colorRGB`` packed integer);
- ``measurements`` as a map (0.4+) or a list of ``{"name", "value"}`` (older),
  with NaN/infinities as numbers or as the strings ``"NaN"``, ``"Infinity"``;
- Point, MultiPoint, LineString, MultiLineString, Polygon, MultiPolygon,
  GeometryCollection (ellipses are polygons with ``"isEllipse": true`` inside
  ``geometry``, where QuPath 0.4-0.6 write it; the flag in ``properties``, where
  earlier wsdal-wsi files put it, is read too).

A broken feature raises :class:`~wsdal_wsi.errors.AnnotationFormatError`
naming the file and the index of the feature. A classification object without
a colour is an error: QuPath refuses such a file, so the pathologist would not
see what we read.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import os
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from shapely.geometry.base import BaseGeometry

from wsdal_wsi.errors import AnnotationFormatError
from wsdal_wsi.qupath.geojson_geometry import FeatureError as _FeatureError
from wsdal_wsi.qupath.geojson_geometry import build_geometry, validate_geometry
from wsdal_wsi.qupath.model import (
    is_tool_name,
)

__all__ = [
    "QuPathObject",
    "load_geojson",
    "objects_from_features",
    "parse_feature",
    "read_objects",
]

log = logging.getLogger(__name__)

_LEGACY_TYPES = {
    "PathAnnotationObject": "annotation",
    "PathDetectionObject": "detection",
    "PathCellObject": "cell",
    "PathTileObject": "tile",
    "TMACoreObject": "tmaCore",
    "PathRootObject": "root",
}
_TYPES = {
    "annotation": "annotation",
    "detection": "detection",
    "cell": "cell",
    "tile": "tile",
    "tmaCore": "tmaCore",
    "tma_core": "tmaCore",
    "root": "root",
    "unknown": "annotation",
    **_LEGACY_TYPES,
}
_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


@dataclass(frozen=True)
class QuPathObject:
    """One object read from a QuPath GeoJSON file.

    Attributes
    ----------
    index : int
        Position of the feature in the file (for messages).
    object_type : str
        ``"annotation"``, ``"detection"``, ``"cell"``, ``"tile"``, ``"tmaCore"`` or ``"root"``.
    geometry_type : str
        The GeoJSON geometry type (``"Point"``, ``"MultiPoint"``, ``"Polygon"``, ...).
    coordinates : nested lists
        The validated coordinates (finite floats), level-0 pixels; for a
        GeometryCollection, a list of ``(type, coordinates)``.
    class_name : str or None
        ``"Parent: Child"`` for derived classes; ``None`` when unclassified.
    class_color : (int, int, int) or None
    name : str or None
    measurements : dict of str to float
    is_ellipse, is_locked : bool
    id : str or None
        The uuid (0.4+), if any.
    """

    index: int
    object_type: str
    geometry_type: str
    coordinates: Any = field(repr=False, compare=True)
    class_name: str | None = None
    class_color: tuple[int, int, int] | None = None
    name: str | None = None
    measurements: dict[str, float] = field(default_factory=dict, hash=False)
    is_ellipse: bool = False
    is_locked: bool = False
    id: str | None = None

    @property
    def tool_made(self) -> bool:
        """True if wsdal-wsi made this object (its name starts with ``"WS-DAL"``)."""
        return is_tool_name(self.name)

    @cached_property
    def geometry(self) -> BaseGeometry:
        """The shapely geometry (level-0 pixels), built on first use."""
        return build_geometry(self.geometry_type, self.coordinates)

    @property
    def points(self) -> list[tuple[float, float]]:
        """The ``(x, y)`` of a Point or MultiPoint (no shapely needed); ``[]`` otherwise."""
        if self.geometry_type == "Point":
            return [self.coordinates]
        if self.geometry_type == "MultiPoint":
            return list(self.coordinates)
        return []


# --------------------------------------------------------------------------- files


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise AnnotationFormatError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise AnnotationFormatError(f"{path}: is a folder, not a GeoJSON file") from None
    except OSError as exc:
        raise AnnotationFormatError(f"{path}: cannot read ({exc})") from exc
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise AnnotationFormatError(f"{path}: broken gzip file ({exc})") from exc
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise AnnotationFormatError(f"{path}: not UTF-8 text ({exc})") from exc


def _parse_json(text: str, where: str) -> Any:
    if not text.strip():
        raise AnnotationFormatError(f"{where}: empty file (expected QuPath GeoJSON)")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        hint = " (the file ends early: truncated?)" if exc.pos >= len(text.rstrip()) - 1 else ""
        raise AnnotationFormatError(
            f"{where}: not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}{hint}"
        ) from None
    except RecursionError:
        raise AnnotationFormatError(
            f"{where}: JSON nested too deeply to be QuPath GeoJSON"
        ) from None
    except ValueError as exc:  # e.g. an integer of thousands of digits
        raise AnnotationFormatError(f"{where}: not usable JSON ({exc})") from None


def load_geojson(path: str | os.PathLike[str]) -> list[Any]:
    """Load a GeoJSON file and return its features (raw dicts), in order.

    Raises
    ------
    AnnotationFormatError
        Missing/empty/unreadable file, invalid JSON, or a top level that is
        not a FeatureCollection, an array of features, a Feature or a geometry.
    """
    path = Path(path)
    if path.suffix.lower() == ".zip":
        try:
            with zipfile.ZipFile(path) as zf:
                names = [n for n in zf.namelist() if n.lower().endswith((".geojson", ".json"))]
                if not names:
                    raise AnnotationFormatError(f"{path}: zip file holds no .geojson or .json")
                features: list[Any] = []
                for n in sorted(names):
                    text = zf.read(n).decode("utf-8-sig")
                    features.extend(_top_level_features(_parse_json(text, f"{path}!{n}"), path))
                return features
        except (zipfile.BadZipFile, OSError, UnicodeDecodeError) as exc:
            raise AnnotationFormatError(f"{path}: cannot read the zip file ({exc})") from exc
    return _top_level_features(_parse_json(_read_text(path), str(path)), path)


def _top_level_features(doc: Any, path: Path) -> list[Any]:
    if isinstance(doc, list):
        return doc
    if isinstance(doc, dict):
        kind = doc.get("type")
        if not isinstance(kind, str):
            raise AnnotationFormatError(
                f"{path}: top-level 'type' must be a string such as 'FeatureCollection', "
                f"got {type(kind).__name__}"
            )
        if kind == "FeatureCollection":
            features = doc.get("features")
            if not isinstance(features, list):
                raise AnnotationFormatError(
                    f"{path}: FeatureCollection 'features' must be an array, "
                    f"got {type(features).__name__}"
                )
            return features
        if kind == "Feature":
            return [doc]
        if kind in {"Point", "MultiPoint", "LineString", "MultiLineString", "Polygon"} or kind in {
            "MultiPolygon",
            "GeometryCollection",
        }:
            return [{"type": "Feature", "geometry": doc, "properties": {}}]
        raise AnnotationFormatError(
            f"{path}: top-level 'type' is {kind!r}; expected a QuPath GeoJSON FeatureCollection, "
            f"an array of features or a Feature"
        )
    raise AnnotationFormatError(
        f"{path}: top level is a JSON {type(doc).__name__}; expected a FeatureCollection "
        f"or an array of features"
    )


# ---------------------------------------------------------------------- properties


def _rgb(value: Any, what: str) -> tuple[int, int, int]:
    if type(value) is list and len(value) == 3:  # the common case, fast
        r, g, b = value
        if type(r) is int and type(g) is int and type(b) is int:
            if 0 <= r <= 255 and 0 <= g <= 255 and 0 <= b <= 255:
                return (r, g, b)
    if isinstance(value, (list, tuple)) and len(value) == 3:
        if all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in value):
            return (value[0], value[1], value[2])
    elif isinstance(value, int) and not isinstance(value, bool):  # packed (A)RGB integer
        v = value & 0xFFFFFF
        return ((v >> 16) & 255, (v >> 8) & 255, v & 255)
    raise _FeatureError(f"{what} must be [r, g, b] with 0-255 integers, got {value!r}")


def _classification(value: Any) -> tuple[str | None, tuple[int, int, int] | None]:
    if value is None:
        return None, None
    if isinstance(value, str):
        return (value.strip() or None), None
    if not isinstance(value, dict):
        raise _FeatureError(
            f"classification must be a string or an object, got {type(value).__name__} {value!r}"
        )
    if "names" in value:
        names = value["names"]
        if (
            not isinstance(names, list)
            or not names
            or not all(isinstance(n, str) and n.strip() for n in names)
        ):
            raise _FeatureError(f"classification 'names' must be non-empty strings, got {names!r}")
        class_name = ": ".join(n.strip() for n in names)
    elif "name" in value:
        name = value["name"]
        if not isinstance(name, str) or not name.strip():
            raise _FeatureError(f"classification 'name' must be a non-empty string, got {name!r}")
        class_name = name.strip()
    else:
        raise _FeatureError(f"classification object has neither 'name' nor 'names': {value!r}")
    if "color" in value:
        color = _rgb(value["color"], "classification color")
    elif "colorRGB" in value:
        color = _rgb(value["colorRGB"], "classification colorRGB")
    else:
        raise _FeatureError(
            f"classification {class_name!r} has no 'color' (QuPath refuses such a file; write "
            f'"color": [r, g, b] or give the class as a plain string)'
        )
    return class_name, color


def _measurement_value(name: str, value: Any) -> float:
    if isinstance(value, str) and value in _NON_FINITE:
        return _NON_FINITE[value]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _FeatureError(f"measurement {name!r:.40} must be a number, got {value!r:.40}")
    try:
        return float(value)
    except OverflowError:  # an integer beyond any float
        return math.inf if value > 0 else -math.inf


def _measurements(value: Any) -> dict[str, float]:
    if value is None:
        return {}
    out: dict[str, float] = {}
    if isinstance(value, dict):
        for name, v in value.items():
            out[name] = _measurement_value(name, v)
        return out
    if isinstance(value, list):
        for k, item in enumerate(value):
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise _FeatureError(f"measurements[{k}] must be {{'name', 'value'}}, got {item!r}")
            out[item["name"]] = _measurement_value(item["name"], item.get("value"))
        return out
    raise _FeatureError(f"measurements must be a map or a list, got {type(value).__name__}")


def _flag(props: Mapping[str, Any], key: str) -> bool:
    v = props.get(key, False)
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("true", "false"):
        return v.lower() == "true"
    raise _FeatureError(f"{key} must be true or false, got {v!r}")


def _object_type(feature: Mapping[str, Any], props: Mapping[str, Any]) -> str:
    for key in ("objectType", "object_type", "type"):
        if key in props:
            raw = props[key]
            if not isinstance(raw, str):
                raise _FeatureError(f"properties.{key} must be a string, got {raw!r}")
            if raw not in _TYPES:
                log.warning("unknown object type %r: read as an annotation (as QuPath does)", raw)
            return _TYPES.get(raw, "annotation")
    fid = feature.get("id")
    if isinstance(fid, str) and fid in _LEGACY_TYPES:
        return _LEGACY_TYPES[fid]
    return "annotation"


def parse_feature(feature: Any, *, index: int = 0) -> QuPathObject:
    """Parse one feature (a raw dict). Raises ``_FeatureError`` (callers add the file)."""
    if not isinstance(feature, dict):
        raise _FeatureError(f"must be a JSON object, got {type(feature).__name__} {feature!r:.80}")
    kind = feature.get("type", "Feature")
    if kind != "Feature":
        raise _FeatureError(f"'type' is {kind!r}, expected 'Feature'")
    props = feature.get("properties")
    if props is None:
        props = {}
    if not isinstance(props, dict):
        raise _FeatureError(f"properties must be an object, got {type(props).__name__}")
    geometry_type, coordinates = validate_geometry(feature.get("geometry"))
    name = props.get("name")
    if name is not None and not isinstance(name, str):
        raise _FeatureError(f"name must be a string, got {name!r}")
    class_name, color = _classification(props.get("classification"))
    fid = feature.get("id")
    return QuPathObject(
        index=index,
        object_type=_object_type(feature, props),
        geometry_type=geometry_type,
        coordinates=coordinates,
        class_name=class_name,
        class_color=color,
        name=name,
        measurements=_measurements(props.get("measurements")),
        is_ellipse=_flag(feature["geometry"], "isEllipse") or _flag(props, "isEllipse"),
        is_locked=_flag(props, "isLocked"),
        id=fid if isinstance(fid, str) and fid not in _LEGACY_TYPES else None,
    )


def objects_from_features(features: Iterable[Any], *, source: str) -> list[QuPathObject]:
    """Parse raw features; a broken one raises AnnotationFormatError naming ``source`` and index."""
    out = []
    for i, feature in enumerate(features):
        try:
            out.append(parse_feature(feature, index=i))
        except _FeatureError as exc:
            raise AnnotationFormatError(f"{source}: feature {i}: {exc}") from None
    return out


def read_objects(path: str | os.PathLike[str]) -> list[QuPathObject]:
    """Read every object of a QuPath GeoJSON file (any QuPath version's form)."""
    return objects_from_features(load_geojson(path), source=str(path))
