"""The report's map panel: the heat map's density, scale and view."""

import numpy as np
import pytest

from wsdal_wsi.report.density_map import MapView, heat_map

MPP = 0.5


def test_heat_map_density_integrates_to_the_detections_and_scales_from_10():
    rng = np.random.default_rng(3)
    bg = np.full((120, 200, 3), 230.0)  # 100 level-0 px per background px: 20000 x 12000
    pts = np.array([12000.0, 6000.0]) + rng.normal(0, 400, size=(200, 2))
    view, density, vmax, rgb = heat_map((bg, 100.0), pts, None, MPP, (10, 20), 250.0)
    assert view.origin == (10, 20) and view.size == (density.shape[1], density.shape[0])
    px_mm2 = (view.level0_per_px * MPP / 1000) ** 2
    assert density.sum() * px_mm2 == pytest.approx(len(pts), rel=0.1)
    assert vmax >= 10.0 and vmax >= density.max()
    assert rgb.shape == (*density.shape, 3)
    # the cluster is where the map is hottest
    iy, ix = np.unravel_index(np.argmax(density), density.shape)
    cx, cy = MapView((0, 0), view.size, view.level0_per_px).to_image(np.array([[12000, 6000]]))[0]
    assert abs(ix - cx) <= 3 and abs(iy - cy) <= 3
    # no detections: a flat map on the smallest scale
    _, empty, vmax0, _ = heat_map((bg, 100.0), np.zeros((0, 2)), None, MPP, (0, 0), 250.0)
    assert empty.max() == 0 and vmax0 == 10.0
