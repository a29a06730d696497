"""Tests of DLE: level clustering order, validation by an out-of-fold classifier, the stage."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wsdal_wsi.errors import ConfigError
from wsdal_wsi.train.dle import (
    DLESettings,
    assign_levels,
    kept_samples,
    network_predict,
    read_levels,
    run_dle,
    validate_levels,
)


def test_levels_are_ordered_hardest_first():
    rng = np.random.default_rng(0)
    centres = np.array([[0.1, 0.1], [0.9, 0.8], [0.5, 0.5]])
    truth = np.repeat([2, 0, 1], 20)  # easiest, hardest, middle
    x = centres[np.repeat([0, 1, 2], 20)] + rng.normal(0, 0.03, (60, 2))
    level = assign_levels(x, levels=3, seed=0)
    np.testing.assert_array_equal(level, truth)
    assert assign_levels(x[:1], levels=3).tolist() == [0]


@pytest.mark.parametrize("validator", ["network", "logistic"])
def test_validation_keeps_predictable_levels_only(validator):
    rng = np.random.default_rng(1)
    level = np.repeat([0, 1, 2], 30)
    informative = np.eye(3)[level] * 3 + rng.normal(0, 0.3, (90, 3))
    hits = validate_levels(informative, level, draws=6, seed=0, validator=validator)
    assert hits.min() >= 5
    noise = rng.normal(0, 1, (90, 3))
    hits_noise = validate_levels(noise, level, draws=6, seed=0, validator=validator)
    assert hits_noise.mean() < 0.55 * 6
    # a level with a single member cannot be cross-validated
    lv = np.array([0] * 10 + [1] * 10 + [2])
    h = validate_levels(rng.normal(0, 1, (21, 3)), lv, draws=4, validator=validator)
    assert h[-1] == 0


def test_network_validation_is_deterministic_for_a_seed():
    rng = np.random.default_rng(2)
    level = np.repeat([0, 1, 2], 20)
    feats = np.eye(5)[level] + rng.normal(0, 1.0, (60, 5))  # partly predictable
    torch_rng = torch.get_rng_state()
    a = validate_levels(feats, level, draws=4, seed=3, validator="network")
    b = validate_levels(feats, level, draws=4, seed=3, validator="network")
    np.testing.assert_array_equal(a, b)
    assert torch.equal(torch.get_rng_state(), torch_rng)  # the global RNG is left alone
    # the network itself: same seed, same predictions; classes keep their own values
    y = np.repeat([0, 2], 30)
    x = np.eye(2)[y // 2] * 2 + rng.normal(0, 0.5, (60, 2))
    p1 = network_predict(x, y, x, seed=5, steps=50)
    np.testing.assert_array_equal(p1, network_predict(x, y, x, seed=5, steps=50))
    assert set(p1.tolist()) <= {0, 2} and np.mean(p1 == y) > 0.9


def test_the_network_trains_on_one_thread_and_gives_the_callers_threads_back(monkeypatch):
    rng = np.random.default_rng(4)
    y = np.repeat([0, 1, 2], 40)
    x = np.eye(3)[y] + rng.normal(0, 0.7, (120, 3))
    seen = []
    real_step = torch.optim.Adam.step

    def step(self, *args, **kwargs):
        seen.append(torch.get_num_threads())
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", step)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        two = network_predict(x, y, x, seed=1, steps=20)
        assert torch.get_num_threads() == 2  # the caller's setting, restored
        torch.set_num_threads(1)
        one = network_predict(x, y, x, seed=1, steps=20)
    finally:
        torch.set_num_threads(before)
    assert seen == [1] * 40
    np.testing.assert_array_equal(one, two)  # the thread count changes no prediction


def test_unknown_validator_is_refused():
    with pytest.raises(
        ConfigError, match=r"dle\.validator must be one of network, logistic.*'forest'"
    ):
        DLESettings(validator="forest")
    with pytest.raises(ValueError, match="'forest'"):
        validate_levels(np.zeros((4, 2)), np.array([0, 0, 1, 1]), validator="forest")


def _table(n_hard_per_class=30, seed=0):
    rng = np.random.default_rng(seed)
    rows, labels, outcome, fr, scd = [], [], [], [], []
    for c in (0, 1):
        for o, n in (("clean", 10), ("hard", n_hard_per_class), ("noisy", 4)):
            rows += list(range(len(rows), len(rows) + n))
            labels += [c] * n
            outcome += [o] * n
            fr += list(rng.uniform(0, 1, n))
            scd += list(rng.uniform(0, 1, n))
    n = len(rows)
    return {
        "index": np.arange(n),
        "row": np.array(rows) + 100,
        "label": np.array(labels),
        "origin": np.array(["x"] * n, dtype=object),
        "outcome": np.array(outcome, dtype=object),
        "never_learned": np.zeros(n, np.int64),
        "forget_rate": np.array(fr),
        "scd_rate": np.array(scd),
    }


@pytest.mark.parametrize("validator", ["network", "logistic"])
def test_run_dle_drops_noisy_and_unvalidated(tmp_path, validator):
    t = _table()
    # features that follow (forget_rate, scd_rate) so most levels validate
    feats = np.stack([t["forget_rate"], t["scd_rate"]], axis=1) * 5
    settings = DLESettings(draws=4, validator=validator, drop_unvalidated=True)
    stats = run_dle(tmp_path / "dle", t, feats, settings, seed=0)
    assert stats["dropped_noisy"] == 8 and stats["validator"] == validator
    hard = read_levels(tmp_path / "dle")["draws"] > 0
    assert hard.sum() == 60 and read_levels(tmp_path / "dle")["hits"][hard].mean() > 0.5 * 4
    kept, subclass = kept_samples(tmp_path / "dle")
    assert stats["n_kept"] == len(kept) <= 2 * (10 + 30)
    assert not np.isin(t["row"][t["outcome"] == "noisy"], kept.rows).any()
    # clean samples: level 3 (easy), subclasses label * 4 + level
    clean_rows = t["row"][t["outcome"] == "clean"]
    assert np.isin(clean_rows, kept.rows).all()
    sub_of = dict(zip(kept.rows.tolist(), subclass.tolist(), strict=True))
    assert {sub_of[r] for r in clean_rows[:10]} == {3} and {sub_of[r] for r in clean_rows[10:]} == {
        7
    }
    assert set(subclass.tolist()) <= set(range(8))
    assert stats["classes"]["label1"]["validated"] is True


def test_unvalidated_hard_samples_keep_their_level_by_default(tmp_path):
    t = _table()
    rng = np.random.default_rng(3)
    feats = rng.normal(0, 1, (len(t["row"]), 4))  # uninformative: many fail validation
    stats = run_dle(tmp_path / "keep", t, feats, DLESettings(draws=4, validator="logistic"))
    assert stats["drop_unvalidated"] is False
    levels = read_levels(tmp_path / "keep")
    hard = levels["draws"] > 0
    failed = hard & (levels["hits"] < 0.5 * 4)
    assert failed.sum() == sum(stats["classes"][f"label{c}"]["unvalidated"] for c in (0, 1)) > 5
    # every hard sample stays, with its level; only the noisy ones leave
    kept, subclass = kept_samples(tmp_path / "keep")
    assert len(kept) == 2 * (10 + 30) == stats["n_kept"]
    assert all(stats["classes"][f"label{c}"]["unvalidated_dropped"] == 0 for c in (0, 1))
    sub_of = dict(zip(kept.rows.tolist(), subclass.tolist(), strict=True))
    for row, label, level in zip(
        levels["row"][failed], levels["label"][failed], levels["level"][failed], strict=True
    ):
        assert sub_of[row] == label * 4 + level and 0 <= level < 3
    # the method's step removes exactly those
    drop = DLESettings(draws=4, validator="logistic", drop_unvalidated=True)
    run_dle(tmp_path / "drop", t, feats, drop)
    dropped, _ = kept_samples(tmp_path / "drop")
    expected = levels["row"][(levels["kept"] == 1) & ~failed]
    assert np.array_equal(np.sort(dropped.rows), np.sort(expected))


def test_few_hard_samples_are_kept_at_the_middle_level(tmp_path):
    t = _table(n_hard_per_class=3)
    feats = np.zeros((len(t["row"]), 2))
    stats = run_dle(tmp_path / "dle", t, feats, DLESettings(min_hard=12), seed=0)
    assert stats["classes"]["label0"]["validated"] is False
    kept, subclass = kept_samples(tmp_path / "dle")
    assert len(kept) == 2 * (10 + 3)
    assert sorted(set(subclass.tolist())) == [1, 3, 5, 7]


def test_negative_clicks_are_never_removed(tmp_path):
    t = _table()
    n = len(t["row"])
    # the last 4 noisy label-0 samples and 6 of the label-0 hard ones are negative clicks
    neg_noisy = np.flatnonzero((t["label"] == 0) & (t["outcome"] == "noisy"))
    neg_hard = np.flatnonzero((t["label"] == 0) & (t["outcome"] == "hard"))[:6]
    t["origin"] = np.array(["x"] * n, dtype=object)
    t["origin"][np.concatenate([neg_noisy, neg_hard])] = "negative_click"
    rng = np.random.default_rng(3)
    feats = rng.normal(0, 1, (n, 4))  # uninformative: many hard samples fail validation
    # the protection does not depend on the validator: the faster one
    on = DLESettings(draws=4, validator="logistic", drop_unvalidated=True)
    stats = run_dle(tmp_path / "on", t, feats, on, seed=0)
    kept, subclass = kept_samples(tmp_path / "on")
    protected = t["row"][np.concatenate([neg_noisy, neg_hard])]
    assert np.isin(protected, kept.rows).all()
    sub_of = dict(zip(kept.rows.tolist(), subclass.tolist(), strict=True))
    assert all(0 <= sub_of[r] < 3 for r in protected)  # label 0, a hard level
    assert stats["dropped_noisy"] == 4 and stats["protected_negative_clicks"] == 10
    assert stats["classes"]["label0"]["protected"] == 10
    # without the protection they leave like any other noisy / unvalidated sample
    off_settings = DLESettings(
        draws=4, validator="logistic", keep_negative_clicks=False, drop_unvalidated=True
    )
    run_dle(tmp_path / "off", t, feats, off_settings, seed=0)
    off, _ = kept_samples(tmp_path / "off")
    assert not np.isin(t["row"][neg_noisy], off.rows).any()
    assert len(off) < len(kept)
