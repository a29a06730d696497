"""The paquo adapter. Tests marked ``qupath`` need a QuPath installation (PAQUO_QUPATH_DIR);
elsewhere they are skipped, saying so. The rest run everywhere."""

import json
import os
import zipfile

import numpy as np
import pytest
from shapely.geometry import MultiPoint, Point, box

from wsdal_wsi.errors import QuPathUnavailableError
from wsdal_wsi.qupath import open_source, paquo_adapter
from wsdal_wsi.qupath.model import AreaAnnotation
from wsdal_wsi.qupath.results import write_results_geojson
from wsdal_wsi.qupath.sinks import GeoJsonSink, write_to_qupath

from .conftest import make_tiff

HAVE_QUPATH = bool(os.environ.get("PAQUO_QUPATH_DIR")) and paquo_adapter.qupath_available()
requires_qupath = pytest.mark.skipif(
    not HAVE_QUPATH,
    reason="needs a QuPath installation: set PAQUO_QUPATH_DIR "
    "(paquo get_qupath --install-path DIR 0.6.0)",
)


def test_qupath_available_is_a_bool_and_starts_no_java():
    import sys

    assert isinstance(paquo_adapter.qupath_available(), bool)
    assert "paquo.java" not in sys.modules or HAVE_QUPATH


@pytest.mark.parametrize(
    "exc, match",
    [
        (ValueError("no valid qupath installation found"), "no QuPath installation found"),
        (ValueError("something else"), r"paquo could not start QuPath \(something else\)"),
        (RuntimeError("JVM failed"), r"RuntimeError: JVM failed.*PAQUO_QUPATH_DIR"),
    ],
)
def test_paquo_failures_become_our_error(monkeypatch, exc, match):
    def boom(name):
        raise exc

    monkeypatch.setattr(paquo_adapter.importlib, "import_module", boom)
    with pytest.raises(QuPathUnavailableError, match=match):
        paquo_adapter.read_project_annotations("x/project.qpproj")


@pytest.mark.skipif(HAVE_QUPATH, reason="a QuPath installation is present")
def test_real_import_without_qupath_gives_the_clear_message():
    with pytest.raises(QuPathUnavailableError, match="PAQUO_QUPATH_DIR"):
        paquo_adapter._paquo("paquo.projects")


def test_backup_project_zips_project_files(exported_project, tmp_path):
    (exported_project / "data" / "1").mkdir(parents=True)
    (exported_project / "data" / "1" / "data.qpdata").write_bytes(b"\xac\xed\x00\x05")
    (exported_project / "classifiers").mkdir()
    (exported_project / "classifiers" / "classes.json").write_text('{"pathClasses": []}')
    zpath = paquo_adapter.backup_project(exported_project)
    assert zpath.parent == exported_project / "wsdal" / "backups"
    with zipfile.ZipFile(zpath) as zf:
        names = set(zf.namelist())
        assert zf.read("data/1/data.qpdata") == b"\xac\xed\x00\x05"
    assert names == {"project.qpproj", "data/1/data.qpdata", "classifiers/classes.json"}
    other = paquo_adapter.backup_project(exported_project, backup_dir=tmp_path / "bk")
    assert other.parent == tmp_path / "bk" and other.name != zpath.name


# ----------------------------------------------------------------- with a QuPath


def _make_project(tmp_path):
    from paquo.classes import QuPathPathClass
    from paquo.projects import QuPathProject

    slide = make_tiff(tmp_path / "scans" / "a.tiff")
    mitosis = QuPathPathClass("Mitosis", color=(220, 20, 60))
    with QuPathProject(tmp_path / "proj", mode="x") as qp:
        qp.path_classes = [mitosis]
        entry = qp.add_image(slide)
        entry.hierarchy.add_annotation(roi=MultiPoint([(100, 120), (300, 310)]), path_class=mitosis)
        note = entry.hierarchy.add_annotation(roi=box(0, 0, 50, 50))
        note.name = "my note"
        entry_id = str(entry.entry_id)
    return tmp_path / "proj" / "project.qpproj", entry_id


@pytest.mark.qupath
@requires_qupath
def test_paquo_reading_matches_the_model(tmp_path):
    qpproj, entry_id = _make_project(tmp_path)
    objects = paquo_adapter.read_project_annotations(qpproj)
    assert list(objects) == [entry_id]
    src = open_source(qpproj, backend="paquo")
    (rec,) = src.images()
    assert rec.key == entry_id and rec.usable, rec.problems
    assert rec.annotations.points_per_class() == {"Mitosis": 2}
    assert rec.annotations.areas[0].name == "my note"


@pytest.mark.qupath
@requires_qupath
def test_paquo_writing_twice_replaces_only_tool_objects(tmp_path):
    from paquo.projects import QuPathProject

    qpproj, entry_id = _make_project(tmp_path)
    src = open_source(qpproj, backend="paquo")
    sink = GeoJsonSink(src, tmp_path / "out")
    rec = src.images()[0]
    dets = np.array([[10.0, 10.0, 0.9], [20.0, 20.0, 0.8]])
    hotspot = AreaAnnotation(Point(100, 100).buffer(40), "Hotspot", measurements={"Mitoses": 2})
    for _ in range(2):
        sink.write(rec, detections=dets, areas=[hotspot])
        report = write_to_qupath(src, [rec])
        assert report.failed == {}
        assert report.written == {entry_id: 3}
        assert report.backup.is_file()
    assert report.removed == {entry_id: 3}
    with QuPathProject(qpproj, mode="r") as qp:
        h = qp.images[0].hierarchy
        names = sorted(str(o.name) for o in (*h.annotations, *h.detections))
        det = next(d for d in h.detections)
        assert isinstance(det.measurements["WS-DAL probability"], float)
    assert names == ["None", "WS-DAL", "WS-DAL", "WS-DAL", "my note"]


@pytest.mark.qupath
@requires_qupath
def test_paquo_reports_an_unreachable_slide(tmp_path):
    qpproj, entry_id = _make_project(tmp_path)
    results = tmp_path / "r.geojson"
    write_results_geojson(results, detections=[(1.0, 2.0, 0.5)])
    (tmp_path / "scans" / "a.tiff").unlink()
    report = paquo_adapter.write_results_paquo(qpproj, {entry_id: results})
    assert entry_id in report.failed and "slide not reachable" in report.failed[entry_id]
    assert json.loads(results.read_text())["features"]
