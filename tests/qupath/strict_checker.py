"""A strict checker of written QuPath GeoJSON, against the QuPath 0.4+ reference form.

Written independently of the package's reader: it parses the raw text with
``json`` (refusing bare ``NaN``/``Infinity`` literals, which are not JSON) and
checks every field of every feature, its type, its value range and the key order
QuPath itself writes (``type, id, geometry, properties``; in geometry ``type,
coordinates`` and, for an ellipse ROI, ``isEllipse``: QuPath 0.5/0.6
``ROITypeAdapters`` write and read it there, never in properties; in properties
``objectType, name, color, classification, isLocked, measurements``).

Use :func:`check_file` on everything the writer produces; it raises
``AssertionError`` with the feature index and the field.
"""

from __future__ import annotations

import json
import math
import uuid
from pathlib import Path
from typing import Any

OBJECT_TYPES = {"annotation", "detection", "cell", "tile", "tmaCore"}
FEATURE_KEYS = ["type", "id", "geometry", "properties"]
PROPERTY_ORDER = [
    "objectType",
    "name",
    "color",
    "classification",
    "isLocked",
    "measurements",
    "metadata",
]
GEOMETRY_TYPES = {"Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon"}
NON_FINITE = {"NaN", "Infinity", "-Infinity"}


def _refuse_constant(name: str) -> Any:
    raise AssertionError(f"bare {name} literal in JSON (QuPath form is the string {name!r})")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_position(pos: Any, where: str) -> None:
    assert isinstance(pos, list) and len(pos) == 2, f"{where}: position must be [x, y], got {pos!r}"
    for v in pos:
        assert _is_number(v) and math.isfinite(v), f"{where}: bad coordinate {v!r}"


def _check_ring(ring: Any, where: str) -> None:
    assert isinstance(ring, list) and len(ring) >= 4, f"{where}: a ring needs >= 4 positions"
    for k, pos in enumerate(ring):
        _check_position(pos, f"{where}[{k}]")
    assert ring[0] == ring[-1], f"{where}: ring is not closed"


def _check_geometry(geo: Any, where: str) -> str:
    assert isinstance(geo, dict), f"{where}: geometry must be an object"
    keys = list(geo)
    assert keys in (["type", "coordinates"], ["type", "coordinates", "isEllipse"]), (
        f"{where}: geometry keys {keys}"
    )
    gtype, coords = geo["type"], geo["coordinates"]
    if "isEllipse" in geo:
        assert geo["isEllipse"] is True, f"{where}: isEllipse must be true when present"
        assert gtype == "Polygon", f"{where}: isEllipse on a {gtype}"
    assert gtype in GEOMETRY_TYPES, f"{where}: geometry type {gtype!r}"
    if gtype == "Point":
        _check_position(coords, where)
    elif gtype in ("MultiPoint", "LineString"):
        assert isinstance(coords, list) and coords, f"{where}: empty {gtype}"
        for k, pos in enumerate(coords):
            _check_position(pos, f"{where}[{k}]")
    elif gtype == "Polygon":
        assert isinstance(coords, list) and coords, f"{where}: empty Polygon"
        for k, ring in enumerate(coords):
            _check_ring(ring, f"{where} ring {k}")
    elif gtype == "MultiPolygon":
        assert isinstance(coords, list) and coords, f"{where}: empty MultiPolygon"
        for j, poly in enumerate(coords):
            assert isinstance(poly, list) and poly, f"{where}: empty polygon {j}"
            for k, ring in enumerate(poly):
                _check_ring(ring, f"{where} polygon {j} ring {k}")
    else:  # MultiLineString
        for j, line in enumerate(coords):
            for k, pos in enumerate(line):
                _check_position(pos, f"{where} line {j}[{k}]")
    return gtype


def _check_color(color: Any, where: str) -> None:
    assert isinstance(color, list) and len(color) == 3, f"{where}: color must be [r, g, b]"
    for c in color:
        assert isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255, (
            f"{where}: color component {c!r}"
        )


def check_feature(feature: Any, where: str = "feature") -> None:
    """Check one feature in full; raises AssertionError naming ``where`` and the field."""
    assert isinstance(feature, dict), f"{where}: not an object"
    assert list(feature) == FEATURE_KEYS, f"{where}: keys {list(feature)} != {FEATURE_KEYS}"
    assert feature["type"] == "Feature", f"{where}: type {feature['type']!r}"
    fid = feature["id"]
    assert isinstance(fid, str), f"{where}: id must be a string"
    parsed = uuid.UUID(fid)
    assert str(parsed) == fid and parsed.version == 4, f"{where}: id {fid!r} is not a uuid4"
    _check_geometry(feature["geometry"], f"{where} geometry")
    props = feature["properties"]
    assert isinstance(props, dict), f"{where}: properties must be an object"
    unknown = set(props) - set(PROPERTY_ORDER)
    assert not unknown, f"{where}: unexpected properties {sorted(unknown)}"
    order = [k for k in PROPERTY_ORDER if k in props]
    assert list(props) == order, f"{where}: property order {list(props)} != {order}"
    assert props.get("objectType") in OBJECT_TYPES, (
        f"{where}: objectType {props.get('objectType')!r}"
    )
    if "name" in props:
        assert isinstance(props["name"], str), f"{where}: name must be a string"
    if "color" in props:
        _check_color(props["color"], f"{where} color")
    if "classification" in props:
        cls = props["classification"]
        assert isinstance(cls, dict), f"{where}: classification must be an object"
        keys = list(cls)
        assert keys in (["name", "color"], ["names", "color"]), (
            f"{where}: classification keys {keys}"
        )
        if "name" in cls:
            assert isinstance(cls["name"], str) and cls["name"], f"{where}: classification name"
            assert ":" not in cls["name"], f"{where}: derived class must use 'names'"
        else:
            names = cls["names"]
            assert isinstance(names, list) and len(names) >= 2, f"{where}: classification names"
            assert all(isinstance(n, str) and n for n in names), f"{where}: classification names"
        _check_color(cls["color"], f"{where} classification color")
    assert isinstance(props.get("isLocked"), bool), f"{where}: isLocked must be a boolean"
    if "measurements" in props:
        meas = props["measurements"]
        assert isinstance(meas, dict) and meas, f"{where}: measurements must be a non-empty map"
        for name, value in meas.items():
            assert isinstance(name, str) and name, f"{where}: measurement name {name!r}"
            ok = (_is_number(value) and math.isfinite(value)) or value in NON_FINITE
            assert ok, f"{where}: measurement {name!r} = {value!r}"


def check_document(doc: Any, *, results: bool = False) -> list[dict]:
    """Check a parsed document (FeatureCollection with optional ``"wsdal"``); return its features.

    ``results=True`` also checks the tool's own rules: every feature is named
    ``"WS-DAL..."``; detections are class Mitosis points with a probability in [0, 1].
    """
    assert isinstance(doc, dict), "top level must be a FeatureCollection object"
    assert doc.get("type") == "FeatureCollection", f"top-level type {doc.get('type')!r}"
    extra = set(doc) - {"type", "features", "wsdal"}
    assert not extra, f"unexpected top-level members {sorted(extra)}"
    if "wsdal" in doc:
        prov = doc["wsdal"]
        assert isinstance(prov, dict) and prov.get("tool") == "wsdal-wsi", "bad wsdal provenance"
    features = doc["features"]
    assert isinstance(features, list), "features must be an array"
    ids = set()
    for i, feature in enumerate(features):
        check_feature(feature, f"feature {i}")
        assert feature["id"] not in ids, f"feature {i}: duplicate id"
        ids.add(feature["id"])
        if results:
            props = feature["properties"]
            assert props.get("name", "").startswith("WS-DAL"), f"feature {i}: not tool-marked"
            if props["objectType"] == "detection":
                assert feature["geometry"]["type"] == "Point", f"feature {i}: detection geometry"
                assert props["classification"]["name"] == "Mitosis", f"feature {i}: detection class"
                p = props["measurements"]["WS-DAL probability"]
                assert _is_number(p) and 0.0 <= p <= 1.0, f"feature {i}: probability {p!r}"
    return features


def check_file(path: str | Path, *, results: bool = False) -> list[dict]:
    """Parse ``path`` strictly (UTF-8, no NaN literals) and check it; return the features."""
    text = Path(path).read_text(encoding="utf-8")
    doc = json.loads(text, parse_constant=_refuse_constant)
    return check_document(doc, results=results)
