"""Patches on the device: cropping around candidates, and batched classification.

:func:`crop_patches` gathers the patches of many candidates of many tiles at
once (one advanced-indexing gather, no per-patch loop). :class:`PatchClassifier`
pools them across tiles and runs the model on full batches, keeping every
result on the device until the end (no synchronisation per batch).

With a cascade (a model file with a first stage, :mod:`wsdal_wsi.model.cascade`),
every pooled batch is scored by the first stage; the patches at or above its
threshold for the detection threshold go to a second pool, which the final
network scores in full batches. The others are never scored by the final network
(below the threshold by the first stage's judgement: not detections).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch.profiler import record_function

__all__ = ["PatchClassifier", "crop_patches"]


class _Pool:
    """Patches with their global px, waiting for a full batch."""

    def __init__(self) -> None:
        self._patches: list[torch.Tensor] = []
        self._xy: list[torch.Tensor] = []
        self.n = 0

    def add(self, patches: torch.Tensor, xy: torch.Tensor) -> None:
        if patches.shape[0]:
            self._patches.append(patches)
            self._xy.append(xy)
            self.n += patches.shape[0]

    def take(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``n`` pooled patches and their px (the rest stays)."""
        patches = torch.cat(self._patches) if len(self._patches) > 1 else self._patches[0]
        xy = torch.cat(self._xy) if len(self._xy) > 1 else self._xy[0]
        rest = patches.shape[0] - n
        self._patches = [patches[n:]] if rest else []
        self._xy = [xy[n:]] if rest else []
        self.n = rest
        return patches[:n], xy[:n]


class PatchClassifier:
    """Pools patches of several tiles and classifies them in batches of ``batch_size``.

    Keeps every result on the device (no synchronisation per batch); call
    :meth:`results` at the end.

    Parameters
    ----------
    model : wsdal_wsi.model.file.LoadedModel
    batch_size : int
        Patches per batch of each network.
    threshold : float
        Detection threshold on p(mitosis): the cascade's cut is the one for it.
    keep_from : float, optional
        Candidates scored by the final network with p(mitosis) at or above it
        are kept (default ``threshold``; lower to keep the near misses too). With
        the cascade, a candidate its first stage stops is not kept, whatever its
        p would have been: the cut keeps at least 99.5 % of the detections at
        ``threshold``, and the near misses are those that reached the final network.
    cascade : bool
        Use the model's cascade when it has one for ``threshold`` (False: every
        candidate gets the final network).

    Attributes
    ----------
    n_classified : int
        Candidates scored (by the first stage, or by the final network alone).
    n_full : int
        Candidates scored by the final network.
    first_threshold : float or None
        The first stage's logit cut in use (None: no cascade).
    seconds : float
        Time spent classifying (both stages).
    """

    def __init__(
        self,
        model: Any,
        *,
        batch_size: int,
        threshold: float,
        keep_from: float | None = None,
        cascade: bool = True,
    ) -> None:
        self.model = model
        self.batch_size = batch_size
        self.threshold = threshold
        self.keep_from = threshold if keep_from is None else keep_from
        self.first_threshold = model.first_threshold(threshold) if cascade else None
        self._first = _Pool()
        self._full = _Pool()
        self._out_xy: list[torch.Tensor] = []
        self._out_p: list[torch.Tensor] = []
        self._kept_xy: list[np.ndarray] = []
        self._kept_p: list[np.ndarray] = []
        self.n_classified = 0
        self.n_full = 0
        self.seconds = 0.0

    def add(self, patches: torch.Tensor, xy: torch.Tensor) -> None:
        """Queue ``(n, 3, P, P)`` uint8 patches with their ``(n, 2)`` int64 global px."""
        if patches.shape[0] == 0:
            return
        if self.first_threshold is None:
            self.n_classified += patches.shape[0]
            self._full.add(patches, xy)
        else:
            self._first.add(patches, xy)
            while self._first.n >= self.batch_size:
                self._run_first(self.batch_size)
        while self._full.n >= self.batch_size:
            self._run_full(self.batch_size)

    def flush(self) -> None:
        """Classify what is left in the pools."""
        if self._first.n:
            self._run_first(self._first.n)
        while self._full.n:
            self._run_full(min(self._full.n, self.batch_size))

    def _run_first(self, n: int) -> None:
        t0 = time.perf_counter()
        patches, xy = self._first.take(n)
        with record_function("classify.first_stage"):
            keep = self.model.first_stage_logits(patches) >= self.first_threshold
        self._full.add(patches[keep], xy[keep])
        self.n_classified += n
        self.seconds += time.perf_counter() - t0

    def _run_full(self, n: int) -> None:
        t0 = time.perf_counter()
        batch, xy = self._full.take(n)
        with record_function("classify.final_network"):
            prob = self.model.predict_proba(batch)
        self._out_xy.append(xy)
        self._out_p.append(prob)
        self.n_full += n
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
