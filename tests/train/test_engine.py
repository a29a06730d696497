"""Tests of the training loop: it learns, it stops on a non-finite loss, it scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wsdal_wsi.errors import ConfigError, TrainingError
from wsdal_wsi.model.device import resolve_device
from wsdal_wsi.model.nets import CamNet
from wsdal_wsi.train.augment import IMAGENET_MEAN, IMAGENET_STD, center_crop
from wsdal_wsi.train.data import PatchBatches
from wsdal_wsi.train.engine import (
    evaluate,
    make_optimizer,
    p_mitosis,
    predict,
    to_input,
    train_one_epoch,
)

CPU = torch.device("cpu")


def _loss(model, batch):
    x = to_input(center_crop(batch.patches, 32).float() / 255, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    logits = model(x)
    return torch.nn.functional.cross_entropy(logits, batch.labels), {
        "acc": (logits.argmax(1) == batch.labels).float().mean()
    }


def test_training_reduces_the_loss_and_evaluate_scores(blob_store):
    store, _ = blob_store(n_pos=16, n_neg=16, n_images=2, n_val_images=1)
    torch.manual_seed(0)
    model = CamNet(width=4)
    opt = make_optimizer(model, lr=3e-3, weight_decay=0.0)
    tr = store.select(split="train")
    batches = PatchBatches(
        store.patches, tr, store.label[tr], batch_size=8, device=CPU, mode="shuffle", drop_last=True
    )
    first = train_one_epoch(model, opt, batches, CPU, compute_loss=_loss, epoch=0)
    for e in range(1, 6):
        last = train_one_epoch(model, opt, batches, CPU, compute_loss=_loss, epoch=e)
    assert last["loss"] < first["loss"]
    assert set(last) >= {"loss", "acc", "samples", "seconds", "samples_per_s", "lr"}
    assert last["samples"] == 32
    va = store.select(split="val")
    seq = PatchBatches(
        store.patches, va, store.label[va], batch_size=5, device=CPU, mode="sequential"
    )
    m = evaluate(model, seq, CPU, patch_px=32, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    assert m["n"] == 32 and m["n_positive"] == 16 and m["auc"] > 0.8
    p = predict(model, seq, CPU, fn=p_mitosis, patch_px=32, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    assert p.shape == (32,) and p.dtype == np.float32
    with pytest.raises(ValueError, match="sequential"):
        predict(
            model, batches, CPU, fn=p_mitosis, patch_px=32, mean=IMAGENET_MEAN, std=IMAGENET_STD
        )


def test_non_finite_loss_stops_the_run(blob_store):
    store, _ = blob_store(n_pos=4, n_neg=4, n_images=1, n_val_images=0)
    model = CamNet(width=4)
    opt = make_optimizer(model, lr=1e-3, weight_decay=0.0)
    rows = store.select()
    batches = PatchBatches(store.patches, rows, store.label[rows], batch_size=4, device=CPU)

    def nan_loss(m, b):
        loss, metrics = _loss(m, b)
        return loss * float("nan"), metrics

    with pytest.raises(TrainingError, match="non-finite loss at epoch 3, step 1"):
        train_one_epoch(model, opt, batches, CPU, compute_loss=nan_loss, epoch=2)


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ConfigError, match="'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")
