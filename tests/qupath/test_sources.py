import json
import logging

import numpy as np
import pytest

from wsdal_wsi.errors import (
    AnnotationFormatError,
    ConfigError,
    InputError,
    ResolutionError,
    SlideError,
)
from wsdal_wsi.qupath.coco import import_coco
from wsdal_wsi.qupath.factory import open_source
from wsdal_wsi.qupath.geojson_write import points_feature, write_features
from wsdal_wsi.qupath.model import ImageAnnotations
from wsdal_wsi.qupath.sources import SlideFolderSource

from .conftest import CLICKS, clicks_features, make_tiff, qpproj_image, write_qpproj


class CountingProgress:
    def __init__(self):
        self.advanced = 0
        self.totals = []

    def task(self, description, *, total=None):
        self.totals.append(total)
        outer = self

        class Task:
            def advance(self, amount=1.0):
                outer.advanced += amount

            def update(self, **kw):
                pass

            def close(self):
                pass

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                pass

        return Task()


def test_slide_folder(slide_folder, tmp_path):
    src = open_source(slide_folder)
    assert isinstance(src, SlideFolderSource) and src.kind == "slide-folder"
    progress = CountingProgress()
    records = src.images(progress=progress)
    assert progress.totals == [2] and progress.advanced == 2
    assert [r.key for r in records] == ["slide_a", "slide_b"]
    a = records[0]
    assert a.usable and a.readable and a.problems == [] and a.warnings == []
    assert a.mpp == pytest.approx(0.25)
    assert a.dimensions == (512, 512)
    assert a.annotation_path == slide_folder / "slide_a.geojson"
    assert a.annotations.sorted() == CLICKS["slide_a"].sorted()
    assert src.results_path(a, tmp_path / "out") == tmp_path / "out" / "slide_a.geojson"
    assert src.exchange_results_path(a) is None
    assert src.images() is records  # computed once
    d = a.to_dict()
    assert d["points"] == {"Mitosis": 2, "Mitosis-like": 1}
    assert d["areas"] == {"Region": 1}
    assert d["slide"] == str(slide_folder / "slide_a.tiff")
    json.dumps(d)


def test_single_slide_file(slide_folder):
    records = open_source(slide_folder / "slide_b.tiff").images()
    assert [r.key for r in records] == ["slide_b"]
    assert records[0].usable


def test_a_single_bad_slide_is_an_error_of_the_source(tmp_path):
    """A slide given by itself that does not open, has no resolution, or whose sidecar is
    malformed: the source itself is unreadable (exit 2), not one image among others."""
    broken = tmp_path / "broken.svs"
    broken.write_text("this is not a slide")
    with pytest.raises(SlideError, match=r"broken\.svs"):
        open_source(broken).images()
    no_mpp = make_tiff(tmp_path / "no_mpp.tiff", mpp=None)
    with pytest.raises(ResolutionError, match=r"no_mpp.tiff: no resolution .*--mpp"):
        open_source(no_mpp).images()
    assert open_source(no_mpp, mpp=0.25).images()[0].mpp == 0.25
    bad = make_tiff(tmp_path / "bad.tiff")
    (tmp_path / "bad.geojson").write_text('[{"type": "Feature", "geometry": null}]')
    with pytest.raises(AnnotationFormatError, match=r"bad\.geojson"):
        open_source(bad).images()
    alone = make_tiff(tmp_path / "alone" / "a.tiff")  # no sidecar: fine for predict
    (record,) = open_source(alone).images()
    assert record.readable and record.annotations is None


def test_points_outside_the_slide_are_dropped_with_a_warning(tmp_path):
    folder = tmp_path / "f"
    make_tiff(folder / "s.tiff")  # 512 x 512 px
    inside = [[100, 100], [0, 0], [512, 512]]
    outside = [[-500, -500], [99999, 99999], [1e12, 5]]
    write_features(
        folder / "s.geojson",
        [
            points_feature(inside + outside, "Mitosis"),
            points_feature([[10, 10], [-1, 3]], "Mitosis-like"),
        ],
    )
    (record,) = open_source(folder).images()
    assert record.usable and record.dropped_points == 4
    assert record.annotations.points_per_class() == {"Mitosis": 3, "Mitosis-like": 1}
    (msg,) = [w for w in record.warnings if "outside the slide" in w]
    assert str(folder / "s.geojson") in msg and "4 point(s) outside the slide" in msg
    assert "512 x 512 px" in msg and "(-500, -500) Mitosis" in msg
    assert record.to_dict()["dropped_points"] == 4


def test_an_implausible_density_of_clicks_warns(tmp_path):
    folder = tmp_path / "f"
    make_tiff(folder / "dense.tiff")  # 512 px at 0.25 µm/px: 0.0164 mm²
    rng = np.random.default_rng(0)
    write_features(
        folder / "dense.geojson", [points_feature(rng.uniform(0, 512, (200, 2)), "Mitosis")]
    )
    make_tiff(folder / "real.tiff")
    write_features(
        folder / "real.geojson", [points_feature(rng.uniform(0, 512, (15, 2)), "Mitosis")]
    )
    records = {r.key: r for r in open_source(folder).images()}
    (msg,) = [w for w in records["dense"].warnings if "per mm²" in w]
    assert "200 points of a positive class" in msg and "dense.geojson" in msg
    assert "far above any real mitotic density" in msg
    # 15 clicks on a small image: 900 per mm², and too few to judge anyway
    assert not [w for w in records["real"].warnings if "per mm²" in w]
    assert records["dense"].usable


def test_input_files_name_every_file_an_output_must_not_replace(slide_folder):
    src = open_source(slide_folder)
    a = src.images()[0]
    files = src.input_files(a)
    assert slide_folder / "slide_a.tiff" in files and slide_folder / "slide_a.geojson" in files
    assert slide_folder / "slide_a.json" in files  # a sidecar the folder could hold


def test_problems_are_reported_per_image(tmp_path, caplog):
    folder = tmp_path / "f"
    make_tiff(folder / "no_sidecar.tiff")
    make_tiff(folder / "bad_sidecar.tiff")
    (folder / "bad_sidecar.geojson").write_text('[{"type": "Feature", "geometry": null}]')
    make_tiff(folder / "no_mpp.tif", mpp=None)
    write_features(folder / "no_mpp.geojson", [points_feature([[1, 2]], "Mitosis")])
    (folder / "broken.svs").write_text("this is not a slide")
    write_features(folder / "broken.geojson", [points_feature([[1, 2]], "Mitosis")])
    make_tiff(folder / "odd.tiff")
    write_features(
        folder / "odd.geojson",
        [points_feature([[1, 2]], "Tumor"), points_feature([[3, 4]], "Mitosis-like")],
    )
    (folder / "notes.txt").write_text("not a slide")
    with caplog.at_level(logging.WARNING, logger="wsdal_wsi.qupath"):
        records = {r.key: r for r in open_source(folder).images()}
    assert sorted(records) == ["bad_sidecar", "broken", "no_mpp", "no_sidecar", "odd"]
    assert records["no_sidecar"].problems == [
        "no annotations: expected no_sidecar.geojson beside the slide"
    ]
    assert records["no_sidecar"].readable and records["no_sidecar"].annotations is None
    (msg,) = records["bad_sidecar"].problems
    assert msg.startswith("annotations unreadable: ") and "feature 0: no geometry" in msg
    (msg,) = records["no_mpp"].problems
    assert "no resolution (µm/px)" in msg and "--mpp" in msg
    (msg,) = records["broken"].problems
    assert msg.startswith("slide does not open: ") and "broken.svs" in msg
    assert not records["broken"].readable
    odd = records["odd"]
    assert odd.usable  # unknown classes warn, they do not block
    assert "unknown classes, not used: 'Tumor' (1)" in odd.warnings
    assert "no points of a positive class (Mitosis)" in odd.warnings
    # reported once per run, for the whole source
    warnings = [r for r in caplog.records if "classes with no role" in r.getMessage()]
    assert len(warnings) == 1 and "'Tumor' (1 objects on 1 images)" in warnings[0].getMessage()


def test_mpp_override_and_no_slide_check(tmp_path):
    folder = tmp_path / "f"
    make_tiff(folder / "no_mpp.tif", mpp=None)
    write_features(folder / "no_mpp.geojson", [points_feature([[1, 2]], "Mitosis")])
    (rec,) = open_source(folder, mpp=0.5).images()
    assert rec.usable and rec.mpp == 0.5 and rec.mpp_source == "user (--mpp)"
    (rec,) = open_source(folder, check_slides=False).images()
    assert rec.usable and not rec.readable and rec.mpp is None


def test_same_stem_twice_is_ambiguous(tmp_path):
    folder = tmp_path / "f"
    make_tiff(folder / "a.tif")
    make_tiff(folder / "a.tiff")
    write_features(folder / "a.geojson", [points_feature([[1, 2]], "Mitosis")])
    records = open_source(folder).images()
    assert [r.key for r in records] == ["a.tif", "a.tiff"]
    assert all("sidecar is ambiguous" in r.problems[0] for r in records)


def test_open_source_errors(tmp_path):
    with pytest.raises(InputError, match="no such file or folder"):
        open_source(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"no slides found \(looked for files ending in .svs"):
        open_source(tmp_path / "empty")
    coco = tmp_path / "db.json"
    coco.write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(InputError, match="COCO annotation database; convert it"):
        open_source(coco)
    other = tmp_path / "x.txt"
    other.write_text("hi")
    with pytest.raises(InputError, match="not a QuPath project"):
        open_source(other)
    make_tiff(tmp_path / "s" / "a.tiff")
    with pytest.raises(ConfigError, match="--relink applies to QuPath projects only"):
        open_source(tmp_path / "s", relink=["/a=/b"])
    with pytest.raises(ConfigError, match="backend must be"):
        open_source(tmp_path / "s", backend="java")
    with pytest.raises(ConfigError, match="--mpp"):
        open_source(tmp_path / "s", mpp=-1)


def test_the_same_clicks_give_the_same_model_from_every_source(tmp_path):
    """Slide folder, QuPath project without QuPath, and COCO database: one model."""
    clicks = {stem: ImageAnnotations(points=ann.points) for stem, ann in CLICKS.items()}
    scans = tmp_path / "scans"
    for stem in clicks:
        make_tiff(scans / f"{stem}.tiff")

    # 1. slide folder with sidecars (QuPath's "Export objects as GeoJSON")
    folder = tmp_path / "folder"
    for stem, ann in clicks.items():
        make_tiff(folder / f"{stem}.tiff")
        write_features(folder / f"{stem}.geojson", clicks_features(ann))
    from_folder = {r.name: r.annotations for r in open_source(folder).images()}

    # 2. QuPath project read without QuPath (exchange folder from export_annotations.groovy)
    project = tmp_path / "project"
    write_qpproj(
        project,
        [
            qpproj_image(i + 7, f"{stem}.tiff", (scans / f"{stem}.tiff").as_uri())
            for i, stem in enumerate(clicks)
        ],
    )
    for i, ann in enumerate(clicks.values()):
        write_features(project / "wsdal" / "annotations" / f"{i + 7}.geojson", clicks_features(ann))
    src = open_source(project, backend="export")
    from_project = {r.name: r.annotations for r in src.images()}

    # 3. a MIDOG-style COCO database (50 x 50 boxes, [x1, y1, x2, y2]) imported as a folder
    category = {"Mitosis": 1, "Mitosis-like": 2}
    db = {"images": [], "annotations": [], "categories": [{"id": 1}, {"id": 2}]}
    for i, (stem, ann) in enumerate(clicks.items()):
        db["images"].append({"id": i + 1, "file_name": f"{stem}.tiff", "width": 512, "height": 512})
        for p in ann.points:
            db["annotations"].append(
                {
                    "id": len(db["annotations"]) + 1,
                    "image_id": i + 1,
                    "category_id": category[p.class_name],
                    "bbox": [p.x - 25, p.y - 25, p.x + 25, p.y + 25],
                }
            )
    db_path = tmp_path / "db.json"
    db_path.write_text(json.dumps(db))
    report = import_coco(db_path, images_dir=scans, out_dir=tmp_path / "coco", bbox_format="xyxy")
    assert report.missing_slides == [] and report.linked == 2
    from_coco = {r.name: r.annotations for r in open_source(tmp_path / "coco").images()}

    expected = {f"{stem}.tiff": ann.sorted() for stem, ann in clicks.items()}
    for got in (from_folder, from_project, from_coco):
        assert {k: v.sorted() for k, v in got.items()} == expected
