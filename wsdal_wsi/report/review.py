"""The review list: the decisions a pathologist should check first, as QuPath objects.

``wsdal predict --review N`` picks, per slide, the ``N`` candidates whose decision is
least certain: detections and near misses (candidates just below the threshold) whose
calibrated probability lies closest to the calibrated threshold, those inside the
hotspot first (they decide the score). Each becomes a point annotation of class
``"WS-DAL check"`` named ``"WS-DAL check <rank>: detected|not detected, p <q>"`` with
the measurements ``WS-DAL probability`` (the network's), ``WS-DAL calibrated
probability``, ``WS-DAL check rank``, ``WS-DAL in hotspot`` and ``WS-DAL detected``.
The pathologist answers one by changing its class in QuPath: to a mitosis class (it is
one) or to a look-alike class (it is not); ``wsdal train`` then takes the answer as a
trusted label. Ids are stable (:func:`wsdal_wsi.qupath.results.stable_id`), so a re-run
writes the same objects.

The near misses themselves are kept beside the summary as ``<key>.near.csv`` (level-0
``x``, ``y`` and the network's probability), so ``wsdal count`` can recompute the count
range and the review list without the slide or the model.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wsdal_wsi.atomic import write_text_atomic
from wsdal_wsi.counting import Hotspot
from wsdal_wsi.errors import InputError
from wsdal_wsi.model.calibration import Calibration
from wsdal_wsi.qupath import PROBABILITY_MEASUREMENT, make_feature
from wsdal_wsi.qupath.results import stable_id

__all__ = [
    "CHECK_CLASS",
    "CHECK_COLOR",
    "ReviewItem",
    "read_near_misses",
    "review_features",
    "review_items",
    "write_near_misses",
]

CHECK_CLASS = "WS-DAL check"
CHECK_COLOR = (255, 0, 255)
_EPS = 1e-6


@dataclass(frozen=True)
class ReviewItem:
    """One decision to check.

    Attributes
    ----------
    rank : int
        1 = check first.
    x_level0, y_level0 : float
    probability : float
        The network's p(mitosis).
    calibrated : float
        The calibrated probability.
    detected : bool
        At or above the threshold (a detection), else a near miss.
    in_hotspot : bool
    """

    rank: int
    x_level0: float
    y_level0: float
    probability: float
    calibrated: float
    detected: bool
    in_hotspot: bool


def _logit(q: np.ndarray) -> np.ndarray:
    q = np.clip(q, _EPS, 1 - _EPS)
    return np.log(q) - np.log1p(-q)


def review_items(
    points_level0: np.ndarray,
    scores: np.ndarray,
    near_points_level0: np.ndarray,
    near_scores: np.ndarray,
    *,
    threshold: float,
    calibration: Calibration,
    hotspot: Hotspot | None,
    n: int,
) -> list[ReviewItem]:
    """The ``n`` least certain decisions, hotspot first.

    Parameters
    ----------
    points_level0, scores : ndarray
        ``(N, 2)`` level-0 detections and their ``(N,)`` p(mitosis).
    near_points_level0, near_scores : ndarray
        ``(M, 2)`` level-0 near misses and their ``(M,)`` p(mitosis).
    threshold : float
        The detection threshold (network probability).
    calibration : Calibration
    hotspot : Hotspot or None
    n : int
        How many (0: none).

    Returns
    -------
    list of ReviewItem
        Ordered: inside the hotspot first, then by distance to the threshold in
        calibrated log-odds (ties by position, so the order is stable).
    """
    if n <= 0:
        return []
    xy = np.concatenate(
        [
            np.asarray(points_level0, float).reshape(-1, 2),
            np.asarray(near_points_level0, float).reshape(-1, 2),
        ]
    )
    p = np.concatenate([np.asarray(scores, float).ravel(), np.asarray(near_scores, float).ravel()])
    if len(p) != len(xy):
        raise InputError(f"{len(xy)} review candidates but {len(p)} probabilities")
    detected = np.arange(len(p)) < len(np.asarray(scores).ravel())
    q = calibration.apply(p)
    q_thr = float(calibration.apply(np.array([threshold]))[0])
    doubt = np.abs(_logit(q) - _logit(np.array([q_thr]))[0])
    in_hot = hotspot.contains(xy) if hotspot is not None else np.zeros(len(p), bool)
    order = np.lexsort((xy[:, 0], xy[:, 1], doubt, ~in_hot))[:n]
    return [
        ReviewItem(
            rank=r,
            x_level0=float(xy[i, 0]),
            y_level0=float(xy[i, 1]),
            probability=float(p[i]),
            calibrated=float(q[i]),
            detected=bool(detected[i]),
            in_hotspot=bool(in_hot[i]),
        )
        for r, i in enumerate(order, start=1)
    ]


def review_features(items: list[ReviewItem], *, key: str) -> list[dict[str, Any]]:
    """The review items as QuPath GeoJSON point annotations (class ``WS-DAL check``)."""
    out = []
    for it in items:
        state = "detected" if it.detected else "not detected"
        out.append(
            make_feature(
                {"type": "Point", "coordinates": [it.x_level0, it.y_level0]},
                class_name=CHECK_CLASS,
                color=CHECK_COLOR,
                name=f"WS-DAL check {it.rank}: {state}, p {it.calibrated:.2f}",
                measurements={
                    PROBABILITY_MEASUREMENT: it.probability,
                    "WS-DAL calibrated probability": it.calibrated,
                    "WS-DAL check rank": float(it.rank),
                    "WS-DAL in hotspot": float(it.in_hotspot),
                    "WS-DAL detected": float(it.detected),
                },
                feature_id=stable_id(key, "check", it.x_level0, it.y_level0),
            )
        )
    return out


def write_near_misses(
    path: str | os.PathLike[str], xy_level0: np.ndarray, scores: np.ndarray
) -> None:
    """Write ``<key>.near.csv`` (``x_level0,y_level0,probability``) atomically."""
    xy = np.asarray(xy_level0, dtype=np.float64).reshape(-1, 2)
    p = np.asarray(scores, dtype=np.float64).ravel()
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["x_level0", "y_level0", "probability"])
    w.writerows((f"{x:.2f}", f"{y:.2f}", f"{q:.6g}") for (x, y), q in zip(xy, p, strict=True))
    write_text_atomic(path, buf.getvalue())


def read_near_misses(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read ``<key>.near.csv``: ``(M, 2)`` level-0 points and ``(M,)`` probabilities.

    A missing file (an output folder from before near misses were kept) gives none.

    Raises
    ------
    InputError
        The file exists but is not the expected CSV (the message names it).
    """
    p = Path(path)
    if not p.is_file():
        return np.zeros((0, 2)), np.zeros(0)
    try:
        rows = list(csv.DictReader(p.read_text(encoding="utf-8").splitlines()))
        xy = np.array([[float(r["x_level0"]), float(r["y_level0"])] for r in rows]).reshape(-1, 2)
        prob = np.array([float(r["probability"]) for r in rows])
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{p}: not a near-miss file ({exc})") from exc
    return xy, prob
