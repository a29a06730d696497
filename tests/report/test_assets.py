import numpy as np

from wsdal_wsi.report import read_summary, slide_files, top_detections
from wsdal_wsi.report.assets import (
    Gallery,
    load_gallery,
    load_thumbnail,
    read_gallery,
    write_report_assets,
)


def test_top_detections_best_first_stable_nan_last():
    scores = np.array([0.5, 0.9, np.nan, 0.9, 0.7])
    np.testing.assert_array_equal(top_detections(scores, 3), [1, 3, 4])
    assert len(top_detections(scores, 10)) == 5
    assert len(top_detections(np.zeros(0), 4)) == 0


def test_read_gallery_centres_crops_on_detections(fake_slide):
    pts = np.array([[1000.0, 2000.0], [3000.0, 100.0], [50.0, 60.0]])
    g = read_gallery(fake_slide, pts, np.array([0.7, 0.95, 0.8]), n=2, size_px=32)
    np.testing.assert_array_equal(g.points_level0, pts[[1, 2]])
    assert g.crops.shape == (2, 32, 32, 3) and g.mpp == 0.25
    # FakeSlide encodes the top-left it was asked for; 16 px at 0.25 µm/px = 8 level-0 px
    assert g.crops[0, 0, 0, 0] == (3000 - 8) % 256 and g.crops[0, 0, 0, 1] == (100 - 8) % 256


def test_assets_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:40, 0:60]
    thumb = np.stack([xx * 4, yy * 6, 255 - xx * 2], -1).astype(np.uint8)  # smooth, JPEG-friendly
    crops = rng.integers(0, 255, (3, 16, 16, 3), dtype=np.uint8)
    gallery = Gallery(crops, np.array([[1.0, 2], [3, 4], [5, 6]]), np.array([0.9, 0.8, 0.7]), 0.25)
    info = write_report_assets(
        tmp_path, "k", thumbnail=thumb, thumbnail_downsample=64.0, gallery=gallery
    )
    assert info.thumbnail == "k.thumb.jpg" and info.gallery == "k.gallery.png"
    image, ds = load_thumbnail(tmp_path, info)
    assert image.shape == thumb.shape and ds == 64.0
    assert np.abs(image.astype(int) - thumb).mean() < 3  # JPEG
    again = load_gallery(tmp_path, info)
    np.testing.assert_array_equal(again.crops, crops)  # PNG: lossless
    np.testing.assert_array_equal(again.scores, gallery.scores)
    np.testing.assert_array_equal(again.points_level0, gallery.points_level0)


def test_missing_assets_are_absent_not_errors(out_dir):
    s = read_summary(slide_files(out_dir, "alpha").summary)
    slide_files(out_dir, "alpha").thumbnail.unlink()
    slide_files(out_dir, "alpha").gallery.write_bytes(b"broken")
    assert load_thumbnail(out_dir, s.assets) == (None, None)
    assert load_gallery(out_dir, s.assets) is None
    beta = read_summary(slide_files(out_dir, "beta").summary)
    assert beta.assets.gallery is None and load_gallery(out_dir, beta.assets) is None
