"""Tests of DMU: the memory rules against hand-computed values, outcomes, SCD, the stage."""

from __future__ import annotations

import numpy as np
import torch

from wsdal_wsi.train.common import SampleSet, StageContext
from wsdal_wsi.train.dmu import (
    DMUMemory,
    DMUSettings,
    read_dmu_table,
    run_dmu,
)

T = torch.tensor


def test_memory_update_rules_by_hand():
    mem = DMUMemory(2, ema=0.9)
    pos, y = T([0, 1]), T([1, 0])
    # warm-up sighting: thresholds move, learning events count, statuses do not
    mem.update(
        pos,
        y,
        T([[0.2, 0.8], [0.3, 0.7]]),
        T([[0.4, 0.6], [0.6, 0.4]]),
        T([[0.1, 0.9], [0.2, 0.8]]),
        count=False,
    )
    torch.testing.assert_close(mem.weak_prev, T([0.53, 0.52]))
    torch.testing.assert_close(mem.strong_prev, T([0.51, 0.51]))
    assert mem.n_learn.tolist() == [1, 0] and mem.n_clean.sum() == 0
    # sample 0: weak 0.6 > 0.53, strong 0.4 < 0.51 -> hard; fused wrong -> forgetting
    # sample 1: weak 0.3 < 0.52, strong 0.45 < 0.51 -> noisy; fused right -> learning
    mem.update(
        pos,
        y,
        T([[0.4, 0.6], [0.3, 0.7]]),
        T([[0.6, 0.4], [0.45, 0.55]]),
        T([[0.7, 0.3], [0.6, 0.4]]),
        count=True,
    )
    torch.testing.assert_close(mem.weak_prev, T([0.537, 0.538]))
    torch.testing.assert_close(mem.strong_prev, T([0.519, 0.514]))
    # both views above their thresholds -> clean; sample 0 learns again
    mem.update(
        pos,
        y,
        T([[0.1, 0.9], [0.8, 0.2]]),
        T([[0.2, 0.8], [0.7, 0.3]]),
        T([[0.1, 0.9], [0.9, 0.1]]),
        count=True,
    )
    assert mem.n_clean.tolist() == [1, 1]
    assert mem.n_hard.tolist() == [1, 0]
    assert mem.n_noisy.tolist() == [0, 1]
    assert mem.n_learn.tolist() == [2, 1]
    assert mem.n_forget.tolist() == [1, 0]
    torch.testing.assert_close(mem.weak_prev, T([0.5733, 0.5642]))
    assert mem.ever_correct.tolist() == [True, True]
    torch.testing.assert_close(mem.last_fused[1], T([0.9, 0.1]))
    # state round trip (resume)
    other = DMUMemory(2)
    other.load_state_dict(mem.state_dict())
    assert other.ema == 0.9 and other.n_forget.tolist() == [1, 0]


def test_dmu_flags_the_flipped_clicks(tmp_path, blob_store):
    store, truth = blob_store(n_pos=16, n_neg=32, n_images=3, n_val_images=1, flip_pos=4)
    ctx = StageContext(store=store, device=torch.device("cpu"), seed=0, width=8)
    rows = store.select(split="train")
    samples = SampleSet(rows, store.label[rows].astype(np.int64), store.source[rows].astype(object))
    stats = run_dmu(
        ctx,
        tmp_path / "dmu",
        samples,
        DMUSettings(epochs=6, warmup_epochs=1, batch_size=32, lr=2e-3),
    )
    assert stats["n"] == 96 and (tmp_path / "dmu" / "done.json").is_file()
    assert not (tmp_path / "dmu" / "checkpoint.pt").exists()
    t = read_dmu_table(tmp_path / "dmu")
    assert np.load(tmp_path / "dmu" / "features.npy").shape == (96, 128)
    assert set(t) >= {
        "index",
        "label",
        "clean",
        "hard",
        "noisy",
        "learn",
        "forget",
        "forget_rate",
        "scd_rate",
        "outcome",
        "p_mitosis",
    }
    post = t["clean"] + t["hard"] + t["noisy"]
    assert (post == 5).all()  # every sample counted once per post-warm-up epoch
    wrong = (t["label"] == 1) & ~truth["is_mitosis"][t["row"]]
    flagged = (t["outcome"] == "noisy") | (t["never_learned"] == 1)
    assert wrong.sum() == 8
    assert (flagged & wrong).sum() >= 6  # most injected errors found ...
    assert (flagged & ~wrong).sum() <= 4  # ... and few correct labels blamed
    again = run_dmu(ctx, tmp_path / "dmu", samples, DMUSettings())  # done: not redone
    assert again == stats


def test_a_click_and_its_jittered_copies_are_one_memory_unit(tmp_path):
    from wsdal_wsi.train.dmu import memory_units
    from wsdal_wsi.train.store import StoreWriter

    w = StoreWriter(tmp_path / "s", context_px=4, patch_px=4, target_mpp=0.25)
    base = {"image_key": "a", "slide": "a.tiff", "x_level0": 0.0, "y_level0": 0.0, "split": "train"}
    c0, c1, c2 = w.new_click_id(), w.new_click_id(), w.new_click_id()
    recs = [
        {**base, "label": 1, "source": "click", "click_id": c0},
        {**base, "label": 0, "source": "candidate"},
        {**base, "label": 1, "source": "jitter", "click_id": c0},
        {**base, "label": 1, "source": "click", "click_id": c1},
        {**base, "label": 0, "source": "negative_click", "click_id": c2},
        {**base, "label": 1, "source": "jitter", "click_id": c1},
        {**base, "label": 0, "source": "candidate"},
    ]
    w.append(np.zeros((len(recs), 3, 4, 4), np.uint8), recs)
    store = w.finish(settings={}, provenance={})
    rows = np.arange(len(recs))
    s = SampleSet(rows, store.label[rows].astype(np.int64), store.source[rows].astype(object))
    assert memory_units(s, store).tolist() == [0, 1, 0, 2, 3, 2, 4]
