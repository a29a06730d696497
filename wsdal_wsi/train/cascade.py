"""The cascade's first stage: a small network distilled from the final model, and its thresholds.

Most candidates are ordinary nuclei the final model scores near 0. A network an
order of magnitude cheaper (:class:`~wsdal_wsi.model.nets.CascadeNet`, the patch at
half resolution) can tell them apart; only the candidates it scores above a
threshold go to the final model (:meth:`wsdal_wsi.model.file.LoadedModel.classify`).

Training (``RUN/cascade``, after the threshold, for every method):

1. **Teacher scores**: the final model's logit ``log(p / (1 - p))`` (clipped) of the
   centre crop of every training-split patch of the store (clicks, their jittered
   copies, negative clicks, candidates; a seeded subset beyond
   :attr:`CascadeSettings.max_samples`), in each of :attr:`CascadeSettings.views`
   flips of it. The final network is not invariant to flips (its logit moves by
   0.7 in the median on the demo's patches), so each view gets its own target.
2. **Distillation**: the first stage learns to predict the logit of the view it
   is shown (squared error, weighted ``1 + positive_weight * p``, so the patches the
   final model finds likely count more), for at least
   :attr:`CascadeSettings.min_steps` optimiser steps, from the patch recoloured
   and blurred (:data:`~wsdal_wsi.train.augment.APPEARANCE`, with the run's stain
   jitter): its target stays the final model's score of the patch as stored, so
   it learns to answer as the final model whatever the slide's look. Learnt from
   the training slides' look only, it stopped 21 of the final model's 76
   detections on a blurrier, paler ``wsdal demo`` test slide; with the
   augmentation and 1200 steps none of the 188 on both test slides, letting 3-4 %
   of the candidates through (on the 15 reporting runs it still stopped 2.6 % of
   WS-DAL's detections: benchmarks/RESULTS.md, "The cascade").
3. **Thresholds**, on the validation slides: every stored candidate is scored by
   both networks; the final model's detections at a probability threshold ``T``
   are its candidates at or above ``T`` after the greedy merge inference makes;
   the first-stage threshold for ``T`` is the highest that keeps at least
   :attr:`CascadeSettings.keep_fraction` of them. One threshold per ``T`` of a grid
   (and the model's own), so that ``wsdal predict --threshold`` lower than the
   model's still gets a safe cascade: inference takes the entry of the largest
   ``T`` at or below its threshold, and none (no cascade) below the grid.

Without a validation slide, or when the first stage would let almost everything
through, no cascade is stored and inference scores every candidate with the final
model, as before.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from wsdal_wsi.detect.merge import merge_points
from wsdal_wsi.model.device import autocast
from wsdal_wsi.model.nets import CascadeNet
from wsdal_wsi.train.augment import APPEARANCE, recolour
from wsdal_wsi.train.cascade_settings import CascadeSettings
from wsdal_wsi.train.common import StageContext, StageDir
from wsdal_wsi.train.data import Batch
from wsdal_wsi.train.engine import p_mitosis, predict, to_input
from wsdal_wsi.train.ns import score_rows
from wsdal_wsi.units import um_to_px

__all__ = ["CascadeSettings", "cascade_table", "run_cascade"]

log = logging.getLogger(__name__)

#: Final-model thresholds the first-stage thresholds are chosen for (and the model's own).
THRESHOLD_GRID = (*(round(0.05 * i, 2) for i in range(1, 20)), 0.97, 0.98, 0.99)
#: No cascade is stored when it would skip less than this fraction of the candidates.
MIN_SKIPPED = 0.05


def _logits(p: np.ndarray, clip: float) -> np.ndarray:
    p = np.clip(p.astype(np.float64), 1e-12, 1 - 1e-12)
    return np.clip(np.log(p) - np.log1p(-p), -clip, clip).astype(np.float32)


#: The 8 flips and 90° turns of a square patch, as (flip x, flip y, transpose) bits.
VIEWS = tuple((bool(k & 1), bool(k & 2), bool(k & 4)) for k in range(8))


def _view(x: Tensor, bits: Tensor) -> Tensor:
    """Flip / turn each ``(B, 3, P, P)`` patch as its ``(3, B)`` bool bits say (see VIEWS)."""
    b = bits.view(3, -1, 1, 1, 1)
    x = torch.where(b[0], x.flip(-1), x)
    x = torch.where(b[1], x.flip(-2), x)
    return torch.where(b[2], x.transpose(-1, -2), x)


@torch.inference_mode()
def _teacher_views(
    teacher: torch.nn.Module, ctx: StageContext, rows: np.ndarray, n_views: int
) -> np.ndarray:
    """The final model's probability of every training patch in its first ``n_views`` views.

    Returns ``(M, n_views)`` (views in the order of :data:`VIEWS`).

    The final network is not exactly invariant to flips and turns (its logit moves by
    about 0.7 in the median on the demo's patches): the first stage learns the
    final model's score of the very view it is shown.
    """
    batches = ctx.batches(rows, np.zeros(len(rows), np.int64), batch_size=128, mode="sequential")
    out = np.zeros((len(rows), n_views), np.float32)
    teacher.eval()
    with ctx.progress.task("Cascade: teacher scores", total=len(rows)) as task:
        for b in batches.epoch(0):
            x = to_input(_centre(b.patches, ctx.patch_px).float().div_(255.0), mean=ctx.mean,
                         std=ctx.std)  # fmt: skip
            n = x.shape[0]
            views = []
            for bits in VIEWS[:n_views]:
                flags = torch.tensor(bits, device=x.device)[:, None].expand(3, n)
                with autocast(ctx.device):
                    views.append(p_mitosis(teacher, _view(x, flags)).float())
            out[b.positions.cpu().numpy()] = torch.stack(views, dim=1).cpu().numpy()
            task.advance(n)
    return out


def _train_rows(ctx: StageContext, settings: CascadeSettings) -> np.ndarray:
    rows = ctx.store.select(split="train")
    if len(rows) > settings.max_samples:
        rng = np.random.default_rng(ctx.seed * 1000 + 31)
        rows = np.sort(rng.choice(rows, size=settings.max_samples, replace=False))
    return rows


def _distil(
    ctx: StageContext,
    stage: StageDir,
    net: CascadeNet,
    teacher: torch.nn.Module,
    settings: CascadeSettings,
) -> dict[str, Any]:
    """Fit ``net`` to the final model's logits on the training patches."""
    rows = _train_rows(ctx, settings)
    p = _teacher_views(teacher, ctx, rows, settings.views)  # (M, views)
    target = torch.from_numpy(_logits(p, settings.logit_clip)).to(ctx.device)
    weight = torch.from_numpy(1.0 + settings.positive_weight * p).to(ctx.device)
    labels = (p[:, 0] >= 0.5).astype(np.int64)
    batches = ctx.batches(
        rows, labels, batch_size=settings.batch_size, mode="shuffle", seed_offset=31,
        drop_last=True,
    )  # fmt: skip
    gen = torch.Generator(device=ctx.device)
    look = ctx.view(APPEARANCE) if settings.appearance else None
    epochs = max(settings.epochs, math.ceil(settings.min_steps / max(1, len(batches))))
    settings = dataclasses.replace(settings, epochs=epochs)

    def begin(epoch: int) -> None:
        gen.manual_seed(ctx.seed * 100_003 + 11 * epoch + 31)

    def loss_fn(m: torch.nn.Module, b: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        n = b.patches.shape[0]
        view = torch.randint(0, settings.views, (n, 1), generator=gen, device=b.patches.device)
        bits = torch.stack([(view[:, 0] >> k) & 1 == 1 for k in range(3)])
        x = _view(_centre(b.patches, ctx.patch_px), bits).float().div_(255.0)
        if look is not None:  # the teacher's score of the patch as stored, from another look
            x = recolour(x, params=look, generator=gen)
        z = m.logit(to_input(x, mean=ctx.mean, std=ctx.std)).float()
        t = target[b.positions].gather(1, view)[:, 0]
        w = weight[b.positions].gather(1, view)[:, 0]
        loss = (w * (z - t) ** 2).sum() / w.sum()
        return loss, {"mae": (z - t).abs().mean()}

    metrics = ctx.fit_stage(
        net, batches, stage=stage, settings=settings, name="cascade",
        description="Cascade: distillation", compute_loss=loss_fn, n=len(rows), begin_epoch=begin,
    )  # fmt: skip
    return {
        "n_train": len(rows),
        "epochs": epochs,
        "teacher_above_half": int(labels.sum()),
        "final_loss": metrics[-1]["loss"] if metrics else None,
        "final_mae": metrics[-1].get("mae") if metrics else None,
    }


def _centre(patches: Tensor, patch_px: int) -> Tensor:
    h = patches.shape[-1]
    o = (h - patch_px) // 2
    return patches[..., o : o + patch_px, o : o + patch_px]


def cascade_table(
    first: np.ndarray,
    prob: np.ndarray,
    xy: np.ndarray,
    image: np.ndarray,
    *,
    radius_px: np.ndarray,
    thresholds: tuple[float, ...],
    keep_fraction: float,
    margin: float = 0.0,
) -> list[dict[str, Any]]:
    """First-stage thresholds that keep ``keep_fraction`` of the detections at each threshold.

    Parameters
    ----------
    first : ndarray
        ``(N,)`` first-stage logits of the validation candidates.
    prob : ndarray
        ``(N,)`` final-model probabilities of the same candidates.
    xy : ndarray
        ``(N, 2)`` level-0 positions.
    image : ndarray
        ``(N,)`` image of each candidate (merging is per image).
    radius_px : ndarray
        ``(N,)`` merge radius in level-0 px of each candidate's image.
    thresholds : tuple of float
        Final-model probability thresholds.
    keep_fraction : float
    margin : float
        Subtracted from every cut (logit units; see :attr:`CascadeSettings.margin`).

    Returns
    -------
    list of dict
        Per threshold ``T`` (ascending): ``final_threshold``, ``first_threshold``
        (logit; ``-inf`` keeps every candidate), ``detections`` (the final model's
        on the validation slides), ``kept`` (of them, by the first stage) and
        ``skipped_fraction`` (of all the validation candidates). Lower ``T`` never
        gets a higher first-stage threshold.
    """
    survivor = np.zeros(len(prob), bool)
    for key in np.unique(image):
        idx = np.flatnonzero(image == key)
        keep = merge_points(
            xy[idx], prob[idx].astype(np.float64), radius_px=float(radius_px[idx[0]])
        )
        survivor[idx[keep]] = True
    table: list[dict[str, Any]] = []
    for t in sorted(set(thresholds)):
        det = np.sort(first[survivor & (prob >= t)])
        allowed = math.floor((1.0 - keep_fraction) * len(det) + 1e-9)
        cut = float(det[allowed]) if len(det) else None
        if cut is None and table:  # no detection at T on these slides: the cut below
            cut = table[-1]["first_threshold"]
        table.append({"final_threshold": float(t), "first_threshold": cut, "detections": len(det)})
    table = [r for r in table if r["first_threshold"] is not None]
    # a lower final threshold keeps a superset of detections: never a higher cut
    for lower, upper in zip(reversed(table[:-1]), reversed(table[1:]), strict=True):
        lower["first_threshold"] = min(lower["first_threshold"], upper["first_threshold"])
    for row in table:
        row["first_threshold"] -= margin
        cut = row["first_threshold"]
        det = first[survivor & (prob >= row["final_threshold"])]
        row["kept"] = int((det >= cut).sum())
        row["skipped_fraction"] = float((first < cut).mean()) if len(first) else 0.0
    return table


def _validation(
    ctx: StageContext, teacher: torch.nn.Module, net: CascadeNet, merge_radius_um: float
) -> dict[str, np.ndarray]:
    """Both networks' scores of the validation candidates, with positions and images."""
    store = ctx.store
    rows = store.select(split="val", source="candidate")
    prob = score_rows(teacher, ctx, rows, batch_size=256, description="Cascade: validation")
    batches = ctx.batches(rows, np.zeros(len(rows), np.int64), batch_size=256, mode="sequential")
    first = predict(
        net, batches, ctx.device, fn=lambda m, x: m.logit(x), patch_px=ctx.patch_px,
        mean=ctx.mean, std=ctx.std,
    )  # fmt: skip
    image = store.image_key[rows].astype(str)
    radius = {k: um_to_px(merge_radius_um, float(store.image(k)["mpp"])) for k in set(image)}
    return {
        "first": first.reshape(-1),
        "prob": prob.astype(np.float64),
        "xy": store.xy_level0[rows],
        "image": image,
        "radius_px": np.array([radius[k] for k in image], dtype=np.float64),
    }


def run_cascade(
    ctx: StageContext,
    out_dir: Path,
    teacher: torch.nn.Module,
    *,
    threshold: float,
    merge_radius_um: float,
    settings: CascadeSettings | None = None,
) -> tuple[CascadeNet | None, dict[str, Any]]:
    """Distil (or reload) the first stage and choose its thresholds on the validation slides.

    Parameters
    ----------
    ctx : StageContext
    out_dir : Path
        The stage folder (``RUN/cascade``).
    teacher : nn.Module
        The final network (eval mode, on ``ctx.device``).
    threshold : float
        The model's decision threshold (added to the grid of thresholds).
    merge_radius_um : float
        The model's merge radius (detections are merged as inference merges them).
    settings : CascadeSettings, optional

    Returns
    -------
    (CascadeNet or None, dict)
        The first stage in eval mode on ``ctx.device`` (None: no cascade, the
        statistics say why) and the stage statistics, with the threshold ``table``.
    """
    settings = settings or CascadeSettings()
    stage = StageDir(out_dir)
    arch_kwargs = {"width": settings.width, "downsample": settings.downsample}
    torch.manual_seed(ctx.seed * 1000 + 31)
    net = CascadeNet(**arch_kwargs)
    if (done := stage.done) is not None:
        if done.get("table") is None:
            return None, done
        return stage.load_weights(net).to(ctx.device).eval(), done
    teacher.eval()
    stats: dict[str, Any] = {
        "stage": "cascade",
        "arch": "cascade_cnn",
        "arch_kwargs": arch_kwargs,
        "settings": asdict(settings),
    }
    if len(ctx.store.select(split="val", source="candidate")) == 0:
        log.warning("no validation candidates: no cascade (every candidate gets the full model)")
        return None, stage.write_done({**stats, "table": None, "reason": "no validation slide"})
    stats.update(_distil(ctx, stage, net, teacher, settings))
    net.eval()
    val = _validation(ctx, teacher, net, merge_radius_um)
    table = cascade_table(
        val["first"], val["prob"], val["xy"], val["image"], radius_px=val["radius_px"],
        thresholds=(*THRESHOLD_GRID, float(threshold)), keep_fraction=settings.keep_fraction,
        margin=settings.margin,
    )  # fmt: skip
    stats["n_val_candidates"] = len(val["prob"])
    own = [r for r in table if r["final_threshold"] <= threshold]
    if not own or own[-1]["skipped_fraction"] < MIN_SKIPPED:
        why = "no validation detection" if not own else "it would skip too few candidates"
        log.warning("no cascade: %s", why)
        return None, stage.write_done({**stats, "table": None, "reason": why})
    stats["table"] = table
    stats["at_model_threshold"] = own[-1]
    done = stage.write_done(stats)
    (stage.path / "checkpoint.pt").unlink(missing_ok=True)
    return net, done
