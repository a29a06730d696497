"""Region, class and slide counts against brute-force references."""

from __future__ import annotations

import numpy as np
import pytest
from shapely.geometry import MultiPolygon, Point, Polygon, box

from wsdal_wsi.counting import (
    HotspotSettings,
    Region,
    count_by_class,
    count_regions,
    count_slide,
)
from wsdal_wsi.errors import InputError

MPP = 0.5  # 1 px = 0.5 µm, 1 px² = 2.5e-7 mm²
PX2_MM2 = (MPP / 1000) ** 2


def naive_in_tissue(points, mask, ds):
    out = []
    for x, y in points:
        i, j = int(np.floor(y / ds)), int(np.floor(x / ds))
        out.append(0 <= i < mask.shape[0] and 0 <= j < mask.shape[1] and bool(mask[i, j]))
    return np.asarray(out, dtype=bool)


def naive_tissue_px_in(geometry, mask, ds):
    n = 0
    for i, j in zip(*np.nonzero(mask), strict=True):
        if geometry.intersects(Point((j + 0.5) * ds, (i + 0.5) * ds)):
            n += 1
    return n


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_region_counts_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    ds = 8.0
    mask = rng.random((50, 60)) < 0.6
    pts = rng.uniform(-10, 500, size=(400, 2))
    regions = [
        Region(box(40, 40, 300, 200), "Region", "A"),
        Region(Point(250, 250).buffer(120), "Region", "B"),  # overlaps A
        Region(MultiPolygon([box(0, 300, 100, 400), box(350, 300, 470, 390)]), "Tumor", "C"),
    ]
    counts = count_regions(pts, regions, mpp=MPP, tissue=mask, tissue_downsample=ds)
    for region, rc in zip(regions, counts, strict=True):
        inside = np.array([region.geometry.intersects(Point(p)) for p in pts])
        assert rc.mitoses == int(inside.sum())  # what QuPath shows inside the region
        assert rc.area_mm2 == pytest.approx(region.geometry.area * PX2_MM2)
        tpx = naive_tissue_px_in(region.geometry, mask, ds)
        assert rc.tissue_area_mm2 == pytest.approx(tpx * ds * ds * PX2_MM2)
        assert rc.per_mm2 == pytest.approx(rc.mitoses / rc.tissue_area_mm2)
        assert (rc.name, rc.class_name) == (region.name, region.class_name)

    by_class = {
        c.class_name: c
        for c in count_by_class(pts, regions, mpp=MPP, tissue=mask, tissue_downsample=ds)
    }
    union = regions[0].geometry.union(regions[1].geometry)
    inside = np.array([union.intersects(Point(p)) for p in pts])
    assert by_class["Region"].mitoses == int(inside.sum())  # shared ones once
    assert by_class["Region"].mitoses < counts[0].mitoses + counts[1].mitoses
    assert by_class["Tumor"].mitoses == counts[2].mitoses


def test_without_tissue_all_detections_count_over_the_polygon_area():
    pts = np.array([[10.0, 10.0], [20.0, 20.0], [500.0, 500.0]])
    (rc,) = count_regions(pts, [Region(box(0, 0, 100, 100), "Region")], mpp=MPP)
    assert rc.mitoses == 2 and rc.tissue_area_mm2 is None
    assert rc.per_mm2 == pytest.approx(2 / (100 * 100 * PX2_MM2))


def test_region_on_glass_has_no_density():
    mask = np.zeros((10, 10), dtype=bool)
    (rc,) = count_regions(
        np.array([[5.0, 5.0]]),
        [Region(box(0, 0, 50, 50))],
        mpp=MPP,
        tissue=mask,
        tissue_downsample=8.0,
    )
    # the detection is inside the polygon (QuPath shows it there); no tissue, no density
    assert rc.mitoses == 1 and rc.tissue_area_mm2 == 0 and rc.per_mm2 is None


def test_bad_inputs():
    with pytest.raises(InputError, match=r"\(N, 2\).*got shape \(3,\)"):
        count_regions(np.zeros(3), [], mpp=MPP)
    with pytest.raises(InputError, match="non-finite"):
        count_regions(np.array([[np.nan, 1.0]]), [], mpp=MPP)
    with pytest.raises(InputError, match=r"region 'bad'.*Polygon"):
        count_regions(np.zeros((1, 2)), [Region(Polygon(), "Region", "bad")], mpp=MPP)


def test_count_slide_combines_everything():
    rng = np.random.default_rng(5)
    ds = 16.0
    mask = np.zeros((80, 100), dtype=bool)
    mask[10:70, 10:90] = True
    pts = np.concatenate(
        [
            rng.uniform(200, 1100, size=(150, 2)),
            rng.normal(800, 50, size=(60, 2)),
            np.array([[5.0, 5.0], [1590.0, 1270.0]]),
        ]  # two on glass
    )
    regions = [Region(box(160, 160, 800, 800), "Region", "R1")]
    counts = count_slide(
        pts,
        mpp=MPP,
        tissue=mask,
        tissue_downsample=ds,
        regions=regions,
        settings=HotspotSettings(area_mm2=0.02),
    )
    assert counts.detections == len(pts)
    assert counts.in_tissue == int(naive_in_tissue(pts, mask, ds).sum())
    assert counts.in_tissue == len(pts) - 2
    assert counts.tissue_area_mm2 == pytest.approx(60 * 80 * ds * ds * PX2_MM2)
    assert counts.per_mm2 == pytest.approx(counts.in_tissue / counts.tissue_area_mm2)
    assert len(counts.regions) == 1 and len(counts.classes) == 1
    assert counts.hotspot is not None
    assert abs(counts.hotspot.centre_level0[0] - 800) < 150  # on the cluster
    assert counts.hotspot.count >= 20
    assert counts.hotspot.score.count == counts.hotspot.count
