"""Writing QuPath GeoJSON exactly as QuPath 0.4+ writes it, atomically and streamed.

Each object is a GeoJSON ``Feature``::

    {"type": "Feature", "id": "<uuid4>",
     "geometry": {"type": "Point", "coordinates": [x, y]},
     "properties": {"objectType": "detection",
                    "name": "WS-DAL",
                    "classification": {"name": "Mitosis", "color": [220, 20, 60]},
                    "isLocked": false,
                    "measurements": {"WS-DAL probability": 0.97}}}

in the property order QuPath uses (``objectType``, ``name``, ``classification``,
``isLocked``, ``measurements``); an ellipse ROI is a polygon whose ``geometry``
object carries ``"isEllipse": true`` (where QuPath 0.5/0.6 write and read it,
``ROITypeAdapters``: in ``properties`` it is ignored and the ellipse arrives as a
polygon); coordinates are level-0 pixels; measurement
values are numbers, with NaN and infinities written as the strings ``"NaN"``,
``"Infinity"``, ``"-Infinity"`` (QuPath >= 0.5 reads these; QuPath 0.4 cannot
read non-finite measurements in any form). The file is a ``FeatureCollection``
with one extra top-level member, ``"wsdal"``, holding the provenance (QuPath's
importer reads only ``"features"`` and ignores it).

Files are written to a temporary file and renamed into place, and written
feature by feature: writing 100k detections never holds the document in memory.
"""

from __future__ import annotations

import json
import math
import os
import uuid
import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from shapely.geometry import MultiPoint, MultiPolygon, Polygon, mapping
from shapely.geometry.base import BaseGeometry

from wsdal_wsi.atomic import atomic_open
from wsdal_wsi.qupath.model import DETECTION_CLASS, PROBABILITY_MEASUREMENT, tool_name

__all__ = [
    "CLASS_COLORS",
    "OBJECT_TYPES",
    "area_feature",
    "class_color",
    "classification",
    "detection_feature",
    "encode_measurement",
    "encode_measurements",
    "make_feature",
    "point_feature",
    "points_feature",
    "write_features",
]

#: Object types QuPath 0.4+ writes in ``properties.objectType``.
OBJECT_TYPES = ("annotation", "detection", "cell", "tile", "tmaCore")

#: Colours ([r, g, b], 0-255) of the classes the tool and its users name most.
CLASS_COLORS: dict[str, tuple[int, int, int]] = {
    "Mitosis": (220, 20, 60),
    "Mitosis-like": (255, 140, 0),
    "Non-mitosis": (70, 130, 180),
    "Imposter": (148, 0, 211),
    "Region": (0, 160, 0),
    "Hotspot": (255, 215, 0),
    "Ignore": (128, 128, 128),
    "Apoptotic body": (139, 69, 19),
    "Pyknotic nucleus": (0, 139, 139),
    "Lymphocyte": (30, 144, 255),
}

_JSON_KW: dict[str, Any] = {"ensure_ascii": False, "allow_nan": False, "separators": (", ", ": ")}


def class_color(class_name: str) -> tuple[int, int, int]:
    """Return the ``(r, g, b)`` colour of a class: a fixed table, else derived from the name.

    The derived colour is stable across runs and machines (CRC-32 of the name).
    """
    if class_name in CLASS_COLORS:
        return CLASS_COLORS[class_name]
    base = class_name.split(":")[0].strip()
    for prefix, color in CLASS_COLORS.items():
        if base.startswith(prefix):
            return color
    h = zlib.crc32(class_name.encode("utf-8"))
    return (64 + (h & 0xBF), 64 + ((h >> 8) & 0xBF), 64 + ((h >> 16) & 0xBF))


def classification(class_name: str, color: Sequence[int] | None = None) -> dict[str, Any]:
    """QuPath 0.4+ classification object: ``{"name", "color"}`` (``"names"`` for derived classes).

    Parameters
    ----------
    class_name : str
        The class; a derived class is written ``"Parent: Child"``.
    color : sequence of 3 int, optional
        ``[r, g, b]`` 0-255; default :func:`class_color`.
    """
    if not isinstance(class_name, str) or not class_name.strip():
        raise ValueError(f"class name must be a non-empty string, got {class_name!r}")
    rgb = class_color(class_name) if color is None else tuple(color)
    if len(rgb) != 3 or not all(isinstance(c, (int, np.integer)) and 0 <= c <= 255 for c in rgb):
        raise ValueError(f"class colour must be 3 integers 0-255, got {color!r}")
    parts = [p.strip() for p in class_name.split(":")]
    out: dict[str, Any]
    if len(parts) > 1:
        if any(not p for p in parts):
            raise ValueError(f"bad derived class name {class_name!r}")
        out = {"names": parts}
    else:
        out = {"name": class_name}
    out["color"] = [int(c) for c in rgb]
    return out


def encode_measurement(value: Any) -> float | str:
    """A measurement value as QuPath writes it: a float, or "NaN", "Infinity", "-Infinity"."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"measurement values must be numbers, got {value!r}")
    v = float(value)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    return v


def encode_measurements(measurements: Mapping[str, Any]) -> dict[str, float | str]:
    """Encode a name -> number map (names must be non-empty strings)."""
    out: dict[str, float | str] = {}
    for name, value in measurements.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"measurement names must be non-empty strings, got {name!r}")
        try:
            out[name] = encode_measurement(value)
        except TypeError as exc:
            raise TypeError(f"measurement {name!r}: {exc}") from None
    return out


def _clean_coords(obj: Any) -> Any:
    """Tuples -> lists, numbers -> finite floats (GeoJSON coordinates)."""
    if isinstance(obj, (list, tuple)):
        return [_clean_coords(o) for o in obj]
    v = float(obj)
    if not math.isfinite(v):
        raise ValueError(f"non-finite coordinate {obj!r}")
    return v


def _geometry_dict(geometry: BaseGeometry | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(geometry, BaseGeometry):
        if geometry.is_empty:
            raise ValueError(f"cannot write an empty {geometry.geom_type}")
        geo = mapping(geometry)
    else:
        geo = dict(geometry)
    if geo.get("type") == "GeometryCollection":
        raise ValueError("GeometryCollection is not supported; write one feature per geometry")
    return {"type": geo["type"], "coordinates": _clean_coords(geo["coordinates"])}


def make_feature(
    geometry: BaseGeometry | Mapping[str, Any],
    *,
    object_type: str = "annotation",
    class_name: str | None = None,
    color: Sequence[int] | None = None,
    name: str | None = None,
    measurements: Mapping[str, Any] | None = None,
    is_ellipse: bool = False,
    locked: bool = False,
    feature_id: str | None = None,
) -> dict[str, Any]:
    """Build one QuPath 0.4+ GeoJSON feature.

    Parameters
    ----------
    geometry : shapely geometry or GeoJSON geometry mapping
        Level-0 pixels.
    object_type : {"annotation", "detection", "cell", "tile", "tmaCore"}
    class_name : str, optional
        Unclassified when ``None``.
    color : sequence of 3 int, optional
        Class colour; default from :func:`class_color`.
    name : str, optional
    measurements : mapping of str to number, optional
    is_ellipse : bool
        Marks a polygon as an ellipse ROI (``"isEllipse": true`` inside
        ``geometry``; QuPath rebuilds the ellipse from the polygon's bounding box).
    locked : bool
    feature_id : str, optional
        A uuid; a new uuid4 by default.

    Returns
    -------
    dict
        A JSON-able feature (NaN measurements already encoded as strings).
    """
    if object_type not in OBJECT_TYPES:
        raise ValueError(f"object_type must be one of {OBJECT_TYPES}, got {object_type!r}")
    if name is not None and not isinstance(name, str):
        raise ValueError(f"name must be a string, got {name!r}")
    props: dict[str, Any] = {"objectType": object_type}
    if name is not None:
        props["name"] = name
    if class_name is not None:
        props["classification"] = classification(class_name, color)
    props["isLocked"] = bool(locked)
    if measurements:
        props["measurements"] = encode_measurements(measurements)
    geo = _geometry_dict(geometry)
    if is_ellipse:
        if geo["type"] != "Polygon":
            raise ValueError(f"an ellipse must be a Polygon, got {geo['type']}")
        geo["isEllipse"] = True
    return {
        "type": "Feature",
        "id": feature_id or str(uuid.uuid4()),
        "geometry": geo,
        "properties": props,
    }


def detection_feature(
    x: float,
    y: float,
    probability: float,
    *,
    class_name: str = DETECTION_CLASS,
    name: str | None = None,
    measurements: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A point detection made by the tool (level-0 ``(x, y)``), named ``"WS-DAL..."``.

    The probability is stored as the measurement ``"WS-DAL probability"``;
    ``measurements`` adds more.
    """
    meas = {PROBABILITY_MEASUREMENT: probability, **(measurements or {})}
    return make_feature(
        {"type": "Point", "coordinates": [x, y]},
        object_type="detection",
        class_name=class_name,
        name=tool_name(name),
        measurements=meas,
    )


def point_feature(
    x: float,
    y: float,
    class_name: str | None,
    *,
    object_type: str = "annotation",
    name: str | None = None,
    measurements: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A single-point object (level-0 ``(x, y)``)."""
    return make_feature(
        {"type": "Point", "coordinates": [x, y]},
        object_type=object_type,
        class_name=class_name,
        name=name,
        measurements=measurements,
    )


def points_feature(
    xy: np.ndarray | Sequence[Sequence[float]],
    class_name: str | None,
    *,
    name: str | None = None,
    object_type: str = "annotation",
    color: Sequence[int] | None = None,
) -> dict[str, Any]:
    """A QuPath "Points" annotation: the clicks of one class as one ``MultiPoint``.

    Parameters
    ----------
    xy : array-like, shape (N, 2)
        Level-0 pixel coordinates, N >= 1.
    class_name : str or None
    """
    arr = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    if len(arr) == 0:
        raise ValueError("a Points annotation needs at least one point")
    return make_feature(
        MultiPoint([tuple(p) for p in arr]),
        object_type=object_type,
        class_name=class_name,
        name=name,
        color=color,
    )


def area_feature(
    geometry: Polygon | MultiPolygon,
    class_name: str | None,
    *,
    name: str | None = None,
    measurements: Mapping[str, Any] | None = None,
    object_type: str = "annotation",
    is_ellipse: bool = False,
    color: Sequence[int] | None = None,
) -> dict[str, Any]:
    """A polygon area annotation (a region, the hotspot) with optional measurements."""
    if not isinstance(geometry, (Polygon, MultiPolygon)):
        raise ValueError(f"an area needs a Polygon or MultiPolygon, got {type(geometry).__name__}")
    return make_feature(
        geometry,
        object_type=object_type,
        class_name=class_name,
        name=name,
        measurements=measurements,
        is_ellipse=is_ellipse,
        color=color,
    )


def _prov_json(provenance: Mapping[str, Any] | None) -> str | None:
    if provenance is None:
        return None
    try:
        return json.dumps(dict(provenance), **_JSON_KW)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"provenance is not JSON-serialisable: {exc}") from exc


def write_features(
    path: str | os.PathLike[str],
    features: Iterable[dict[str, Any] | str],
    *,
    provenance: Mapping[str, Any] | None = None,
) -> int:
    """Write a QuPath GeoJSON ``FeatureCollection`` atomically, one feature at a time.

    Parameters
    ----------
    path : path-like
        Target file (``.geojson``); parent folders are created.
    features : iterable of dict or str
        Features (from the builders here), or already-serialised feature JSON
        strings (from :func:`iter_detection_json`). Consumed lazily.
    provenance : mapping, optional
        Stored as the top-level ``"wsdal"`` member (which slide, model and
        settings made the file).

    Returns
    -------
    int
        The number of features written.
    """
    prov = _prov_json(provenance)
    n = 0
    with atomic_open(path, "w") as fh:
        fh.write('{"type": "FeatureCollection",\n')
        if prov is not None:
            fh.write(f'"wsdal": {prov},\n')
        fh.write('"features": [')
        buf: list[str] = []
        for feature in features:
            text = feature if isinstance(feature, str) else json.dumps(feature, **_JSON_KW)
            buf.append(("\n" if n == 0 else ",\n") + text)
            n += 1
            if len(buf) >= 256:
                fh.write("".join(buf))
                buf.clear()
        fh.write("".join(buf))
        fh.write("\n]}\n")
    return n
