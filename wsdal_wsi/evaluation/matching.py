"""Detection metrics as MIDOG computes them: one-to-one matching, micro-averaged F1.

A detection is a true positive when it lies within a radius (7.5 µm, 30 px at
0.25 µm/px) of a ground-truth mitosis. Matching is one-to-one and follows the
method's section 8 exactly: for each ground-truth point in turn (in the given
order), the nearest prediction within the radius that is not yet used becomes its
match (distance ties: the lower prediction index). Unmatched predictions are false
positives, unmatched ground truth false negatives. Over a set of images TP, FP and
FN are summed before precision, recall and F1 are computed (micro-averaging).

:func:`best_f1_threshold` finds the score threshold that maximises that F1 over
a set of images, re-matching exactly at every threshold; it is fast because a
prediction can only change the matching of the truths it is connected to (see
:func:`threshold_sweep`).

Folder evaluation (pairing result files with ground truth, ``wsdal evaluate``) is
in :mod:`wsdal_wsi.evaluation.folders`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from wsdal_wsi.errors import ConfigError

__all__ = [
    "Match",
    "ThresholdSweep",
    "best_f1_threshold",
    "match_points",
    "prf",
    "threshold_sweep",
]


@dataclass(frozen=True)
class Match:
    """The one-to-one matching of predictions to ground truth in one image.

    Attributes
    ----------
    pred_index : numpy.ndarray
        ``(K,)`` int64 indices of the matched predictions.
    truth_index : numpy.ndarray
        ``(K,)`` int64 indices of their ground-truth points (in truth order).
    distance_px : numpy.ndarray
        ``(K,)`` float64 distances of the matched pairs (pixels).
    n_pred : int
        Number of predictions.
    n_truth : int
        Number of ground-truth points.
    """

    pred_index: np.ndarray
    truth_index: np.ndarray
    distance_px: np.ndarray
    n_pred: int
    n_truth: int

    @property
    def tp(self) -> int:
        """True positives: matched pairs."""
        return int(self.pred_index.size)

    @property
    def fp(self) -> int:
        """False positives: predictions without a match."""
        return self.n_pred - self.tp

    @property
    def fn(self) -> int:
        """False negatives: ground-truth points without a match."""
        return self.n_truth - self.tp

    @property
    def unmatched_pred(self) -> np.ndarray:
        """``(FP,)`` int64 indices of the predictions without a match."""
        return np.setdiff1d(np.arange(self.n_pred, dtype=np.int64), self.pred_index)

    @property
    def unmatched_truth(self) -> np.ndarray:
        """``(FN,)`` int64 indices of the ground-truth points without a match."""
        return np.setdiff1d(np.arange(self.n_truth, dtype=np.int64), self.truth_index)


def _as_points(xy: object, what: str) -> np.ndarray:
    try:
        arr = np.asarray(xy, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be an (N, 2) array of (x, y), got {xy!r:.80}") from None
    if arr.size == 0:
        return np.zeros((0, 2), dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ConfigError(f"{what} must be an (N, 2) array of (x, y), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ConfigError(f"{what} holds non-finite coordinates")
    return arr


def _check_radius(radius_px: float) -> float:
    try:
        value = float(radius_px)
    except (TypeError, ValueError):
        raise ConfigError(f"radius_px must be a number of pixels, got {radius_px!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"radius_px must be a non-negative number of pixels, got {radius_px!r}")
    return value


#: Points farther out than this (px) lie in no image (QuPath's are under 2^31 px) and match
#: nothing: squared distances between them would overflow the tree's arithmetic.
_FAR_PX = 1e15


def _candidate_lists(pred: np.ndarray, truth: np.ndarray, radius: float) -> list[np.ndarray]:
    """For each truth point, the predictions within ``radius`` sorted by (distance, index)."""
    empty = np.zeros(0, dtype=np.int64)
    pred_ok = np.flatnonzero(np.abs(pred).max(axis=1, initial=0.0) < _FAR_PX)
    truth_ok = np.abs(truth).max(axis=1, initial=0.0) < _FAR_PX
    if len(pred_ok) == 0 or not truth_ok.any():
        return [empty for _ in range(len(truth))]
    # A hair of slack for the tree; the exact test (d <= radius) is done below.
    found = iter(
        cKDTree(pred[pred_ok]).query_ball_point(truth[truth_ok], r=radius * (1.0 + 1e-9) + 1e-12)
    )
    near = [pred_ok[next(found)] if ok else empty for ok in truth_ok]
    out = []
    for j, idx in enumerate(near):
        idx = np.asarray(idx, dtype=np.int64)
        d = np.hypot(pred[idx, 0] - truth[j, 0], pred[idx, 1] - truth[j, 1])
        keep = d <= radius
        idx, d = idx[keep], d[keep]
        out.append(idx[np.lexsort((idx, d))])
    return out


def _match_lists(candidates: Sequence[np.ndarray], allowed: np.ndarray | None) -> list[int]:
    """Sequential matching; ``result[j]`` is the prediction of truth ``j`` or -1."""
    used: set[int] = set()
    result = []
    for idx in candidates:
        chosen = -1
        for i in idx.tolist():
            if i in used or (allowed is not None and not allowed[i]):
                continue
            chosen = i
            break
        if chosen >= 0:
            used.add(chosen)
        result.append(chosen)
    return result


def match_points(pred_xy: np.ndarray, truth_xy: np.ndarray, *, radius_px: float) -> Match:
    """Match predictions to ground truth one-to-one, as MIDOG does.

    For each ground-truth point in turn (in the given order), the nearest
    prediction within ``radius_px`` (inclusive) that no earlier truth took becomes
    its match; equally distant predictions are taken in index order.

    Parameters
    ----------
    pred_xy : numpy.ndarray
        ``(N, 2)`` float predicted points (x, y), pixels.
    truth_xy : numpy.ndarray
        ``(G, 2)`` float ground-truth points (x, y), same pixel frame.
    radius_px : float
        Matching radius in the same pixels (7.5 µm is 30 px at 0.25 µm/px).

    Returns
    -------
    Match

    Raises
    ------
    ConfigError
        On arrays that are not ``(N, 2)`` finite coordinates or a negative radius.
    """
    pred = _as_points(pred_xy, "pred_xy")
    truth = _as_points(truth_xy, "truth_xy")
    radius = _check_radius(radius_px)
    choice = _match_lists(_candidate_lists(pred, truth, radius), None)
    truth_index = np.array([j for j, i in enumerate(choice) if i >= 0], dtype=np.int64)
    pred_index = np.array([i for i in choice if i >= 0], dtype=np.int64)
    distance = np.hypot(*(pred[pred_index] - truth[truth_index]).T) if pred_index.size else None
    return Match(
        pred_index=pred_index,
        truth_index=truth_index,
        distance_px=np.zeros(0) if distance is None else np.asarray(distance, dtype=np.float64),
        n_pred=len(pred),
        n_truth=len(truth),
    )


def prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """Precision, recall and F1 from (summed) counts.

    Parameters
    ----------
    tp, fp, fn : int
        True positives, false positives, false negatives (over one image, or summed
        over a set of images for micro-averaging).

    Returns
    -------
    (precision, recall, f1) : tuple of float
        ``TP / (TP + FP)``, ``TP / (TP + FN)``, ``2 TP / (2 TP + FP + FN)``; each is
        NaN where its denominator is 0 (e.g. an image with neither truth nor
        predictions has no defined F1).

    Raises
    ------
    ConfigError
        On negative or non-integer counts.
    """
    counts = []
    for name, value in (("tp", tp), ("fp", fp), ("fn", fn)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ConfigError(f"{name} must be a non-negative integer, got {value!r}")
        counts.append(int(value))
    tp, fp, fn = counts

    def ratio(num: int, den: int) -> float:
        return num / den if den > 0 else math.nan

    return ratio(tp, tp + fp), ratio(tp, tp + fn), ratio(2 * tp, 2 * tp + fp + fn)


@dataclass(frozen=True)
class ThresholdSweep:
    """Micro-averaged counts and F1 at every distinct score threshold.

    A prediction is kept at threshold ``t`` when its score is ``>= t``.

    Attributes
    ----------
    thresholds : numpy.ndarray
        ``(T,)`` float64 distinct prediction scores, descending.
    tp, fp, fn : numpy.ndarray
        ``(T,)`` int64 summed counts at each threshold (one-to-one matching redone
        at each threshold).
    n_truth : int
        Ground-truth points in all images.
    """

    thresholds: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    n_truth: int

    @property
    def f1(self) -> np.ndarray:
        """``(T,)`` float64 micro-averaged F1 at each threshold (0 where undefined)."""
        den = 2 * self.tp + self.fp + self.fn
        return np.where(den > 0, 2 * self.tp / np.maximum(den, 1), 0.0).astype(np.float64)


ImageScores = tuple[np.ndarray, np.ndarray, np.ndarray, float]


def _check_image(item: object, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    try:
        if isinstance(item, (str, bytes)):
            raise TypeError
        pred_xy, scores, truth_xy, radius_px = item  # type: ignore[misc]
    except (TypeError, ValueError):
        raise ConfigError(
            f"image {k}: expected (pred_xy, scores, truth_xy, radius_px), got {type(item).__name__}"
        ) from None
    pred = _as_points(pred_xy, f"image {k}: pred_xy")
    try:
        score = np.asarray(scores, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ConfigError(f"image {k}: scores must be numbers, got {scores!r:.80}") from None
    if score.shape != (len(pred),):
        raise ConfigError(
            f"image {k}: {len(pred)} predictions but {score.size} scores; they must match"
        )
    if not np.isfinite(score).all():
        raise ConfigError(f"image {k}: scores must be finite")
    truth = _as_points(truth_xy, f"image {k}: truth_xy")
    return pred, score, truth, _check_radius(radius_px)


def _image_events(
    pred: np.ndarray, score: np.ndarray, truth: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """Changes of one image's TP as the threshold falls: (scores, TP deltas).

    Predictions and truths linked by "within the radius" form connected
    components; a prediction can only change the matching inside its own
    component, so each component is re-matched at each of its own distinct scores
    (exactly as :func:`match_points` would on the whole image).
    """

    candidates = _candidate_lists(pred, truth, radius)
    n, g = len(pred), len(truth)
    rows = np.concatenate([c for c in candidates] + [np.zeros(0, np.int64)])
    cols = np.repeat(np.arange(g, dtype=np.int64), [len(c) for c in candidates]) + n
    if rows.size == 0:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    graph = coo_matrix((np.ones(rows.size), (rows, cols)), shape=(n + g, n + g))
    _, label = connected_components(graph, directed=False)
    truth_label = label[n:]
    event_scores: list[float] = []
    event_deltas: list[int] = []
    linked = np.zeros(n, dtype=bool)
    linked[rows] = True
    for comp in np.unique(truth_label):
        truths = np.flatnonzero(truth_label == comp)  # in truth order
        preds = np.flatnonzero(linked & (label[:n] == comp))
        if preds.size == 0:
            continue
        comp_candidates = [candidates[j] for j in truths]
        levels = np.unique(score[preds])[::-1]
        previous = 0
        allowed = np.zeros(n, dtype=bool)
        for level in levels:
            allowed[preds[score[preds] >= level]] = True
            tp = sum(1 for i in _match_lists(comp_candidates, allowed) if i >= 0)
            if tp != previous:
                event_scores.append(float(level))
                event_deltas.append(tp - previous)
                previous = tp
    return np.asarray(event_scores, dtype=np.float64), np.asarray(event_deltas, dtype=np.int64)


def threshold_sweep(images: Sequence[ImageScores]) -> ThresholdSweep:
    """Micro-averaged TP / FP / FN at every distinct score threshold of a set of images.

    Exactly what matching each image with :func:`match_points` at every threshold
    and summing would give, without re-matching everything at every threshold.

    Parameters
    ----------
    images : sequence of (pred_xy, scores, truth_xy, radius_px)
        Per image: ``(N, 2)`` float predicted points, ``(N,)`` float scores,
        ``(G, 2)`` float ground-truth points (same pixel frame) and the matching
        radius in those pixels.

    Returns
    -------
    ThresholdSweep

    Raises
    ------
    ConfigError
        On malformed inputs (shapes, non-finite values, negative radius).
    """
    all_scores: list[np.ndarray] = []
    event_scores: list[np.ndarray] = []
    event_deltas: list[np.ndarray] = []
    n_truth = 0
    for k, item in enumerate(images):
        pred, score, truth, radius = _check_image(item, k)
        n_truth += len(truth)
        all_scores.append(score)
        if len(pred) and len(truth):
            s, d = _image_events(pred, score, truth, radius)
            event_scores.append(s)
            event_deltas.append(d)
    scores = np.concatenate(all_scores) if all_scores else np.zeros(0)
    thresholds = np.unique(scores)[::-1]
    # Predictions kept at each threshold: scores >= t.
    kept = np.searchsorted(np.sort(scores), thresholds, side="left")
    n_kept = scores.size - kept
    ev_s = np.concatenate(event_scores) if event_scores else np.zeros(0)
    ev_d = np.concatenate(event_deltas) if event_deltas else np.zeros(0, dtype=np.int64)
    order = np.argsort(-ev_s, kind="stable")
    ev_s, cum = ev_s[order], np.cumsum(ev_d[order])
    # TP at t = sum of deltas of events with score >= t.
    upto = np.searchsorted(-ev_s, -thresholds, side="right")
    tp = np.where(upto > 0, cum[np.maximum(upto - 1, 0)] if cum.size else 0, 0).astype(np.int64)
    return ThresholdSweep(
        thresholds=thresholds.astype(np.float64),
        tp=tp,
        fp=(n_kept - tp).astype(np.int64),
        fn=(n_truth - tp).astype(np.int64),
        n_truth=n_truth,
    )


def best_f1_threshold(images: Sequence[ImageScores]) -> tuple[float, float]:
    """The score threshold that maximises micro-averaged F1 over a set of images.

    Parameters
    ----------
    images : sequence of (pred_xy, scores, truth_xy, radius_px)
        As :func:`threshold_sweep`.

    Returns
    -------
    (threshold, f1) : tuple of float
        Keep predictions with ``score >= threshold``. Among equal F1 the highest
        threshold (fewest detections) wins. With no predictions at all:
        ``(inf, 0.0)``.

    Raises
    ------
    ConfigError
        On malformed inputs, or when the images hold no ground-truth point (F1
        would not depend on the threshold).
    """
    sweep = threshold_sweep(images)
    if sweep.n_truth == 0:
        raise ConfigError("best_f1_threshold needs at least one ground-truth point")
    if sweep.thresholds.size == 0:
        return math.inf, 0.0
    f1 = sweep.f1
    best = int(np.argmax(f1))  # first maximum = highest threshold
    return float(sweep.thresholds[best]), float(f1[best])
