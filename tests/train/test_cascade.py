"""Tests of the cascade's training stage: distillation, and the thresholds it chooses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wsdal_wsi.errors import ConfigError
from wsdal_wsi.train.baseline import CESettings, train_ce
from wsdal_wsi.train.cascade import CascadeSettings, cascade_table, run_cascade
from wsdal_wsi.train.common import SampleSet, StageContext
from wsdal_wsi.train.store import StoreWriter

from .conftest import blob_patch


def test_the_table_keeps_the_detections_at_every_threshold():
    rng = np.random.default_rng(0)
    n = 2000
    prob = rng.beta(0.3, 3.0, n)
    first = np.log(prob / (1 - prob)) + rng.normal(0, 0.7, n)  # a noisy first stage
    xy = np.column_stack([np.arange(n) * 100.0, np.zeros(n)])  # far apart: no merging
    image = np.array(["a", "b"] * (n // 2))
    table = cascade_table(first, prob, xy, image, radius_px=np.full(n, 20.0),
                          thresholds=(0.1, 0.5, 0.9, 0.999), keep_fraction=0.995)  # fmt: skip
    assert [r["final_threshold"] for r in table] == [0.1, 0.5, 0.9, 0.999]
    cuts = [r["first_threshold"] for r in table]
    assert cuts == sorted(cuts)  # a higher threshold never gets a lower cut
    for row in table[:3]:
        det = prob >= row["final_threshold"]
        assert row["detections"] == int(det.sum())
        kept = int((first[det] >= row["first_threshold"]).sum())
        assert kept == row["kept"] and kept >= 0.995 * row["detections"]
        assert row["skipped_fraction"] == pytest.approx(
            float((first < row["first_threshold"]).mean())
        )
    assert table[0]["skipped_fraction"] > 0.3
    # no detection at 0.999: the cut of the threshold below, not "skip everything"
    assert (
        table[3]["detections"] == 0 and table[3]["first_threshold"] == table[2]["first_threshold"]
    )


def test_merged_away_candidates_are_not_detections():
    # two candidates 5 px apart: the weaker is merged into the stronger and needs no protection
    first = np.array([3.0, -9.0])
    prob = np.array([0.95, 0.9])
    xy = np.array([[0.0, 0.0], [5.0, 0.0]])
    (row,) = cascade_table(first, prob, xy, np.array(["a", "a"]), radius_px=np.full(2, 20.0),
                           thresholds=(0.5,), keep_fraction=1.0)  # fmt: skip
    assert row["detections"] == 1 and row["first_threshold"] == 3.0 and row["kept"] == 1


def _mixed_store(root, *, n_images=4, n_val=1, per_image=60, seed=0):
    """Blob patches where a quarter of the candidates show a mitosis (what distillation sees)."""
    rng = np.random.default_rng(seed)
    w = StoreWriter(root, context_px=40, patch_px=32, target_mpp=0.25)
    truth = []
    for i in range(n_images):
        key, split = f"img{i}", "val" if i >= n_images - n_val else "train"
        mitosis = rng.random(per_image) < 0.25
        pats = np.stack([blob_patch(rng, mitosis=bool(m), size=40) for m in mitosis])
        recs = [{"image_key": key, "slide": f"{key}.tiff", "x_level0": 100.0 * j,
                 "y_level0": 0.0, "label": 0, "source": "candidate", "split": split,
                 "click_id": -1} for j in range(per_image)]  # fmt: skip
        w.append(pats, recs)
        w.add_image({"key": key, "slide": f"{key}.tiff", "mpp": 0.25, "split": split,
                     "has_regions": False, "n_positive": 0, "n_negative_clicks": 0,
                     "n_candidates": per_image, "area_mm2": 0.1})  # fmt: skip
        truth.append(mitosis)
    return w.finish(settings={"kind": "mixed blobs"}, provenance={"test": True}), np.concatenate(
        truth
    )


@pytest.fixture
def teacher_and_context(tmp_path):
    store, truth = _mixed_store(tmp_path / "store")
    ctx = StageContext(store=store, device=torch.device("cpu"), seed=0, width=8)
    rows = np.arange(len(store))
    samples = SampleSet(rows, truth.astype(np.int64), np.array(["candidate"] * len(rows), object))
    settings = CESettings(epochs=4, batch_size=16, lr=3e-3, input_px=32, proj_dim=16)
    teacher, _ = train_ce(ctx, tmp_path / "teacher", samples, settings)
    return teacher, ctx


SMALL = CascadeSettings(epochs=12, min_steps=400, batch_size=16, lr=5e-3, width=4)


def test_distilled_first_stage_skips_the_easy_candidates(teacher_and_context, tmp_path):
    teacher, ctx = teacher_and_context
    first, stats = run_cascade(ctx, tmp_path / "cascade", teacher, threshold=0.5,
                               merge_radius_um=5.0, settings=SMALL)  # fmt: skip
    assert first is not None and not first.training
    row = stats["at_model_threshold"]
    assert row["final_threshold"] == 0.5 and row["detections"] >= 5
    assert row["kept"] == row["detections"]  # fewer than 200: 99.5 % means all of them
    assert row["skipped_fraction"] > 0.3  # the round pale nuclei are easy to turn away
    assert stats["n_train"] == 180 and stats["n_val_candidates"] == 60
    assert (tmp_path / "cascade" / "weights.pt").is_file()
    assert not (tmp_path / "cascade" / "checkpoint.pt").exists()
    # finished: reloaded, not trained again
    again, stats2 = run_cascade(ctx, tmp_path / "cascade", teacher, threshold=0.5,
                                merge_radius_um=5.0, settings=SMALL)  # fmt: skip
    assert stats2 == stats
    x = torch.rand(3, 3, 32, 32)
    torch.testing.assert_close(again.logit(x), first.logit(x))


def test_the_first_stage_learns_to_answer_as_the_final_model_whatever_the_look(
    teacher_and_context, tmp_path
):
    """Distilled from recoloured, blurred patches (the default), the first stage's logits
    of recoloured, blurred validation patches follow the final model's scores of the
    patches as stored more closely than when distilled from the patches as they are."""
    import dataclasses

    from wsdal_wsi.train.augment import APPEARANCE, recolour
    from wsdal_wsi.train.cascade import _centre
    from wsdal_wsi.train.engine import to_input

    def to_model_input(x, ctx):
        return to_input(x, mean=ctx.mean, std=ctx.std)

    teacher, ctx = teacher_and_context
    rows = ctx.store.select(split="val", source="candidate")
    x = _centre(torch.from_numpy(np.asarray(ctx.store.patches[rows])), ctx.patch_px).float() / 255.0
    looks = torch.cat([recolour(x, params=APPEARANCE, generator=torch.Generator().manual_seed(k))
                       for k in range(4)])  # fmt: skip
    with torch.no_grad():
        target = teacher(to_model_input(x, ctx)).log_softmax(1).diff(dim=1)[:, 0].repeat(4)
    errors = {}
    for appearance in (False, True):
        settings = dataclasses.replace(SMALL, appearance=appearance)
        first, _ = run_cascade(ctx, tmp_path / f"c{appearance}", teacher, threshold=0.5,
                               merge_radius_um=5.0, settings=settings)  # fmt: skip
        with torch.no_grad():
            errors[appearance] = float((first.logit(to_model_input(looks, ctx)) - target)
                                       .abs().median())  # fmt: skip
    assert errors[True] < 0.8 * errors[False], errors


def test_no_validation_slide_means_no_cascade(tmp_path):
    store, _ = _mixed_store(tmp_path / "store", n_val=0)
    ctx = StageContext(store=store, device=torch.device("cpu"), seed=0, width=8)
    first, stats = run_cascade(ctx, tmp_path / "c", torch.nn.Identity(), threshold=0.5,
                               merge_radius_um=5.0, settings=SMALL)  # fmt: skip
    assert first is None and stats["table"] is None and stats["reason"] == "no validation slide"


def test_settings_are_checked():
    with pytest.raises(ConfigError, match="keep_fraction"):
        CascadeSettings(keep_fraction=1.5)
