"""Tests of wsdal_wsi.detect.merge: greedy point merging (NumPy and torch)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wsdal_wsi.detect.merge import greedy_merge_torch, merge_points
from wsdal_wsi.errors import ConfigError


def naive_merge(xy: np.ndarray, score: np.ndarray, radius: float) -> list[int]:
    order = sorted(range(len(score)), key=lambda i: (-score[i], i))
    kept: list[int] = []
    removed = set()
    for i in order:
        if i in removed:
            continue
        kept.append(i)
        for j in range(len(score)):
            if np.hypot(*(xy[i] - xy[j])) <= radius:
                removed.add(j)
    return kept


@pytest.mark.parametrize("seed", range(6))
def test_merge_points_is_the_sequential_greedy(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 300))
    xy = rng.integers(0, 200, (n, 2)).astype(np.float64)  # integer grid: exact ties of distance
    score = rng.integers(0, 5, n).astype(np.float64)  # many equal scores
    radius = float(rng.choice([0.0, 3.0, 5.0, 12.0]))
    kept = merge_points(xy, score, radius_px=radius)
    assert kept.dtype == np.int64
    assert kept.tolist() == naive_merge(xy, score, radius)


def test_merge_points_radius_is_inclusive_and_ties_keep_the_first():
    xy = np.array([[0.0, 0.0], [3.0, 4.0], [20.0, 0.0]])
    assert merge_points(xy, np.array([1.0, 1.0, 1.0]), radius_px=5.0).tolist() == [0, 2]
    assert merge_points(xy, np.array([1.0, 1.0, 1.0]), radius_px=4.999).tolist() == [0, 1, 2]
    assert merge_points(xy, np.array([1.0, 2.0, 0.5]), radius_px=5.0).tolist() == [1, 2]


def test_merge_points_chain_keeps_the_far_end():
    # A > B > C on a line, A-B and B-C within the radius, A-C not: greedy keeps A and C.
    xy = np.array([[0.0, 0.0], [4.0, 0.0], [8.0, 0.0]])
    assert merge_points(xy, np.array([3.0, 2.0, 1.0]), radius_px=5.0).tolist() == [0, 2]


def test_merge_points_empty_and_bad_input():
    assert merge_points(np.zeros((0, 2)), np.zeros(0), radius_px=3).tolist() == []
    with pytest.raises(ConfigError, match="xy \\(N, 2\\) and score \\(N,\\)"):
        merge_points(np.zeros((3, 2)), np.zeros(2), radius_px=3)
    with pytest.raises(ConfigError, match="radius_px must be >= 0, got -1"):
        merge_points(np.zeros((1, 2)), np.zeros(1), radius_px=-1)
    with pytest.raises(ConfigError, match="finite"):
        merge_points(np.array([[np.nan, 0.0]]), np.zeros(1), radius_px=1)


@pytest.mark.parametrize("seed", range(4))
def test_torch_merge_equals_merge_points_per_image(seed):
    rng = np.random.default_rng(100 + seed)
    height, width, batch = 60, 90, 3
    mask = torch.from_numpy(rng.random((batch, 1, height, width)) < 0.04)
    index = mask.nonzero()
    b_idx, y_idx, x_idx = index[:, 0], index[:, 2], index[:, 3]
    scores = torch.from_numpy(rng.integers(0, 4, len(b_idx)).astype(np.float32))
    radius = float(rng.choice([0.5, 2.0, 5.0, 9.5]))
    keep = greedy_merge_torch(b_idx, y_idx, x_idx, scores, radius_px=radius, height=height)
    for b in range(batch):
        mine = np.flatnonzero(b_idx.numpy() == b)
        xy = np.column_stack([x_idx.numpy()[mine], y_idx.numpy()[mine]]).astype(np.float64)
        want = mine[merge_points(xy, scores.numpy()[mine].astype(np.float64), radius_px=radius)]
        got = [int(k) for k in keep if b_idx[k] == b]
        if radius < 1:  # integer points are never closer than 1 px: nothing merges
            assert sorted(got) == sorted(mine.tolist())
        else:
            assert got == want.tolist()


def test_torch_merge_of_nothing():
    empty = torch.zeros(0, dtype=torch.int64)
    keep = greedy_merge_torch(empty, empty, empty, torch.zeros(0), radius_px=5.0, height=10)
    assert keep.numel() == 0
