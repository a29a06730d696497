"""The hotspot search against brute-force references on random points and tissue."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import shapely
from scipy.ndimage import gaussian_filter
from shapely.geometry import box

from wsdal_wsi.counting import (
    HotspotSettings,
    as_tissue,
    find_hotspot,
    hotspot_search,
)
from wsdal_wsi.counting.grid import build_grid, window_half_sizes_level0
from wsdal_wsi.counting.hotspot import window_geometry
from wsdal_wsi.errors import ConfigError
from wsdal_wsi.units import mm2_to_px2


def random_tissue(rng, shape, *, blob=4.0, level=0.0):
    return gaussian_filter(rng.standard_normal(shape), blob) > level


def brute_force(points, mask, ds, *, mpp, settings):
    """Evaluate every candidate centre naively: a loop over centres, exact point tests.

    Candidates are the analysis-grid cell centres (the search's definition);
    everything else (each cell's tissue pixels, which cells lie in each window,
    the counts) is recomputed here from the mask without the library's
    vectorised code.
    """
    tissue = as_tissue(mask, ds)
    grid = build_grid(mpp=mpp, grid_um=settings.grid_um, tissue=tissue)
    hx, hy = window_half_sizes_level0(settings.window, mm2_to_px2(settings.window_area_mm2, mpp))
    cell = grid.cell_level0
    rows, cols = grid.shape
    pts = points  # every point in the window counts, in tissue or not
    # tissue mask pixels per cell, straight from the mask
    units = np.zeros((rows, cols), dtype=np.int64)
    for i, j in zip(*np.nonzero(mask), strict=True):
        ci, cj = ((i + 0.5) * ds) / cell, ((j + 0.5) * ds) / cell
        if cell >= ds:  # merged cells: the pixel lies in exactly one cell
            units[int(ci), int(cj)] += 1
        else:  # refined cells: every cell inside the pixel is tissue
            m = round(ds / cell)
            units[i * m : (i + 1) * m, j * m : (j + 1) * m] = 1
    upc = round((cell / ds) ** 2) if cell >= ds else 1
    counts = np.zeros((rows, cols), dtype=np.int64)
    tissue_px = np.zeros((rows, cols), dtype=np.int64)
    offs = range(-(int(max(hx, hy) / cell) + 1), int(max(hx, hy) / cell) + 2)
    kernel = [
        (di, dj)
        for di in offs
        for dj in offs
        if (
            (dj * cell) ** 2 + (di * cell) ** 2 <= hx * hx
            if settings.window == "circle"
            else abs(dj * cell) <= hx and abs(di * cell) <= hy
        )
    ]
    x0, y0 = grid.origin_level0
    for i, j in itertools.product(range(rows), range(cols)):
        cx, cy = x0 + (j + 0.5) * cell, y0 + (i + 0.5) * cell
        dx, dy = cx - pts[:, 0], cy - pts[:, 1]
        if settings.window == "circle":
            inside = dx * dx + dy * dy <= hx * hx
        else:
            inside = (np.abs(dx) <= hx) & (np.abs(dy) <= hy)
        counts[i, j] = int(inside.sum())
        tissue_px[i, j] = sum(
            units[i + di, j + dj] for di, dj in kernel if 0 <= i + di < rows and 0 <= j + dj < cols
        )
    total = len(kernel) * upc
    admissible = (tissue_px > 0) & (tissue_px >= settings.min_tissue_fraction * total)
    return grid, counts, tissue_px, total, admissible


CASES = [
    # (window, mask shape, downsample, window area mm², min tissue fraction, grid µm)
    ("circle", (24, 30), 16.0, 0.004, 0.5, 10.0),  # 8 µm mask pixels, cell = 1 pixel
    ("rect", (24, 30), 16.0, 0.004, 0.5, 10.0),
    ("circle", (16, 18), 32.0, 0.02, 0.3, 35.0),  # 16 µm pixels, 2x2 merged per cell
    ("rect", (10, 12), 64.0, 0.01, 0.7, 12.0),  # 32 µm pixels, each split into 3x3 cells
    ("circle", (10, 12), 64.0, 0.01, 0.0, 12.0),
]


@pytest.mark.parametrize("window, shape, ds, area, frac, grid_um", CASES)
@pytest.mark.parametrize("seed", [0, 1])
def test_search_matches_brute_force(window, shape, ds, area, frac, grid_um, seed):
    rng = np.random.default_rng(seed)
    mpp = 0.5
    mask = random_tissue(rng, shape, blob=2.0)
    h, w = shape
    # clustered and uniform points, some on glass, some outside the mask
    n = 120
    centre = rng.uniform([0, 0], [w * ds, h * ds])
    pts = np.concatenate(
        [
            rng.uniform([-20, -20], [w * ds + 20, h * ds + 20], size=(n, 2)),
            centre + rng.normal(0, 40, size=(n // 2, 2)),
        ]
    )
    settings = HotspotSettings(
        window=window, area_mm2=area, min_tissue_fraction=frac, grid_um=grid_um
    )
    # points exactly on window edges (where float rounding decides in or out)
    g = build_grid(mpp=mpp, grid_um=grid_um, tissue=as_tissue(mask, ds))
    hx, hy = window_half_sizes_level0(window, mm2_to_px2(area, mpp))
    i, j = rng.integers(0, g.shape[0], 8), rng.integers(0, g.shape[1], 8)
    cx, cy = g.centre_x(j), g.centre_y(i)
    edge = [np.c_[cx + hx, cy], np.c_[cx - hx, cy], np.c_[cx, cy + hy], np.c_[cx + hx, cy - hy]]
    pts = np.concatenate([pts, *edge])
    grid, counts, tissue_px, total, admissible = brute_force(
        pts, mask, ds, mpp=mpp, settings=settings
    )
    search = hotspot_search(pts, mpp=mpp, tissue=mask, tissue_downsample=ds, settings=settings)
    assert search.grid.shape == grid.shape
    np.testing.assert_array_equal(search.counts, counts)
    np.testing.assert_array_equal(search.tissue, tissue_px)
    assert search.tissue_total == total
    np.testing.assert_array_equal(search.admissible, admissible)

    hs = find_hotspot(pts, mpp=mpp, tissue=mask, tissue_downsample=ds, settings=settings)
    if not admissible.any():
        assert hs is None
        return
    best = counts[admissible].max()
    assert hs.count == best
    # the tie-break: most tissue among the best, then reading order
    ties = admissible & (counts == best)
    most = tissue_px[ties].max()
    i, j = np.argwhere(ties & (tissue_px == most))[0]
    assert hs.centre_level0 == pytest.approx((grid.centre_x(j), grid.centre_y(i)))
    assert hs.tissue_fraction == pytest.approx(most / total)
    # the reported window really holds `count` detections
    d = pts - np.asarray(hs.centre_level0)
    hx, hy = hs.half_sizes_level0
    if window == "circle":
        n_in = int(((d**2).sum(axis=1) <= hx * hx).sum())
    else:
        n_in = int(((np.abs(d[:, 0]) <= hx) & (np.abs(d[:, 1]) <= hy)).sum())
    assert n_in == hs.count
    # inside the image (the mask's extent here): the whole window, or the window cut there
    image = box(0, 0, w * ds, h * ds)
    assert image.buffer(1e-6).contains(hs.geometry)
    whole = mm2_to_px2(area, mpp)
    window = window_geometry(window, hs.centre_level0, hs.half_sizes_level0)
    assert hs.geometry.area == pytest.approx(image.intersection(window).area)
    if hs.is_whole_window:
        assert hs.geometry.centroid.x == pytest.approx(hs.centre_level0[0])
        assert hs.geometry.area == pytest.approx(whole, rel=1e-3)
    else:
        assert hs.geometry.area < whole * (1 - 1e-6)


def continuous_max_rect(pts, hx, hy):
    """Exact maximum over all real centres: an optimum has cx = px_i - hx, cy = py_k - hy."""
    best = 0
    for cx in pts[:, 0] + hx:
        sel = pts[np.abs(pts[:, 0] - cx) <= hx + 1e-9]
        for cy in sel[:, 1] + hy:
            best = max(best, int((np.abs(sel[:, 1] - cy) <= hy + 1e-9).sum()))
    return best


def continuous_max_circle(pts, r):
    """Exact maximum over all real centres: at a point, or where two circles of radius r cross."""
    cands = [p for p in pts]
    for a, b in itertools.combinations(pts, 2):
        d = np.linalg.norm(b - a)
        if 0 < d <= 2 * r:
            mid, hgt = (a + b) / 2, math.sqrt(max(r * r - d * d / 4, 0.0))
            perp = np.array([-(b - a)[1], (b - a)[0]]) / d
            cands += [mid + hgt * perp, mid - hgt * perp]
    cands = np.asarray(cands)
    d2 = ((cands[:, None, :] - pts[None, :, :]) ** 2).sum(-1)
    return int((d2 <= r * r * (1 + 1e-9)).sum(axis=1).max())


@pytest.mark.parametrize("window", ["circle", "rect"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_grid_result_is_within_half_a_cell_of_the_continuous_optimum(window, seed):
    rng = np.random.default_rng(seed)
    mpp = 0.5
    pts = np.concatenate([rng.uniform(0, 600, size=(30, 2)), rng.normal(300, 30, size=(25, 2))])
    settings = HotspotSettings(window=window, area_mm2=0.005, grid_um=6.0)
    hs = find_hotspot(pts, mpp=mpp, settings=settings)
    hx, hy = hs.half_sizes_level0
    delta = hs.grid_cell_um / mpp / 2  # half a cell, level-0 px
    if window == "rect":
        upper = continuous_max_rect(pts, hx, hy)
        lower = continuous_max_rect(pts, hx - delta, hy - delta)
    else:
        upper = continuous_max_circle(pts, hx)
        lower = continuous_max_circle(pts, hx - delta * math.sqrt(2))
    assert lower <= hs.count <= upper
    assert upper - lower <= 2  # the bound is tight enough to mean something here


def test_window_sizes_and_hpf_mode():
    mpp = 0.25
    hs = find_hotspot(np.array([[5000.0, 5000.0]]), mpp=mpp, settings=HotspotSettings())
    assert hs.area_mm2 == 2.0
    r = hs.half_sizes_level0[0]
    assert math.pi * r * r * (mpp / 1000) ** 2 == pytest.approx(2.0)
    assert hs.geometry.area * (mpp / 1000) ** 2 == pytest.approx(2.0, rel=1e-3)
    rect = find_hotspot(
        np.array([[5000.0, 5000.0]]), mpp=mpp, settings=HotspotSettings(window="rect")
    )
    x0, y0, x1, y1 = rect.geometry.bounds
    assert (x1 - x0) / (y1 - y0) == pytest.approx(4 / 3)
    assert rect.geometry.area * (mpp / 1000) ** 2 == pytest.approx(2.0)
    hpf = find_hotspot(
        np.array([[5000.0, 5000.0]]),
        mpp=mpp,
        settings=HotspotSettings(area_mm2=None, field_diameter_mm=0.50),
    )
    assert hpf.area_mm2 == pytest.approx(10 * math.pi * 0.25**2)
    assert hpf.score.mode == "hpf"
    assert hpf.count == 1 and hpf.score.score == 1


def test_window_cannot_sit_on_glass():
    # two tissue islands: a small one packed with detections, a big one with few
    mpp, ds = 0.5, 16.0
    mask = np.zeros((60, 120), dtype=bool)
    mask[25:31, 10:16] = True  # 48 x 48 µm island: far below half a 0.01 mm² window
    mask[5:55, 50:110] = True
    rng = np.random.default_rng(3)
    dense = rng.uniform([10 * ds, 25 * ds], [16 * ds, 31 * ds], size=(40, 2))
    sparse = rng.uniform([50 * ds, 5 * ds], [110 * ds, 55 * ds], size=(30, 2))
    pts = np.concatenate([dense, sparse])
    hs = find_hotspot(
        pts, mpp=mpp, tissue=mask, tissue_downsample=ds, settings=HotspotSettings(area_mm2=0.01)
    )
    assert hs.centre_level0[0] > 40 * ds  # on the big island
    assert hs.tissue_fraction >= 0.5
    assert hs.count < 40
    loose = find_hotspot(
        pts,
        mpp=mpp,
        tissue=mask,
        tissue_downsample=ds,
        settings=HotspotSettings(area_mm2=0.01, min_tissue_fraction=0.0),
    )
    assert loose.count >= 40  # allowed onto glass, it takes the dense island


def test_the_count_is_what_the_polygon_holds_and_the_polygon_stays_in_the_image():
    """Also seen in issue 11: the hotspot said 361 where 362 detections lay inside its
    polygon (one outside the tissue mask), and the polygon reached negative coordinates."""
    mpp, ds = 0.5, 16.0
    mask = np.zeros((40, 60), dtype=bool)
    mask[:, :20] = True  # tissue along the left edge of the image
    rng = np.random.default_rng(4)
    in_tissue = rng.uniform([0, 0], [20 * ds, 40 * ds], size=(60, 2))
    ring = np.array([[20.5 * ds, 20 * ds], [21 * ds, 22 * ds]])  # just beside the mask
    pts = np.concatenate([in_tissue, ring])
    hs = find_hotspot(
        pts,
        mpp=mpp,
        tissue=mask,
        tissue_downsample=ds,
        settings=HotspotSettings(area_mm2=0.05),
        slide_dimensions=(60 * 16, 40 * 16),
    )
    poly = hs.geometry
    assert hs.count == int(shapely.intersects_xy(poly, pts[:, 0], pts[:, 1]).sum())
    minx, miny, maxx, maxy = poly.bounds
    assert minx >= 0 and miny >= 0 and maxx <= 60 * 16 and maxy <= 40 * 16
    assert not hs.is_whole_window  # the window reached over the image's edge, the polygon not
    assert hs.centre_level0[0] - hs.half_sizes_level0[0] < 0


def test_no_admissible_window_and_no_points():
    mask = np.zeros((20, 20), dtype=bool)
    mask[0, 0] = True
    assert find_hotspot(np.zeros((0, 2)), mpp=0.5, tissue=mask, tissue_downsample=16.0) is None
    assert find_hotspot(np.zeros((0, 2)), mpp=0.5) is None
    hs = find_hotspot(np.zeros((0, 2)), mpp=0.5, slide_dimensions=(4000, 3000))
    assert hs.count == 0 and hs.score.score == 1


def test_settings_are_validated():
    with pytest.raises(ConfigError, match="window must be one of circle, rect, got 'square'"):
        HotspotSettings(window="square")
    with pytest.raises(ConfigError, match=r"hotspot area .* got -1"):
        HotspotSettings(area_mm2=-1)
    with pytest.raises(ConfigError, match=r"0\.6.*supported field diameters"):
        HotspotSettings(field_diameter_mm=0.6)
    with pytest.raises(ConfigError, match=r"tissue fraction .* got 1\.5"):
        HotspotSettings(min_tissue_fraction=1.5)
    s = HotspotSettings(window="rect", area_mm2=None, field_diameter_mm=0.59)
    assert HotspotSettings.from_dict(s.to_dict()) == s
    assert "10 HPF" in s.describe() and "0.59" in s.describe()


def test_from_options_meanings():
    s = HotspotSettings.from_options()
    assert (s.mode, s.area_mm2, s.field_diameter_mm) == ("area", 2.0, 0.55)
    s = HotspotSettings.from_options(hpf_diameter_mm=0.59)
    assert (s.mode, s.field_diameter_mm) == ("hpf", 0.59)
    s = HotspotSettings.from_options(window="rect", area_mm2=1.5, hpf_diameter_mm=0.5)
    assert (s.mode, s.area_mm2, s.field_diameter_mm) == ("area", 1.5, 0.5)
    assert s.window == "rect"
    d = HotspotSettings()
    s = HotspotSettings.from_options(min_tissue_fraction=0.25, grid_um=20)
    assert (s.min_tissue_fraction, s.grid_um, s.window) == (0.25, 20.0, d.window)
    with pytest.raises(ConfigError, match="minimum tissue fraction"):
        HotspotSettings.from_options(min_tissue_fraction=1.5)
