"""The training loop shared by every stage, in torchvision-references style.

``train_one_epoch(model, optimizer, batches, device, ...)`` and
``evaluate(model, batches, device, ...)`` take explicit arguments; the loss of a
stage is a function ``compute_loss(model, batch) -> (loss, metrics)``. CUDA gets
bf16 autocast and channels-last; the CPU plain fp32. A non-finite loss stops the
run with :class:`~wsdal_wsi.errors.TrainingError` (the last epoch checkpoint is
left as it was).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import Tensor, nn

from wsdal_wsi.errors import TrainingError
from wsdal_wsi.model.device import autocast
from wsdal_wsi.progress import ProgressTask
from wsdal_wsi.train.augment import center_crop, normalise
from wsdal_wsi.train.data import Batch, PatchBatches
from wsdal_wsi.train.distributed import all_reduce_sum, fill_across_ranks

__all__ = [
    "evaluate",
    "make_optimizer",
    "make_scheduler",
    "predict",
    "to_input",
    "train_one_epoch",
]

LossFn = Callable[[nn.Module, Batch], tuple[Tensor, dict[str, Tensor]]]


def to_input(x01: Tensor, *, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """Normalise a float ``(B, 3, P, P)`` batch in [0, 1]; channels-last on CUDA."""
    x = normalise(x01, mean, std)
    if x.device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def make_optimizer(model: nn.Module, *, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW over all parameters."""
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)


def make_scheduler(
    optimizer: torch.optim.Optimizer, *, epochs: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Cosine decay over ``epochs`` (stepped once per epoch)."""
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs), eta_min=0.0)


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: PatchBatches,
    device: torch.device,
    *,
    compute_loss: LossFn,
    epoch: int,
    task: ProgressTask | None = None,
    check_every: int | None = None,
) -> dict[str, float]:
    """Train ``model`` for one epoch.

    Parameters
    ----------
    model, optimizer
        On ``device`` already.
    batches : PatchBatches
        The epoch's batches (``batches.epoch(epoch)``).
    device : torch.device
    compute_loss : callable
        ``(model, batch) -> (loss, metrics)``; metrics are scalar tensors averaged
        over the epoch (weighted by batch size).
    epoch : int
        0-based epoch (selects the batch order; named in errors).
    task : ProgressTask, optional
        Advanced by the batch size per step; its status shows the running loss.
    check_every : int, optional
        Check the loss for NaN/inf every this many steps (default: every step on
        the CPU, every 10 on CUDA, where a check is a device sync).

    Returns
    -------
    dict
        ``loss`` and the metrics (epoch means), ``samples``, ``seconds``,
        ``samples_per_s``, ``lr``.

    Raises
    ------
    TrainingError
        The loss became NaN or infinite.

    Notes
    -----
    Trained by several processes (``batches.world > 1``), the loss checks and the
    epoch's metrics are over all processes' samples, so every process agrees.
    """
    model.train()
    every = check_every or (1 if device.type == "cpu" else 10)
    sums: dict[str, Tensor] = {}
    n_seen = 0
    t0 = time.perf_counter()
    lr = optimizer.param_groups[0]["lr"]
    for step, batch in enumerate(batches.epoch(epoch)):
        with autocast(device):
            loss, metrics = compute_loss(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        b = int(batch.labels.shape[0])
        n_seen += b
        for k, v in {"loss": loss, **metrics}.items():
            v = v.detach().float() * b
            sums[k] = sums[k] + v if k in sums else v
        if step % every == 0 or step == len(batches) - 1:
            running = _running_loss(sums["loss"], n_seen, shared=batches.world > 1)
            if not math.isfinite(running):
                raise TrainingError(
                    f"training diverged: non-finite loss at epoch {epoch + 1}, step {step + 1} "
                    f"(learning rate {lr:g}); lower the learning rate or check the data"
                )
            if task is not None:
                task.update(status=f"epoch {epoch + 1} loss {running:.4f}")
        if task is not None:
            task.advance(b)
    seconds = time.perf_counter() - t0
    if batches.world > 1:  # the epoch's means over every process's samples
        keys = list(sums)
        n_t = torch.tensor(float(n_seen), device=device)
        both = all_reduce_sum(torch.stack([*(sums[k].float() for k in keys), n_t]))
        sums = dict(zip(keys, both[:-1], strict=True))
        n_seen = int(both[-1].item())
    out = {k: float(v) / max(1, n_seen) for k, v in sums.items()}
    if "loss" in out and not math.isfinite(out["loss"]):
        raise TrainingError(f"training diverged: non-finite loss at epoch {epoch + 1}")
    out.update(samples=n_seen, seconds=seconds, samples_per_s=n_seen / max(seconds, 1e-9), lr=lr)
    return out


def _running_loss(loss_sum: Tensor, n_seen: int, *, shared: bool) -> float:
    """The mean loss so far (over every process when ``shared``: they all stop together)."""
    if not shared:
        return float(loss_sum) / n_seen
    t = torch.stack(
        [loss_sum.detach().float(), torch.tensor(float(n_seen), device=loss_sum.device)]
    )
    t = all_reduce_sum(t)
    return float(t[0]) / float(t[1])


@torch.inference_mode()
def predict(
    model: nn.Module,
    batches: PatchBatches,
    device: torch.device,
    *,
    fn: Callable[[nn.Module, Tensor], Tensor],
    patch_px: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    task: ProgressTask | None = None,
) -> np.ndarray:
    """Apply ``fn(model, x)`` to the centre crops of every sample, in sample order.

    Parameters
    ----------
    fn : callable
        ``(model, normalised (B, 3, P, P) float) -> (B, ...)`` tensor.

    Returns
    -------
    ndarray
        ``(M, ...)`` float32, row ``i`` for sample ``i`` of ``batches``: with several
        processes each computes its share and all get every row.
    """
    model.eval()
    out: np.ndarray | None = None
    for batch in _iter(batches):
        x = to_input(center_crop(batch.patches, patch_px).float().div_(255.0), mean=mean, std=std)
        with autocast(device):
            y = fn(model, x).float()
        y_np = y.cpu().numpy()
        if out is None:
            out = np.zeros((len(batches.rows), *y_np.shape[1:]), np.float32)
        out[batch.positions.cpu().numpy()] = y_np
        if task is not None:
            task.advance(len(y_np))
    if batches.world > 1:
        return fill_across_ranks(out, len(batches.rows))
    return out if out is not None else np.zeros((0,), np.float32)


def _iter(batches: PatchBatches) -> Iterator[Batch]:
    if batches.mode != "sequential":
        raise ValueError("predict/evaluate need sequential batches")
    return batches.epoch(0)


def p_mitosis(model: nn.Module, x: Tensor) -> Tensor:
    """``fn`` for :func:`predict`: softmax probability of class 1."""
    return torch.softmax(model(x).float(), dim=1)[:, 1]


def evaluate(
    model: nn.Module,
    batches: PatchBatches,
    device: torch.device,
    *,
    patch_px: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
) -> dict[str, Any]:
    """Score held-out patches: accuracy at 0.5, ROC AUC, mean cross-entropy.

    Returns
    -------
    dict
        ``{"n", "n_positive", "accuracy", "auc", "loss"}`` (``auc`` is None when
        only one class is present).
    """
    p = predict(model, batches, device, fn=p_mitosis, patch_px=patch_px, mean=mean, std=std)
    y = batches.labels_np
    eps = 1e-7
    loss = -np.mean(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps)) if len(y) else float("nan")
    both = len(np.unique(y)) == 2
    return {
        "n": len(y),
        "n_positive": int(y.sum()),
        "accuracy": float(np.mean((p >= 0.5) == (y == 1))) if len(y) else None,
        "auc": float(roc_auc_score(y, p)) if both else None,
        "loss": float(loss) if len(y) else None,
    }
