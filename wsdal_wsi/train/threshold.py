"""The decision threshold and the held-out check of a trained network.

The threshold comes from F1 on the validation slides: every stored candidate of a
validation slide is scored, the scored candidates are merged as inference merges
detections (greedy by score within the model's merge radius), and the survivors are
matched to the validation annotations (positive clicks inside the annotated area)
one-to-one within 7.5 µm at every threshold (:func:`wsdal_wsi.evaluation.threshold_sweep`),
as in the method's evaluation section. Greedy merging visits points by descending
score, so whether a candidate survives depends only on the candidates above it:
merging all of them once and then thresholding gives, at every threshold, exactly the
detections inference would make. Without a validation slide the threshold is 0.5 and
the run says so.

Which threshold (``n_se``, the preset's ``threshold_se``): the highest whose validation
F1 lies within ``n_se`` standard errors of the best, ``sqrt(F1 (1 - F1) / mitoses)``
(the one-standard-error rule of Breiman et al. 1984; 0: the F1-maximising one). On a
validation slide of about 100 mitoses the F1 curve is flat within its noise over a wide
range of thresholds, and its maximum lands anywhere in it; the slides a model is then
used on hold fewer mitoses per candidate than the clicked validation slides (whole
slides against the regions a pathologist annotated), where a lower threshold costs
precision. Among thresholds the validation slides cannot tell apart, the highest.

The same merged, matched candidates calibrate the probabilities (Platt scaling,
:func:`wsdal_wsi.model.calibration.fit_calibration`): a candidate matched to an annotated
mitosis is a 1, any other a 0. The fit and its calibration error before and after go into
``threshold.json`` and the model file.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from wsdal_wsi.detect.candidates import merge_points
from wsdal_wsi.errors import ConfigError
from wsdal_wsi.evaluation import match_points, threshold_sweep
from wsdal_wsi.model.calibration import Calibration, fit_calibration
from wsdal_wsi.train.common import StageContext
from wsdal_wsi.train.engine import evaluate
from wsdal_wsi.train.ns import score_rows
from wsdal_wsi.units import um_to_px

__all__ = ["choose_threshold", "heldout_metrics", "one_se_threshold"]

log = logging.getLogger(__name__)


def choose_threshold(
    model: torch.nn.Module,
    ctx: StageContext,
    *,
    match_radius_um: float = 7.5,
    merge_radius_um: float | None = None,
    n_se: float = 0.0,
    batch_size: int = 256,
    split: str = "val",
) -> dict[str, Any]:
    """The decision threshold from F1 on the ``split`` slides.

    Parameters
    ----------
    match_radius_um : float
        One-to-one matching radius (MIDOG: 7.5 µm).
    merge_radius_um : float, optional
        Detections closer than this are merged first, as at inference (the model
        file's ``merge_radius_um``); None: no merging.
    n_se : float
        The highest threshold whose F1 is within this many standard errors of the
        best (0: the F1-maximising threshold).

    Returns
    -------
    dict
        ``{"threshold", "f1", "best_threshold", "best_f1", "f1_se", "n_images",
        "n_candidates", "n_truth", "method", "calibration"}``: ``f1`` at the chosen
        threshold, the F1-maximising threshold and its F1; ``f1`` is None and
        ``threshold`` 0.5 when there is no validation slide (and the calibration is
        the identity).
    """

    store = ctx.store
    cand = store.select(split=split, source="candidate")
    truth_rows = store.select(split=split, source="click")
    truth_rows = truth_rows[store.in_area[truth_rows]]
    keys = sorted({str(k) for k in store.image_key[store.split == split]})
    if not keys or len(truth_rows) == 0:
        why = "no validation slide" if not keys else "no mitosis click in the validation slides"
        log.warning("%s: the decision threshold is 0.5", why)
        return {
            "threshold": 0.5,
            "f1": None,
            "best_threshold": None,
            "best_f1": None,
            "f1_se": None,
            "n_images": len(keys),
            "n_candidates": len(cand),
            "n_truth": 0,
            "method": f"default 0.5 ({why})",
            "calibration": Calibration().to_dict(),
        }
    scores = score_rows(model, ctx, cand, batch_size=batch_size, description="Threshold: scoring")
    images = []
    for k in keys:
        mpp = float(store.image(k)["mpp"])
        cm = np.flatnonzero(store.image_key[cand] == k)
        xy, sc = store.xy_level0[cand[cm]], scores[cm].astype(np.float64)
        if merge_radius_um and len(cm):
            kept = merge_points(xy, sc, radius_px=um_to_px(merge_radius_um, mpp))
            xy, sc = xy[kept], sc[kept]
        tm = store.image_key[truth_rows] == k
        images.append((xy, sc, store.xy_level0[truth_rows[tm]], um_to_px(match_radius_um, mpp)))
    choice = one_se_threshold(images, n_se=n_se)
    rule = "F1-maximising" if n_se == 0 else f"highest within {n_se:g} SE of the best F1"
    return {
        **choice,
        "n_images": len(keys),
        "n_candidates": len(cand),
        "n_truth": len(truth_rows),
        "method": (
            f"{rule} on validation slides, merged within {merge_radius_um} µm, "
            f"matched within {match_radius_um} µm"
        ),
        "calibration": _calibrate(images).to_dict(),
    }


def one_se_threshold(
    images: list[tuple[np.ndarray, np.ndarray, np.ndarray, float]], *, n_se: float
) -> dict[str, float]:
    """The highest threshold whose micro-averaged F1 is within ``n_se`` standard errors of the best.

    Parameters
    ----------
    images : list of (pred_xy, scores, truth_xy, radius_px)
        As :func:`wsdal_wsi.evaluation.threshold_sweep`; at least one truth point.
    n_se : float
        Standard errors, ``sqrt(F1 (1 - F1) / n_truth)`` at the best F1; 0: the
        F1-maximising threshold (the highest among equal F1).

    Returns
    -------
    dict
        ``threshold`` (in [0, 1]; 1 when there is no candidate at all), ``f1`` there,
        ``best_threshold``, ``best_f1`` and ``f1_se``.
    """
    if not np.isfinite(n_se) or n_se < 0:
        raise ConfigError(f"threshold_se must be a number >= 0, got {n_se!r}")
    sweep = threshold_sweep(images)
    if sweep.thresholds.size == 0:  # no candidate at all: nothing to detect
        return {"threshold": 1.0, "f1": 0.0, "best_threshold": 1.0, "best_f1": 0.0, "f1_se": 0.0}
    f1 = sweep.f1
    best = int(np.argmax(f1))  # first maximum = highest threshold
    se = float(np.sqrt(f1[best] * (1.0 - f1[best]) / max(sweep.n_truth, 1)))
    chosen = int(np.flatnonzero(f1 >= f1[best] - n_se * se - 1e-12)[0])  # thresholds descend
    return {
        "threshold": float(np.clip(sweep.thresholds[chosen], 0.0, 1.0)),
        "f1": float(f1[chosen]),
        "best_threshold": float(np.clip(sweep.thresholds[best], 0.0, 1.0)),
        "best_f1": float(f1[best]),
        "f1_se": se,
    }


def _calibrate(images: list[tuple[np.ndarray, np.ndarray, np.ndarray, float]]) -> Calibration:
    """Platt scaling on the merged validation candidates: matched to a mitosis = 1, else 0.

    ``images``: per image, candidates ``(N, 2)`` level-0, their scores ``(N,)``, the
    annotated mitoses ``(M, 2)`` and the matching radius (level-0 px).
    """
    scores, labels = [], []
    for xy, sc, truth, radius_px in images:
        y = np.zeros(len(sc), np.int64)
        y[match_points(xy, truth, radius_px=radius_px).pred_index] = 1
        scores.append(sc)
        labels.append(y)
    if not scores:
        return Calibration()
    return fit_calibration(np.concatenate(scores), np.concatenate(labels))


def heldout_metrics(
    model: torch.nn.Module, ctx: StageContext, *, batch_size: int = 256, split: str = "val"
) -> dict[str, Any]:
    """Patch-level check on held-out slides: clicks (mitosis) against clear candidates.

    Returns
    -------
    dict
        :func:`wsdal_wsi.train.engine.evaluate`'s ``n, n_positive, accuracy, auc, loss``.
    """
    store = ctx.store
    pos = store.select(split=split, source="click")
    neg = store.select(split=split, source=("candidate", "negative_click"), label=0)
    rows = np.concatenate([pos, neg])
    labels = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))]).astype(np.int64)
    if len(rows) == 0:
        return {"n": 0, "n_positive": 0, "accuracy": None, "auc": None, "loss": None}
    batches = ctx.batches(rows, labels, batch_size=batch_size, mode="sequential")
    return evaluate(model, batches, ctx.device, patch_px=ctx.patch_px, mean=ctx.mean, std=ctx.std)
