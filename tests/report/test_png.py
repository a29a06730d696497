"""The PNG report: valid image, hotspot outline where the hotspot is, hotter where dense."""

import math

import numpy as np
import pytest
from PIL import Image
from shapely.geometry import Point

from wsdal_wsi.report import read_summary, slide_files
from wsdal_wsi.report.drawing import WIDTH, colormap
from wsdal_wsi.report.png import ReportText, render_report

MPP = 0.5


def scene(rng):
    """A 20000 x 12000 px slide: uniform background detections and a dense cluster."""
    thumb = np.full((150, 250, 3), (230, 200, 220), dtype=np.uint8)  # 80 level-0 px per px
    background = rng.uniform([0, 0], [20000, 12000], size=(60, 2))
    cluster = np.array([15000.0, 4000.0]) + rng.normal(0, 300, size=(80, 2))
    return thumb, np.concatenate([background, cluster])


def test_report_is_a_png_of_the_expected_size_with_hotspot_and_heat(tmp_path):
    rng = np.random.default_rng(0)
    thumb, pts = scene(rng)
    hotspot = Point(15000, 4000).buffer(1600, quad_segs=64)
    text = ReportText(title="slide", cards=[("Detections", "140", "")], score=3)
    crops = rng.integers(0, 255, (5, 64, 64, 3), dtype=np.uint8)
    rep = render_report(
        text,
        thumbnail=thumb,
        thumbnail_downsample=80.0,
        points_level0=pts,
        mpp=MPP,
        hotspot=hotspot,
        crops=crops,
        crop_scores=[0.99, 0.98, 0.97, 0.9, 0.8],
        cutoffs_per_mm2=(3.58, 7.37),
    )
    path = tmp_path / "r.png"
    rep.image.save(path)
    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode == "RGB"
        assert im.size == rep.image.size and im.size[0] == WIDTH
        pixels = np.asarray(im)
    view = rep.map_view
    assert view.size[0] <= 1150 and view.size[1] <= 900
    assert view.size[0] / view.size[1] == pytest.approx(250 / 150, rel=0.01)

    # the outline: cyan pixels on the hotspot's circle, none at its centre
    (cx, cy), r = view.to_image(np.array([[15000.0, 4000.0]]))[0], 1600 / view.level0_per_px
    on_ring = 0
    for a in np.linspace(0, 2 * math.pi, 48, endpoint=False):
        x, y = round(cx + r * math.cos(a)), round(cy + r * math.sin(a))
        patch = pixels[y - 1 : y + 2, x - 1 : x + 2].reshape(-1, 3).astype(int)
        on_ring += bool((np.abs(patch - (0, 229, 255)).sum(axis=1) < 60).any())
    assert on_ring >= 44
    centre = pixels[round(cy), round(cx)].astype(int)
    assert np.abs(centre - (0, 229, 255)).sum() > 150

    # hotter where dense: density and the colour change over the background
    d = rep.density_per_mm2
    (dx, dy), (sx, sy) = view.to_image(np.array([[15000.0, 4000.0], [4000.0, 9000.0]]))
    dense, sparse = (
        d[round(dy - view.origin[1]), round(dx - view.origin[0])],
        d[round(sy - view.origin[1]), round(sx - view.origin[0])],
    )
    assert dense > 5 * sparse and dense > 10  # per mm²
    plain = render_report(text, thumbnail=thumb, thumbnail_downsample=80.0, mpp=MPP)
    base = np.asarray(plain.image).astype(int)
    change_dense = np.abs(pixels[round(dy), round(dx)] - base[round(dy), round(dx)]).sum()
    change_sparse = np.abs(pixels[round(sy), round(sx)] - base[round(sy), round(sx)]).sum()
    assert change_dense > change_sparse + 60
    # the colour scale runs light (low) to dark red (high)
    lo, hi = colormap(np.array([0.0, 1.0])).astype(int)
    assert lo.sum() > hi.sum() + 300


def test_density_integrates_to_the_number_of_detections():
    rng = np.random.default_rng(1)
    thumb, pts = scene(rng)
    rep = render_report(
        ReportText(title="x"), thumbnail=thumb, thumbnail_downsample=80.0, points_level0=pts,
        mpp=MPP, density_sigma_um=200.0,
    )  # fmt: skip
    px_mm2 = (rep.map_view.level0_per_px * MPP / 1000) ** 2
    assert rep.density_per_mm2.sum() * px_mm2 == pytest.approx(len(pts), rel=0.1)


def test_report_without_thumbnail_or_anything(out_dir):
    rep = render_report(
        ReportText(title="no thumb"),
        tissue_mask=np.ones((30, 40), dtype=bool),
        tissue_downsample=100.0,
        points_level0=np.array([[2000.0, 1500.0]]),
        mpp=MPP,
    )
    assert rep.map_view is not None and rep.density_per_mm2.max() > 0
    empty = render_report(ReportText(title="nothing"), mpp=MPP)
    assert empty.map_view is None and empty.image.size[0] == WIDTH


def test_slide_reports_in_the_output_folder(out_dir):
    for key in ("alpha", "beta"):
        s = read_summary(slide_files(out_dir, key).summary)
        with Image.open(slide_files(out_dir, key).report) as im:
            assert im.format == "PNG" and im.size[0] == WIDTH and 900 < im.size[1] < 2500
        assert s.assets.report == f"{key}.report.png"
