"""Tests of DMU's verdicts: outcomes (per sample and per click), removal, forget and SCD rates."""

from __future__ import annotations

import numpy as np
import pytest

from wsdal_wsi.train.dmu_outcomes import (
    dmu_removed,
    forget_rate,
    grouped_outcomes,
    sample_outcomes,
    scd_rates,
    unlearned_classes,
)


def test_outcomes_forget_rate_and_scd():
    out = sample_outcomes(
        np.array([5, 1, 2, 0]),
        np.array([0, 6, 3, 0]),
        np.array([1, 1, 5, 0]),
        noisy_min_fraction=0.5,
        clean_min_fraction=0.5,
    )
    assert out.tolist() == ["clean", "hard", "noisy", "hard"]
    np.testing.assert_allclose(
        forget_rate(np.array([3, 0, 1]), np.array([1, 0, 1])), [0.25, 0, 0.5]
    )
    f = np.array([[1.0, 0.0], [1.0, 0.1], [1.0, 0.8], [0.0, 1.0], [0.0, 1.0], [1.0, 1.0]])
    labels = np.array([0, 0, 0, 1, 1, 1])
    ref = np.array([True, True, False, True, True, False])  # centres from the clean ones
    scd, rate = scd_rates(f, labels, ref)
    assert scd[3] == pytest.approx(0.0) and rate[5] == pytest.approx(1.0)
    assert rate[2] == pytest.approx(1.0) and rate[:2].min() == 0.0
    assert scd[5] == pytest.approx(np.linalg.norm([2**-0.5, 2**-0.5 - 1]))


def test_a_click_and_its_copies_share_one_outcome_from_their_summed_counts():
    # group 0: a click and two copies; per copy the majority differs, summed it is clean
    #   (clean, hard, noisy) = (1, 0, 3), (2, 0, 2), (4, 0, 0) -> 7 / 12 clean, 5 / 12 noisy
    # group 1: a click and one copy, noisy 3 of 4 and 2 of 4 -> 5 / 8 noisy
    # group 2: a candidate on its own, hard; group 3: never right in any copy
    group = np.array([0, 0, 0, 1, 1, 2, 3, 3])
    n_clean = np.array([1, 2, 4, 1, 2, 1, 0, 0])
    n_hard = np.array([0, 0, 0, 0, 0, 3, 4, 4])
    n_noisy = np.array([3, 2, 0, 3, 2, 0, 0, 0])
    ever = np.array([True, True, True, True, False, True, False, False])
    per_copy = sample_outcomes(
        n_clean, n_hard, n_noisy, noisy_min_fraction=0.5, clean_min_fraction=0.5
    )
    assert per_copy.tolist()[:3] == ["noisy", "noisy", "clean"]  # a click half removed
    out, never = grouped_outcomes(
        group, n_clean, n_hard, n_noisy, ever, noisy_min_fraction=0.5, clean_min_fraction=0.5
    )
    assert out.tolist() == ["clean"] * 3 + ["noisy"] * 2 + ["hard"] + ["hard"] * 2
    # a copy that never learned does not make its click "never learned" if another did
    assert never.tolist() == [False] * 6 + [True, True]


def _with_learnt_classes(table):
    """The table and one clean sample of each class after it (DMU learnt both classes)."""
    extra = {"outcome": ["clean", "clean"], "never_learned": [0, 0], "origin": ["click"] * 2,
             "label": [0, 1], "trusted": [0, 0]}  # fmt: skip
    return {k: np.concatenate([v, np.array(extra[k], dtype=v.dtype)]) for k, v in table.items()}


def test_negative_clicks_are_audited_but_not_removed():
    table = _with_learnt_classes({
        "outcome": np.array(["noisy", "noisy", "clean", "hard", "noisy"], dtype=object),
        "never_learned": np.array([0, 0, 1, 1, 0]),
        "origin": np.array(
            ["click", "negative_click", "mined_negative", "negative_click", "jitter"], dtype=object
        ),
        "label": np.array([1, 0, 0, 0, 1]),
    })  # fmt: skip
    assert dmu_removed(table).tolist() == [True, False, True, False, True, False, False]
    assert dmu_removed(table, keep_negative_clicks=False).tolist() == [True] * 5 + [False] * 2


def test_a_trusted_answer_is_never_removed_and_older_tables_trust_nothing():
    table = _with_learnt_classes({
        "outcome": np.array(["noisy", "noisy", "clean", "noisy"], dtype=object),
        "never_learned": np.array([0, 1, 0, 0]),
        "origin": np.array(["click", "click", "click", "mined_negative"], dtype=object),
        "label": np.array([1, 1, 1, 0]),
        "trusted": np.array([1, 1, 0, 0]),
    })  # fmt: skip
    assert dmu_removed(table).tolist() == [False, False, False, True, False, False]
    older = {k: v for k, v in table.items() if k != "trusted"}
    assert dmu_removed(older).tolist() == [True, True, False, True, False, False]


def test_a_class_dmu_learnt_no_label_of_loses_none():
    table = {
        "outcome": np.array(["noisy", "noisy", "hard", "clean", "noisy", "clean"], dtype=object),
        "never_learned": np.array([0, 1, 0, 1, 0, 0]),  # the mitosis marked clean: never learnt
        "origin": np.array(["click"] * 4 + ["mined_negative"] * 2, dtype=object),
        "label": np.array([1, 1, 1, 1, 0, 0]),
    }
    assert unlearned_classes(table) == [1]
    assert dmu_removed(table).tolist() == [False, False, False, False, True, False]
    table["never_learned"][3] = 0  # one mitosis label learnt: the class's noisy ones go
    assert unlearned_classes(table) == []
    assert dmu_removed(table).tolist() == [True, True, False, False, True, False]
