import json

import numpy as np
import pytest

from wsdal_wsi.counting import HotspotSettings, count_slide
from wsdal_wsi.errors import ConfigError, InputError
from wsdal_wsi.report import (
    ModelInfo,
    SlideInfo,
    finish_slide,
    read_detections,
    read_summary,
    read_tissue_png,
    recount_slide,
    report_text,
    slide_files,
)


def test_finish_slide_writes_consistent_outputs(out_dir):
    files = slide_files(out_dir, "alpha")
    for p in (files.geojson, files.summary, files.tissue, files.thumbnail, files.gallery,
              files.report):  # fmt: skip
        assert p.is_file(), p
    s = read_summary(files.summary)
    pts, _ = read_detections(files.geojson)
    mask = read_tissue_png(files.tissue)
    # counting the saved files again gives the summary's numbers
    again = count_slide(
        pts, mpp=0.5, tissue=mask, tissue_downsample=s.tissue_downsample,
        settings=s.hotspot_settings,
    )  # fmt: skip
    assert again.hotspot.count == s.hotspot.count
    assert again.hotspot.centre_level0 == pytest.approx(s.hotspot.centre_level0)
    assert again.in_tissue == s.in_tissue and again.tissue_area_mm2 == s.tissue_area_mm2
    assert s.timings["model_s"] == 1.5 and "count_and_report_s" in s.timings
    assert len(s.assets.gallery_items) == 6


def test_finish_slide_needs_a_resolution_and_matching_scores(tmp_path):
    with pytest.raises(InputError, match="no resolution"):
        finish_slide(tmp_path, slide=SlideInfo("s", "s"), model=ModelInfo(), threshold=0.5,
                     points_level0=np.zeros((0, 2)), scores=np.zeros(0))  # fmt: skip
    with pytest.raises(ValueError, match="2 points but 1 scores"):
        finish_slide(tmp_path, slide=SlideInfo("s", "s", mpp=0.5), model=ModelInfo(),
                     threshold=0.5, points_level0=np.zeros((2, 2)), scores=np.zeros(1))  # fmt: skip


def test_finish_slide_without_tissue_or_assets(tmp_path):
    pts = np.array([[100.0, 100.0], [120.0, 110.0], [5000.0, 5000.0]])
    s = finish_slide(
        tmp_path, slide=SlideInfo("s", "s", mpp=0.5, dimensions=(8000, 6000)), model=ModelInfo(),
        threshold=0.5, points_level0=pts, scores=np.array([0.9, 0.8, 0.7]),
        settings=HotspotSettings(area_mm2=0.05),
    )  # fmt: skip
    assert s.hotspot.count == 2 and s.tissue_area_mm2 is None and s.tissue_mask is None
    assert slide_files(tmp_path, "s").report.is_file()
    assert not slide_files(tmp_path, "s").tissue.exists()


def test_recount_with_other_settings_and_threshold(out_dir):
    old = read_summary(slide_files(out_dir, "alpha").summary)
    settings = HotspotSettings(window="rect", area_mm2=None, field_diameter_mm=0.50)
    new = recount_slide(out_dir, old, settings=settings, threshold=0.8)
    assert new.hotspot.window == "rect" and new.hotspot.score.mode == "hpf"
    assert new.hotspot.area_mm2 == pytest.approx(10 * np.pi * 0.25**2)
    assert new.threshold == 0.8 and new.detections < old.detections
    assert new.provenance["prediction"]["created"] == old.provenance["created"]
    assert read_summary(slide_files(out_dir, "alpha").summary) == new
    # the detections in the GeoJSON are all kept; only counted ones pass the threshold
    pts, scores = read_detections(slide_files(out_dir, "alpha").geojson)
    assert len(pts) == old.detections and (scores >= 0.8).sum() == new.detections
    with pytest.raises(ConfigError, match=r"--threshold 0.5 is below 0.6"):
        recount_slide(out_dir, old, settings=settings, threshold=0.5)


def test_report_text_has_the_numbers(out_dir):
    s = read_summary(slide_files(out_dir, "alpha").summary)
    t = report_text(s)
    assert t.title == "alpha slide µ²" and t.score == s.hotspot.score.score
    assert "wsdal.pt" in t.subtitle and "0.60" in t.subtitle
    assert f"{s.hotspot.count} mitoses" in [c[1] for c in t.cards]
    assert [r[0] for r in t.table_rows] == ["Tumour 1", "Rest"]
    assert any("score" in n.lower() and "10 HPF" in n for n in t.notes)


def test_geojson_copies_are_written_and_kept_in_step(tmp_path):
    copy = tmp_path / "project" / "wsdal" / "results" / "7.geojson"
    pts = np.array([[100.0, 100.0], [120.0, 110.0], [5000.0, 5000.0]])
    s = finish_slide(
        tmp_path / "OUT", slide=SlideInfo("s", "s", mpp=0.5, dimensions=(8000, 6000)),
        model=ModelInfo(), threshold=0.5, points_level0=pts, scores=np.array([0.9, 0.8, 0.7]),
        settings=HotspotSettings(area_mm2=0.05), geojson_copies=[copy],
    )  # fmt: skip
    assert s.geojson_copies == [str(copy.resolve())]
    main = slide_files(tmp_path / "OUT", "s").geojson
    assert _objects(copy) == _objects(main)
    s = read_summary(slide_files(tmp_path / "OUT", "s").summary)
    recount_slide(tmp_path / "OUT", s, settings=HotspotSettings(area_mm2=0.1))
    assert _objects(copy) == _objects(main)
    assert b"0.10 mm" in copy.read_bytes()


def _objects(path):
    """A results file's objects without their ids (each written file gets its own ids)."""
    features = json.loads(path.read_text(encoding="utf-8"))["features"]
    return [{k: v for k, v in f.items() if k != "id"} for f in features]


def test_results_copies_keep_a_pathologists_objects(tmp_path):
    """Results are merged into existing files, never copied over them (OUT = slide folder)."""
    from wsdal_wsi.qupath import read_objects
    from wsdal_wsi.qupath.geojson_write import points_feature, write_features

    sidecar = tmp_path / "slides" / "s.geojson"
    copy = tmp_path / "project" / "wsdal" / "results" / "7.geojson"
    clicks = {sidecar: [(10.0, 20.0), (30.0, 40.0)], copy: [(50.0, 60.0)]}
    for target, xy in clicks.items():
        write_features(target, [points_feature(xy, "Mitosis")])
    pts = np.array([[100.0, 100.0], [120.0, 110.0]])
    finish_slide(
        tmp_path / "slides", slide=SlideInfo("s", "s", mpp=0.5, dimensions=(8000, 6000)),
        model=ModelInfo(), threshold=0.5, points_level0=pts, scores=np.array([0.9, 0.8]),
        settings=HotspotSettings(area_mm2=0.05), geojson_copies=[copy],
    )  # fmt: skip
    for target in (sidecar, copy):
        objects = read_objects(target)
        mine = [o for o in objects if not o.tool_made]
        assert len(mine) == 1 and list(mine[0].points) == clicks[target], target
        assert sum(o.object_type == "detection" and o.tool_made for o in objects) == 2, target


def test_finish_slide_with_a_real_slide(cmu1_path, tmp_path):
    """The slide contract end to end: open_slide, tissue_mask, read_thumbnail, read_region."""
    from wsdal_wsi.report import read_gallery
    from wsdal_wsi.slide import open_slide, tissue_mask

    rng = np.random.default_rng(0)
    with open_slide(cmu1_path) as slide:
        tissue = tissue_mask(slide)
        thumb, thumb_ds = slide.read_thumbnail(max_size_px=800)
        cells = np.argwhere(tissue.mask)[:, ::-1]
        pts = (cells[rng.choice(len(cells), 40)] + 0.5) * tissue.downsample
        scores = rng.uniform(0.5, 1.0, len(pts))
        gallery = read_gallery(slide, pts, scores, n=4, size_px=64)
        info = SlideInfo(slide.name, "cmu", str(slide.path), slide.mpp, slide.mpp_source,
                         slide.dimensions)  # fmt: skip
        s = finish_slide(
            tmp_path, slide=info, model=ModelInfo(), threshold=0.5, points_level0=pts,
            scores=scores, tissue=tissue, settings=HotspotSettings(area_mm2=0.05),
            thumbnail=thumb, thumbnail_downsample=thumb_ds, gallery=gallery,
        )  # fmt: skip
    assert s.in_tissue == 40 and s.tissue_area_mm2 == pytest.approx(tissue.area_mm2(slide.mpp))
    assert s.hotspot is not None and s.hotspot.count >= 1
    assert gallery.crops.shape == (4, 64, 64, 3) and gallery.crops.std() > 5  # real pixels
    assert slide_files(tmp_path, "cmu").report.is_file()
