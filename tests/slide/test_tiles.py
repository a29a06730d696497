from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from wsdal_wsi.errors import ConfigError, ResolutionError
from wsdal_wsi.slide import Tile, TissueMask, open_slide, tile_grid


@dataclass
class FakeSlide:
    """What tile_grid needs of a slide: its level-0 size and resolution."""

    dimensions: tuple[int, int]
    mpp: float

    def level0_per_px(self, target_mpp: float) -> float:
        return target_mpp / self.mpp


@pytest.mark.parametrize(
    ("dimensions", "mpp", "tile", "margin"),
    [((1000, 700), 0.25, 128, 16), ((2220, 2967), 0.499, 256, 40), ((333, 999), 0.2527, 100, 0)],
)
def test_cores_partition_the_slide(
    dimensions: tuple[int, int], mpp: float, tile: int, margin: int
) -> None:
    slide = FakeSlide(dimensions, mpp)
    tiles = tile_grid(slide, target_mpp=0.25, tile_size_px=tile, margin_px=margin)
    f = slide.level0_per_px(0.25)
    width, height = dimensions
    rng = np.random.default_rng(0)
    points = np.concatenate(
        [
            rng.uniform(0, 1, (4000, 2)) * [width, height],
            # Core boundaries exactly, and the slide's corners.
            [(t.core_px[0] * f, t.core_px[1] * f) for t in tiles],
            [(0, 0), (width - 1e-9, height - 1e-9), (width - 1e-9, 0)],
        ]
    )
    owners = np.zeros(len(points), int)
    owners_local = np.zeros(len(points), int)
    for t in tiles:
        x0, y0, x1, y1 = t.core_level0
        inside = (
            (points[:, 0] >= x0) & (points[:, 0] < x1) & (points[:, 1] >= y0) & (points[:, 1] < y1)
        )
        owners += inside
        local = points / f - np.asarray(t.origin_px)  # the point in the tile's read array
        owners_local += t.in_core(local)
    assert (owners == 1).all()
    assert (owners_local == 1).all()
    # Reads are the core plus the margin, positioned on the global lattice.
    for t in tiles:
        x0, y0, x1, y1 = t.core_px
        assert t.origin_px == (x0 - margin, y0 - margin)
        assert t.size_px == (x1 - x0 + 2 * margin, y1 - y0 + 2 * margin)
        assert t.core_local_px == (margin, margin, margin + x1 - x0, margin + y1 - y0)
        assert t.location_level0 == pytest.approx((t.origin_px[0] * f, t.origin_px[1] * f))
        assert 0 < x1 - x0 <= tile and 0 < y1 - y0 <= tile
    assert [t.core_px[:2] for t in tiles] == sorted(
        [t.core_px[:2] for t in tiles], key=lambda c: (c[1], c[0])
    )


def test_exact_fit_has_no_sliver_tiles() -> None:
    tiles = tile_grid(FakeSlide((1024, 512), 0.25), tile_size_px=256, margin_px=8)
    assert len(tiles) == 8
    assert tiles[-1].core_px == (768, 256, 1024, 512)


def test_coordinates_do_not_depend_on_the_tile_size() -> None:
    slide = FakeSlide((3000, 2000), 0.499)
    grids = [
        tile_grid(slide, tile_size_px=size, margin_px=margin)
        for size, margin in ((100, 10), (64, 7), (257, 0), (1024, 40))
    ]
    rng = np.random.default_rng(1)
    points = rng.uniform(0, 1, (50, 2)) * [5900, 3900]  # global target px (x, y)
    f = slide.level0_per_px(0.25)
    seen = np.zeros(len(points), int)
    for tiles in grids:
        origins = np.array([t.origin_px for t in tiles], float)  # (T, 2)
        sizes = np.array([t.size_px for t in tiles], float)
        local = points[:, None, :] - origins[None]  # (N, T, 2): each point in each read
        inside = ((local >= 0) & (local < sizes[None])).all(axis=2)
        for n, t in zip(*np.nonzero(inside), strict=True):
            level0 = tiles[t].to_level0(local[n, t][None])[0]
            np.testing.assert_allclose(level0, points[n] * f, rtol=0, atol=1e-9)
            seen[n] += 1
        owners = np.array([t.in_core(local[:, i]) for i, t in enumerate(tiles)]).sum(axis=0)
        assert (owners == 1).all()
    assert (seen >= len(grids)).all()


def test_overlapping_tiles_have_the_same_pixels(pattern_slide_path: Path) -> None:
    """Two grids with different tile sizes read the same pixel values at shared positions."""
    with open_slide(pattern_slide_path) as slide:
        a = tile_grid(slide, target_mpp=0.25, tile_size_px=300, margin_px=20)
        b = tile_grid(slide, target_mpp=0.25, tile_size_px=128, margin_px=9)
        ta = a[1]  # reads x in [280, 620), y in [-20, 320)

        def overlap(t: Tile) -> tuple[int, int, int, int]:
            x0, y0 = max(ta.origin_px[0], t.origin_px[0]), max(ta.origin_px[1], t.origin_px[1])
            x1 = min(ta.origin_px[0] + ta.size_px[0], t.origin_px[0] + t.size_px[0])
            y1 = min(ta.origin_px[1] + ta.size_px[1], t.origin_px[1] + t.size_px[1])
            return x0, y0, x1, y1

        def area(t: Tile) -> int:
            x0, y0, x1, y1 = overlap(t)
            return max(0, x1 - x0) * max(0, y1 - y0)

        tb = max(b, key=area)
        x0, y0, x1, y1 = overlap(tb)
        assert x1 - x0 > 50 and y1 - y0 > 50
        ra = slide.read_region(ta.location_level0, ta.size_px, target_mpp=0.25)
        rb = slide.read_region(tb.location_level0, tb.size_px, target_mpp=0.25)
    ax0, ay0 = ta.origin_px
    bx0, by0 = tb.origin_px
    pa = ra[y0 - ay0 : y1 - ay0, x0 - ax0 : x1 - ax0].astype(int)
    pb = rb[y0 - by0 : y1 - by0, x0 - bx0 : x1 - bx0].astype(int)
    assert np.abs(pa - pb).max() <= 2
    assert np.abs(pa - pb).mean() < 0.1


def test_tissue_filter() -> None:
    slide = FakeSlide((1024, 1024), 0.25)
    mask = np.zeros((32, 32), bool)  # 32 level-0 px per mask px
    mask[0:8, 0:8] = True  # fills the first 256 x 256 core
    mask[20, 20] = True  # one mask pixel inside core (2, 2)
    tissue = TissueMask(mask=mask, downsample=32.0)
    all_tiles = tile_grid(slide, tile_size_px=256, tissue=None)
    kept = tile_grid(slide, tile_size_px=256, tissue=tissue)
    strict = tile_grid(slide, tile_size_px=256, tissue=tissue, min_tissue_fraction=0.5)
    assert len(all_tiles) == 16 and all(t.tissue_fraction is None for t in all_tiles)
    assert [t.core_px for t in kept] == [(0, 0, 256, 256), (512, 512, 768, 768)]
    assert kept[0].tissue_fraction == 1.0
    assert kept[1].tissue_fraction == pytest.approx(1 / 64)
    assert [t.core_px for t in strict] == [(0, 0, 256, 256)]


def test_to_level0_and_in_core() -> None:
    tile = Tile(
        origin_px=(-40, 984), size_px=(1104, 1104), core_px=(0, 1024, 1024, 2048), level0_per_px=2.0
    )
    local = np.array([[40.0, 40.0], [39.9, 40.0], [1063.99, 1063.99], [1064.0, 100.0]])
    np.testing.assert_array_equal(tile.in_core(local), [True, False, True, False])
    np.testing.assert_allclose(tile.to_level0(local[:1]), [[0.0, 2048.0]])
    assert tile.location_level0 == (-80.0, 1968.0)
    assert tile.core_level0 == (0.0, 2048.0, 2048.0, 4096.0)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"tile_size_px": 0}, "tile_size_px"),
        ({"tile_size_px": 10.5}, "tile_size_px"),
        ({"margin_px": -1}, "margin_px"),
        ({"min_tissue_fraction": 1.5}, "min_tissue_fraction"),
    ],
)
def test_bad_options(options: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        tile_grid(FakeSlide((100, 100), 0.25), **options)


def test_needs_the_resolution(no_resolution_slide_path: Path) -> None:
    with open_slide(no_resolution_slide_path) as slide, pytest.raises(ResolutionError):
        tile_grid(slide)
