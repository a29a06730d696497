"""Tests of the shared stage machinery: tables, checkpoints, resuming inside a stage."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wsdal_wsi.errors import TrainingError
from wsdal_wsi.model.nets import CamNet
from wsdal_wsi.progress import NullProgress
from wsdal_wsi.train.augment import IMAGENET_MEAN, IMAGENET_STD, center_crop
from wsdal_wsi.train.common import SampleSet, StageDir, fit, read_table, write_table
from wsdal_wsi.train.data import PatchBatches
from wsdal_wsi.train.engine import to_input

CPU = torch.device("cpu")


class _Task:
    def __init__(self, owner):
        self.owner = owner

    def advance(self, amount=1.0):
        self.owner.advanced += 1
        if self.owner.advanced == self.owner.stop_at:
            raise KeyboardInterrupt

    def update(self, **kw):
        pass

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


class InterruptingProgress:
    """A Progress that raises KeyboardInterrupt after ``stop_at`` advances (a user's Ctrl-C)."""

    def __init__(self, stop_at):
        self.stop_at = stop_at
        self.advanced = 0

    def task(self, description, *, total=None):
        return _Task(self)


def test_tables_round_trip(tmp_path):
    write_table(
        tmp_path / "t.csv",
        {
            "a": np.array([1, 2]),
            "b": np.array([0.5, 1e-9]),
            "c": np.array(["x", "y"], dtype=object),
        },
    )
    t = read_table(tmp_path / "t.csv")
    assert t["a"].dtype == np.int64 and t["b"].dtype == np.float64 and t["c"].tolist() == ["x", "y"]
    s = SampleSet(np.array([3, 1]), np.array([1, 0]), np.array(["click", "mined_negative"], object))
    s.save(tmp_path / "s.csv")
    back = SampleSet.load(tmp_path / "s.csv")
    assert back.rows.tolist() == [3, 1] and back.origin.tolist() == ["click", "mined_negative"]
    assert len(back.subset(back.labels == 1)) == 1


def _run(stage, store, progress, epochs=3):
    torch.manual_seed(0)
    model = CamNet(width=4)
    rows = store.select()
    batches = PatchBatches(
        store.patches,
        rows,
        store.label[rows],
        batch_size=8,
        device=CPU,
        mode="shuffle",
        drop_last=True,
    )
    counter = {"n": 0}

    def loss(m, b):
        x = to_input(center_crop(b.patches, 32).float() / 255, mean=IMAGENET_MEAN, std=IMAGENET_STD)
        return torch.nn.functional.cross_entropy(m(x), b.labels), {}

    def get_state():
        return {"counter": torch.tensor(counter["n"])}

    def set_state(s):
        counter["n"] = int(s["counter"])

    def end(epoch):
        counter["n"] += 1
        return {"counter": counter["n"]}

    metrics = fit(
        model,
        batches,
        stage=stage,
        device=CPU,
        epochs=epochs,
        lr=1e-3,
        weight_decay=0.0,
        compute_loss=loss,
        config={"k": 1},
        progress=progress,
        description="t",
        end_epoch=end,
        get_state=get_state,
        set_state=set_state,
    )
    return model, metrics


def test_fit_resumes_after_an_interrupt_where_it_stopped(tmp_path, blob_store):
    store, _ = blob_store(n_pos=8, n_neg=8, n_images=1, n_val_images=0)
    ref_model, _ = _run(StageDir(tmp_path / "ref"), store, NullProgress())

    stage = StageDir(tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        _run(stage, store, InterruptingProgress(stop_at=4))  # 2 batches per epoch: in epoch 2
    ckpt = stage.load_checkpoint()
    assert ckpt["epoch"] == 0 and set(ckpt) >= {"model", "optimizer", "scheduler", "config"}
    model, metrics = _run(stage, store, NullProgress())
    assert [m["epoch"] for m in metrics] == [1, 2, 3]
    assert [m["counter"] for m in metrics] == [1, 2, 3]  # the stage's own state came back
    # resuming gives the same weights as an uninterrupted run (CPU, seeded)
    for a, b in zip(model.state_dict().values(), ref_model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    assert len(stage.read_metrics()) == 3


def test_fit_refuses_a_checkpoint_of_other_settings(tmp_path, blob_store):
    store, _ = blob_store(n_pos=8, n_neg=8, n_images=1, n_val_images=0)
    stage = StageDir(tmp_path / "a")
    _run(stage, store, NullProgress(), epochs=1)
    with pytest.raises(TrainingError, match="other settings"):
        _run(stage, store, NullProgress(), epochs=2)


def test_stage_dir_done_and_bad_files(tmp_path):
    stage = StageDir(tmp_path / "s")
    assert stage.done is None
    stage.write_done({"n": 3})
    assert stage.done["n"] == 3 and "finished" in stage.done
    (stage.path / "done.json").write_text("{")
    with pytest.raises(TrainingError, match=r"done\.json: unreadable"):
        _ = stage.done
    (stage.path / "checkpoint.pt").write_text("junk")
    with pytest.raises(TrainingError, match="unreadable checkpoint"):
        stage.load_checkpoint()


def test_stage_dir_weights_round_trip_and_bad_file(tmp_path):
    stage = StageDir(tmp_path / "s")
    torch.manual_seed(0)
    a, b = CamNet(width=4), CamNet(width=4)
    stage.save_weights(a)
    assert [p.name for p in stage.path.iterdir()] == ["weights.pt"]  # no temp file left
    stage.load_weights(b)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k
    (stage.path / "weights.pt").write_text("junk")
    with pytest.raises(TrainingError, match=r"weights\.pt: unreadable weights"):
        stage.load_weights(b)
