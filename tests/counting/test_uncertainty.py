"""The hotspot's count range from calibrated probabilities, and the borderline flag."""

import itertools

import numpy as np
import pytest
from scipy.stats import binom

from wsdal_wsi.counting import HotspotSettings
from wsdal_wsi.counting.uncertainty import count_range, poisson_binomial_pmf


def test_the_pmf_is_exact_against_enumeration_and_the_binomial():
    p = np.array([0.1, 0.5, 0.9, 0.3, 0.7])
    brute = np.zeros(len(p) + 1)
    for outcome in itertools.product([0, 1], repeat=len(p)):
        o = np.array(outcome)
        brute[o.sum()] += np.prod(np.where(o == 1, p, 1 - p))
    np.testing.assert_allclose(poisson_binomial_pmf(p), brute, atol=1e-12)
    np.testing.assert_allclose(
        poisson_binomial_pmf(np.full(30, 0.4)), binom.pmf(range(31), 30, 0.4)
    )
    assert poisson_binomial_pmf(np.zeros(0)).tolist() == [1.0]


HPF = HotspotSettings(area_mm2=None, field_diameter_mm=0.55)  # 10 HPF: 9-17 -> 2, >= 18 -> 3


def test_certain_detections_give_a_point_range():
    r = count_range(np.ones(12), settings=HPF)
    assert (r.low, r.high, r.expected) == (12, 12, 12.0)
    assert not r.borderline and r.score_low == r.score_high == 2


def test_the_range_matches_binomial_quantiles():
    r = count_range(np.full(40, 0.5), settings=HPF, level=0.9)
    assert r.low == binom.ppf(0.05, 40, 0.5) and r.high == binom.ppf(0.95, 40, 0.5)
    assert r.n_candidates == 40 and r.describe() == f"{r.low}-{r.high} (90%)"


def test_borderline_at_a_cut_off_and_not_far_from_it():
    # 17 sure detections and 3 coin flips: the count may be 17 (score 2) or 18-20 (score 3)
    near_cut = count_range(np.r_[np.ones(17), np.full(3, 0.5)], settings=HPF)
    assert near_cut.low == 17 and near_cut.high >= 18
    assert near_cut.borderline and (near_cut.score_low, near_cut.score_high) == (2, 3)
    # 12 sure and 3 coin flips: 12-15, score 2 throughout
    far = count_range(np.r_[np.ones(12), np.full(3, 0.5)], settings=HPF)
    assert not far.borderline and far.score_low == 2
    # area mode: the count is scaled to 10 HPF first (2 mm² -> 18 per 10 HPF at 7.37/mm²)
    area = HotspotSettings(area_mm2=2.0)
    r = count_range(np.r_[np.ones(14), np.full(4, 0.5)], settings=area)
    assert r.borderline and (r.score_low, r.score_high) == (2, 3)
    with pytest.raises(Exception, match="level"):
        count_range(np.ones(3), settings=HPF, level=1.0)
