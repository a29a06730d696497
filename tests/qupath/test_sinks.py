import json

import numpy as np
import pytest
from shapely.geometry import box

from wsdal_wsi.errors import ConfigError, QuPathUnavailableError
from wsdal_wsi.provenance import provenance
from wsdal_wsi.qupath import open_source, paquo_adapter
from wsdal_wsi.qupath.geojson_read import read_objects
from wsdal_wsi.qupath.model import AreaAnnotation
from wsdal_wsi.qupath.sinks import GeoJsonSink, write_to_qupath

from .conftest import CLICKS
from .strict_checker import check_file

DETS = np.array([[100.0, 120.0, 0.95], [400.0, 50.0, 0.61], [20.0, 480.0, 0.33]])
HOTSPOT = AreaAnnotation(
    box(0, 0, 256, 256), "Hotspot", name="hotspot", measurements={"Mitoses": 1}
)


def test_folder_sink_writes_key_named_files(slide_folder, tmp_path):
    src = open_source(slide_folder)
    sink = GeoJsonSink(src, tmp_path / "out")
    rec = src.images()[0]
    (report,) = sink.write(rec, detections=DETS, areas=[HOTSPOT], provenance=provenance(slide="a"))
    assert report.path == tmp_path / "out" / "slide_a.geojson"
    assert (report.written, report.removed, report.kept) == (4, 0, 0)
    assert len(check_file(report.path, results=True)) == 4


def test_writing_twice_into_the_slide_folder_keeps_the_pathologists_objects(slide_folder):
    """Output folder = slide folder: results go into the sidecars without touching the clicks."""
    src = open_source(slide_folder)
    records = src.images()
    before = {r.key: (slide_folder / f"{r.key}.geojson").read_text() for r in records}
    sink = GeoJsonSink(src, slide_folder)
    for _ in range(2):
        for r in records:
            sink.write(r, detections=DETS, areas=[HOTSPOT], provenance=provenance())
    for r in records:
        path = slide_folder / f"{r.key}.geojson"
        features = json.loads(path.read_text())["features"]
        user = [f for f in features if not f["properties"].get("name", "").startswith("WS-DAL")]
        assert user == json.loads(before[r.key])["features"]
        objs = read_objects(path)
        assert sum(o.tool_made for o in objs) == len(DETS) + 1  # never duplicated
    # and the source still reads exactly the pathologist's clicks
    again = open_source(slide_folder).images()
    for r, ann in zip(again, CLICKS.values(), strict=True):
        assert r.annotations.sorted() == ann.sorted()


def test_project_sink_writes_exchange_file_too(exported_project, tmp_path):
    src = open_source(exported_project, backend="export")
    sink = GeoJsonSink(src, tmp_path / "out")
    rec = src.images()[1]
    assert sink.paths(rec) == [
        tmp_path / "out" / "2.geojson",
        exported_project.resolve() / "wsdal" / "results" / "2.geojson",
    ]
    reports = sink.write(rec, detections=list(map(tuple, DETS)), provenance=provenance())
    assert [r.written for r in reports] == [3, 3]
    for r in reports:
        check_file(r.path, results=True)
    with pytest.raises(ConfigError, match="as an array or a sequence"):
        sink.write(rec, detections=iter(DETS))


def test_write_to_qupath_needs_a_project(slide_folder):
    src = open_source(slide_folder)
    with pytest.raises(ConfigError, match="--write-qupath needs a QuPath project"):
        write_to_qupath(src, src.images())


@pytest.mark.skipif(paquo_adapter.qupath_available(), reason="a QuPath installation is present")
def test_write_to_qupath_without_qupath_says_what_to_do(exported_project):
    src = open_source(exported_project, backend="export")
    with pytest.raises(QuPathUnavailableError, match=r"import_results\.groovy"):
        write_to_qupath(src, src.images())
