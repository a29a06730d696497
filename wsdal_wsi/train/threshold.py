"""The decision threshold and the held-out check of a trained network.

The threshold is the F1-maximising one on the validation slides: every stored
candidate of a validation slide is scored, the scored candidates are merged as
inference merges detections (greedy by score within the model's merge radius), and
the survivors are matched to the validation annotations (positive clicks inside the
annotated area) one-to-one within 7.5 µm with
:func:`wsdal_wsi.evaluation.best_f1_threshold`, as in the method's evaluation
section. Greedy merging visits points by descending score, so whether a candidate
survives depends only on the candidates above it: merging all of them once and then
thresholding gives, at every threshold, exactly the detections inference would make.
Without a validation slide the threshold is 0.5 and the run says so.

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
from wsdal_wsi.evaluation import best_f1_threshold, match_points
from wsdal_wsi.model.calibration import Calibration, fit_calibration
from wsdal_wsi.train.common import StageContext
from wsdal_wsi.train.engine import evaluate
from wsdal_wsi.train.ns import score_rows
from wsdal_wsi.units import um_to_px

__all__ = ["choose_threshold", "heldout_metrics"]

log = logging.getLogger(__name__)


def choose_threshold(
    model: torch.nn.Module,
    ctx: StageContext,
    *,
    match_radius_um: float = 7.5,
    merge_radius_um: float | None = None,
    batch_size: int = 256,
    split: str = "val",
) -> dict[str, Any]:
    """F1-maximising threshold on the ``split`` slides.

    Parameters
    ----------
    match_radius_um : float
        One-to-one matching radius (MIDOG: 7.5 µm).
    merge_radius_um : float, optional
        Detections closer than this are merged first, as at inference (the model
        file's ``merge_radius_um``); None: no merging.

    Returns
    -------
    dict
        ``{"threshold", "f1", "n_images", "n_candidates", "n_truth", "method",
        "calibration"}``; ``f1`` is None and ``threshold`` 0.5 when there is no
        validation slide (and the calibration is the identity).
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
    threshold, f1 = best_f1_threshold(images)
    calibration = _calibrate(images)
    if not np.isfinite(threshold):  # no candidate at all: nothing to detect
        threshold = 1.0
    return {
        "threshold": float(min(max(threshold, 0.0), 1.0)),
        "f1": float(f1),
        "n_images": len(keys),
        "n_candidates": len(cand),
        "n_truth": len(truth_rows),
        "method": (
            f"F1-maximising on validation slides, merged within {merge_radius_um} µm, "
            f"matched within {match_radius_um} µm"
        ),
        "calibration": calibration.to_dict(),
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
