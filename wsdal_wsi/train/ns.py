"""Stage 1, Negative Sample Search (NS).

A first classifier (:class:`~wsdal_wsi.model.nets.CamNet`: ResNet-18 trunk,
class-activation head, max-pooled logit) is trained with cross-entropy and
class-balanced sampling on the positives (clicks and their jittered copies),
the negative-class clicks and random negatives (candidates clear of every
positive, ``neg_per_pos`` per positive patch and image). It then scores every
candidate of the training slides; candidates with p(mitosis) > ``mine_threshold``
that are clear of every positive are the **mined hard negatives**. The NS set =
positives + negative clicks + random negatives + mined negatives (the mined ones
capped at ``mined_cap`` times the positive patches, highest scores first: the
cap is ours, upstream kept all).

Outputs in ``RUN/ns/``: ``metrics.csv``, ``weights.pt``, ``candidate_scores.csv``
(row, p_mitosis), ``initial_set.csv``, ``train_set.csv`` (row, label, origin) and
``done.json``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wsdal_wsi.errors import TrainingError
from wsdal_wsi.model.nets import CamNet
from wsdal_wsi.train.augment import WEAK, augment_batch
from wsdal_wsi.train.common import SampleSet, StageContext, StageDir
from wsdal_wsi.train.data import Batch
from wsdal_wsi.train.engine import p_mitosis, predict, to_input
from wsdal_wsi.train.presets import NSSettings
from wsdal_wsi.train.store import PatchStore

__all__ = ["NSSettings", "initial_training_set", "run_ns", "score_rows", "weighted_ce"]

log = logging.getLogger(__name__)


def initial_training_set(
    store: PatchStore, *, split: str = "train", neg_per_pos: float = 1.0, seed: int = 0
) -> SampleSet:
    """Positives, negative clicks and random negatives of ``split`` (no mining).

    Random negatives are drawn per image among the candidates clear of every
    positive and ignored point (store label 0): ``round(neg_per_pos * P)`` where
    P is the image's positive patches (the mean over images for an image without
    positives). This is also the baseline's training set.

    Returns
    -------
    SampleSet
    """
    rng = np.random.default_rng((seed, 17))
    pos = store.select(split=split, source=("click", "jitter"))
    negc = store.select(split=split, source="negative_click")
    keys = sorted({str(k) for k in store.image_key[store.split == split]})
    n_pos = {k: int(np.sum(store.image_key[pos] == k)) for k in keys}
    with_pos = [v for v in n_pos.values() if v > 0]
    mean_pos = float(np.mean(with_pos)) if with_pos else 0.0
    rand: list[np.ndarray] = []
    for k in keys:
        elig = store.select(split=split, source="candidate", label=0, image_key=k)
        want = round(neg_per_pos * (n_pos[k] if n_pos[k] else mean_pos))
        if want and len(elig):
            rand.append(np.sort(rng.choice(elig, size=min(want, len(elig)), replace=False)))
    rnd = np.concatenate(rand) if rand else np.zeros(0, np.int64)
    rows = np.concatenate([pos, negc, rnd]).astype(np.int64)
    labels = np.concatenate([np.ones(len(pos)), np.zeros(len(negc) + len(rnd))]).astype(np.int64)
    origin = np.concatenate(
        [
            store.source[pos].astype(object),
            np.full(len(negc), "negative_click", object),
            np.full(len(rnd), "random_negative", object),
        ]
    )
    return SampleSet(rows, labels, origin)


def weighted_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy (float32)."""
    return torch.nn.functional.cross_entropy(logits.float(), labels)


def score_rows(
    model: torch.nn.Module,
    ctx: StageContext,
    rows: np.ndarray,
    *,
    batch_size: int,
    description: str,
) -> np.ndarray:
    """p(mitosis) ``(M,)`` float32 of store ``rows`` (centre crops, no augmentation)."""
    batches = ctx.batches(
        rows, np.zeros(len(rows), np.int64), batch_size=batch_size, mode="sequential"
    )
    with ctx.progress.task(description, total=len(rows)) as task:
        return predict(
            model,
            batches,
            ctx.device,
            fn=p_mitosis,
            patch_px=ctx.patch_px,
            mean=ctx.mean,
            std=ctx.std,
            task=task,
        )


def _check_set(samples: SampleSet, what: str) -> None:
    n1 = int(np.sum(samples.labels == 1))
    n0 = int(np.sum(samples.labels == 0))
    if n1 < 2 or n0 < 2:
        raise TrainingError(
            f"{what}: too few samples to train ({n1} mitosis, {n0} non-mitosis patches); "
            "annotate more mitoses or check the annotation classes"
        )


def run_ns(ctx: StageContext, out_dir: Path, settings: NSSettings) -> dict[str, Any]:
    """Run (or resume) the NS stage; return its statistics (``done.json``)."""
    stage = StageDir(out_dir)
    if (done := stage.done) is not None:
        return done
    store = ctx.store
    initial = initial_training_set(store, neg_per_pos=settings.neg_per_pos, seed=ctx.seed)
    _check_set(initial, "NS")
    stage.save_samples("initial_set.csv", initial)
    torch.manual_seed(ctx.seed * 1000 + 1)
    model = CamNet(width=ctx.width)
    init = ctx.init_trunks(model.trunk)
    batches = ctx.batches(
        initial.rows,
        initial.labels,
        batch_size=settings.batch_size,
        mode="balanced",
        seed_offset=1,
        drop_last=True,
    )
    gen = torch.Generator(device=ctx.device)

    def begin(epoch: int) -> None:
        ctx.seed_augmentations(gen, epoch=epoch, stage=1)

    def loss_fn(m: torch.nn.Module, b: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x = to_input(
            augment_batch(
                b.patches,
                patch_px=ctx.patch_px,
                params=ctx.view(WEAK),
                generator=gen,
                shift_px=ctx.shifts(b.labels, gen),
            ),
            mean=ctx.mean,
            std=ctx.std,
        )
        logits = m(x)
        acc = (logits.argmax(1) == b.labels).float().mean()
        return weighted_ce(logits, b.labels), {"acc": acc}

    metrics = ctx.fit_stage(
        model,
        batches,
        stage=stage,
        settings=settings,
        name="ns",
        description="NS: first classifier",
        compute_loss=loss_fn,
        begin_epoch=begin,
    )

    # mining: every training candidate clear of the positives
    cand = store.select(split="train", source="candidate", label=0)
    p = score_rows(
        model, ctx, cand, batch_size=settings.batch_size * 2, description="NS: scoring candidates"
    )
    stage.save_table("candidate_scores.csv", {"row": cand, "p_mitosis": p})
    in_set = np.isin(cand, initial.rows)
    hit = (p > settings.mine_threshold) & ~in_set
    n_pos_patches = int(np.sum(initial.labels == 1))
    cap = round(settings.mined_cap * n_pos_patches)
    order = np.argsort(-p[hit], kind="stable")
    mined = cand[hit][order][:cap]
    final = SampleSet(
        np.concatenate([initial.rows, mined]),
        np.concatenate([initial.labels, np.zeros(len(mined), np.int64)]),
        np.concatenate([initial.origin, np.full(len(mined), "mined_negative", object)]),
    )
    stage.save_samples("train_set.csv", final)
    stats = {
        "stage": "ns",
        "init": init,
        "epochs": settings.epochs,
        "final_loss": metrics[-1]["loss"] if metrics else None,
        "n_positive_patches": n_pos_patches,
        "n_negative_clicks": int(np.sum(initial.origin == "negative_click")),
        "n_random_negatives": int(np.sum(initial.origin == "random_negative")),
        "n_candidates_scored": len(cand),
        "n_above_threshold": int(np.sum(hit)),
        "n_mined": len(mined),
        "n_train_set": len(final),
    }
    return stage.write_done(stats)
