"""``wsdal inspect`` and ``wsdal import-coco`` through Typer's CliRunner."""

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from shapely.geometry import box
from typer.testing import CliRunner

from wsdal_wsi.cli import app
from wsdal_wsi.qupath import paquo_adapter
from wsdal_wsi.qupath.geojson_write import area_feature, points_feature, write_features

runner = CliRunner()


def _tiff(path: Path, *, mpp: float | None = 0.25) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        for lvl, side in enumerate([512, 256, 128]):
            extra = (
                {"resolution": (1e4 / (mpp * 2**lvl),) * 2, "resolutionunit": "CENTIMETER"}
                if mpp
                else {}
            )
            tw.write(
                np.full((side, side, 3), 200, np.uint8),
                tile=(128, 128),
                compression="jpeg",
                photometric="rgb",
                subfiletype=1 if lvl else 0,
                **extra,
            )
    return path


@pytest.fixture
def folder(tmp_path):
    f = tmp_path / "slides"
    _tiff(f / "a.tiff")
    write_features(
        f / "a.geojson",
        [
            points_feature([[100, 100], [200, 200]], "Mitosis"),
            points_feature([[300, 300]], "Mitosis-like"),
            area_feature(box(0, 0, 400, 400), "Region", name="R1"),
        ],
    )
    _tiff(f / "b.tiff")
    write_features(f / "b.geojson", [points_feature([[50, 60]], "Mitosis")])
    return f


def test_inspect_usable_folder_exits_0(folder):
    result = runner.invoke(app, ["inspect", str(folder)])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Images   2 of 2 usable" in out
    assert "a.tiff  [usable]  key a" in out
    assert "points    Mitosis 2, Mitosis-like 1" in out
    assert "areas     Region 1" in out
    assert "0.25 µm/px" in out


def test_inspect_json_form(folder):
    result = runner.invoke(app, ["inspect", str(folder), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["source"]["kind"] == "slide-folder"
    assert doc["summary"] == {
        "images": 2,
        "usable": 2,
        "unknown_classes": {},
        "missing_slides": [],
        "corrections": {},
    }
    a = doc["images"][0]
    for key in ("name", "slide", "readable", "mpp", "points", "areas", "problems"):
        assert key in a
    assert a["name"] == "a.tiff" and a["readable"] is True and a["mpp"] == pytest.approx(0.25)
    assert a["points"] == {"Mitosis": 2, "Mitosis-like": 1}
    assert a["areas"] == {"Region": 1}
    assert a["problems"] == []


def test_inspect_exit_1_when_some_images_are_not_usable(folder):
    _tiff(folder / "c.tif", mpp=None)  # no resolution, no sidecar
    write_features(folder / "d.geojson", [points_feature([[1, 1]], "Tumor")])
    _tiff(folder / "d.tiff")
    result = runner.invoke(app, ["inspect", str(folder), "--json"])
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    c = next(im for im in doc["images"] if im["key"] == "c")
    assert any("no resolution" in p for p in c["problems"])
    assert any("expected c.geojson" in p for p in c["problems"])
    assert doc["summary"]["unknown_classes"] == {"Tumor": 1}
    text = runner.invoke(app, ["inspect", str(folder)])
    assert text.exit_code == 1
    assert "c.tif  [NOT USABLE]" in text.stdout
    assert "Unknown classes (not used): Tumor 1" in text.stdout
    # with --mpp and the class given a role, only the missing sidecar remains
    again = runner.invoke(
        app, ["inspect", str(folder), "--json", "--mpp", "0.5", "--negative", "Tumor"]
    )
    c = next(im for im in json.loads(again.stdout)["images"] if im["key"] == "c")
    assert c["problems"] == ["no annotations: expected c.geojson beside the slide"]


def test_inspect_exit_2_when_the_source_cannot_be_read(tmp_path):
    result = runner.invoke(app, ["inspect", str(tmp_path / "missing")])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert "no such file or folder" in result.stderr
    bad = tmp_path / "p"
    bad.mkdir()
    (bad / "project.qpproj").write_text("{broken")
    result = runner.invoke(app, ["inspect", str(bad), "--backend", "export"])
    assert result.exit_code == 2
    assert "project.qpproj: not valid JSON" in result.stderr
    result = runner.invoke(app, ["inspect", str(tmp_path), "--relink", "nonsense"])
    assert result.exit_code == 2


def test_inspect_project_with_relink(tmp_path):
    scans = tmp_path / "moved"
    _tiff(scans / "a.tiff")
    project = tmp_path / "proj"
    project.mkdir()
    doc = {
        "version": "0.6.0",
        "uri": (project / "project.qpproj").as_uri(),
        "images": [
            {
                "entryID": 3,
                "imageName": "a.tiff",
                "serverBuilder": {"builderType": "uri", "uri": "file:/lab/scans/a.tiff"},
            }
        ],
    }
    (project / "project.qpproj").write_text(json.dumps(doc))
    write_features(
        project / "wsdal" / "annotations" / "3.geojson", [points_feature([[5, 5]], "Mitosis")]
    )
    missing = runner.invoke(app, ["inspect", str(project), "--backend", "export", "--json"])
    assert missing.exit_code == 1
    doc = json.loads(missing.stdout)
    (im,) = doc["images"]
    assert im["slide"] is None and "--relink" in im["problems"][0]
    assert doc["summary"]["missing_slides"] == ["a.tiff"]
    text = runner.invoke(app, ["inspect", str(project), "--backend", "export"])
    assert "Slides missing (1): a.tiff" in text.stdout
    fixed = runner.invoke(
        app,
        ["inspect", str(project), "--backend", "export", "--relink", f"/lab/scans={scans}"],
    )
    assert fixed.exit_code == 0, fixed.output
    assert "a.tiff  [usable]  key 3" in fixed.stdout


@pytest.mark.skipif(paquo_adapter.qupath_available(), reason="a QuPath installation is present")
def test_inspect_paquo_backend_without_qupath(tmp_path):
    project = tmp_path / "proj"
    project.mkdir()
    (project / "project.qpproj").write_text(json.dumps({"images": [{"entryID": 1}]}))
    result = runner.invoke(app, ["inspect", str(project), "--backend", "paquo"])
    assert result.exit_code == 1
    assert "no QuPath installation found" in result.stderr


def test_import_coco(tmp_path):
    images = tmp_path / "images"
    _tiff(images / "s1.tiff")
    db = {
        "images": [
            {"id": 1, "file_name": "s1.tiff", "width": 512, "height": 512},
            {"id": 2, "file_name": "s2.tiff", "width": 512, "height": 512},
        ],
        "categories": [{"id": 1, "name": "mitotic figure"}, {"id": 2, "name": "not mitotic"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [475, 10, 525, 60]},
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [100, 100, 150, 150]},
            {"id": 3, "image_id": 2, "category_id": 1, "bbox": [0, 0, 50, 50]},
        ],
    }
    db_path = tmp_path / "db.json"
    db_path.write_text(json.dumps(db))
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["import-coco", str(db_path), "--images", str(images), "--out", str(out)]
    )
    assert result.exit_code == 1, result.output  # s2.tiff is missing
    assert "Wrote 2 sidecars" in result.stdout and "xyxy" in result.stdout
    assert "points: Mitosis 2, Mitosis-like 1" in result.stdout
    assert "1 slides not found" in result.stderr and "s2.tiff" in result.stderr
    assert (out / "s1.geojson").is_file() and (out / "s2.geojson").is_file()
    inspected = runner.invoke(app, ["inspect", str(out), "--json"])
    assert inspected.exit_code == 0, inspected.output
    assert json.loads(inspected.stdout)["images"][0]["points"] == {
        "Mitosis": 1,
        "Mitosis-like": 1,
    }
    # all slides present -> exit 0; a category mapping changes the classes
    db["images"].pop()
    db["annotations"].pop()
    db_path.write_text(json.dumps(db))
    ok = runner.invoke(
        app,
        [
            "import-coco",
            str(db_path),
            "--images",
            str(images),
            "--out",
            str(tmp_path / "o2"),
            "--category",
            "2=Non-mitosis",
        ],
    )
    assert ok.exit_code == 0, ok.output
    assert "Non-mitosis 1" in ok.stdout
    bad = runner.invoke(
        app,
        [
            "import-coco",
            str(db_path),
            "--images",
            str(images),
            "--out",
            str(out),
            "--category",
            "x",
        ],
    )
    assert bad.exit_code == 2 and "--category must be ID=CLASS" in bad.stderr
