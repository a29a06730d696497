import json
import math
from pathlib import Path

import numpy as np
import pytest
from shapely.geometry import Point, Polygon, box

from wsdal_wsi.qupath.annotations import annotations_from_objects, read_annotations, read_points
from wsdal_wsi.qupath.geojson_read import read_objects
from wsdal_wsi.qupath.geojson_write import (
    area_feature,
    detection_feature,
    points_feature,
    write_features,
)
from wsdal_wsi.qupath.model import AreaAnnotation, ClassSettings, PointAnnotation
from wsdal_wsi.qupath.results import write_results_geojson

DATA = Path(__file__).parent / "data"
GOLDEN = [
    "qupath_0.4.geojson",
    "qupath_0.3.geojson",
    "qupath_0.2.json",
    "single_points_strings.geojson",
]

EXPECTED_POINTS = sorted(
    [
        PointAnnotation(1000.5, 2000.25, "Mitosis"),
        PointAnnotation(1100.0, 2100.0, "Mitosis"),
        PointAnnotation(1200.0, 2200.0, "Mitosis"),
        PointAnnotation(1500.0, 2500.0, "Mitosis-like"),
        PointAnnotation(1600.0, 2600.0, "Mitosis-like"),
    ],
    key=lambda p: (p.class_name, p.x, p.y),
)
EXPECTED_REGION = box(900, 1900, 1700, 2700)


@pytest.mark.parametrize("name", GOLDEN)
def test_golden_files_give_the_same_clicks(name):
    ann = read_annotations(DATA / name).sorted()
    assert list(ann.points) == EXPECTED_POINTS
    regions = [a for a in ann.areas if a.class_name == "Region"]
    assert len(regions) == 1
    assert regions[0].name == "Region 1"
    assert regions[0].geometry.equals(EXPECTED_REGION)


def test_write_read_round_trip(tmp_path):
    path = tmp_path / "rt.geojson"
    region = Polygon([(0, 0), (100, 0), (100, 80), (0, 80)])
    write_features(
        path,
        [
            points_feature([[10.25, 20.5], [30, 40]], "Mitosis"),
            points_feature([[50, 60]], "Non-mitosis"),
            area_feature(region, "Region", name="R", measurements={"Count": 2, "D": float("inf")}),
            area_feature(Point(5, 5).buffer(3), "Ignore", is_ellipse=True),
            detection_feature(7.5, 8.5, 0.75),
        ],
    )
    objs = read_objects(path)
    assert objs[2].measurements == {"Count": 2.0, "D": math.inf}
    assert objs[3].is_ellipse
    ann = read_annotations(path)
    assert ann.points == (
        PointAnnotation(10.25, 20.5, "Mitosis"),
        PointAnnotation(30.0, 40.0, "Mitosis"),
        PointAnnotation(50.0, 60.0, "Non-mitosis"),
    )
    expected = AreaAnnotation(region, "Region", name="R", measurements={"Count": 2, "D": math.inf})
    assert ann.areas[0] == expected
    assert ann.areas[0].geometry.equals(region)
    assert ann.areas[1].class_name == "Ignore"


def test_results_round_trip_through_read_points(tmp_path):
    path = tmp_path / "res.geojson"
    rng = np.random.default_rng(1)
    dets = np.column_stack([rng.uniform(0, 5e4, (500, 2)), rng.uniform(0, 1, 500)])
    write_results_geojson(path, detections=dets, areas=[AreaAnnotation(box(0, 0, 9, 9), "Hotspot")])
    pts = read_points(path, tool_made=True)
    assert len(pts) == 500
    np.testing.assert_array_equal(pts.xy, dets[:, :2])
    np.testing.assert_array_equal(pts.probability, dets[:, 2])
    assert set(pts.class_names) == {"Mitosis"}
    assert read_points(path, tool_made=False).xy.shape == (0, 2)
    truth = read_points(DATA / "qupath_0.4.geojson", classes=["Mitosis"], tool_made=False)
    assert truth.xy.tolist() == [[1000.5, 2000.25], [1100, 2100], [1200, 2200]]
    assert np.isnan(truth.probability).all()


def test_unclassified_as_and_unknown_classes(tmp_path):
    path = tmp_path / "u.geojson"
    write_features(
        path, [points_feature([[1, 1], [2, 2]], None), points_feature([[3, 3]], "Tumor")]
    )
    assert read_annotations(path).points_per_class() == {"Unclassified": 2, "Tumor": 1}
    ann = read_annotations(path, classes=ClassSettings(unclassified_as="Mitosis"))
    assert ann.points_per_class() == {"Mitosis": 2, "Tumor": 1}
    assert ann.unknown_classes(ClassSettings()) == {"Tumor": 1}


def test_invalid_polygon_is_repaired(tmp_path):
    path = tmp_path / "bowtie.geojson"
    bowtie = {"type": "Polygon", "coordinates": [[[0, 0], [10, 10], [10, 0], [0, 10], [0, 0]]]}
    path.write_text(json.dumps([{"type": "Feature", "geometry": bowtie, "properties": {}}]))
    ann, notes = annotations_from_objects(read_objects(path))
    assert ann.areas[0].geometry.is_valid
    assert ann.areas[0].geometry.area == pytest.approx(50.0)
    assert "1 invalid polygons repaired" in notes
