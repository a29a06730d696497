"""Stage 2, Dynamic Memory Units (DMU): which labels are clean, hard or noisy.

A :class:`~wsdal_wsi.model.nets.DualViewNet` sees every sample of the NS set once
per epoch, a weakly augmented view in one trunk and a strongly augmented view in
the other; loss = 0.25 CE(weak) + 0.25 CE(strong) + 0.5 CE(fused). Every sample is
seen once per epoch (no class-balanced sampling: the memory needs every sample
each epoch) and counted once (plain CE by default, see ``DMUSettings``).
:class:`DMUMemory` keeps, per sample, the last softmax of each view and per-view
EMA thresholds, and after the warm-up epochs counts how often the sample was
clean / hard / noisy, its learning and forgetting events, and the last fused
p(mitosis).

Rules (``wsdal-method.md`` §4; where it is silent, our reading, marked *):

* thresholds start at 1/C (C = 2 classes) and are updated every epoch
  ``prev <- ema * prev + (1 - ema) * max_prob``; the sample is compared with the
  threshold *before* this epoch's update*;
* after warm-up: clean = both views' p[label] above their thresholds, hard =
  exactly one, noisy = neither;
* learning event = fused prediction wrong in the previous epoch (or before the
  first epoch*) and right now; forgetting event = right then wrong now;
* SCD = distance of the sample's pooled features (both trunks, centre crop, at
  the end of training*) to its class centre (mean over the samples of that label
  that were mostly clean*), both L2-normalised, min-max normalised per class;
* outcome* = ``noisy`` if noisy in at least ``noisy_min_fraction`` of the
  post-warm-up epochs, else ``clean`` if clean in at least ``clean_min_fraction``,
  else ``hard``; ``never_learned`` marks samples whose fused prediction was never
  right (they leave the set like noisy ones);
* one annotation, one outcome* (``group_outcome``): a positive click and its
  jittered copies are one annotation, so their status counts are summed and the
  outcome (and ``never_learned``: no copy ever right) is decided once for all of
  them (a majority over the copies' epochs); a click is kept or removed whole;
* what leaves the set (:func:`~wsdal_wsi.train.dmu_outcomes.dmu_removed`): noisy
  and never-learned samples, except the pathologist's negative-class clicks when
  they are protected (``DLESettings.keep_negative_clicks``, the default): they stay
  in the table and the label audit, but are not removed (see
  :mod:`wsdal_wsi.train.dle`).

Outputs in ``RUN/dmu/``: ``table.csv`` (per sample), ``features.npy``,
``weights.pt``, ``metrics.csv``, ``done.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from wsdal_wsi.model.nets import DualViewNet
from wsdal_wsi.train.augment import STRONG, WEAK, AugmentParams, augment_batch
from wsdal_wsi.train.common import SampleSet, StageContext, StageDir, read_table
from wsdal_wsi.train.data import Batch
from wsdal_wsi.train.distributed import all_reduce_sum
from wsdal_wsi.train.dmu_outcomes import forget_rate, grouped_outcomes, scd_rates
from wsdal_wsi.train.engine import predict, to_input
from wsdal_wsi.train.presets import DMUSettings

__all__ = [
    "DMUMemory",
    "DMUSettings",
    "memory_units",
    "read_dmu_table",
    "run_dmu",
]

OUTCOMES = ("clean", "hard", "noisy")


class DMUMemory:
    """Per-sample memory of the dual-view network (tensors on one device).

    Parameters
    ----------
    n : int
        Samples.
    num_classes : int
    ema : float
    device : torch.device
    """

    FIELDS = (
        "weak_prev",
        "strong_prev",
        "last_weak",
        "last_strong",
        "last_fused",
        "n_clean",
        "n_hard",
        "n_noisy",
        "n_learn",
        "n_forget",
        "prev_correct",
        "ever_correct",
        "n_updates",
    )

    def __init__(
        self, n: int, *, num_classes: int = 2, ema: float = 0.99, device: torch.device | str = "cpu"
    ) -> None:
        dev = torch.device(device)
        self.ema = float(ema)
        self.weak_prev = torch.full((n,), 1.0 / num_classes, device=dev)
        self.strong_prev = torch.full((n,), 1.0 / num_classes, device=dev)
        self.last_weak = torch.zeros(n, num_classes, device=dev)
        self.last_strong = torch.zeros(n, num_classes, device=dev)
        self.last_fused = torch.zeros(n, num_classes, device=dev)
        for name in ("n_clean", "n_hard", "n_noisy", "n_learn", "n_forget", "n_updates"):
            setattr(self, name, torch.zeros(n, dtype=torch.int64, device=dev))
        self.prev_correct = torch.zeros(n, dtype=torch.bool, device=dev)
        self.ever_correct = torch.zeros(n, dtype=torch.bool, device=dev)

    @torch.no_grad()
    def update(
        self,
        positions: Tensor,
        labels: Tensor,
        p_weak: Tensor,
        p_strong: Tensor,
        p_fused: Tensor,
        *,
        count: bool,
    ) -> None:
        """Record one sighting of the samples at ``positions``.

        Parameters
        ----------
        positions : Tensor ``(B,)`` int64
        labels : Tensor ``(B,)`` int64
        p_weak, p_strong, p_fused : Tensor ``(B, C)`` float
            Softmax outputs of the weak, strong and fused heads.
        count : bool
            After warm-up: count the clean / hard / noisy status.
        """
        i, y = positions, labels.view(-1, 1)
        pw, ps, pf = p_weak.float(), p_strong.float(), p_fused.float()
        if count:
            ok_w = pw.gather(1, y).squeeze(1) > self.weak_prev[i]
            ok_s = ps.gather(1, y).squeeze(1) > self.strong_prev[i]
            self.n_clean[i] += (ok_w & ok_s).long()
            self.n_hard[i] += (ok_w ^ ok_s).long()
            self.n_noisy[i] += (~ok_w & ~ok_s).long()
        m = self.ema
        self.weak_prev[i] = m * self.weak_prev[i] + (1 - m) * pw.max(dim=1).values
        self.strong_prev[i] = m * self.strong_prev[i] + (1 - m) * ps.max(dim=1).values
        correct = pf.argmax(dim=1) == y.squeeze(1)
        prev = self.prev_correct[i]
        self.n_learn[i] += (correct & ~prev).long()
        self.n_forget[i] += (~correct & prev).long()
        self.prev_correct[i] = correct
        self.ever_correct[i] |= correct
        self.last_weak[i], self.last_strong[i], self.last_fused[i] = pw, ps, pf
        self.n_updates[i] += 1

    @torch.no_grad()
    def merge_processes(self, touched: Tensor) -> None:
        """Give every process the memory of every unit (several processes training together).

        Each process updated the units of its share of the epoch (``touched``,
        ``(n,)`` bool); a unit is seen once per epoch, by one process, so each field
        is summed over the processes with the untouched units zeroed.

        Raises
        ------
        RuntimeError
            A unit was updated by two processes in one epoch (a sampler bug).
        """
        count = all_reduce_sum(touched.to(torch.int64))
        if count.numel() and int(count.max()) > 1:
            raise RuntimeError("DMU: a memory unit was seen by two processes in one epoch")
        for k in self.FIELDS:
            cur = getattr(self, k)
            shape = (-1, *([1] * (cur.dim() - 1)))
            mine = torch.where(touched.view(shape), cur, torch.zeros_like(cur))
            summed = all_reduce_sum(mine.to(torch.int64) if cur.dtype == torch.bool else mine)
            setattr(self, k, torch.where((count > 0).view(shape), summed.to(cur.dtype), cur))

    def state_dict(self) -> dict[str, Any]:
        return {"ema": self.ema, **{k: getattr(self, k).detach().cpu() for k in self.FIELDS}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ema = float(state["ema"])
        for k in self.FIELDS:
            cur = getattr(self, k)
            setattr(self, k, state[k].to(cur.device, cur.dtype))


def memory_units(samples: SampleSet, store: Any) -> np.ndarray:
    """Memory unit of each sample: a click and its jittered copies share one.

    Returns
    -------
    ndarray ``(M,)`` int64
        Units numbered ``0 .. U-1`` in order of first appearance.
    """
    cid = store.click_id[samples.rows]
    pos = (samples.labels == 1) & (cid >= 0)
    key = np.where(pos, cid, -1 - np.arange(len(samples)))  # non-clicks: a unit each
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    rank = np.empty(len(first), np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inverse]


def read_dmu_table(out_dir: Path) -> dict[str, np.ndarray]:
    """The per-sample table of a finished DMU stage."""
    return read_table(Path(out_dir) / "table.csv")


def run_dmu(
    ctx: StageContext, out_dir: Path, samples: SampleSet, settings: DMUSettings
) -> dict[str, Any]:
    """Run (or resume) the DMU stage on ``samples``; return its statistics.

    Train the dual-view network with its memory (resuming from the stage's
    checkpoint), save the pooled features, decide the outcome of each sample
    (``table.csv``), then write ``done.json`` and drop the checkpoint.
    """
    stage = StageDir(out_dir)
    if (done := stage.done) is not None:
        return done
    torch.manual_seed(ctx.seed * 1000 + 2)
    model = DualViewNet(width=ctx.width)
    init = ctx.init_trunks(model.weak.trunk, model.strong.trunk)
    epoch = _DMUEpoch(ctx, samples, settings=settings)
    memory = epoch.memory
    batches = ctx.batches(
        samples.rows,
        samples.labels,
        batch_size=settings.batch_size,
        mode="shuffle",
        seed_offset=2,
        groups=epoch.unit if settings.group_jitter else None,
    )
    ctx.fit_stage(
        model,
        batches,
        stage=stage,
        settings=settings,
        name="dmu",
        description="DMU: dual-view memory",
        compute_loss=epoch.loss,
        n=len(samples),
        begin_epoch=epoch.begin,
        end_epoch=epoch.end,
        get_state=memory.state_dict,
        set_state=memory.load_state_dict,
    )
    feats = _pooled_features(ctx, model, samples, batch_size=settings.batch_size)
    stage.save_array("features.npy", feats.astype(np.float16))
    table = _verdict(ctx, samples, memory, feats, unit=epoch.unit, settings=settings)
    stage.save_table("table.csv", table)
    return stage.write_done(_dmu_stats(table, settings=settings, init=init, n_units=epoch.n_units))


def _class_weights(labels: np.ndarray, unit: np.ndarray, *, class_weighted: bool) -> np.ndarray:
    """``(2,)`` float64 CE weights: inverse class frequencies of the memory units an
    epoch serves (``labels``, ``unit``: ``(M,)`` per sample), else ones."""
    first = np.unique(unit, return_index=True)[1]
    counts = np.bincount(labels[first], minlength=2).astype(np.float64)
    return counts.sum() / (2 * np.maximum(counts, 1)) if class_weighted else np.ones(2)


class _DMUEpoch:
    """One DMU epoch, as :meth:`StageContext.fit_stage`'s callbacks, and the memory it feeds.

    Each batch: a weak and a strong view of every patch, the class-weighted
    dual-view loss, and the memory update of the batch's units (statuses counted
    after the warm-up epochs); after the epoch, the mean status fractions.

    Attributes
    ----------
    unit : ndarray ``(M,)`` int64
        Memory unit of each sample (one per click with its jittered copies when
        ``settings.group_jitter``, else one per sample).
    n_units : int
    memory : DMUMemory
        One slot per unit (restored from the checkpoint when resuming).
    """

    def __init__(self, ctx: StageContext, samples: SampleSet, *, settings: DMUSettings) -> None:
        self.ctx, self.settings = ctx, settings
        n = len(samples)
        self.unit = memory_units(samples, ctx.store) if settings.group_jitter else np.arange(n)
        self.n_units = int(self.unit.max()) + 1 if n else 0
        self.memory = DMUMemory(self.n_units, ema=settings.ema, device=ctx.device)
        self.unit_t = torch.as_tensor(self.unit, dtype=torch.int64, device=ctx.device)
        w = _class_weights(samples.labels, self.unit, class_weighted=settings.class_weighted)
        self.weight = torch.tensor(w, dtype=torch.float32, device=ctx.device)
        self.gen = torch.Generator(device=ctx.device)
        self.weak, self.strong = ctx.view(WEAK), ctx.view(STRONG)
        self.epoch = 0
        self.touched = torch.zeros(self.n_units, dtype=torch.bool, device=ctx.device)

    def begin(self, epoch: int) -> None:
        """Seed the epoch's augmentations."""
        self.ctx.seed_augmentations(self.gen, epoch=epoch, stage=2)
        self.epoch = epoch
        self.touched.zero_()

    def loss(self, m: torch.nn.Module, b: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """The dual-view loss of batch ``b``, updating the memory on the way."""
        sh = self.ctx.shifts(b.labels, self.gen)  # one offset per sample, both views
        weak, strong = self._view(b, self.weak, sh), self._view(b, self.strong, sh)
        lw, ls, lf, _ = m.forward_views(weak, strong)
        ce = torch.nn.functional.cross_entropy
        y, weight = b.labels, self.weight
        loss = (
            0.25 * ce(lw.float(), y, weight=weight)
            + 0.25 * ce(ls.float(), y, weight=weight)
            + 0.5 * ce(lf.float(), y, weight=weight)
        )
        units = self.unit_t[b.positions]
        if self.ctx.world > 1:
            self.touched[units] = True
        self.memory.update(
            units,
            y,
            torch.softmax(lw.float(), 1),
            torch.softmax(ls.float(), 1),
            torch.softmax(lf.float(), 1),
            count=self.epoch >= self.settings.warmup_epochs,
        )
        return loss, {"acc_fused": (lf.argmax(1) == y).float().mean()}

    def _view(self, b: Batch, params: AugmentParams, shift_px: Tensor | None) -> Tensor:
        """Network input ``(B, 3, P, P)`` of one augmented view of the batch's patches."""
        ctx = self.ctx
        v = augment_batch(
            b.patches, patch_px=ctx.patch_px, params=params, generator=self.gen, shift_px=shift_px
        )
        return to_input(v, mean=ctx.mean, std=ctx.std)

    def end(self, epoch: int) -> dict[str, Any]:
        """Mean clean / hard / noisy fraction per unit and epoch since the warm-up (every
        process's memory merged first, so all agree)."""
        if self.ctx.world > 1:
            self.memory.merge_processes(self.touched)
        warmup, mem = self.settings.warmup_epochs, self.memory
        if epoch < warmup:
            return {"clean": "", "hard": "", "noisy": ""}
        tot = max(1, epoch - warmup + 1)
        return {
            "clean": float(mem.n_clean.sum()) / tot / max(1, self.n_units),
            "hard": float(mem.n_hard.sum()) / tot / max(1, self.n_units),
            "noisy": float(mem.n_noisy.sum()) / tot / max(1, self.n_units),
        }


def _pooled_features(
    ctx: StageContext, model: DualViewNet, samples: SampleSet, *, batch_size: int
) -> np.ndarray:
    """``(M, F)`` pooled features of both trunks for each sample (centre crop, in order)."""
    seq = ctx.batches(samples.rows, samples.labels, batch_size=batch_size, mode="sequential")
    with ctx.progress.task("DMU: features", total=len(samples)) as task:
        return predict(
            model,
            seq,
            ctx.device,
            fn=lambda m, x: m.forward_views(x, x)[3],
            patch_px=ctx.patch_px,
            mean=ctx.mean,
            std=ctx.std,
            task=task,
        )


def _verdict(
    ctx: StageContext,
    samples: SampleSet,
    memory: DMUMemory,
    feats: np.ndarray,
    *,
    unit: np.ndarray,
    settings: DMUSettings,
) -> dict[str, np.ndarray]:
    """The per-sample table: the memory's counts, forget and SCD rates, the outcome.

    Parameters
    ----------
    feats : ndarray ``(M, F)``
        Pooled features of the samples.
    unit : ndarray ``(M,)`` int64
        Memory unit of each sample (a click's copies share their click's stats).
    """
    mem = {k: v.numpy()[unit] for k, v in memory.state_dict().items() if k != "ema"}
    annotation = memory_units(samples, ctx.store) if settings.group_outcome else unit
    outcome, never = grouped_outcomes(
        annotation,
        mem["n_clean"],
        mem["n_hard"],
        mem["n_noisy"],
        mem["ever_correct"].astype(bool),
        noisy_min_fraction=settings.noisy_min_fraction,
        clean_min_fraction=settings.clean_min_fraction,
    )
    fr = forget_rate(mem["n_learn"], mem["n_forget"])
    scd, scd_rate = scd_rates(feats.astype(np.float64), samples.labels, outcome == "clean")
    store, rows = ctx.store, samples.rows
    return {
        "index": np.arange(len(samples)),
        "row": rows,
        "image_key": store.image_key[rows],
        "x_level0": store.xy_level0[rows, 0],
        "y_level0": store.xy_level0[rows, 1],
        "source": store.source[rows],
        "origin": samples.origin,
        "trusted": store.trusted[rows].astype(np.int64),
        "click_id": store.click_id[rows],
        "label": samples.labels,
        "unit": unit,
        "annotation": annotation,
        "clean": mem["n_clean"],
        "hard": mem["n_hard"],
        "noisy": mem["n_noisy"],
        "learn": mem["n_learn"],
        "forget": mem["n_forget"],
        "forget_rate": fr,
        "scd": scd,
        "scd_rate": scd_rate,
        "p_mitosis": mem["last_fused"][:, 1].astype(np.float64),
        "never_learned": never.astype(np.int64),
        "outcome": outcome,
    }


def _dmu_stats(
    table: dict[str, np.ndarray], *, settings: DMUSettings, init: str, n_units: int
) -> dict[str, Any]:
    """The stage's statistics for ``done.json``: outcomes per label, never-learned count."""
    labels, outcome = table["label"], table["outcome"]
    return {
        "stage": "dmu",
        "init": init,
        "epochs": settings.epochs,
        "n": len(labels),
        "n_units": n_units,
        "outcomes": {
            f"label{c}": {o: int(np.sum((labels == c) & (outcome == o))) for o in OUTCOMES}
            for c in (0, 1)
        },
        "never_learned": int(table["never_learned"].sum()),
    }
