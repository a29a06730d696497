from __future__ import annotations

import math

import pytest

from wsdal_wsi.slide._geometry import LEVEL_TOLERANCE, choose_level, plan_read

PYRAMID = (1.0, 4.0, 16.0, 64.0)


@pytest.mark.parametrize(
    ("level0_per_px", "expected"),
    [(0.5, 0), (1.0, 0), (3.9, 0), (4.0, 1), (7.9, 1), (16.0, 2), (1000.0, 3)],
)
def test_choose_level_takes_the_coarsest_level_still_fine_enough(
    level0_per_px: float, expected: int
) -> None:
    assert choose_level(PYRAMID, level0_per_px) == expected


def test_choose_level_tolerates_inexact_downsamples() -> None:
    # An odd-sized pyramid: OpenSlide reports 2.0005 for a nominal 2.
    assert choose_level((1.0, 2.0005), 2.0) == 1
    assert choose_level((1.0, 2.0 * (1 + 2 * LEVEL_TOLERANCE)), 2.0) == 0


def test_plan_reads_the_level_directly_on_its_own_lattice() -> None:
    plan = plan_read((100.0, 200.0), (64, 32), level0_per_px=4.0, level_downsamples=PYRAMID)
    assert plan.level == 1 and plan.direct
    assert (plan.level_x, plan.level_y, plan.read_w, plan.read_h) == (25, 50, 64, 32)
    assert plan.openslide_location() == (100, 200)


def test_a_fractional_level_position_is_resampled() -> None:
    # 102 / 4 = 25.5: not a whole pixel of level 1.
    plan = plan_read((102.0, 200.0), (64, 32), level0_per_px=4.0, level_downsamples=PYRAMID)
    assert not plan.direct
    left, _, right, _ = plan.box(plan.level_x, plan.level_y)
    assert left - math.floor(left) == pytest.approx(0.5)
    assert right - left == pytest.approx(64)


@pytest.mark.parametrize(
    ("location", "scale", "pyramid"),
    [
        ((100.25, 200.0), 1.0, PYRAMID),
        ((10.0, 20.0), 0.5, PYRAMID),
        ((-37.3, 12.9), 5.0, PYRAMID),
        ((1234.5, 99.1), 33.0, PYRAMID),
        ((1234.5, 99.1), 33.0, (1.0,)),  # no pyramid: block reduction first
        ((77.7, -5.5), 9.0, (1.0, 2.0)),
        ((1001.0, 17.0), 2.0, (1.0, 2.0005)),  # an odd-sized pyramid
    ],
)
def test_plan_box_maps_the_output_lattice_into_the_read(
    location: tuple[float, float], scale: float, pyramid: tuple[float, ...]
) -> None:
    size = (50, 30)
    plan = plan_read(location, size, level0_per_px=scale, level_downsamples=pyramid)
    downsample = pyramid[plan.level]
    assert plan.downsample == downsample
    level_scale = scale / downsample
    assert plan.reduce == (int(level_scale // 2) if level_scale > 4 else 1)
    assert not plan.direct
    r = plan.reduce
    # Raw tiles start exactly at (level_x, level_y); OpenSlide at location / downsample.
    x_read, y_read = plan.openslide_location()
    for start_x, start_y in (
        (plan.level_x, plan.level_y),
        (x_read / downsample, y_read / downsample),
    ):
        left, top, right, bottom = plan.box(start_x, start_y)
        assert left * r + start_x == pytest.approx(location[0] / downsample)
        assert top * r + start_y == pytest.approx(location[1] / downsample)
        assert (right - left) * r == pytest.approx(size[0] * level_scale)
        assert (bottom - top) * r == pytest.approx(size[1] * level_scale)
        # Room for the bicubic support on every side (in reduced px).
        support = 2 * max(level_scale / r, 1.0)
        assert left >= support and top >= support
        assert plan.read_w / r - right >= support and plan.read_h / r - bottom >= support
    # Whole reduction blocks of the level's global grid.
    assert plan.read_w % r == 0 and plan.read_h % r == 0
    assert plan.level_x % r == 0 and plan.level_y % r == 0
    assert plan.read_w <= math.ceil(size[0] * level_scale) + 2 * (
        math.ceil(2 * level_scale) + 4 + 2 * r
    )
