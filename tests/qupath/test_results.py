import json
import tracemalloc

import numpy as np
import pytest
from shapely.geometry import Point, box

from wsdal_wsi.errors import AnnotationFormatError
from wsdal_wsi.provenance import provenance
from wsdal_wsi.qupath.geojson_read import read_objects
from wsdal_wsi.qupath.geojson_write import (
    class_color,
    detection_feature,
    points_feature,
    write_features,
)
from wsdal_wsi.qupath.model import AreaAnnotation
from wsdal_wsi.qupath.results import iter_detection_json, write_results_geojson

from .conftest import write_qpproj
from .strict_checker import check_document, check_feature, check_file


def test_fast_detection_json_equals_builder():
    text = next(iter_detection_json([(12.5, 7.0, 0.25)]))
    fast = json.loads(text)
    ref = detection_feature(12.5, 7.0, 0.25)
    check_feature(fast)
    fast.pop("id"), ref.pop("id")
    assert fast == ref
    assert list(json.loads(text)) == ["type", "id", "geometry", "properties"]
    nan = json.loads(next(iter_detection_json(np.array([[1.0, 2.0, np.nan]]))))
    assert nan["properties"]["measurements"]["WS-DAL probability"] == "NaN"


def test_fast_detection_json_errors():
    with pytest.raises(ValueError, match=r"detection 1: expected \(x, y, probability\)"):
        list(iter_detection_json([(1, 2, 0.5), (1, 2)]))
    with pytest.raises(ValueError, match="detection 0: non-finite coordinates"):
        list(iter_detection_json([(np.inf, 2, 0.5)]))


def test_write_results_geojson(tmp_path):
    path = tmp_path / "slide.geojson"
    dets = np.array([[10.0, 20.0, 0.9], [30.0, 40.0, 0.2]])
    hotspot = AreaAnnotation(
        Point(100, 100).buffer(50), "Hotspot", name="hotspot", measurements={"Mitoses": 2}
    )
    region = AreaAnnotation(box(0, 0, 10, 10), "Region", name="WS-DAL region 1")
    report = write_results_geojson(
        path, detections=dets, areas=[hotspot, region], provenance=provenance(slide="slide.svs")
    )
    assert (report.written, report.removed, report.kept) == (4, 0, 0)
    features = check_file(path, results=True)
    names = [f["properties"]["name"] for f in features]
    assert names == ["WS-DAL", "WS-DAL", "WS-DAL hotspot", "WS-DAL region 1"]
    assert features[2]["properties"]["measurements"] == {"Mitoses": 2.0}
    assert features[0]["geometry"]["coordinates"] == [10.0, 20.0]


def test_write_results_accepts_iterables_and_empty(tmp_path):
    path = tmp_path / "a.geojson"
    assert write_results_geojson(path, detections=iter([(1, 2, 0.5)])).written == 1
    report = write_results_geojson(path, detections=np.zeros((0, 3)))
    assert (report.written, report.removed) == (0, 1)
    assert json.loads(path.read_text())["wsdal"]["tool"] == "wsdal-wsi"  # provenance by default
    assert check_file(path, results=True) == []


def test_streaming_detections_memory_stays_small(tmp_path):
    """Writing detections, and re-writing over an earlier result, stream: memory stays small.

    10k detections under tracemalloc (which slows Python ~5x); the 100k case and
    its timing are in benchmarks/qupath_geojson.py.
    """
    n = 10_000
    rng = np.random.default_rng(0)
    data = rng.uniform(0, 100_000, (n, 3))
    data[:, 2] /= 100_000

    def detections():
        yield from data

    path = tmp_path / "big.geojson"
    peaks = []
    for _ in range(2):  # the second run reads the first run's file to replace it
        tracemalloc.start()
        try:
            report = write_results_geojson(path, detections=detections(), provenance=provenance())
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    size = path.stat().st_size
    assert (report.written, report.removed, report.kept) == (n, n, 0)
    assert size > 3_000_000  # ~350 bytes a detection
    for peak in peaks:
        assert peak < 1_000_000, f"peak {peak / 1e6:.1f} MB with a {size / 1e6:.1f} MB file"
    # it is complete, valid JSON with every detection, in order
    doc = json.loads(path.read_text())
    assert len(doc["features"]) == n
    xy = np.array([f["geometry"]["coordinates"] for f in doc["features"]])
    np.testing.assert_array_equal(xy, data[:, :2])
    prob = [f["properties"]["measurements"]["WS-DAL probability"] for f in doc["features"]]
    np.testing.assert_array_equal(prob, data[:, 2])
    check_document({**doc, "features": doc["features"][:500]}, results=True)
    assert len({f["id"] for f in doc["features"]}) == n


def test_rerun_replaces_tool_objects_and_keeps_user_objects(tmp_path):
    """Writing into a pathologist's sidecar: their objects stay, ours never duplicate."""
    path = tmp_path / "slide.geojson"
    user = [
        points_feature([[1, 2], [3, 4]], "Mitosis"),
        {  # QuPath 0.4 wrote NaN bare; a user object must come back exactly as it was
            "type": "Feature",
            "id": "0d9a1f4e-0000-4000-8000-000000000001",
            "geometry": {"type": "Point", "coordinates": [5, 6]},
            "properties": {
                "objectType": "annotation",
                "name": "my note",
                "measurements": {"x": float("nan")},
            },
        },
    ]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": user}))
    before = json.loads(path.read_text())["features"]
    dets = np.array([[10.0, 10.0, 0.9], [20.0, 20.0, 0.8]])
    hotspot = AreaAnnotation(box(0, 0, 50, 50), "Hotspot", name="hotspot")
    r1 = write_results_geojson(path, detections=dets, areas=[hotspot], provenance=provenance())
    assert (r1.written, r1.removed, r1.kept) == (3, 0, 2)
    r2 = write_results_geojson(path, detections=dets[:1], areas=[hotspot], provenance=provenance())
    assert (r2.written, r2.removed, r2.kept) == (2, 3, 2)
    after = json.loads(path.read_text())["features"]
    assert len(after) == 4
    kept = [f for f in after if not f["properties"].get("name", "").startswith("WS-DAL")]
    assert json.dumps(kept, sort_keys=True) == json.dumps(before, sort_keys=True)
    assert sum(f["properties"]["objectType"] == "detection" for f in after) == 1
    objs = read_objects(path)
    assert sum(o.tool_made for o in objs) == 2


@pytest.mark.parametrize(
    "content",
    [
        '{"type": "FeatureCollection", "features": [',
        # our own layout, cut short (a crash while copying it, say)
        '{"type": "FeatureCollection",\n"features": [\n{"type": "Feature", "geometry": {"type": '
        '"Point", "coordinates": [1, 2]}, "properties": {"name": "mine"}},\n',
    ],
)
def test_refuses_to_overwrite_an_unreadable_file(tmp_path, content):
    path = tmp_path / "slide.geojson"
    path.write_text(content)
    with pytest.raises(AnnotationFormatError, match="not overwriting it"):
        write_results_geojson(path, detections=[(1, 2, 0.5)])
    assert path.read_text() == content


def _qupath_reads_every_classification(path):
    """QuPath 0.5/0.6 ``PathClassTypeAdapter.read``: null, a string, a legacy object, or an
    object with ``name``/``names`` *and* ``color``; anything else throws for the whole file."""
    for i, feature in enumerate(json.loads(path.read_text())["features"]):
        cls = feature["properties"].get("classification")
        if cls is None or isinstance(cls, str):
            continue
        legacy = not cls or "colorRGB" in cls or "parentClass" in cls
        proxy = ("name" in cls or "names" in cls) and "color" in cls
        assert legacy or proxy, f"feature {i}: QuPath would refuse the file: {cls}"


def _user_feature(classification, fid):
    return {
        "type": "Feature",
        "id": fid,
        "geometry": {"type": "Point", "coordinates": [5, 6]},
        "properties": {"objectType": "annotation", "classification": classification},
    }


USER_FEATURES = [
    _user_feature({"name": "Tumor"}, "0d9a1f4e-0000-4000-8000-000000000001"),
    _user_feature({"names": ["Tumor", "Mitosis"]}, "0d9a1f4e-0000-4000-8000-000000000002"),
    _user_feature("Stroma", "0d9a1f4e-0000-4000-8000-000000000003"),
    _user_feature({"name": "Region", "color": [1, 2, 3]}, "0d9a1f4e-0000-4000-8000-000000000004"),
]


@pytest.mark.parametrize("layout", ["written by a script", "our own layout"])
def test_kept_classification_without_colour_gets_one(tmp_path, layout):
    """A kept object whose classification has no colour would make QuPath refuse the whole
    results file (GsonTools); it gets the fixed colour of its class, nothing else changes."""
    path = tmp_path / "slide.geojson"
    if layout == "our own layout":
        write_features(path, USER_FEATURES)
    else:
        path.write_text(json.dumps({"type": "FeatureCollection", "features": USER_FEATURES}))
    with pytest.raises(AssertionError, match="QuPath would refuse"):
        _qupath_reads_every_classification(path)
    report = write_results_geojson(path, detections=[(1.0, 2.0, 0.5)])
    assert (report.kept, report.written) == (4, 1)
    _qupath_reads_every_classification(path)
    *kept, ours = json.loads(path.read_text())["features"]
    check_feature(ours)
    classes = [f["properties"]["classification"] for f in kept]
    assert classes == [
        {"name": "Tumor", "color": list(class_color("Tumor"))},
        {"names": ["Tumor", "Mitosis"], "color": list(class_color("Tumor: Mitosis"))},
        "Stroma",
        {"name": "Region", "color": [1, 2, 3]},
    ]
    assert [f["id"] for f in kept] == [f["id"] for f in USER_FEATURES]


def test_kept_classification_takes_the_project_class_colour(tmp_path):
    """In a project's exchange folder the colour comes from classifiers/classes.json, as
    QuPath's DefaultProject writes it (full names, packed ARGB integers)."""
    project = tmp_path / "study.v2"
    write_qpproj(project, [])
    (project / "classifiers").mkdir()
    (project / "classifiers" / "classes.json").write_text(
        json.dumps(
            {
                "pathClasses": [
                    {"name": "Tumor", "color": -3670016},  # 0xFFC80000: (200, 0, 0)
                    {"name": "Tumor: Mitosis", "color": -16776961},  # 0xFF0000FF: (0, 0, 255)
                ]
            }
        )
    )
    path = project / "wsdal" / "results" / "1.geojson"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"type": "FeatureCollection", "features": USER_FEATURES[:2]}))
    write_results_geojson(path, detections=np.zeros((0, 3)))
    _qupath_reads_every_classification(path)
    kept = json.loads(path.read_text())["features"]
    assert kept[0]["properties"]["classification"]["color"] == [200, 0, 0]
    assert kept[1]["properties"]["classification"]["color"] == [0, 0, 255]
    # the same file outside a project's exchange folder gets the fixed colours
    other = tmp_path / "elsewhere.geojson"
    other.write_text(json.dumps({"type": "FeatureCollection", "features": USER_FEATURES[:1]}))
    write_results_geojson(other, detections=np.zeros((0, 3)))
    color = json.loads(other.read_text())["features"][0]["properties"]["classification"]["color"]
    assert color == list(class_color("Tumor"))


def test_a_rerun_keeps_the_pathologists_answers_and_adds_no_duplicate(tmp_path):
    from wsdal_wsi.qupath.results import stable_id

    path = tmp_path / "s.geojson"
    write_results_geojson(path, detections=[(10.0, 10.0, 0.9), (50.0, 50.0, 0.8)], id_seed="s")
    doc = json.loads(path.read_text())
    # in QuPath: the first detection is relabelled a false positive, then the file re-exported
    # (QuPath's layout: one document, not ours line by line)
    first = next(f for f in doc["features"] if f["geometry"]["coordinates"] == [10.0, 10.0])
    first["properties"]["classification"] = {"name": "Non-mitosis", "color": [0, 0, 255]}
    path.write_text(json.dumps(doc, indent=1))
    report = write_results_geojson(
        path, detections=[(10.0, 10.0, 0.9), (50.0, 50.0, 0.8)], id_seed="s"
    )
    after = json.loads(path.read_text())["features"]
    ids = [f["id"] for f in after]
    assert len(ids) == len(set(ids)) == 2  # the answer kept, the other replaced: no duplicate
    kept = next(f for f in after if f["id"] == stable_id("s", "detection", 10.0, 10.0))
    assert kept["properties"]["classification"]["name"] == "Non-mitosis"
    assert report.removed == 1 and report.kept == 1
