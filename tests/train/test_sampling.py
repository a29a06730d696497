"""Which points become patches: snapping clicks to candidates, negatives clear of positives."""

import numpy as np

from wsdal_wsi.train.presets import ExtractSettings
from wsdal_wsi.train.sampling import kept_candidates, snap


def test_a_click_snaps_to_the_nearest_candidate_within_the_radius_only():
    clicks = np.array([[100.0, 100.0], [500.0, 500.0]])
    cand = np.array([[103.0, 104.0], [98.0, 90.0], [560.0, 500.0]])
    centres, moved = snap(clicks, cand, 8.0)
    assert moved == 1
    np.testing.assert_array_equal(centres, [[103.0, 104.0], [500.0, 500.0]])  # 60 px is too far
    same, none = snap(clicks, np.zeros((0, 2)), 8.0)
    assert none == 0 and (same == clicks).all()


def test_candidates_near_a_positive_are_not_negatives_and_the_cap_is_seeded():
    settings = ExtractSettings()
    cand = np.array([[0.0, 0.0], [1000.0, 0.0], [2000.0, 0.0]])
    near = np.array([[5.0, 0.0]])  # a positive click beside the first candidate
    kept, label = kept_candidates(cand, near, split="train", key="s", settings=settings,
                                  level0_per_px=1.0, rng=np.random.default_rng(0))  # fmt: skip
    assert (kept == cand).all() and label.tolist() == [-1, 0, 0]
    small = ExtractSettings(max_candidates_per_image=2)
    a, _ = kept_candidates(cand, near, split="train", key="s", settings=small,
                           level0_per_px=1.0, rng=np.random.default_rng(1))  # fmt: skip
    b, _ = kept_candidates(cand, near, split="train", key="s", settings=small,
                           level0_per_px=1.0, rng=np.random.default_rng(1))  # fmt: skip
    assert len(a) == 2 and (a == b).all()
