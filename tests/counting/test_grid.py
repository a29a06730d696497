"""Tissue masks and the analysis grid of the hotspot search."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from shapely.geometry import box

from wsdal_wsi.counting.grid import (
    as_tissue,
    build_grid,
    window_half_sizes_level0,
    window_kernel,
    window_point_counts,
    window_tissue_units,
)
from wsdal_wsi.errors import ConfigError, InputError


@dataclass
class FakeTissueMask:  # the wsdal_wsi.slide.TissueMask contract: .mask and .downsample
    mask: np.ndarray
    downsample: float


def test_as_tissue_accepts_a_mask_object_or_an_array():
    mask = np.zeros((4, 5), dtype=bool)
    mask[1, 2] = True
    a = as_tissue(FakeTissueMask(mask, 10.0))
    b = as_tissue(mask, 10.0)
    assert a.downsample == b.downsample == 10.0
    assert as_tissue(None) is None
    pts = np.array([[25.0, 15.0], [20.0, 10.0], [29.99, 19.99], [30.0, 15.0], [-1.0, 15.0]])
    np.testing.assert_array_equal(a.contains(pts), [True, True, True, False, False])
    assert a.area_mm2(0.5) == pytest.approx(100 * 0.25e-6)
    assert a.pixels_in(box(0, 0, 100, 100)) == 1
    assert a.pixels_in(box(0, 0, 24.9, 100)) == 0  # the pixel centre (25, 15) is outside


def test_as_tissue_errors():
    with pytest.raises(ConfigError, match="needs its downsample"):
        as_tissue(np.zeros((3, 3), dtype=bool))
    with pytest.raises(ConfigError, match="downsample must be a positive number, got -2"):
        as_tissue(np.zeros((3, 3), dtype=bool), -2)
    with pytest.raises(InputError, match=r"2-D array, got shape \(3,\)"):
        as_tissue(np.zeros(3, dtype=bool), 1.0)


def test_grid_refines_or_merges_mask_pixels():
    mask = np.ones((10, 12), dtype=bool)
    # 32 µm mask pixels, 10 µm target: each pixel split into 4 x 4 cells of 8 µm
    g = build_grid(mpp=0.5, grid_um=10, tissue=as_tissue(mask, 64.0))
    assert g.cell_level0 == 16.0 and g.shape == (40, 48) and g.units_per_cell == 1
    assert g.tissue_units.sum() == 40 * 48
    # 4 µm mask pixels, 10 µm target: 2 x 2 pixels per cell (the last row/column padded)
    mask = np.zeros((11, 13), dtype=bool)
    mask[10, 12] = True
    g = build_grid(mpp=0.5, grid_um=10, tissue=as_tissue(mask, 8.0))
    assert g.cell_level0 == 16.0 and g.shape == (6, 7) and g.units_per_cell == 4
    assert g.tissue_units[5, 6] == 1 and g.tissue_units.sum() == 1
    # without a mask: the extent in cells of grid_um
    g = build_grid(mpp=0.5, grid_um=10, tissue=None, extent_level0=(100, 50, 300, 110))
    assert g.cell_level0 == 20.0 and g.shape == (3, 10) and g.tissue_units is None
    assert g.centre_x(0) == 110.0 and g.centre_y(2) == 100.0


def test_huge_slides_get_coarser_cells():
    mask = np.zeros((5000, 5000), dtype=bool)  # 40 mm x 40 mm at 8 µm
    g = build_grid(mpp=0.25, grid_um=10, tissue=as_tissue(mask, 32.0))
    assert g.shape[0] * g.shape[1] <= 16_000_000
    assert g.cell_level0 == 64.0


def test_window_sizes():
    r, r2 = window_half_sizes_level0("circle", np.pi * 100.0**2)
    assert r == r2 == pytest.approx(100.0)
    hx, hy = window_half_sizes_level0("rect", 1200.0)
    assert (2 * hx, 2 * hy) == pytest.approx((40.0, 30.0))


def test_counts_on_a_hand_made_case():
    mask = np.ones((5, 5), dtype=bool)
    g = build_grid(mpp=1.0, grid_um=10, tissue=as_tissue(mask, 10.0))  # cells of 10 px
    pts = np.array([[25.0, 25.0], [35.0, 25.0], [45.0, 45.0]])
    counts = window_point_counts(pts, g, window="circle", half_sizes_level0=(10.0, 10.0))
    # a centre counts the points within 10 px: (25,25) sees 2 (distance 0 and 10)
    assert counts[2, 2] == 2 and counts[2, 3] == 2 and counts[4, 4] == 1 and counts[0, 0] == 0
    rect = window_point_counts(pts, g, window="rect", half_sizes_level0=(10.0, 10.0))
    assert rect[3, 3] == 3  # (35, 35): all three within 10 px on each axis
    k = window_kernel(g, window="circle", half_sizes_level0=(10.0, 10.0))
    assert k.sum() == 5  # the centre and its 4 neighbours
    tissue, total = window_tissue_units(g, window="circle", half_sizes_level0=(10.0, 10.0))
    assert total == 5 and tissue[2, 2] == 5 and tissue[0, 0] == 3  # corner: 2 neighbours off
    with pytest.raises(ConfigError, match="no tissue mask"):
        window_tissue_units(
            build_grid(mpp=1.0, grid_um=10, tissue=None, extent_level0=(0, 0, 10, 10)),
            window="circle",
            half_sizes_level0=(10.0, 10.0),
        )
