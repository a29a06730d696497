import os
import time

import pytest

from wsdal_wsi.errors import InputError, QuPathUnavailableError, SlideError
from wsdal_wsi.qupath import open_source, paquo_adapter
from wsdal_wsi.qupath.geojson_write import points_feature, write_features
from wsdal_wsi.qupath.project_source import ProjectSource

from .conftest import BIOFORMATS, CLICKS, make_tiff, qpproj_image, wrap_image, write_qpproj

no_qupath = pytest.mark.skipif(
    paquo_adapter.qupath_available(), reason="a QuPath installation is present here"
)


@no_qupath
def test_auto_backend_without_qupath_reads_the_exports(exported_project, tmp_path):
    src = open_source(exported_project)
    assert isinstance(src, ProjectSource)
    assert src.kind == "qupath-project" and src.backend == "export"
    records = src.images()
    assert [(r.key, r.name) for r in records] == [("1", "slide_a.tiff"), ("2", "slide_b.tiff")]
    for record, ann in zip(records, CLICKS.values(), strict=True):
        assert record.usable, record.problems
        assert record.entry_id == record.key
        assert record.annotations.sorted() == ann.sorted()
        assert record.annotation_path == (
            exported_project / "wsdal" / "annotations" / f"{record.key}.geojson"
        )
    assert src.results_path(records[0], tmp_path / "o") == tmp_path / "o" / "1.geojson"
    assert src.exchange_results_path(records[1]) == (
        exported_project.resolve() / "wsdal" / "results" / "2.geojson"
    )
    desc = src.describe()
    assert desc["backend"] == "export" and desc["qupath_version"] == "0.5.1"


@no_qupath
def test_paquo_backend_without_qupath_says_what_to_do(exported_project):
    with pytest.raises(QuPathUnavailableError, match="no QuPath installation found") as info:
        open_source(exported_project, backend="paquo")
    msg = str(info.value)
    assert "PAQUO_QUPATH_DIR" in msg and "export_annotations.groovy" in msg


def test_missing_export_and_missing_slide(exported_project, tmp_path):
    (exported_project / "wsdal" / "annotations" / "2.geojson").unlink()
    (tmp_path / "scans" / "slide_a.tiff").unlink()
    records = open_source(exported_project, backend="export").images()
    (a_problem,) = records[0].problems
    assert a_problem.startswith("slide not found (looked at: ") and "--relink OLD=NEW" in a_problem
    assert records[0].annotations is not None  # the clicks are still read and shown
    (b_problem,) = records[1].problems
    assert "no annotation export" in b_problem and "2.geojson is missing" in b_problem
    assert "export_annotations.groovy" in b_problem
    assert records[1].readable


def test_relinked_slides_and_project_pixel_size(tmp_path):
    moved = tmp_path / "new_disk"
    make_tiff(moved / "a.tif", mpp=None)
    project = tmp_path / "p"
    write_qpproj(project, [qpproj_image(1, "a.tif", "file:/old_disk/a.tif", mpp=0.5)])
    write_features(
        project / "wsdal" / "annotations" / "1.geojson", [points_feature([[1, 1]], "Mitosis")]
    )
    (rec,) = open_source(project, backend="export", relink=[f"/old_disk={moved}"]).images()
    assert rec.usable, rec.problems
    assert rec.slide_path == moved / "a.tif"
    assert rec.mpp == 0.5 and rec.mpp_source.startswith("QuPath project")
    assert any("relinked" in w for w in rec.warnings)


def test_stale_export_is_a_warning(exported_project):
    data = exported_project / "data" / "1" / "data.qpdata"
    data.parent.mkdir(parents=True)
    data.write_bytes(b"\xac\xed")
    later = time.time() + 60
    os.utime(data, (later, later))
    rec = open_source(exported_project, backend="export").images()[0]
    assert rec.usable
    assert any("export is older than the project data" in w for w in rec.warnings)


def test_project_without_images(tmp_path):
    write_qpproj(tmp_path / "p", [])
    with pytest.raises(InputError, match="the project has no images"):
        open_source(tmp_path / "p", backend="export")


def test_images_whose_coordinates_are_not_the_files_are_refused_by_name(tmp_path):
    """A rotated entry, a scene of a multi-scene file and a size mismatch, as QuPath writes
    them: each is refused with its reason (inspect, train) and cannot be opened (predict)."""
    scans = tmp_path / "scans"
    names = ["plain", "scene0", "rotated", "scene2", "other_size"]
    for name in names:
        make_tiff(scans / f"{name}.tiff")

    def image(i, name, **kwargs):
        return qpproj_image(i, f"{name}.tiff", (scans / f"{name}.tiff").as_uri(), **kwargs)

    images = [
        image(1, "plain"),
        image(2, "scene0", provider=BIOFORMATS, args=["--series", "0"]),
        wrap_image(image(3, "rotated"), "rotated", rotation="ROTATE_90"),
        image(4, "scene2", provider=BIOFORMATS, args=["--series", "2"]),
        image(5, "other_size", provider=BIOFORMATS, size=(1024, 512)),
    ]
    project = tmp_path / "project"
    write_qpproj(project, images)
    for i in range(1, 6):
        write_features(
            project / "wsdal" / "annotations" / f"{i}.geojson",
            [points_feature([[10, 10]], "Mitosis")],
        )
    records = {r.name: r for r in open_source(project, backend="export").images()}
    assert records["plain.tiff"].usable and records["scene0.tiff"].usable
    expected = {
        "rotated.tiff": "QuPath shows this image rotated (ROTATE_90)",
        "scene2.tiff": "QuPath shows scene 2 of a multi-scene file (--series 2)",
        "other_size.tiff": "QuPath records its image as 1024 x 512 px but the slide file opens "
        "as 512 x 512 px",
    }
    for name, words in expected.items():
        record = records[name]
        assert not record.usable
        (problem,) = record.problems
        assert problem.startswith(words), problem
        with pytest.raises(SlideError, match=f"^{name}: {words[:30]}"):
            record.open_slide()
    # without the slide check (as predict opens them), opening still refuses
    unchecked = open_source(project, backend="export", check_slides=False).images()
    with pytest.raises(SlideError, match="1024 x 512 px"):
        unchecked[4].open_slide()
    with unchecked[0].open_slide() as slide:
        assert slide.dimensions == (512, 512)
