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


def _feature(
    kind, xy, cls, *, name="WS-DAL", locked=False, fid="00000000-0000-4000-8000-000000000001"
):
    """A feature as QuPath 0.5/0.6 exports it after the pathologist's review."""
    props = {"objectType": kind, "name": name,
             "classification": {"name": cls, "color": [200, 0, 0]}}  # fmt: skip
    if locked:
        props["isLocked"] = True
    geometry = {"type": "Point", "coordinates": list(xy)}
    return {"type": "Feature", "id": fid, "geometry": geometry, "properties": props}


def test_the_pathologists_answers_to_the_tools_objects_become_trusted_labels(tmp_path):
    feats = [
        _feature("detection", (10, 10), "Mitosis"),  # unreviewed: not a label
        _feature("detection", (20, 10), "Mitosis", locked=True),  # confirmed
        _feature("detection", (30, 10), "Non-mitosis"),  # a false positive
        _feature("detection", (40, 10), "Mitotic figure"),  # relabelled to the lab's positive
        _feature("annotation", (50, 10), "WS-DAL check", name="WS-DAL check 1: detected, p 0.51"),
        _feature("annotation", (60, 10), "Mitosis", name="WS-DAL check 2: not detected, p 0.4"),
        _feature("annotation", (70, 10), "Mitosis-like", name="WS-DAL review: click without"),
        _feature("annotation", (80, 10), "Mitosis", name=None),  # a new click (missed mitosis)
    ]
    path = tmp_path / "export.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    classes = ClassSettings(positive=("Mitosis", "Mitotic figure"))
    ann = read_annotations(path, classes=classes)
    got = {(p.x, p.correction) for p in ann.points}
    assert got == {(20, "confirmed"), (30, "false_positive"), (40, "confirmed"),
                   (60, "answered_positive"), (70, "answered_negative"), (80, None)}  # fmt: skip
    assert ann.corrections() == {"confirmed": 2, "false_positive": 1, "answered_positive": 1,
                                 "answered_negative": 1}  # fmt: skip
    assert sorted(p.x for p in ann.points_with_role("positive", classes)) == [20, 40, 60, 80]
    assert sorted(p.x for p in ann.points_with_role("negative", classes)) == [30, 70]
    # under the default classes 'Mitotic figure' means nothing: that relabelling says nothing
    assert 40 not in {p.x for p in read_annotations(path, classes=ClassSettings()).points}
