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


@pytest.mark.parametrize(
    ("mode", "drop_last", "groups", "batch_size"),
    [("shuffle", False, None, 6), ("balanced", True, None, 7), ("shuffle", False, "pairs", 5)],
)
def test_processes_split_every_batch_of_the_single_process_epoch(
    arrays, mode, drop_last, groups, batch_size
):
    """Two processes (torchrun): each takes every other sample of each global batch, so
    together they serve the single-process epoch, in as many steps, two samples each."""
    patches, rows, labels = arrays
    kw = dict(batch_size=batch_size, device=torch.device("cpu"), mode=mode, seed=4,
              drop_last=drop_last)  # fmt: skip
    if groups:
        kw["groups"] = np.arange(30) // 2
    alone = PatchBatches(patches, rows, labels, **kw)
    ranks = [PatchBatches(patches, rows, labels, rank=r, world=2, **kw) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == len(alone)
    assert ranks[0].n_samples + ranks[1].n_samples == alone.n_samples
    for epoch in (0, 3):
        for whole, a, b in zip(alone.epoch(epoch), *(r.epoch(epoch) for r in ranks), strict=True):
            assert min(len(a.positions), len(b.positions)) >= 2
            np.testing.assert_array_equal(a.positions.numpy(), whole.positions.numpy()[0::2])
            np.testing.assert_array_equal(b.positions.numpy(), whole.positions.numpy()[1::2])


def test_a_last_batch_too_small_to_split_joins_the_previous(arrays):
    patches, rows, labels = arrays  # 30 samples in batches of 7: 7, 7, 7, 7 and 2
    kw = dict(batch_size=7, device=torch.device("cpu"), mode="shuffle")
    ranks = [PatchBatches(patches, rows, labels, rank=r, world=2, **kw) for r in (0, 1)]
    sizes = [[len(x.positions) for x in r.epoch(0)] for r in ranks]
    assert sizes == [[4, 4, 4, 5], [3, 3, 3, 4]]  # the 2 joined the fourth batch: 9 = 5 + 4


def test_processes_split_sequential_scoring_and_need_samples(arrays):
    patches, rows, labels = arrays
    kw = dict(batch_size=8, device=torch.device("cpu"), mode="sequential")
    shares = [PatchBatches(patches, rows, labels, rank=r, world=3, **kw) for r in range(3)]
    served = np.concatenate([x.positions.numpy() for s in shares for x in s.epoch(0)])
    assert sorted(served.tolist()) == list(range(30))  # every sample scored once
    from wsdal_wsi.errors import TrainingError

    with pytest.raises(TrainingError, match="too few for 4 processes"):
        PatchBatches(patches, rows[:7], labels[:7], batch_size=4, device=torch.device("cpu"),
                     mode="shuffle", rank=0, world=4)  # fmt: skip
