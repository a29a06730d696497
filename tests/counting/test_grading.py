"""Nottingham mitotic score: the table's edges for every field diameter, and area mode."""

from __future__ import annotations

import math

import pytest

from wsdal_wsi.counting.grading import (
    SUPPORTED_FIELD_DIAMETERS_MM,
    MitoticScore,
    hpf_area_mm2,
    mitotic_score,
    per_mm2_cutoffs,
    score_window,
    ten_hpf_area_mm2,
)
from wsdal_wsi.errors import ConfigError

# grading.md, typed in again by hand: (diameter, HPF area, score-1 max, score-3 min)
TABLE = [
    (0.40, 0.126, 4, 10),
    (0.44, 0.152, 5, 12),
    (0.50, 0.196, 7, 15),
    (0.55, 0.238, 8, 18),
    (0.59, 0.274, 9, 20),
    (0.63, 0.312, 11, 23),
    (0.69, 0.374, 13, 28),
]


def test_supported_diameters_are_the_table_rows():
    assert SUPPORTED_FIELD_DIAMETERS_MM == tuple(row[0] for row in TABLE)


@pytest.mark.parametrize("d, area, s1, s3", TABLE)
def test_hpf_area_matches_the_table(d, area, s1, s3):
    assert hpf_area_mm2(d) == pytest.approx(area, abs=1e-3)  # the table rounds
    assert ten_hpf_area_mm2(d) == pytest.approx(10 * area, abs=1e-2)


@pytest.mark.parametrize("d, area, s1, s3", TABLE)
def test_score_at_the_table_edges(d, area, s1, s3):
    assert mitotic_score(0, field_diameter_mm=d) == 1
    assert mitotic_score(s1, field_diameter_mm=d) == 1
    assert mitotic_score(s1 + 1, field_diameter_mm=d) == 2
    assert mitotic_score(s3 - 1, field_diameter_mm=d) == 2
    assert mitotic_score(s3, field_diameter_mm=d) == 3
    assert mitotic_score(500, field_diameter_mm=d) == 3


@pytest.mark.parametrize("d, area, s1, s3", TABLE)
def test_hpf_mode_window_scores_like_the_table(d, area, s1, s3):
    for count, expected in ((s1, 1), (s1 + 1, 2), (s3 - 1, 2), (s3, 3)):
        result = score_window(count, field_diameter_mm=d)
        assert result.mode == "hpf"
        assert result.score == expected
        assert result.count_10hpf == count
        assert result.per_mm2 == pytest.approx(count / ten_hpf_area_mm2(d))


@pytest.mark.parametrize("d, area, s1, s3", TABLE)
def test_area_mode_at_the_10hpf_area_is_the_same_as_hpf_mode(d, area, s1, s3):
    a10 = ten_hpf_area_mm2(d)
    for count, expected in ((s1, 1), (s1 + 1, 2), (s3 - 1, 2), (s3, 3)):
        result = score_window(count, window_area_mm2=a10, field_diameter_mm=d)
        assert (result.mode, result.score, result.count_10hpf_rounded) == ("area", expected, count)


@pytest.mark.parametrize("d, area, s1, s3", TABLE)
def test_area_mode_edges_follow_the_per_mm2_cutoffs(d, area, s1, s3):
    """In a 2 mm² window the score changes where the density crosses the cut-offs."""
    lo, hi = per_mm2_cutoffs(d)
    a10 = ten_hpf_area_mm2(d)
    assert lo == pytest.approx((s1 + 0.5) / a10)
    assert hi == pytest.approx((s3 - 0.5) / a10)
    for count in range(0, 80):
        density = count / 2.0
        expected = 1 if density < lo else 3 if density >= hi else 2
        assert score_window(count, window_area_mm2=2.0, field_diameter_mm=d).score == expected


def test_area_mode_worked_example_055():
    # 2 mm² window, 0.55 mm field (10 HPF = 2.3758 mm²): scale 1.18791
    expected = {7: 1, 8: 2, 14: 2, 15: 3}  # 7 -> 8.3 -> 8; 8 -> 9.5 -> 10; 14 -> 16.6; 15 -> 17.8
    for count, score in expected.items():
        assert score_window(count, window_area_mm2=2.0).score == score
    lo, hi = per_mm2_cutoffs(0.55)
    assert (round(lo, 2), round(hi, 2)) == (3.58, 7.37)  # grading.md: "roughly 3.5 and 7.5"


def test_exact_half_rounds_up():
    # 10 HPF of 0.55 mm is 2.3758 mm²; a window of twice that halves the count
    result = score_window(17, window_area_mm2=2 * ten_hpf_area_mm2(0.55))
    assert result.count_10hpf == pytest.approx(8.5)
    assert result.count_10hpf_rounded == 9 and result.score == 2


@pytest.mark.parametrize("bad", [0.45, 0.0, -0.55, 0.551, float("nan"), "x"])
def test_unsupported_diameter_is_rejected_naming_value_and_supported(bad):
    with pytest.raises(ConfigError, match=r"field diameter.*0\.40, 0\.44, 0\.50, 0\.55, 0\.59"):
        mitotic_score(5, field_diameter_mm=bad)


def test_bad_counts_and_areas():
    with pytest.raises(ConfigError, match="whole number >= 0, got -1"):
        mitotic_score(-1)
    with pytest.raises(ConfigError, match=r"got 2\.5"):
        score_window(2.5)
    with pytest.raises(ConfigError, match=r"window area .* got 0"):
        score_window(3, window_area_mm2=0)


def test_round_trip_and_basis_text():
    result = score_window(9, window_area_mm2=2.0, field_diameter_mm=0.59)
    again = MitoticScore.from_dict(result.to_dict())
    assert again == result
    assert "2 mm²" in result.basis and "0.59 mm" in result.basis and "score" in result.basis
    hpf = score_window(20, field_diameter_mm=0.59)
    assert hpf.basis.startswith("20 mitoses in 10 HPF") and hpf.score == 3
    assert math.isclose(hpf.window_area_mm2, ten_hpf_area_mm2(0.59))
