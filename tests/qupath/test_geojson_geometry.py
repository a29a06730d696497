"""Geometry validation of the GeoJSON reader: finite coordinates, rings, bounded nesting."""

import pytest
from shapely.geometry import GeometryCollection, Polygon

from wsdal_wsi.qupath.geojson_geometry import FeatureError, build_geometry, validate_geometry


def test_a_valid_polygon_and_collection_round_trip():
    kind, coords = validate_geometry(
        {"type": "Polygon", "coordinates": [[[0, 0], [4, 0], [4, 3], [0, 0]]]}
    )
    assert isinstance(build_geometry(kind, coords), Polygon)
    kind, coords = validate_geometry(
        {"type": "GeometryCollection", "geometries": [{"type": "Point", "coordinates": [1, 2]}]}
    )
    assert isinstance(build_geometry(kind, coords), GeometryCollection)


@pytest.mark.parametrize(
    ("geometry", "match"),
    [
        ({"type": "Point", "coordinates": [10**400, 5]}, "bad coordinate"),
        ({"type": "Point", "coordinates": [float("nan"), 5]}, "bad coordinate"),
        ({"type": "Point", "coordinates": [True, 5]}, "bad coordinate"),
        ({"type": ["Point"], "coordinates": [1, 2]}, "'type' must be a string"),
        ({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [0, 0]]]}, "fewer than 3"),
        ({"type": "Circle", "coordinates": [1, 2]}, "unsupported geometry type"),
    ],
)
def test_bad_geometries(geometry, match):
    with pytest.raises(FeatureError, match=match):
        validate_geometry(geometry)


def test_collections_nest_only_a_few_levels():
    geometry = {"type": "Point", "coordinates": [1, 2]}
    for _ in range(8):
        geometry = {"type": "GeometryCollection", "geometries": [geometry]}
    validate_geometry(geometry)  # 8 levels: read
    with pytest.raises(FeatureError, match="nested more than 8 deep"):
        validate_geometry({"type": "GeometryCollection", "geometries": [geometry]})
