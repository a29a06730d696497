"""Tests of NS: the initial set, the first classifier, mining with its cap."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wsdal_wsi.errors import TrainingError
from wsdal_wsi.train.common import SampleSet, StageContext, read_table
from wsdal_wsi.train.ns import NSSettings, initial_training_set, run_ns


def test_initial_set_samples_negatives_per_image(blob_store):
    store, _ = blob_store(n_pos=6, n_neg=20, n_images=3, n_val_images=1)
    s = initial_training_set(store, neg_per_pos=2.0, seed=0)
    assert int(np.sum(s.labels == 1)) == 12  # train positives only
    neg = s.rows[s.origin == "random_negative"]
    assert len(neg) == 24 and (store.label[neg] == 0).all() and (store.split[neg] == "train").all()
    for k in ("img0", "img1"):
        assert int(np.sum(store.image_key[neg] == k)) == 12
    again = initial_training_set(store, neg_per_pos=2.0, seed=0)
    np.testing.assert_array_equal(s.rows, again.rows)


def test_run_ns_mines_and_caps(tmp_path, blob_store):
    store, _ = blob_store(n_pos=8, n_neg=30, n_images=2, n_val_images=1)
    ctx = StageContext(store=store, device=torch.device("cpu"), seed=0, width=4)
    # threshold 0: every candidate not yet in the set is "mined"; the cap keeps 1 per positive
    settings = NSSettings(epochs=2, batch_size=8, lr=2e-3, mine_threshold=0.0, mined_cap=1.0)
    stats = run_ns(ctx, tmp_path / "ns", settings)
    assert stats["n_positive_patches"] == 8 and stats["n_random_negatives"] == 8
    assert stats["n_candidates_scored"] == 30 and stats["n_above_threshold"] == 22
    assert stats["n_mined"] == 8 and stats["n_train_set"] == 24
    s = SampleSet.load(tmp_path / "ns" / "train_set.csv")
    mined = s.rows[s.origin == "mined_negative"]
    assert not np.isin(mined, s.rows[s.origin == "random_negative"]).any()
    scores = read_table(tmp_path / "ns" / "candidate_scores.csv")
    p = dict(zip(scores["row"].tolist(), scores["p_mitosis"].tolist(), strict=True))
    rest = set(p) - set(s.rows.tolist())
    assert min(p[r] for r in mined) >= max(p[r] for r in rest)  # highest scores kept
    assert (tmp_path / "ns" / "weights.pt").is_file()
    assert run_ns(ctx, tmp_path / "ns", settings) == stats  # done: not redone


def test_too_few_samples(tmp_path, blob_store):
    store, _ = blob_store(n_pos=1, n_neg=4, n_images=2, n_val_images=1)
    ctx = StageContext(store=store, device=torch.device("cpu"), width=4)
    with pytest.raises(TrainingError, match=r"too few samples to train \(1 mitosis"):
        run_ns(ctx, tmp_path / "ns", NSSettings(epochs=1))
