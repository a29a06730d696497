"""Plain cross-entropy training: the baseline, and the ablations of the stages.

``--method baseline`` trains the final architecture (:class:`ProjNet`, its
projection head unused) with cross-entropy only on the same patches and
negatives as NS starts from (positives, negative clicks, random negatives; no
mining, no DMU / DLE / CSDGL), with CSDGL's schedule, sampling (class-balanced)
and augmentation (two strong views per sample). The stage ablations
(NS only, NS + DMU, NS + DMU + DLE) train the same way on the corresponding
sample sets, so the only difference from the full method is the data and, for
the full method, the SBCL term and its trunk's start (DMU's trained trunk by
default, ``CSDGLSettings.init``; these start from the initial weights).

Outputs in the stage folder: ``metrics.csv``, ``weights.pt``, ``done.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from wsdal_wsi.model.nets import ProjNet
from wsdal_wsi.train.augment import STRONG, WEAK, augment_batch
from wsdal_wsi.train.common import SampleSet, StageContext, StageDir
from wsdal_wsi.train.data import Batch
from wsdal_wsi.train.engine import to_input
from wsdal_wsi.train.presets import CESettings

__all__ = ["CESettings", "train_ce"]


def train_ce(
    ctx: StageContext,
    out_dir: Path,
    samples: SampleSet,
    settings: CESettings,
    *,
    name: str = "baseline",
) -> tuple[ProjNet, dict[str, Any]]:
    """Train (or resume, or reload) a cross-entropy classifier on ``samples``.

    Returns
    -------
    (ProjNet, dict)
        The network on ``ctx.device`` in eval mode, and the stage statistics.
    """
    stage = StageDir(out_dir)
    input_px = settings.input_px if settings.input_px != ctx.patch_px else None
    arch_kwargs = {"width": ctx.width, "proj_dim": settings.proj_dim, "input_px": input_px}
    torch.manual_seed(ctx.seed * 1000 + 5)
    model = ProjNet(**arch_kwargs)
    if (done := stage.done) is not None:
        return stage.load_weights(model).to(ctx.device).eval(), done
    init = ctx.init_trunks(model.trunk)
    batches = ctx.batches(
        samples.rows,
        samples.labels,
        batch_size=settings.batch_size,
        mode="balanced",
        seed_offset=5,
        drop_last=True,
    )
    gen = torch.Generator(device=ctx.device)
    params = ctx.view(STRONG if settings.strong else WEAK)

    def begin(epoch: int) -> None:
        ctx.seed_augmentations(gen, epoch=epoch, stage=5)

    def loss_fn(m: torch.nn.Module, b: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        sh = ctx.shifts(b.labels, gen)
        views = [
            augment_batch(
                b.patches, patch_px=ctx.patch_px, params=params, generator=gen, shift_px=sh
            )
            for _ in range(max(1, settings.views))
        ]
        x = to_input(torch.cat(views), mean=ctx.mean, std=ctx.std)
        y = b.labels.repeat(len(views))
        logits = m(x)
        acc = (logits.argmax(1) == y).float().mean()
        return torch.nn.functional.cross_entropy(logits.float(), y), {"acc": acc}

    metrics = ctx.fit_stage(
        model,
        batches,
        stage=stage,
        settings=settings,
        name=name,
        description=f"{name}: cross-entropy",
        compute_loss=loss_fn,
        n=len(samples),
        begin_epoch=begin,
        unused_parameters=True,  # the projection head is not trained here
    )
    stats = {
        "stage": name,
        "init": init,
        "arch": "proj_resnet18",
        "arch_kwargs": arch_kwargs,
        "epochs": settings.epochs,
        "n": len(samples),
        "n_positive": int(np.sum(samples.labels == 1)),
        "final_loss": metrics[-1]["loss"] if metrics else None,
    }
    return model.eval(), stage.write_done(stats)
