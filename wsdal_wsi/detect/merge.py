"""Greedy merging of nearby points (non-maximum suppression for points).

One object, one point: candidates within a few µm of a stronger one are merged
into it, and so are detections at inference (an anaphase figure has two
chromatin masses). The rule is the sequential greedy one: visit points by
descending score (ties: lower index first); keep a point still present and drop
every other point within the radius (inclusive).

Two implementations give exactly that result: :func:`merge_points` (NumPy +
SciPy, any float coordinates) and :func:`greedy_merge_torch` (integer pixel
coordinates, on the device, batched over images; used by
:func:`wsdal_wsi.detect.candidates.detect_candidates`). Both compute the greedy result
in parallel rounds, with no Python loop over points: an undecided point is kept
when no undecided neighbour outranks it, then the neighbours of kept points are
dropped; the highest-ranked undecided point is always kept, so the rounds end.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.spatial import cKDTree

from wsdal_wsi.errors import ConfigError

__all__ = ["greedy_merge_torch", "merge_points"]


def _finite(value: object) -> bool:
    try:
        return math.isfinite(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def _rank_desc(scores: torch.Tensor) -> torch.Tensor:
    """Rank of each element in descending score order, ties by index (0 = first)."""
    order = torch.argsort(scores, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=order.device)
    return rank


def greedy_merge_torch(
    b_idx: torch.Tensor,
    y_idx: torch.Tensor,
    x_idx: torch.Tensor,
    scores: torch.Tensor,
    *,
    radius_px: float,
    height: int,
) -> torch.Tensor:
    """Greedy merging of integer pixel points on the device.

    Parameters
    ----------
    b_idx, y_idx, x_idx : torch.Tensor
        ``(N,)`` int64 image index, row and column of each point, sorted by
        ``(b, y, x)`` (the order of ``torch.nonzero`` on a ``(B, 1, H, W)`` mask).
    scores : torch.Tensor
        ``(N,)`` float scores.
    radius_px : float
        Merging radius in pixels (inclusive); below 1 nothing merges.
    height : int
        Image height ``H`` in pixels (keeps images apart).

    Returns
    -------
    torch.Tensor
        ``(K,)`` int64 indices of the kept points in descending score (ties:
        lower index first), on the points' device. Points of different images
        never merge; within an image the result is :func:`merge_points`'s.
    """
    n = scores.numel()
    device = scores.device
    rank = _rank_desc(scores)
    if n == 0 or radius_px < 1.0:
        return torch.argsort(rank)
    reach = math.floor(radius_px)
    # Neighbour pairs within the radius: points are sorted by (b, y, x), so the
    # partners of a point lie in a band of rows; images are stacked with a gap.
    key = b_idx * (height + reach + 1) + y_idx
    lo = torch.searchsorted(key, key - reach, right=False)
    hi = torch.searchsorted(key, key + reach, right=True)
    counts = hi - lo
    first = torch.repeat_interleave(torch.arange(n, device=device), counts)
    starts = torch.cumsum(counts, 0) - counts
    offsets = torch.arange(first.numel(), device=device) - torch.repeat_interleave(starts, counts)
    second = lo[first] + offsets
    dy = y_idx[first] - y_idx[second]
    dx = x_idx[first] - x_idx[second]
    close = (first != second) & ((dx * dx + dy * dy).double() <= radius_px * radius_px)
    first, second = first[close], second[close]
    return _parallel_greedy_torch(rank, first, second)


def _parallel_greedy_torch(
    rank: torch.Tensor, first: torch.Tensor, second: torch.Tensor
) -> torch.Tensor:
    """Sequential-greedy result from symmetric neighbour pairs, in parallel rounds."""
    n = rank.numel()
    device = rank.device
    undecided = torch.ones(n, dtype=torch.bool, device=device)
    kept = torch.zeros(n, dtype=torch.bool, device=device)
    sentinel = torch.full((n,), n, dtype=rank.dtype, device=device)
    while True:
        live = undecided[first] & undecided[second]
        first, second = first[live], second[live]
        best_neighbour = sentinel.scatter_reduce(
            0, first, rank[second], reduce="amin", include_self=True
        )
        new = undecided & (rank < best_neighbour)
        kept |= new
        undecided &= ~new
        undecided[second[new[first]]] = False
        if not bool(undecided.any()):
            break
    kept_idx = kept.nonzero().squeeze(1)
    return kept_idx[torch.argsort(rank[kept_idx])]


def merge_points(xy: np.ndarray, score: np.ndarray, *, radius_px: float) -> np.ndarray:
    """Greedy merging of nearby points: the strongest of each cluster is kept.

    Points are visited in descending score (ties: lower index first); each
    visited point that is still present is kept and every other point within
    ``radius_px`` of it (inclusive) is dropped.

    Parameters
    ----------
    xy : numpy.ndarray
        ``(N, 2)`` float point coordinates (x, y), pixels of any one frame.
    score : numpy.ndarray
        ``(N,)`` float scores (higher is kept).
    radius_px : float
        Merging distance in the same pixels (``>= 0``; 0 merges only identical
        points).

    Returns
    -------
    numpy.ndarray
        ``(K,)`` int64 indices of the kept points, in descending score.

    Raises
    ------
    ConfigError
        On mismatched shapes, non-finite values or a negative radius.
    """
    xy = np.asarray(xy, dtype=np.float64)
    score = np.asarray(score, dtype=np.float64)
    if xy.ndim != 2 or xy.shape[1] != 2 or score.shape != (xy.shape[0],):
        raise ConfigError(
            f"merge_points needs xy (N, 2) and score (N,), got {xy.shape} and {score.shape}"
        )
    if not np.isfinite(xy).all() or not np.isfinite(score).all():
        raise ConfigError("merge_points: coordinates and scores must be finite")
    if not _finite(radius_px) or radius_px < 0:
        raise ConfigError(f"merge_points: radius_px must be >= 0, got {radius_px!r}")
    n = xy.shape[0]
    order = np.argsort(-score, kind="stable")
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    pairs = cKDTree(xy).query_pairs(float(radius_px), output_type="ndarray")
    first = np.concatenate([pairs[:, 0], pairs[:, 1]]).astype(np.int64)
    second = np.concatenate([pairs[:, 1], pairs[:, 0]]).astype(np.int64)
    undecided = np.ones(n, dtype=bool)
    kept = np.zeros(n, dtype=bool)
    while undecided.any():
        live = undecided[first] & undecided[second]
        first, second = first[live], second[live]
        best_neighbour = np.full(n, n, dtype=np.int64)
        np.minimum.at(best_neighbour, first, rank[second])
        new = undecided & (rank < best_neighbour)
        kept |= new
        undecided &= ~new
        undecided[second[new[first]]] = False
    kept_idx = np.flatnonzero(kept)
    return kept_idx[np.argsort(rank[kept_idx], kind="stable")]
