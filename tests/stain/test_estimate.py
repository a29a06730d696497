from __future__ import annotations

import math

import numpy as np
import pytest

from tests.stain.conftest import SHIFTED, reference_look
from wsdal_wsi.errors import ConfigError, StainError
from wsdal_wsi.stain import StainEstimate, estimate_stains, median_estimate
from wsdal_wsi.synth.stain import od_to_rgb


def _angle_deg(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return math.degrees(math.acos(min(1.0, float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)))))


@pytest.mark.parametrize("changes", [{}, SHIFTED], ids=["reference", "shifted"])
def test_the_stain_vectors_are_found(concentrations, changes):
    look = reference_look(**changes)
    est = estimate_stains(od_to_rgb(*concentrations, look))
    assert _angle_deg(est.haematoxylin, look.h_vec) < 4.0
    assert _angle_deg(est.eosin, look.e_vec) < 6.0
    assert est.n_pixels > 100_000


def test_the_strengths_follow_the_staining(concentrations):
    """The same tissue stained 1.6x stronger in haematoxylin, half in eosin."""
    plain = estimate_stains(od_to_rgb(*concentrations, reference_look()))
    strong = estimate_stains(
        od_to_rgb(*concentrations, reference_look(h_strength=1.6, e_strength=0.5))
    )
    assert strong.haematoxylin_strength_od / plain.haematoxylin_strength_od == pytest.approx(
        1.6, rel=0.08
    )
    assert strong.eosin_strength_od / plain.eosin_strength_od == pytest.approx(0.5, rel=0.12)


def test_glass_alone_is_refused_with_the_name():
    white = np.full((400, 400, 3), 245, np.uint8)
    with pytest.raises(StainError, match=r"slide-7\.svs: 0 stained pixels"):
        estimate_stains(white, what="slide-7.svs")


def test_one_stain_only_is_refused(concentrations):
    c_h, _ = concentrations
    rgb = od_to_rgb(np.maximum(c_h, 0.4), np.zeros_like(c_h), reference_look())
    with pytest.raises(StainError, match="one stain only"):
        estimate_stains(rgb, what="haematoxylin only")


def test_a_bad_array_is_a_config_error():
    with pytest.raises(ConfigError, match="uint8"):
        estimate_stains(np.zeros((10, 10, 3), np.float32))


def test_estimates_round_trip_and_bad_values_are_refused():
    est = StainEstimate((0.6, 0.7, 0.3), (0.1, 0.9, 0.4), 0.8, 0.5, n_pixels=10)
    back = StainEstimate.from_dict(est.to_dict())
    assert back.to_dict() == est.to_dict()
    assert np.linalg.norm(est.haematoxylin) == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="eosin vector"):
        StainEstimate((0.6, 0.7, 0.3), (0.0, 0.0, 0.0), 0.8, 0.5)
    with pytest.raises(ConfigError, match="haematoxylin_strength_od must be a positive number"):
        StainEstimate((0.6, 0.7, 0.3), (0.1, 0.9, 0.4), -1.0, 0.5)
    with pytest.raises(ConfigError, match="apart"):
        StainEstimate((0.6, 0.7, 0.3), (0.6, 0.7, 0.31), 0.8, 0.5)
    with pytest.raises(ConfigError, match="needs the keys"):
        StainEstimate.from_dict({**est.to_dict(), "gamma": 1})
    with pytest.raises(ConfigError, match="JSON object"):
        StainEstimate.from_dict([1, 2])


def test_the_median_of_estimates():
    a = StainEstimate((0.6, 0.7, 0.3), (0.1, 0.9, 0.4), 0.8, 0.5, n_pixels=1)
    b = StainEstimate((0.7, 0.6, 0.3), (0.2, 0.9, 0.3), 1.0, 0.7, n_pixels=2)
    c = StainEstimate((0.65, 0.65, 0.3), (0.1, 0.8, 0.4), 1.2, 0.6, n_pixels=3)
    m = median_estimate([a, b, c])
    assert m.haematoxylin_strength_od == 1.0 and m.eosin_strength_od == 0.6
    assert m.n_pixels == 6
    assert median_estimate([a]).to_dict() == a.to_dict()
    with pytest.raises(ConfigError):
        median_estimate([])
