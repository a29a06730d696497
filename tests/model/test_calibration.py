"""Platt scaling of p(mitosis): recovers a known miscalibration, never reorders, says how well."""

import numpy as np
import pytest

from wsdal_wsi.model.calibration import Calibration, expected_calibration_error, fit_calibration


def _overconfident(rng, n=6000, a=0.5, b=-1.0):
    """Scores whose true frequency is sigmoid(a * logit(p) + b): overconfident, too high."""
    z = rng.normal(0.0, 2.5, n)
    p = 1 / (1 + np.exp(-z))
    y = (rng.random(n) < 1 / (1 + np.exp(-(a * z + b)))).astype(int)
    return p, y


def test_the_fit_recovers_the_miscalibration_and_lowers_the_error():
    p, y = _overconfident(np.random.default_rng(0))
    cal = fit_calibration(p, y)
    assert cal.a == pytest.approx(0.5, abs=0.05) and cal.b == pytest.approx(-1.0, abs=0.1)
    assert cal.ece_before > 0.1 and cal.ece_after < 0.03
    q = cal.apply(p)
    assert expected_calibration_error(q, y) == pytest.approx(cal.ece_after)
    order = np.argsort(p)
    assert np.all(np.diff(q[order]) >= 0)  # monotone: the detections cannot change


def test_too_few_mitoses_keep_the_identity_and_older_models_have_none():
    p = np.linspace(0.01, 0.99, 50)
    y = np.zeros(50, int)
    y[-3:] = 1
    cal = fit_calibration(p, y)
    assert cal.is_identity and cal.n_positive == 3 and cal.ece_before == cal.ece_after
    assert Calibration.from_dict({}).is_identity and Calibration.from_dict(None).is_identity
    np.testing.assert_array_equal(Calibration().apply(p), p)
    back = Calibration.from_dict(
        fit_calibration(*_overconfident(np.random.default_rng(1))).to_dict()
    )
    assert not back.is_identity and back.a > 0


def test_ece_of_a_perfectly_calibrated_predictor_is_small():
    rng = np.random.default_rng(2)
    p = rng.random(20000)
    y = (rng.random(20000) < p).astype(int)
    assert expected_calibration_error(p, y) < 0.02
    assert expected_calibration_error(np.zeros(0), np.zeros(0)) is None


def test_nearly_separable_validation_candidates_still_give_a_finite_fit():
    """Most candidates are obvious negatives (p ~ 0) and the mitoses score high: plain
    maximum likelihood runs off to infinity there; the fit must stay finite and useful."""
    rng = np.random.default_rng(4)
    p = np.r_[rng.uniform(1e-8, 1e-3, 1500), rng.uniform(0.5, 1.0, 100), rng.uniform(0.9, 1, 26)]
    y = np.r_[np.zeros(1500), np.ones(60), np.zeros(66)].astype(int)
    cal = fit_calibration(p, y)
    assert not cal.is_identity and np.isfinite([cal.a, cal.b]).all() and cal.a > 0
    assert cal.ece_after <= cal.ece_before
