"""Tests of wsdal_wsi.evaluation: MIDOG matching, micro-averaged F1, best threshold."""

from __future__ import annotations

import math

import numpy as np
import pytest

from wsdal_wsi.errors import ConfigError
from wsdal_wsi.evaluation import (
    best_f1_threshold,
    match_points,
    prf,
    threshold_sweep,
)


def pairs(match) -> list[tuple[int, int]]:
    return list(zip(match.pred_index.tolist(), match.truth_index.tolist(), strict=True))


# ----------------------------------------------------------------------------- matching


def test_simple_match_counts():
    pred = np.array([[10.0, 10.0], [100.0, 100.0], [300.0, 300.0]])
    truth = np.array([[12.0, 10.0], [105.0, 100.0], [500.0, 500.0]])
    m = match_points(pred, truth, radius_px=30)
    assert (m.tp, m.fp, m.fn) == (2, 1, 1)
    assert pairs(m) == [(0, 0), (1, 1)]
    np.testing.assert_allclose(m.distance_px, [2.0, 5.0])
    assert m.unmatched_pred.tolist() == [2]
    assert m.unmatched_truth.tolist() == [2]


def test_nearest_unused_prediction_is_taken():
    truth = np.array([[0.0, 0.0]])
    pred = np.array([[20.0, 0.0], [5.0, 0.0], [-10.0, 0.0]])
    assert pairs(match_points(pred, truth, radius_px=30)) == [(1, 0)]


def test_equally_distant_predictions_go_in_index_order():
    truth = np.array([[0.0, 0.0], [0.0, 1.0]])
    pred = np.array([[0.0, 10.0], [10.0, 0.0], [0.0, -10.0], [-10.0, 0.0]])
    # Truth 0: four predictions at 10 px; the lowest index wins.
    m = match_points(pred, truth, radius_px=15)
    assert pairs(m)[0] == (0, 0)
    assert (m.tp, m.fp, m.fn) == (2, 2, 0)


def test_one_prediction_near_two_truths_goes_to_the_first_truth():
    # The prediction is nearer to truth 1, but truth 0 comes first and takes it (MIDOG order).
    truth = np.array([[0.0, 0.0], [20.0, 0.0]])
    pred = np.array([[15.0, 0.0]])
    m = match_points(pred, truth, radius_px=30)
    assert pairs(m) == [(0, 0)]
    assert (m.tp, m.fp, m.fn) == (1, 0, 1)
    # Reversed truth order: the other truth gets it.
    assert pairs(match_points(pred, truth[::-1], radius_px=30)) == [(0, 0)]


def test_matching_is_one_to_one_not_many_to_one():
    # Two truths, one prediction between them: one TP and one FN (upstream counted 2 TP).
    truth = np.array([[0.0, 0.0], [10.0, 0.0]])
    m = match_points(np.array([[5.0, 0.0]]), truth, radius_px=30)
    assert (m.tp, m.fp, m.fn) == (1, 0, 1)
    # Two predictions on one truth: one TP and one FP.
    m = match_points(np.array([[0.0, 1.0], [0.0, -1.0]]), truth[:1], radius_px=30)
    assert (m.tp, m.fp, m.fn) == (1, 1, 0)


def test_greedy_order_can_leave_a_truth_unmatched():
    # Truth 0 takes the nearest prediction, which truth 1 needed; MIDOG's rule, not an
    # optimal assignment.
    truth = np.array([[0.0, 0.0], [25.0, 0.0]])
    pred = np.array([[-20.0, 0.0], [5.0, 0.0]])
    m = match_points(pred, truth, radius_px=21)
    assert pairs(m) == [(1, 0)]
    assert m.fn == 1


def test_radius_is_inclusive():
    truth = np.array([[0.0, 0.0]])
    assert match_points(np.array([[18.0, 24.0]]), truth, radius_px=30).tp == 1  # exactly 30
    assert match_points(np.array([[18.0, 24.001]]), truth, radius_px=30).tp == 0


def test_empty_inputs():
    m = match_points(np.zeros((0, 2)), np.array([[1.0, 1.0]]), radius_px=30)
    assert (m.tp, m.fp, m.fn) == (0, 0, 1)
    m = match_points([[1.0, 1.0]], [], radius_px=30)
    assert (m.tp, m.fp, m.fn) == (0, 1, 0)
    m = match_points([], [], radius_px=30)
    assert (m.tp, m.fp, m.fn) == (0, 0, 0)


def test_bad_match_inputs():
    with pytest.raises(ConfigError, match=r"pred_xy must be an \(N, 2\) array"):
        match_points(np.zeros((3, 3)), np.zeros((1, 2)), radius_px=1)
    with pytest.raises(ConfigError, match="truth_xy holds non-finite"):
        match_points(np.zeros((1, 2)), np.array([[np.inf, 0.0]]), radius_px=1)
    with pytest.raises(ConfigError, match="radius_px must be a non-negative number"):
        match_points(np.zeros((1, 2)), np.zeros((1, 2)), radius_px=-1)


# ----------------------------------------------------------------------------- P/R/F1


def test_prf_values():
    assert prf(8, 2, 8) == pytest.approx((0.8, 0.5, 16 / 26))
    assert prf(0, 5, 5) == (0.0, 0.0, 0.0)


def test_prf_undefined_ratios_are_nan():
    p, r, f = prf(0, 0, 3)
    assert math.isnan(p) and r == 0.0 and f == 0.0
    assert all(math.isnan(v) for v in prf(0, 0, 0))


def test_prf_rejects_bad_counts():
    with pytest.raises(ConfigError, match="fp must be a non-negative integer, got -1"):
        prf(1, -1, 0)
    with pytest.raises(ConfigError, match=r"tp must be a non-negative integer, got 1\.5"):
        prf(1.5, 0, 0)


def test_micro_average_sums_counts_before_dividing():
    # Image A: 1 TP, 0 FP, 0 FN (F1 1.0); image B: 1 TP, 9 FP, 9 FN (F1 0.1).
    a = match_points([[0.0, 0.0]], [[0.0, 0.0]], radius_px=5)
    b_pred = np.array([[0.0, 0.0]] + [[100.0 * k, 500.0] for k in range(1, 10)])
    b_truth = np.array([[0.0, 0.0]] + [[100.0 * k, 0.0] for k in range(1, 10)])
    b = match_points(b_pred, b_truth, radius_px=5)
    assert (b.tp, b.fp, b.fn) == (1, 9, 9)
    micro = prf(a.tp + b.tp, a.fp + b.fp, a.fn + b.fn)[2]
    macro = (prf(a.tp, a.fp, a.fn)[2] + prf(b.tp, b.fp, b.fn)[2]) / 2
    assert micro == pytest.approx(4 / 22)
    assert macro == pytest.approx(0.55)


# ----------------------------------------------------------------------------- threshold


def naive_sweep(images):
    scores = np.unique(np.concatenate([np.asarray(s, dtype=float) for _, s, _, _ in images]))
    rows = []
    for t in scores[::-1]:
        tp = fp = fn = 0
        for pred, score, truth, radius in images:
            keep = np.asarray(score) >= t
            m = match_points(np.asarray(pred)[keep], truth, radius_px=radius)
            tp, fp, fn = tp + m.tp, fp + m.fp, fn + m.fn
        rows.append((t, tp, fp, fn))
    return np.array(rows)


def random_images(rng, n_images, *, clustered):
    images = []
    for _ in range(n_images):
        g = int(rng.integers(0, 8))
        truth = rng.uniform(0, 200, (g, 2)).round()
        n = int(rng.integers(0, 40))
        if clustered and g:
            # Predictions crowd around the truths: many overlapping radii.
            centres = truth[rng.integers(0, g, n)]
            pred = (centres + rng.normal(0, 12, (n, 2))).round()
        else:
            pred = rng.uniform(0, 200, (n, 2)).round()
        score = rng.integers(0, 12, n) / 11.0  # many ties
        images.append((pred, score, truth, float(rng.choice([8.0, 15.0, 30.0]))))
    return images


@pytest.mark.parametrize("seed", range(30))
def test_sweep_equals_rematching_at_every_threshold(seed):
    rng = np.random.default_rng(seed)
    images = random_images(rng, int(rng.integers(1, 5)), clustered=seed % 2 == 0)
    if sum(len(s) for _, s, _, _ in images) == 0:
        images.append((np.array([[1.0, 1.0]]), np.array([0.5]), np.zeros((0, 2)), 5.0))
    sweep = threshold_sweep(images)
    naive = naive_sweep(images)
    np.testing.assert_array_equal(sweep.thresholds, naive[:, 0])
    np.testing.assert_array_equal(sweep.tp, naive[:, 1])
    np.testing.assert_array_equal(sweep.fp, naive[:, 2])
    np.testing.assert_array_equal(sweep.fn, naive[:, 3])
    if sweep.n_truth:
        t, f1 = best_f1_threshold(images)
        f1_naive = 2 * naive[:, 1] / np.maximum(2 * naive[:, 1] + naive[:, 2] + naive[:, 3], 1)
        assert f1 == pytest.approx(f1_naive.max())
        assert t == naive[np.flatnonzero(f1_naive == f1_naive.max())[0], 0]


def test_best_threshold_simple_case():
    truth = np.array([[0.0, 0.0], [100.0, 0.0]])
    pred = np.array([[1.0, 0.0], [101.0, 0.0], [300.0, 0.0], [400.0, 0.0]])
    score = np.array([0.9, 0.6, 0.8, 0.3])
    # >= 0.9: F1 2/3; >= 0.8: 0.5; >= 0.6: 0.8; >= 0.3: 2/3.
    t, f1 = best_f1_threshold([(pred, score, truth, 30.0)])
    assert (t, f1) == (0.6, pytest.approx(0.8))


def test_best_threshold_ties_take_the_highest_threshold():
    truth = np.array([[0.0, 0.0]])
    pred = np.array([[0.0, 0.0], [500.0, 0.0], [600.0, 0.0]])
    # >= 0.9: F1 1.0; lower thresholds only add false positives.
    assert best_f1_threshold([(pred, [0.9, 0.5, 0.4], truth, 30.0)]) == (0.9, 1.0)
    # Two thresholds with the same F1: the higher one.
    pred = np.array([[0.0, 0.0], [500.0, 0.0], [1.0, 0.0]])
    truth = np.array([[0.0, 0.0], [2.0, 0.0]])
    sweep = threshold_sweep([(pred, [0.9, 0.5, 0.4], truth, 30.0)])
    assert sweep.f1.tolist() == pytest.approx([2 / 3, 0.5, 0.8])
    assert best_f1_threshold([(pred, [0.9, 0.5, 0.4], truth, 30.0)])[0] == 0.4


def test_threshold_without_predictions_or_truth():
    assert best_f1_threshold([(np.zeros((0, 2)), [], np.array([[0.0, 0.0]]), 30.0)]) == (
        math.inf,
        0.0,
    )
    with pytest.raises(ConfigError, match="at least one ground-truth point"):
        best_f1_threshold([(np.array([[0.0, 0.0]]), [0.5], np.zeros((0, 2)), 30.0)])


def test_threshold_input_errors():
    with pytest.raises(ConfigError, match="image 0: 2 predictions but 1 scores"):
        threshold_sweep([(np.zeros((2, 2)), [0.5], np.zeros((0, 2)), 30.0)])
    with pytest.raises(ConfigError, match="image 0: scores must be finite"):
        threshold_sweep([(np.zeros((1, 2)), [np.nan], np.zeros((0, 2)), 30.0)])
    with pytest.raises(ConfigError, match=r"image 1: expected \(pred_xy, scores, truth_xy"):
        threshold_sweep([(np.zeros((0, 2)), [], np.zeros((0, 2)), 3.0), "nope"])


def test_sweep_handles_thousands_of_candidates():
    rng = np.random.default_rng(0)
    images = []
    for _ in range(20):
        truth = rng.uniform(0, 4000, (25, 2))
        near = truth[rng.integers(0, 25, 300)] + rng.normal(0, 15, (300, 2))
        pred = np.concatenate([near, rng.uniform(0, 4000, (1700, 2))])
        images.append((pred, rng.random(len(pred)), truth, 30.0))
    sweep = threshold_sweep(images)
    assert sweep.thresholds.size == 40_000
    assert sweep.tp[-1] == 20 * 25 - sweep.fn[-1]
    # Spot-check a few thresholds against full re-matching.
    for k in (0, 999, 20_000, 39_999):
        t = sweep.thresholds[k]
        tp = sum(match_points(p[s >= t], g, radius_px=r).tp for p, s, g, r in images)
        assert sweep.tp[k] == tp


def test_points_beyond_any_image_match_nothing_and_do_not_crash():
    """Found by tests/reliability's fuzzer: a point at (1e308, 1e308) overflowed the tree."""
    far = [[1e308, 1e308], [-1e300, 5.0], [1e16, 1e16]]
    m = match_points(np.array([[10.0, 10.0], *far]), np.array([[12.0, 10.0], *far]), radius_px=5)
    assert (m.tp, m.fp, m.fn) == (1, 3, 3)
    assert m.pred_index.tolist() == [0] and m.truth_index.tolist() == [0]
