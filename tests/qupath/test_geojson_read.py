import gzip
import json
import math
import zipfile
from pathlib import Path

import pytest
from shapely.geometry import MultiPolygon

from wsdal_wsi.errors import AnnotationFormatError
from wsdal_wsi.qupath.annotations import annotations_from_objects, read_annotations
from wsdal_wsi.qupath.geojson_read import load_geojson, read_objects
from wsdal_wsi.qupath.geojson_write import points_feature
from wsdal_wsi.qupath.model import PointAnnotation

DATA = Path(__file__).parent / "data"


def test_qupath_04_details():
    objs = read_objects(DATA / "qupath_0.4.geojson")
    assert [o.object_type for o in objs] == [
        "annotation",
        "annotation",
        "annotation",
        "annotation",
        "detection",
        "detection",
    ]
    assert objs[0].id == "2b0e6a3c-7d3f-4f58-9d8e-2a1c4d5b6e70"
    assert objs[0].class_color == (220, 20, 60)
    assert objs[1].is_locked is True and objs[0].is_locked is False
    region = objs[2]
    assert region.measurements["Area µm^2"] == 160000.0
    assert math.isnan(region.measurements["Perimeter"])
    assert objs[4].class_name == "Tumor: Positive"
    assert objs[4].measurements["Score"] == -math.inf
    assert objs[5].tool_made and not objs[0].tool_made
    ann, notes = annotations_from_objects(objs)
    assert notes == [
        "1 line annotations ignored",
        "1 objects made by wsdal-wsi (named 'WS-DAL...') skipped",
        "1 polygon detections ignored",
    ]
    ann_all, _ = annotations_from_objects(objs, skip_tool_objects=False)
    assert len(ann_all.points) == len(ann.points) + 1


def test_qupath_06_ellipse_derived_classes_and_locks():
    """An export as QuPath 0.5/0.6 write it: ``isEllipse`` inside ``geometry``, derived
    classes as ``names``, ``isLocked`` only when true, uuid ids."""
    objs = read_objects(DATA / "qupath_0.6.geojson")
    points, ellipse, tumor, stroma = objs
    assert not points.is_ellipse and not points.is_locked
    assert ellipse.is_ellipse and ellipse.is_locked
    assert ellipse.geometry.bounds == (1700.0, 1300.0, 2300.0, 1700.0)
    assert ellipse.id == "0b9e8d7c-6b5a-4f3e-9d2c-1b0a9f8e7d6c"
    assert (tumor.class_name, tumor.class_color) == ("Tumor: Mitosis", (200, 0, 0))
    assert stroma.class_name == "Stroma: Mitosis"  # a distinct class, not merged with Tumor's
    assert math.isnan(tumor.measurements["Score"])
    # the place earlier wsdal-wsi files used (properties) is still read
    assert read_objects(DATA / "single_points_strings.geojson")[5].is_ellipse


def test_qupath_03_and_02_details():
    objs03 = read_objects(DATA / "qupath_0.3.geojson")
    assert [o.object_type for o in objs03] == ["annotation"] * 3 + ["cell"]
    assert objs03[0].class_color == (220, 20, 60)  # from colorRGB
    assert math.isnan(objs03[2].measurements["Perimeter"])  # bare NaN (0.3 wrote it)
    objs02 = read_objects(DATA / "qupath_0.2.json")
    assert [o.object_type for o in objs02] == ["annotation"] * 3 + ["detection"]
    assert all(o.id is None for o in objs02)
    assert objs02[2].class_color == (0, 160, 0)


def test_string_classification_ellipse_and_type_alias():
    objs = read_objects(DATA / "single_points_strings.geojson")
    assert objs[1].object_type == "annotation"  # 'type' alias
    assert objs[0].class_color is None
    assert isinstance(objs[4].geometry, MultiPolygon)
    assert objs[5].is_ellipse
    ann = read_annotations(DATA / "single_points_strings.geojson", skip_tool_objects=False)
    assert ann.areas_per_class() == {"Region": 1, "Hotspot": 1}


def test_gzip_and_zip_and_single_feature(tmp_path):
    src = (DATA / "qupath_0.4.geojson").read_bytes()
    gz = tmp_path / "a.geojson.gz"
    gz.write_bytes(gzip.compress(src))
    assert len(read_annotations(gz).points) == 5
    zp = tmp_path / "a.zip"
    with zipfile.ZipFile(zp, "w") as zf:
        zf.writestr("a.geojson", src)
        zf.writestr("readme.txt", "not json")
    assert len(read_objects(zp)) == 6
    one = tmp_path / "one.json"
    one.write_text(json.dumps(points_feature([[1, 2]], "Mitosis")))
    assert read_annotations(one).points == (PointAnnotation(1.0, 2.0, "Mitosis"),)
    geom = tmp_path / "geom.geojson"
    geom.write_text(
        json.dumps({"type": "Polygon", "coordinates": [[[0, 0], [4, 0], [4, 4], [0, 0]]]})
    )
    assert read_annotations(geom).areas_per_class() == {"Unclassified": 1}


# ------------------------------------------------------------------ malformed input


def _feature(**props):
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [1, 2]},
        "properties": props,
    }


@pytest.mark.parametrize(
    "content, match",
    [
        ("", "empty file"),
        ("   \n", "empty file"),
        ('{"type": "FeatureCollection", "features": [', r"not valid JSON .*truncated\?"),
        ("{'type': 1}", "not valid JSON at line 1 column 2"),
        ('"hello"', "top level is a JSON str"),
        ('{"type": "Topology"}', "top-level 'type' is 'Topology'"),
        ('{"type": "FeatureCollection", "features": {}}', "'features' must be an array, got dict"),
        ("[1]", "feature 0: must be a JSON object, got int"),
        ('[{"type": "Thing"}]', "feature 0: 'type' is 'Thing', expected 'Feature'"),
        ('[{"type": "Feature", "geometry": null}]', r"feature 0: no geometry \(null\)"),
        (
            '[{"type": "Feature", "geometry": {"type": "Point", "coordinates": ["a", 2]}}]',
            "feature 0: bad coordinate 'a'",
        ),
        (
            '[{"type": "Feature", "geometry": {"type": "Circle", "coordinates": [1, 2]}}]',
            "unsupported geometry type 'Circle'",
        ),
        (
            json.dumps(
                [
                    {
                        "type": "Feature",
                        "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [0, 0]]]},
                    }
                ]
            ),
            "fewer than 3 distinct points",
        ),
        (json.dumps([_feature(), _feature(name=5)]), "feature 1: name must be a string, got 5"),
        (
            json.dumps([_feature(classification={"name": "Mitosis"})]),
            "feature 0: classification 'Mitosis' has no 'color' \\(QuPath refuses",
        ),
        (
            json.dumps([_feature(classification={"color": [1, 2, 3]})]),
            "neither 'name' nor 'names'",
        ),
        (
            json.dumps([_feature(classification={"name": "A", "color": [1, 2]})]),
            r"classification color must be \[r, g, b\] with 0-255 integers, got \[1, 2\]",
        ),
        (json.dumps([_feature(classification=5)]), "classification must be a string or an object"),
        (
            json.dumps([_feature(measurements={"Area": "big"})]),
            "measurement 'Area' must be a number, got 'big'",
        ),
        (
            json.dumps([_feature(measurements={"Flag": True})]),
            "measurement 'Flag' must be a number",
        ),
        (json.dumps([_feature(measurements=[{"value": 1}])]), r"measurements\[0\] must be"),
        (json.dumps([_feature(measurements=3)]), "measurements must be a map or a list, got int"),
        (json.dumps([_feature(isLocked="maybe")]), "isLocked must be true or false, got 'maybe'"),
        (json.dumps([_feature(objectType=3)]), "properties.objectType must be a string"),
        (
            json.dumps(
                [
                    {
                        "type": "Feature",
                        "geometry": {"type": "Point", "coordinates": [1, 2]},
                        "properties": [],
                    }
                ]
            ),
            "properties must be an object, got list",
        ),
    ],
)
def test_malformed_input_names_file_and_feature(tmp_path, content, match):
    path = tmp_path / "bad.geojson"
    path.write_text(content)
    with pytest.raises(AnnotationFormatError, match=match) as info:
        read_objects(path)
    assert str(path) in str(info.value)


def test_missing_and_binary_files(tmp_path):
    with pytest.raises(AnnotationFormatError, match="file not found"):
        load_geojson(tmp_path / "nope.geojson")
    with pytest.raises(AnnotationFormatError, match="is a folder"):
        load_geojson(tmp_path)
    bad = tmp_path / "bin.geojson"
    bad.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(AnnotationFormatError, match="not UTF-8 text"):
        load_geojson(bad)
    gz = tmp_path / "t.geojson.gz"
    gz.write_bytes(gzip.compress(b'{"type": "FeatureCollection", "features": []}')[:15])
    with pytest.raises(AnnotationFormatError, match="broken gzip file"):
        load_geojson(gz)
    zp = tmp_path / "x.zip"
    with zipfile.ZipFile(zp, "w") as zf:
        zf.writestr("a.txt", "x")
    with pytest.raises(AnnotationFormatError, match=r"zip file holds no \.geojson"):
        load_geojson(zp)


def test_unknown_object_type_reads_as_annotation(tmp_path, caplog):
    path = tmp_path / "t.geojson"
    path.write_text(json.dumps([_feature(objectType="spaceship", classification="Mitosis")]))
    objs = read_objects(path)
    assert objs[0].object_type == "annotation"
    assert "unknown object type 'spaceship'" in caplog.text


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"type": "Point", "coordinates": [1' + "0" * 400 + ", 5]}", "bad coordinate"),
        ("[" + "9" * 5000 + "]", "not usable JSON"),
        ('{"type": ["FeatureCollection"], "features": []}', "'type' must be a string"),
        ('[{"type": "Feature", "geometry": {"type": {"a": 1}}}]', "geometry 'type' must be"),
        (
            '[{"type": "Feature", "geometry": '
            + '{"type": "GeometryCollection", "geometries": [' * 50
            + '{"type": "Point", "coordinates": [1, 2]}'
            + "]}" * 50
            + "}]",
            "nested more than 8 deep",
        ),
    ],
)
def test_files_that_crashed_the_reader_are_refused_with_the_file_named(tmp_path, text, match):
    """Found by tests/reliability's fuzzer: RecursionError, OverflowError, ValueError and
    TypeError escaped as tracebacks."""
    path = tmp_path / "fuzz.geojson"
    path.write_text(text)
    with pytest.raises(AnnotationFormatError, match=match) as info:
        read_objects(path)
    assert str(path) in str(info.value)


def test_a_huge_measurement_is_infinite_not_a_crash(tmp_path):
    path = tmp_path / "m.geojson"
    path.write_text(
        '[{"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 2]}, '
        '"properties": {"measurements": {"m": 1' + "0" * 400 + "}}}]"
    )
    (obj,) = read_objects(path)
    assert obj.measurements["m"] == float("inf")
