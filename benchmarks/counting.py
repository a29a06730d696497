"""Benchmark: the hotspot search and the PNG report on a large synthetic slide.

A 100k x 100k px slide at 0.25 µm/px (25 x 25 mm), a tissue mask at 8 µm/px
(3125 x 3125, about half tissue), N detections in tissue (uniform plus a few
dense clusters). For each N and window it prints the time and the peak
memory (tracemalloc) of :func:`wsdal_wsi.counting.find_hotspot`, and, as the
baseline measured in the same run, a KD-tree count of the same windows
(``scipy.spatial.cKDTree.query_ball_point(return_length=True)``) on a random
sample of the candidate centres, extrapolated to all of them. Then the time to
render and encode the PNG report. Usage::

    python benchmarks/counting.py [--n 1000 10000 100000] [--sample 20000]
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.spatial import cKDTree

from wsdal_wsi.counting import HotspotSettings, find_hotspot
from wsdal_wsi.counting.grid import as_tissue, build_grid, window_half_sizes_level0
from wsdal_wsi.report.png import ReportText, render_report
from wsdal_wsi.units import mm2_to_px2

MPP = 0.25
SIZE = 100_000
DS = 32.0  # 8 µm mask pixels


def make_slide(n: int, rng: np.random.Generator):
    h = w = int(SIZE / DS)
    noise = gaussian_filter(rng.standard_normal((h // 25 + 1, w // 25 + 1)), 3)
    mask = np.kron(noise > 0, np.ones((25, 25), dtype=bool))[:h, :w]
    tissue = np.argwhere(mask)[:, ::-1]
    n_uniform = n * 9 // 10
    pts = (tissue[rng.choice(len(tissue), n_uniform)] + rng.random((n_uniform, 2))) * DS
    centres = (tissue[rng.choice(len(tissue), 5)] + 0.5) * DS
    clusters = centres[rng.integers(0, 5, n - n_uniform)] + rng.normal(0, 800, (n - n_uniform, 2))
    return mask, np.concatenate([pts, clusters])


def kdtree_rate(points, mask, settings, sample, rng) -> tuple[float, int]:
    """Seconds per candidate of a KD-tree count, and the number of candidates."""
    tis = as_tissue(mask, DS)
    grid = build_grid(mpp=MPP, grid_um=settings.grid_um, tissue=tis)
    hx, hy = window_half_sizes_level0(settings.window, mm2_to_px2(settings.window_area_mm2, MPP))
    rows, cols = grid.shape
    idx = rng.integers(0, rows * cols, sample)
    i, j = np.divmod(idx, cols)
    centres = np.column_stack([grid.centre_x(j), grid.centre_y(i)])
    inside = points[tis.contains(points)]
    t0 = time.perf_counter()
    if settings.window == "circle":
        tree = cKDTree(inside)
        tree.query_ball_point(centres, hx, return_length=True)
    else:  # a square in y-scaled coordinates, Chebyshev distance
        scale = np.array([1.0, hx / hy])
        tree = cKDTree(inside * scale)
        tree.query_ball_point(centres * scale, hx, p=np.inf, return_length=True)
    return (time.perf_counter() - t0) / sample, rows * cols


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--sample", type=int, default=20000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"slide {SIZE} x {SIZE} px at {MPP} µm/px, tissue mask {SIZE / DS:.0f}^2 at 8 µm/px")
    header = (
        f"{'detections':>10} {'window':<22} {'search s':>9} {'peak MB':>8} "
        f"{'KD-tree s (extrap.)':>20} {'ratio':>7} {'count':>6}"
    )
    print(header)
    print("-" * len(header))
    for n in args.n:
        mask, pts = make_slide(n, rng)
        for settings in (
            HotspotSettings(window="circle"),
            HotspotSettings(window="rect"),
            HotspotSettings(area_mm2=None, field_diameter_mm=0.55),
        ):
            tracemalloc.start()
            t0 = time.perf_counter()
            hs = find_hotspot(pts, mpp=MPP, tissue=mask, tissue_downsample=DS, settings=settings)
            elapsed = time.perf_counter() - t0
            peak = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
            per, n_cand = kdtree_rate(pts, mask, settings, args.sample, rng)
            kd = per * n_cand
            label = f"{settings.window} {settings.window_area_mm2:.2f} mm²"
            print(
                f"{n:>10} {label:<22} {elapsed:>9.2f} {peak:>8.0f} {kd:>20.1f} "
                f"{kd / elapsed:>6.1f}x {hs.count:>6}"
            )
    # the report for the last slide
    thumb = np.full((1600, 1600, 3), 235, dtype=np.uint8)
    t0 = time.perf_counter()
    rep = render_report(
        ReportText(title="benchmark"),
        thumbnail=thumb,
        thumbnail_downsample=SIZE / 1600,
        points_level0=pts,
        mpp=MPP,
        hotspot=hs.geometry,
        tissue_mask=mask,
        tissue_downsample=DS,
        crops=np.zeros((24, 128, 128, 3), dtype=np.uint8),
        crop_scores=[0.9] * 24,
    )
    t_render = time.perf_counter() - t0
    import io

    t0 = time.perf_counter()
    rep.image.save(io.BytesIO(), format="PNG", compress_level=3)
    print(f"\nreport: render {t_render:.2f} s, PNG encode {time.perf_counter() - t0:.2f} s "
          f"({rep.image.size[0]} x {rep.image.size[1]} px, {len(pts)} detections)")  # fmt: skip


if __name__ == "__main__":
    main()
