"""The review list: least certain decisions first, hotspot first, stable QuPath objects."""

import numpy as np
from shapely.geometry import Point

from wsdal_wsi.counting import Hotspot, HotspotSettings, score_window
from wsdal_wsi.model.calibration import Calibration
from wsdal_wsi.report.review import (
    CHECK_CLASS,
    read_near_misses,
    review_features,
    review_items,
    write_near_misses,
)


def _hotspot(cx, cy, r):
    return Hotspot(geometry=Point(cx, cy).buffer(r), centre_level0=(cx, cy), window="circle",
                   half_sizes_level0=(r, r), count=1, area_mm2=2.0, per_mm2=0.5,
                   tissue_fraction=1.0, score=score_window(1, window_area_mm2=2.0),
                   settings=HotspotSettings(), grid_cell_um=10.0)  # fmt: skip


def test_least_certain_first_and_the_hotspot_before_the_rest():
    det = np.array([[100.0, 600.0], [200.0, 100.0], [5000.0, 5000.0]])
    det_p = np.array([0.95, 0.52, 0.505])
    near = np.array([[300.0, 100.0], [6000.0, 6000.0]])
    near_p = np.array([0.45, 0.49])
    items = review_items(det, det_p, near, near_p, threshold=0.5, calibration=Calibration(),
                         hotspot=_hotspot(200, 100, 150), n=4)  # fmt: skip
    got = [(it.x_level0, it.in_hotspot, it.detected) for it in items]
    # in the hotspot: 0.52 (closest to 0.5) then 0.45; then outside: 0.505, then 0.49
    assert got == [(200.0, True, True), (300.0, True, False), (5000.0, False, True),
                   (6000.0, False, False)]  # fmt: skip
    assert [it.rank for it in items] == [1, 2, 3, 4]
    assert review_items(det, det_p, near, near_p, threshold=0.5, calibration=Calibration(),
                        hotspot=None, n=0) == []  # fmt: skip


def test_check_objects_are_answerable_annotations_with_stable_ids():
    det = np.array([[10.0, 20.0]])
    items = review_items(det, np.array([0.6]), np.zeros((0, 2)), np.zeros(0), threshold=0.5,
                         calibration=Calibration(a=2.0, b=0.0), hotspot=None, n=5)  # fmt: skip
    (a,) = review_features(items, key="slide1")
    (b,) = review_features(items, key="slide1")
    props = a["properties"]
    assert props["objectType"] == "annotation" and props["classification"]["name"] == CHECK_CLASS
    assert props["name"].startswith("WS-DAL check 1: detected")
    assert props["measurements"]["WS-DAL check rank"] == 1.0
    assert props["measurements"]["WS-DAL calibrated probability"] > 0.6  # a = 2 sharpens
    assert a["id"] == b["id"]  # stable across runs
    assert review_features(items, key="slide2")[0]["id"] != a["id"]


def test_near_misses_round_trip_and_a_missing_file_means_none(tmp_path):
    xy = np.array([[1.5, 2.25], [1000.0, 3.0]])
    p = np.array([0.2, 0.31])
    write_near_misses(tmp_path / "s.near.csv", xy, p)
    got_xy, got_p = read_near_misses(tmp_path / "s.near.csv")
    np.testing.assert_allclose(got_xy, xy) and np.testing.assert_allclose(got_p, p)
    none_xy, none_p = read_near_misses(tmp_path / "absent.near.csv")
    assert none_xy.shape == (0, 2) and none_p.shape == (0,)
