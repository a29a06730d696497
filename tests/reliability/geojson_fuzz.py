"""A generator of malformed (and odd but valid) QuPath GeoJSON documents, for the fuzz test.

:func:`documents` returns ``(name, bytes)`` cases, deterministic for a seed: every
kind of damage a sidecar meets in the wild (cut off, bytes flipped, not UTF-8,
not JSON, JSON of the wrong shape, each field of a feature given the wrong type or
an absurd value, nesting deep enough to exhaust a recursive parser, numbers too
large for a float) and random subtrees of a valid document replaced by random
JSON values. Each must be read, or refused with a one-line error; never a
traceback.
"""

from __future__ import annotations

import copy
import gzip
import json
import random
from typing import Any

#: A valid QuPath 0.5 export: Points (Mitosis, Mitosis-like), a Region polygon, a detection.
VALID: dict[str, Any] = {
    "type": "FeatureCollection",
    "features": [
        {
            "type": "Feature",
            "id": "6a4a3a5e-0000-4000-8000-000000000001",
            "geometry": {"type": "MultiPoint", "coordinates": [[100, 120], [300.5, 310.25]]},
            "properties": {
                "objectType": "annotation",
                "classification": {"name": "Mitosis", "color": [255, 0, 0]},
            },
        },
        {
            "type": "Feature",
            "id": "6a4a3a5e-0000-4000-8000-000000000002",
            "geometry": {"type": "Point", "coordinates": [50, 400]},
            "properties": {
                "objectType": "annotation",
                "classification": {"name": "Mitosis-like", "color": [0, 0, 255]},
                "name": "look-alike",
            },
        },
        {
            "type": "Feature",
            "geometry": {
                "type": "Polygon",
                "coordinates": [[[10, 10], [500, 10], [500, 500], [10, 500], [10, 10]]],
            },
            "properties": {
                "objectType": "annotation",
                "classification": {"name": "Region", "color": [0, 255, 0]},
                "isLocked": False,
                "measurements": {"Area": 1.0, "Other": "NaN"},
            },
        },
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [200, 200]},
            "properties": {"objectType": "detection", "classification": "Mitosis"},
        },
    ],
}

#: Values that replace a field: each of JSON's types, and the absurd ones.
ODD_VALUES: list[Any] = [
    None,
    True,
    0,
    -1,
    1.5,
    float("nan"),
    float("inf"),
    "",
    "x" * 50,
    "Mitosis",
    [],
    [None],
    [1],
    [[1, 2]],
    [1, 2, 3, 4],
    {},
    {"name": 3},
    {"type": "Point"},
    [[[0, 0]]],
    "NaN",
]


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc, allow_nan=True).encode("utf-8")


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path (tuple of keys / indices) to a value inside ``node``."""
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def _replace(doc: Any, path: tuple, value: Any) -> Any:
    doc = copy.deepcopy(doc)
    if not path:
        return value
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return doc


def _delete(doc: Any, path: tuple) -> Any:
    doc = copy.deepcopy(doc)
    node = doc
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return doc


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(7 if depth < 3 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([rng.randint(-(10**6), 10**6), rng.uniform(-1e9, 1e9), 10**30, -0.0])
    if kind == 3:
        return rng.choice(["", "Feature", "Point", "Polygon", "annotation", "\u00e9\u65e5", "\x00"])
    if kind == 4:
        return rng.choice([float("nan"), float("inf"), 1e308, -1e-308])
    if kind == 5:
        return [_random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {
        rng.choice(["type", "coordinates", "geometry", "properties", "name", "x"]): _random_json(
            rng, depth + 1
        )
        for _ in range(rng.randrange(4))
    }


def _structural(valid: bytes) -> list[tuple[str, bytes]]:
    """Whole-file damage and top levels of the wrong shape."""
    deep = 200_000
    cases = [
        ("empty", b""),
        ("whitespace", b" \n\t "),
        ("bom only", b"\xef\xbb\xbf"),
        ("bom and valid", b"\xef\xbb\xbf" + valid),
        ("null", b"null"),
        ("number", b"42"),
        ("string", b'"FeatureCollection"'),
        ("true", b"true"),
        ("empty array", b"[]"),
        ("empty object", b"{}"),
        ("array of nulls", b"[null, null]"),
        ("array of numbers", b"[1, 2, 3]"),
        ("latin-1 text", '{"type": "Feature", "name": "caf\u00e9"}'.encode("latin-1")),
        ("utf-16", json.dumps(VALID).encode("utf-16")),
        ("binary", bytes(range(256)) * 4),
        ("gzip of valid", gzip.compress(valid)),
        ("gzip truncated", gzip.compress(valid)[:40]),
        ("gzip header only", b"\x1f\x8b"),
        ("deep arrays", b"[" * deep + b"]" * deep),
        ("deep objects", b'{"a":' * deep + b"1" + b"}" * deep),
        ("deep unclosed", b"[" * deep),
        ("huge integer", b'{"type": "Point", "coordinates": [1' + b"0" * 400 + b", 5]}"),
        ("integer beyond the digit limit", b"[" + b"9" * 5000 + b"]"),
        ("NaN literal", b'{"type": "Point", "coordinates": [NaN, 5]}'),
        ("Infinity literal", b'{"type": "Point", "coordinates": [Infinity, 5]}'),
        ("trailing comma", valid[:-1] + b",}"),
        ("two documents", valid + valid),
        ("comment", b"// QuPath\n" + valid),
        ("single quotes", valid.replace(b'"', b"'")),
        ("type is a list", b'{"type": ["FeatureCollection"], "features": []}'),
        ("type is an object", b'{"type": {"a": 1}}'),
        ("features is an object", b'{"type": "FeatureCollection", "features": {}}'),
        ("features is null", b'{"type": "FeatureCollection", "features": null}'),
        ("features missing", b'{"type": "FeatureCollection"}'),
        ("unknown type", b'{"type": "Topology", "objects": {}}'),
        ("NUL bytes", valid.replace(b"Mitosis", b"Mit\x00osis")),
        ("escaped NUL in class", valid.replace(b'"Mitosis"', b'"Mit\\u0000osis"')),
        ("lone surrogate", valid.replace(b'"look-alike"', b'"\\ud800"')),
        ("control characters", valid.replace(b"look-alike", b"look\x01alike")),
    ]
    rng = random.Random(7)
    for _ in range(20):  # cut off at a random byte
        cut = rng.randrange(1, len(valid))
        cases.append((f"truncated at {cut}", valid[:cut]))
    for k in range(20):  # bytes flipped
        data = bytearray(valid)
        for _ in range(rng.randrange(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        cases.append((f"bytes flipped {k}", bytes(data)))
    return cases


def _field_cases() -> list[tuple[str, bytes]]:
    """Each field of the valid document given each odd value, or deleted."""
    cases = []
    fields = [
        p
        for p in _paths(VALID)
        if p and not (len(p) >= 5 and p[3] == "coordinates" and isinstance(p[-1], int))
    ]
    # every structural field, with a few odd values each (cycled, so all values are used)
    for k, path in enumerate(fields):
        for j in range(3):
            value = ODD_VALUES[(3 * k + j) % len(ODD_VALUES)]
            cases.append(
                (
                    f"{'/'.join(map(str, path))} = {value!r:.30}",
                    _dumps(_replace(VALID, path, value)),
                )
            )
        if isinstance(path[-1], str):
            cases.append((f"{'/'.join(map(str, path))} deleted", _dumps(_delete(VALID, path))))
    return cases


def _geometry_cases() -> list[tuple[str, bytes]]:
    """Geometries that are valid JSON but wrong, degenerate or extreme."""
    geometries: list[Any] = [
        {"type": "Point", "coordinates": []},
        {"type": "Point", "coordinates": [1]},
        {"type": "Point", "coordinates": ["1", "2"]},
        {"type": "Point", "coordinates": [True, False]},
        {"type": "Point", "coordinates": [1e308, 1e308]},
        {"type": "Point", "coordinates": [-1e12, 5]},
        {"type": "Point", "coordinates": [1, 2, 3, 4, 5]},
        {"type": "Point", "coordinates": [[1, 2]]},
        {"type": "MultiPoint", "coordinates": []},
        {"type": "MultiPoint", "coordinates": [[1, 2], "x"]},
        {"type": "MultiPoint", "coordinates": [[1, 2]] * 20_000},
        {"type": "Polygon", "coordinates": []},
        {"type": "Polygon", "coordinates": [[]]},
        {"type": "Polygon", "coordinates": [[[0, 0], [1, 1]]]},
        {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [2, 2], [0, 0]]]},  # no area
        {
            "type": "Polygon",
            "coordinates": [[[0, 0], [10, 10], [10, 0], [0, 10], [0, 0]]],
        },  # bow tie
        {
            "type": "Polygon",
            "coordinates": [[[0, 0], [9, 0], [9, 9], [0, 0]], [[50, 50], [60, 50], [60, 60]]],
        },
        {"type": "Polygon", "coordinates": [[[0, 0], [1e300, 0], [1e300, 1e300], [0, 0]]]},
        {"type": "MultiPolygon", "coordinates": []},
        {"type": "MultiPolygon", "coordinates": [[]]},
        {"type": "MultiPolygon", "coordinates": [[[[0, 0], [5, 0], [5, 5], [0, 0]]], 3]},
        {"type": "LineString", "coordinates": [[0, 0]]},
        {"type": "MultiLineString", "coordinates": [[[0, 0], [1, 1]], "x"]},
        {"type": "GeometryCollection", "geometries": []},
        {
            "type": "GeometryCollection",
            "geometries": [{"type": "Point", "coordinates": [1, 2]}, None],
        },
        {"type": "GeometryCollection"},
        {"type": "Circle", "coordinates": [1, 2], "radius": 3},
        {"type": None, "coordinates": [1, 2]},
        {"type": ["Point"], "coordinates": [1, 2]},
        {"coordinates": [1, 2]},
    ]
    cases = []
    for k, geo in enumerate(geometries):
        doc = _replace(VALID, ("features", 0, "geometry"), geo)
        cases.append((f"geometry {k}: {json.dumps(geo)[:40]}", _dumps(doc)))
    # collections nested deeper than a recursive reader can follow (written as text)
    depth = 5000
    nested = (
        b'{"type": "GeometryCollection", "geometries": [' * depth
        + b'{"type": "Point", "coordinates": [1, 2]}'
        + b"]}" * depth
    )
    holder = _dumps(_replace(VALID, ("features", 0, "geometry"), "@NESTED@"))
    cases.append(("geometry collections nested 5000 deep", holder.replace(b'"@NESTED@"', nested)))
    return cases


def _random_cases(n: int, seed: int) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    paths = _paths(VALID)
    cases = []
    for k in range(n):
        doc: Any = VALID
        for _ in range(rng.randrange(1, 4)):
            live = _paths(doc)
            path = rng.choice(
                live if rng.random() < 0.5 else [p for p in paths if p in live] or live
            )
            doc = _replace(doc, path, _random_json(rng))
        cases.append((f"random {k}", _dumps(doc)))
    return cases


def documents(*, seed: int = 11, n_random: int = 80) -> list[tuple[str, bytes]]:
    """Every case: ``(name, file bytes)``; at least 200 of them."""
    valid = _dumps(VALID)
    cases = [("valid", valid)]
    cases += _structural(valid)
    cases += _field_cases()
    cases += _geometry_cases()
    cases += _random_cases(n_random, seed)
    return cases
