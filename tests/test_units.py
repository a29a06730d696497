import math

import pytest

from wsdal_wsi.errors import ConfigError
from wsdal_wsi.units import (
    check_mpp,
    mm2_to_px2,
    mm_to_px,
    px2_to_mm2,
    px_to_mm,
    px_to_um,
    um2_to_px2,
    um_to_px,
)


def test_lengths_round_trip():
    assert um_to_px(7.5, 0.25) == pytest.approx(30.0)
    assert px_to_um(30.0, 0.25) == pytest.approx(7.5)
    assert mm_to_px(0.55, 0.5) == pytest.approx(1100.0)
    assert px_to_mm(1100.0, 0.5) == pytest.approx(0.55)


def test_areas_round_trip():
    # 2 mm² at 0.25 µm/px is 32 million square pixels.
    assert mm2_to_px2(2.0, 0.25) == pytest.approx(32e6)
    assert px2_to_mm2(32e6, 0.25) == pytest.approx(2.0)
    assert um2_to_px2(20.0, 0.25) == pytest.approx(320.0)


@pytest.mark.parametrize("bad", [0, -0.25, math.nan, math.inf, "abc", None, 5000])
def test_bad_resolution_is_refused_with_the_value(bad):
    with pytest.raises(ConfigError, match="µm/px"):
        check_mpp(bad, what="--mpp")


def test_error_names_the_option():
    with pytest.raises(ConfigError, match="resolution must be"):
        um_to_px(1.0, mpp=0)  # goes through check_mpp
    with pytest.raises(ConfigError, match="-1"):
        check_mpp(-1, what="--mpp")
