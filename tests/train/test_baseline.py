"""Tests of plain cross-entropy training (the baseline and the ablations)."""

from __future__ import annotations

import numpy as np
import torch

from wsdal_wsi.train.baseline import CESettings, train_ce
from wsdal_wsi.train.common import StageContext
from wsdal_wsi.train.ns import initial_training_set
from wsdal_wsi.train.threshold import heldout_metrics


def test_train_ce_learns_and_reloads(tmp_path, blob_store):
    store, _ = blob_store(n_pos=16, n_neg=32, n_images=3, n_val_images=1)
    ctx = StageContext(store=store, device=torch.device("cpu"), seed=0, width=8)
    samples = initial_training_set(store, seed=0)
    settings = CESettings(epochs=4, batch_size=16, lr=3e-3, input_px=32, proj_dim=16)
    model, stats = train_ce(ctx, tmp_path / "b", samples, settings)
    assert stats["n"] == 64 and stats["n_positive"] == 32 and stats["stage"] == "baseline"
    m = heldout_metrics(model, ctx)
    assert m["n"] == 48 and m["auc"] > 0.9  # blobs are easy; held-out image
    again, stats2 = train_ce(ctx, tmp_path / "b", samples, settings)
    assert stats2 == stats
    x = torch.from_numpy(np.array(store.patches[:2, :, 4:36, 4:36])).float() / 255
    torch.testing.assert_close(again(x), model(x))
