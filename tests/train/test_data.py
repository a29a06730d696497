"""Tests of the batch server: sampling modes, determinism, cached vs streamed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wsdal_wsi.train.data import PatchBatches


@pytest.fixture
def arrays():
    patches = np.arange(40 * 3 * 4 * 4, dtype=np.int64).reshape(40, 3, 4, 4).astype(np.uint8)
    patches[:, 0, 0, 0] = np.arange(40)  # the row number, readable back
    rows = np.arange(5, 35)
    labels = (rows < 10).astype(np.int64)  # 5 positives, 25 negatives
    return patches, rows, labels


def _ids(batches, epoch):
    return np.concatenate([b.patches[:, 0, 0, 0].numpy() for b in batches.epoch(epoch)])


def test_shuffle_serves_every_sample_once(arrays):
    patches, rows, labels = arrays
    b = PatchBatches(
        patches, rows, labels, batch_size=7, device=torch.device("cpu"), mode="shuffle"
    )
    assert len(b) == 5
    ids = _ids(b, 0)
    assert sorted(ids.tolist()) == rows.tolist()
    np.testing.assert_array_equal(ids, _ids(b, 0))  # same epoch, same order
    assert not np.array_equal(ids, _ids(b, 1))
    for batch in b.epoch(2):  # labels and positions follow the patches
        np.testing.assert_array_equal(
            rows[batch.positions.numpy()], batch.patches[:, 0, 0, 0].numpy()
        )
        np.testing.assert_array_equal(labels[batch.positions.numpy()], batch.labels.numpy())


def test_balanced_sampling_balances_classes(arrays):
    patches, rows, labels = arrays
    b = PatchBatches(
        patches, rows, labels, batch_size=10, device=torch.device("cpu"), mode="balanced", seed=1
    )
    ys = np.concatenate([np.concatenate([x.labels.numpy() for x in b.epoch(e)]) for e in range(40)])
    assert abs(ys.mean() - 0.5) < 0.05  # 1/6 positives in the set, half in the batches


def test_streamed_equals_cached(arrays):
    patches, rows, labels = arrays
    kw = dict(batch_size=8, device=torch.device("cpu"), mode="shuffle", seed=3)
    cached = PatchBatches(patches, rows, labels, **kw)
    streamed = PatchBatches(patches, rows, labels, cache_bytes=0, **kw)
    assert cached.cached and not streamed.cached
    for a, b in zip(cached.epoch(1), streamed.epoch(1), strict=True):
        torch.testing.assert_close(a.patches, b.patches)
        torch.testing.assert_close(a.positions, b.positions)


def test_sequential_and_drop_last(arrays):
    patches, rows, labels = arrays
    b = PatchBatches(
        patches, rows, labels, batch_size=8, device=torch.device("cpu"), mode="sequential"
    )
    np.testing.assert_array_equal(_ids(b, 5), rows)
    d = PatchBatches(
        patches,
        rows,
        labels,
        batch_size=8,
        device=torch.device("cpu"),
        mode="shuffle",
        drop_last=True,
    )
    assert len(d) == 3 and d.n_samples == 24 and len(_ids(d, 0)) == 24
    with pytest.raises(ValueError, match="30 rows but 2 labels"):
        PatchBatches(patches, rows, labels[:2], batch_size=8, device=torch.device("cpu"))


def test_no_batch_of_one(arrays):
    patches, rows, labels = arrays  # 30 samples
    b = PatchBatches(
        patches, rows[:29], labels[:29], batch_size=7, device=torch.device("cpu"), mode="shuffle"
    )
    sizes = [len(x.labels) for x in b.epoch(0)]
    assert sizes == [7, 7, 7, 8] and len(b) == 4


def test_groups_serve_one_member_each(arrays):
    patches, rows, labels = arrays
    groups = np.arange(30) // 3  # 10 groups of 3 copies
    b = PatchBatches(
        patches,
        rows,
        labels,
        batch_size=4,
        device=torch.device("cpu"),
        mode="shuffle",
        groups=groups,
    )
    assert b.n_per_epoch == 10 and len(b) == 3 and b.n_samples == 10
    seen = []
    for e in range(6):
        pos = np.concatenate([x.positions.numpy() for x in b.epoch(e)])
        assert sorted(groups[pos].tolist()) == list(range(10))  # every group once
        seen.append(pos)
    assert len({int(p) for s in seen for p in s}) > 10  # different copies across epochs
    with pytest.raises(ValueError, match="groups need shuffle mode"):
        PatchBatches(
            patches,
            rows,
            labels,
            batch_size=4,
            device=torch.device("cpu"),
            mode="balanced",
            groups=groups,
        )
