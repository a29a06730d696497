import json
import math
import uuid
from pathlib import Path

import numpy as np
import pytest
from shapely.geometry import MultiPolygon, Point, box

from wsdal_wsi.provenance import provenance
from wsdal_wsi.qupath.geojson_read import objects_from_features
from wsdal_wsi.qupath.geojson_write import (
    area_feature,
    class_color,
    classification,
    detection_feature,
    encode_measurement,
    make_feature,
    point_feature,
    points_feature,
    write_features,
)

from .strict_checker import check_feature, check_file

DATA = Path(__file__).parent / "data"


def test_detection_feature_is_reference_form():
    f = detection_feature(1200.5, 3400.25, 0.97)
    check_feature(f)
    assert f["geometry"] == {"type": "Point", "coordinates": [1200.5, 3400.25]}
    assert f["properties"] == {
        "objectType": "detection",
        "name": "WS-DAL",
        "classification": {"name": "Mitosis", "color": [220, 20, 60]},
        "isLocked": False,
        "measurements": {"WS-DAL probability": 0.97},
    }
    assert uuid.UUID(f["id"]).version == 4
    assert detection_feature(0, 0, 0.5)["id"] != f["id"]


def test_points_annotation_is_multipoint_of_one_class():
    f = points_feature(np.array([[10, 20], [30.5, 40]]), "Mitosis")
    check_feature(f)
    assert f["geometry"] == {"type": "MultiPoint", "coordinates": [[10.0, 20.0], [30.5, 40.0]]}
    assert f["properties"]["objectType"] == "annotation"
    assert "name" not in f["properties"]
    assert "measurements" not in f["properties"]
    with pytest.raises(ValueError, match="at least one point"):
        points_feature(np.zeros((0, 2)), "Mitosis")


def test_area_feature_with_measurements_and_name():
    f = area_feature(
        box(0, 0, 100, 50),
        "Region",
        name="Region A",
        measurements={"Mitoses": 3, "Area mm2": 0.5, "Density": float("nan")},
    )
    check_feature(f)
    props = f["properties"]
    assert props["name"] == "Region A"
    assert props["measurements"] == {"Mitoses": 3.0, "Area mm2": 0.5, "Density": "NaN"}
    assert f["geometry"]["type"] == "Polygon"
    ring = f["geometry"]["coordinates"][0]
    assert ring[0] == ring[-1] and len(ring) == 5
    mp = area_feature(MultiPolygon([box(0, 0, 1, 1), box(5, 5, 6, 6)]), None)
    check_feature(mp)
    assert "classification" not in mp["properties"]
    with pytest.raises(ValueError, match="needs a Polygon or MultiPolygon, got Point"):
        area_feature(Point(1, 1), "Region")


def test_ellipse_flag_is_inside_geometry_as_qupath_writes_it():
    """QuPath 0.5/0.6 (ROITypeAdapters) write and read ``isEllipse`` inside ``geometry``."""
    ell = area_feature(Point(50, 40).buffer(10), "Region", is_ellipse=True, name="circle")
    check_feature(ell)
    assert list(ell["geometry"]) == ["type", "coordinates", "isEllipse"]
    assert ell["geometry"]["isEllipse"] is True
    assert "isEllipse" not in ell["properties"]
    # the same shape as a QuPath 0.6 export's ellipse (tests/qupath/data/qupath_0.6.geojson)
    qupath = json.loads((DATA / "qupath_0.6.geojson").read_text())["features"][1]
    assert list(qupath["geometry"]) == list(ell["geometry"])
    assert list(ell["properties"])[:1] == list(qupath["properties"])[:1]
    (back,) = objects_from_features([ell], source="written")
    assert back.is_ellipse and back.geometry.bounds == pytest.approx((40, 30, 60, 50), abs=0.1)
    assert not make_feature(box(0, 0, 5, 5))["geometry"].get("isEllipse")
    with pytest.raises(ValueError, match="an ellipse must be a Polygon, got MultiPolygon"):
        area_feature(MultiPolygon([box(0, 0, 1, 1)]), "Region", is_ellipse=True)


@pytest.mark.parametrize(
    "value, expected",
    [
        (1, 1.0),
        (np.float32(0.5), 0.5),
        (np.int64(7), 7.0),
        (float("nan"), "NaN"),
        (float("inf"), "Infinity"),
        (-math.inf, "-Infinity"),
    ],
)
def test_measurement_encoding(value, expected):
    assert encode_measurement(value) == expected


@pytest.mark.parametrize("value", [True, "3", None, [1]])
def test_measurement_encoding_refuses_non_numbers(value):
    with pytest.raises(TypeError, match="must be numbers"):
        encode_measurement(value)


def test_measurement_name_errors():
    with pytest.raises(TypeError, match="measurement 'Count': measurement values must be numbers"):
        make_feature(Point(0, 0), measurements={"Count": "many"})
    with pytest.raises(ValueError, match="non-empty strings, got ''"):
        make_feature(Point(0, 0), measurements={"": 1})


def test_classification_forms_and_colours():
    assert classification("Mitosis") == {"name": "Mitosis", "color": [220, 20, 60]}
    assert classification("Tumor: Positive", (1, 2, 3)) == {
        "names": ["Tumor", "Positive"],
        "color": [1, 2, 3],
    }
    # derived colours are stable and valid
    c = class_color("Some other class")
    assert c == class_color("Some other class")
    assert all(0 <= v <= 255 for v in c)
    assert class_color("Region 3") == class_color("Region")
    with pytest.raises(ValueError, match=r"3 integers 0-255, got \(1, 2\)"):
        classification("X", (1, 2))
    with pytest.raises(ValueError, match="3 integers 0-255"):
        classification("X", (1, 2, 300))
    with pytest.raises(ValueError, match="non-empty string"):
        classification("")


def test_make_feature_errors():
    with pytest.raises(ValueError, match="object_type must be one of"):
        make_feature(Point(0, 0), object_type="thing")
    with pytest.raises(ValueError, match="non-finite coordinate"):
        point_feature(float("nan"), 0, "Mitosis")
    with pytest.raises(ValueError, match="cannot write an empty Polygon"):
        make_feature(box(0, 0, 1, 1).difference(box(0, 0, 1, 1)))
    with pytest.raises(ValueError, match="name must be a string"):
        make_feature(Point(0, 0), name=5)


def test_write_features_with_provenance(tmp_path):
    path = tmp_path / "sub" / "out.geojson"
    prov = provenance(slide="a.svs", model="m.pt", settings={"threshold": 0.5})
    n = write_features(
        path,
        [points_feature([[1, 2]], "Mitosis"), area_feature(box(0, 0, 5, 5), "Region")],
        provenance=prov,
    )
    assert n == 2
    features = check_file(path)
    assert len(features) == 2
    doc = json.loads(path.read_text())
    assert list(doc) == ["type", "wsdal", "features"]
    assert doc["wsdal"]["slide"] == "a.svs"
    # no temporary file left behind
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.geojson"]


def test_write_features_empty_and_without_provenance(tmp_path):
    path = tmp_path / "empty.geojson"
    assert write_features(path, []) == 0
    assert json.loads(path.read_text()) == {"type": "FeatureCollection", "features": []}
    check_file(path)


def test_write_features_is_atomic(tmp_path):
    path = tmp_path / "r.geojson"
    write_features(path, [points_feature([[1, 2]], "Mitosis")])
    before = path.read_bytes()

    def broken():
        yield points_feature([[3, 4]], "Mitosis")
        raise RuntimeError("model crashed")

    with pytest.raises(RuntimeError, match="model crashed"):
        write_features(path, broken())
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["r.geojson"]


def test_write_features_refuses_bad_provenance(tmp_path):
    with pytest.raises(ValueError, match="provenance is not JSON-serialisable"):
        write_features(tmp_path / "x.geojson", [], provenance={"when": object()})
    with pytest.raises(ValueError, match="provenance is not JSON-serialisable"):
        write_features(tmp_path / "x.geojson", [], provenance={"x": float("nan")})
    assert not (tmp_path / "x.geojson").exists()
