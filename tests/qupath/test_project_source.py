import os
import time

import pytest

from wsdal_wsi.errors import InputError, QuPathUnavailableError
from wsdal_wsi.qupath import open_source, paquo_adapter
from wsdal_wsi.qupath.geojson_write import points_feature, write_features
from wsdal_wsi.qupath.project_source import ProjectSource

from .conftest import CLICKS, make_tiff, qpproj_image, write_qpproj

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
