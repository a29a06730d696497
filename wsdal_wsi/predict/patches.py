"""Patches on the device: cropping around candidates, and batched classification.

:func:`crop_patches` gathers the patches of many candidates of many tiles at
once (one advanced-indexing gather, no per-patch loop). :class:`PatchClassifier`
pools them across tiles and runs the model on full batches, keeping every
result on the device until the end (no synchronisation per batch).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

__all__ = ["PatchClassifier", "crop_patches"]


class PatchClassifier:
    """Pools patches of several tiles and classifies them in batches of ``batch_size``.

    Keeps every result on the device (no synchronisation per batch); call
    :meth:`results` at the end.
    """

    def __init__(self, model: Any, *, batch_size: int, keep_from: float) -> None:
        self.model = model
        self.batch_size = batch_size
        self.keep_from = keep_from
        self._patches: list[torch.Tensor] = []
        self._xy: list[torch.Tensor] = []
        self._pooled = 0
        self._out_xy: list[torch.Tensor] = []
        self._out_p: list[torch.Tensor] = []
        self._kept_xy: list[np.ndarray] = []
        self._kept_p: list[np.ndarray] = []
        self.n_classified = 0
        self.seconds = 0.0

    def add(self, patches: torch.Tensor, xy: torch.Tensor) -> None:
        """Queue ``(n, 3, P, P)`` uint8 patches with their ``(n, 2)`` int64 global px."""
        if patches.shape[0] == 0:
            return
        self._patches.append(patches)
        self._xy.append(xy)
        self._pooled += patches.shape[0]
        while self._pooled >= self.batch_size:
            self._run(self.batch_size)

    def flush(self) -> None:
        """Classify what is left in the pool."""
        if self._pooled:
            self._run(self._pooled)

    def _run(self, n: int) -> None:
        t0 = time.perf_counter()
        patches = torch.cat(self._patches) if len(self._patches) > 1 else self._patches[0]
        xy = torch.cat(self._xy) if len(self._xy) > 1 else self._xy[0]
        batch, rest = patches[:n], patches[n:]
        self._patches = [rest] if rest.shape[0] else []
        self._xy = [xy[n:]] if rest.shape[0] else []
        self._pooled = rest.shape[0]
        prob = self.model.predict_proba(batch)
        self._out_xy.append(xy[:n])
        self._out_p.append(prob)
        self.n_classified += n
        if len(self._out_p) >= 64:  # bound device memory on huge slides
            self._compact()
        self.seconds += time.perf_counter() - t0

    def _compact(self) -> None:
        if not self._out_p:
            return
        p = torch.cat(self._out_p)
        xy = torch.cat(self._out_xy)
        keep = p >= self.keep_from
        self._kept_xy.append(xy[keep].cpu().numpy())
        self._kept_p.append(p[keep].float().cpu().numpy())
        self._out_xy, self._out_p = [], []

    def results(self) -> tuple[np.ndarray, np.ndarray]:
        """``(M, 2)`` int64 global px and ``(M,)`` float32 p of the candidates >= ``keep_from``."""
        self._compact()
        if not self._kept_p:
            return np.zeros((0, 2), np.int64), np.zeros(0, np.float32)
        return np.concatenate(self._kept_xy), np.concatenate(self._kept_p)


def crop_patches(
    batch_hwc: torch.Tensor, b: torch.Tensor, x: torch.Tensor, y: torch.Tensor, patch_px: int
) -> torch.Tensor:
    """Gather ``(n, 3, P, P)`` uint8 patches around pixels ``(x, y)`` of tiles ``b``.

    ``batch_hwc`` is ``(B, S, S, 3)``; the patch of pixel ``(x, y)`` spans columns
    ``x - P // 2`` to ``x - P // 2 + P - 1`` (centred on the pixel for odd ``P``,
    half a pixel off for even ``P``). The result is a channels-last view.
    """
    offsets = torch.arange(patch_px, device=batch_hwc.device) - patch_px // 2
    rows = (y[:, None] + offsets)[:, :, None]  # (n, P, 1)
    cols = (x[:, None] + offsets)[:, None, :]  # (n, 1, P)
    patches = batch_hwc[b[:, None, None], rows, cols]  # (n, P, P, 3)
    return patches.permute(0, 3, 1, 2)
