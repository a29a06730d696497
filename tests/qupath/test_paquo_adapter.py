"""The paquo adapter. Tests marked ``qupath`` need a QuPath installation (PAQUO_QUPATH_DIR);
elsewhere they are skipped, saying so. The rest run everywhere."""

import json
import os
import zipfile

import numpy as np
import pytest
from shapely.geometry import MultiPoint, Point, box

from wsdal_wsi.errors import ProjectError, QuPathUnavailableError
from wsdal_wsi.qupath import make_feature, open_source, paquo_adapter
from wsdal_wsi.qupath.model import AreaAnnotation
from wsdal_wsi.qupath.results import write_results_geojson
from wsdal_wsi.qupath.sinks import GeoJsonSink, write_to_qupath

from .conftest import make_tiff, qpproj_image, write_qpproj
from .fake_paquo import FakeQuPath

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


# ------------------------------------------- the adapter's logic, on the paquo stand-in

USER_ID = "11111111-1111-4111-8111-111111111111"
OLD_ID = "22222222-2222-4222-8222-222222222222"


def _saved(name, kind="annotation", *, oid, cls=None):
    return {"id": oid, "name": name, "type": kind, "class": cls, "locked": False, "ellipse": False}


def _results_file(path):
    """A results file as ``wsdal predict`` writes it: detections, a locked ellipse hotspot,
    and a detection of a derived class."""
    hotspot = make_feature(
        Point(100, 100).buffer(40),
        class_name="WS-DAL hotspot",
        name="WS-DAL hotspot: 2 mitoses",
        is_ellipse=True,
        locked=True,
    )
    derived = make_feature(
        Point(5, 5), object_type="detection", class_name="Tumor: Mitosis", name="WS-DAL"
    )
    write_results_geojson(path, detections=[(10.0, 10.0, 0.9)], extra_features=[hotspot, derived])
    return {f["id"]: f for f in json.loads(path.read_text())["features"]}


@pytest.fixture
def dotted_project(tmp_path):
    """A project folder whose name has a dot (paquo takes such a folder for a file)."""
    project = tmp_path / "study.v2"
    write_qpproj(project, [qpproj_image(1, "a.svs", "file:/scans/1.svs")])
    return project


def test_paquo_write_keeps_ids_flags_and_derived_classes(dotted_project, tmp_path, monkeypatch):
    fake = FakeQuPath(
        ["Tumor", "Stroma: Mitosis"],  # keyed by .name, "Stroma: Mitosis" would be "Mitosis"
        {"1": [_saved("my click", oid=USER_ID), _saved("WS-DAL", "detection", oid=OLD_ID)]},
    )
    monkeypatch.setattr(paquo_adapter, "_paquo", lambda name: fake.modules()[name])
    written = _results_file(tmp_path / "1.geojson")
    report = paquo_adapter.write_results_paquo(dotted_project, {"1": tmp_path / "1.geojson"})
    assert (report.written, report.removed, report.failed) == ({"1": 3}, {"1": 1}, {})
    assert report.backup.parent == dotted_project / "wsdal" / "backups"
    # paquo was given the file: the dotted folder alone raises "requires '.qpproj' suffix"
    assert {p for p, _ in fake.opened} == {dotted_project / "project.qpproj"}
    with pytest.raises(ValueError, match=r"requires '\.qpproj' suffix"):
        fake.modules()["paquo.projects"].QuPathProject(dotted_project)
    assert fake.exits_saving == 0 and fake.saved == ["1"]
    # every class kept, the new ones added by full id (the derived one built from its parent)
    assert fake.disk["classes"] == [
        "Tumor",
        "Stroma: Mitosis",
        "Mitosis",
        "Tumor: Mitosis",
        "WS-DAL hotspot",
    ]
    objects = {o["id"]: o for o in fake.disk["images"]["1"]}
    assert set(objects) == {USER_ID, *written}  # the file's ids; the old WS-DAL one gone
    hotspot = next(o for o in objects.values() if o["name"].startswith("WS-DAL hotspot"))
    assert hotspot["locked"] and hotspot["ellipse"]
    assert {o["class"] for o in objects.values() if o["type"] == "detection"} == {
        "Mitosis",
        "Tumor: Mitosis",
    }


def test_paquo_write_saves_nothing_when_an_image_fails(dotted_project, tmp_path, monkeypatch):
    write_qpproj(
        dotted_project,
        [qpproj_image(1, "a.svs", "file:/scans/1.svs"), qpproj_image(2, "b.svs", "file:/b")],
    )
    before = {
        "1": [_saved("WS-DAL", "detection", oid=OLD_ID)],
        "2": [_saved("my click", oid=USER_ID)],
    }
    fake = FakeQuPath(["Mitosis"], before, fail={"2": RuntimeError("JsonParseException")})
    monkeypatch.setattr(paquo_adapter, "_paquo", lambda name: fake.modules()[name])
    _results_file(tmp_path / "r.geojson")
    results = {"1": tmp_path / "r.geojson", "2": tmp_path / "r.geojson"}
    with pytest.raises(ProjectError, match=r"JsonParseException.*nothing was saved") as info:
        paquo_adapter.write_results_paquo(dotted_project / "project.qpproj", results)
    (backup,) = (dotted_project / "wsdal" / "backups").iterdir()
    assert str(backup) in str(info.value)
    assert fake.disk["images"] == before and fake.disk["classes"] == ["Mitosis"]
    assert fake.saved == [] and fake.exits_saving == 0


def test_paquo_write_reports_unreachable_slides_and_unknown_entries(
    dotted_project, tmp_path, monkeypatch
):
    fake = FakeQuPath(["Mitosis"], {"1": [], "2": []}, unreachable={"1"}, multi_file={"2"})
    monkeypatch.setattr(paquo_adapter, "_paquo", lambda name: fake.modules()[name])
    _results_file(tmp_path / "r.geojson")
    report = paquo_adapter.write_results_paquo(
        dotted_project, {k: tmp_path / "r.geojson" for k in ("1", "2", "9")}
    )
    assert "slide not reachable (file:/scans/1.svs)" in report.failed["1"]
    assert "made of several files" in report.failed["2"]
    assert "import_results.groovy" in report.failed["2"]
    assert report.failed["9"] == "no image with this entry ID in the project"
    assert report.written == {} and fake.disk["images"] == {"1": [], "2": []}


# ----------------------------------------------------------------- with a QuPath


def _make_project(tmp_path, folder="proj"):
    from paquo.classes import QuPathPathClass
    from paquo.projects import QuPathProject

    slide = make_tiff(tmp_path / "scans" / "a.tiff")
    mitosis = QuPathPathClass("Mitosis", color=(220, 20, 60))
    with QuPathProject(tmp_path / folder / "project.qpproj", mode="x") as qp:
        qp.path_classes = [mitosis]
        entry = qp.add_image(slide)
        entry.hierarchy.add_annotation(roi=MultiPoint([(100, 120), (300, 310)]), path_class=mitosis)
        note = entry.hierarchy.add_annotation(roi=box(0, 0, 50, 50))
        note.name = "my note"
        entry_id = str(entry.entry_id)
    return tmp_path / folder / "project.qpproj", entry_id


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


def _tool_objects(qpproj):
    """The saved project's WS-DAL objects, by QuPath's id (read-only)."""
    from paquo.projects import QuPathProject

    with QuPathProject(qpproj, mode="r") as qp:
        h = qp.images[0].hierarchy
        tool = [o for o in (*h.detections, *h.annotations) if str(o.name).startswith("WS-DAL")]
        classes = {pc.id for pc in qp.path_classes}
        return {
            str(o.java_object.getID()): {
                "name": str(o.name),
                "locked": o.locked,
                "ellipse": o.to_geojson()["geometry"].get("isEllipse", False),
                "class": o.path_class.id if o.path_class else None,
            }
            for o in tool
        }, classes


@pytest.mark.qupath
@requires_qupath
def test_paquo_write_keeps_ids_flags_and_classes_in_a_real_project(tmp_path):
    qpproj, entry_id = _make_project(tmp_path, folder="study.v2")
    written = _results_file(tmp_path / "r.geojson")
    report = paquo_adapter.write_results_paquo(qpproj.parent, {entry_id: tmp_path / "r.geojson"})
    assert report.failed == {} and report.written == {entry_id: 3}
    objects, classes = _tool_objects(qpproj)
    assert set(objects) == set(written)  # the file's ids, as import_results.groovy keeps them
    hotspot = next(o for o in objects.values() if o["name"].startswith("WS-DAL hotspot"))
    assert hotspot["locked"] and hotspot["ellipse"]
    assert sorted(o["class"] for o in objects.values()) == [
        "Mitosis",
        "Tumor: Mitosis",
        "WS-DAL hotspot",
    ]
    assert {"Mitosis", "Tumor: Mitosis", "WS-DAL hotspot"} <= classes


@pytest.mark.qupath
@requires_qupath
def test_paquo_write_failure_leaves_the_saved_project_as_it_was(tmp_path, monkeypatch):
    qpproj, entry_id = _make_project(tmp_path)
    _results_file(tmp_path / "first.geojson")
    paquo_adapter.write_results_paquo(qpproj, {entry_id: tmp_path / "first.geojson"})
    before = _tool_objects(qpproj)
    data = {p: p.read_bytes() for p in (qpproj.parent / "data").rglob("*") if p.is_file()}
    replace = paquo_adapter._replace_objects

    def replace_then_fail(entry, features):
        replace(entry, features)  # the image is changed in memory, then something breaks
        raise RuntimeError("disk full")

    monkeypatch.setattr(paquo_adapter, "_replace_objects", replace_then_fail)
    _results_file(tmp_path / "second.geojson")
    with pytest.raises(ProjectError, match=r"disk full\).*nothing was saved"):
        paquo_adapter.write_results_paquo(qpproj, {entry_id: tmp_path / "second.geojson"})
    assert _tool_objects(qpproj) == before
    assert {p: p.read_bytes() for p in data} == data


def test_paquo_write_keeps_the_pathologists_answers(dotted_project, tmp_path, monkeypatch):
    relabelled = "8e3f0000-0000-4000-8000-00000000000a"  # a false positive, relabelled
    check = "8e3f0000-0000-4000-8000-00000000000b"  # an answered WS-DAL check
    before = {"1": [
        {**_saved("WS-DAL", "detection", oid=relabelled, cls="Non-mitosis"),
         "geometry": {"type": "Point", "coordinates": [10.0, 10.0]}},
        {**_saved("WS-DAL check 1: detected, p 0.5", oid=check, cls="Mitosis"),
         "geometry": {"type": "Point", "coordinates": [20.0, 20.0]}},
        {**_saved("WS-DAL", "detection", oid=OLD_ID, cls="Mitosis"),
         "geometry": {"type": "Point", "coordinates": [30.0, 30.0]}},  # unreviewed: replaced
    ]}  # fmt: skip
    fake = FakeQuPath(["Mitosis", "Non-mitosis"], before)
    monkeypatch.setattr(paquo_adapter, "_paquo", lambda name: fake.modules()[name])
    written = _results_file(tmp_path / "1.geojson")
    # the new results hold an object with the answered check's id: the answer stays
    doc = json.loads((tmp_path / "1.geojson").read_text())
    doc["features"][0]["id"] = check
    (tmp_path / "1.geojson").write_text(json.dumps(doc))
    report = paquo_adapter.write_results_paquo(dotted_project, {"1": tmp_path / "1.geojson"})
    assert report.failed == {} and report.removed == {"1": 1}
    objects = {o["id"]: o for o in fake.disk["images"]["1"]}
    assert objects[relabelled]["class"] == "Non-mitosis"
    assert objects[check]["class"] == "Mitosis" and objects[check]["name"].startswith(
        "WS-DAL check"
    )
    assert OLD_ID not in objects and len(objects) == 2 + len(written) - 1
    # and the reader passes the answers on (detections included), not the unreviewed ones
    read = paquo_adapter.read_project_annotations(dotted_project)
    assert {o.id for o in read["1"] if o.tool_made} >= {relabelled, check}
