"""Batches of stored patches on the training device, without starving it.

:class:`PatchBatches` serves a fixed set of store rows (a stage's training
set) as ``uint8`` batches on the device. When the selected patches fit a memory
budget they are copied to the device once (GPU memory on CUDA, RAM on the CPU)
and every batch is an index operation there; otherwise a background thread
reads each batch from the memory-mapped store into pinned memory and copies it
with ``non_blocking=True`` while the device computes the previous one.

The order of every epoch is drawn from ``numpy.random.default_rng((seed, epoch))``,
so an epoch is the same whether the run was resumed or not, on any device.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

__all__ = ["Batch", "PatchBatches", "default_cache_bytes"]

Mode = Literal["balanced", "shuffle", "sequential"]


@dataclass
class Batch:
    """One batch on the device.

    Attributes
    ----------
    patches : Tensor
        ``(B, 3, C, C)`` uint8 with context.
    labels : Tensor
        ``(B,)`` int64.
    positions : Tensor
        ``(B,)`` int64 positions into the sample list (not store rows).
    """

    patches: Tensor
    labels: Tensor
    positions: Tensor


def default_cache_bytes(device: torch.device) -> int:
    """How many bytes of patches may be kept on ``device`` for a stage.

    CUDA: a third of the free GPU memory; CPU: 4 GiB.
    """
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free // 3)
    return 4 << 30


class PatchBatches:
    """Batches of a fixed list of store rows, on ``device``.

    Parameters
    ----------
    patches : ndarray
        The store's ``(N, 3, C, C)`` uint8 array (usually a memmap).
    rows : ndarray
        ``(M,)`` store rows of the samples.
    labels : ndarray
        ``(M,)`` class of each sample (0/1; the training label, which may differ
        from the store's).
    batch_size : int
    device : torch.device
    mode : {"balanced", "shuffle", "sequential"}
        ``balanced``: each epoch draws M samples with replacement, each class
        equally likely (class-balanced sampling); ``shuffle``: a permutation
        (every sample once per epoch); ``sequential``: store order, for scoring.
    seed : int
        Seed of the epoch orders.
    drop_last : bool
        Drop an incomplete last batch (training with batch norm).
    cache_bytes : int, optional
        Budget to hold the patches on the device (default :func:`default_cache_bytes`);
        0 forces streaming from the store.
    """

    def __init__(
        self,
        patches: np.ndarray,
        rows: np.ndarray,
        labels: np.ndarray,
        *,
        batch_size: int,
        device: torch.device,
        mode: Mode = "shuffle",
        seed: int = 0,
        drop_last: bool = False,
        cache_bytes: int | None = None,
    ) -> None:
        self.rows = np.asarray(rows, dtype=np.int64)
        self.labels_np = np.asarray(labels, dtype=np.int64)
        if self.rows.shape != self.labels_np.shape:
            raise ValueError(f"{self.rows.shape[0]} rows but {self.labels_np.shape[0]} labels")
        self.source = patches
        self.batch_size = max(1, int(batch_size))
        self.device = torch.device(device)
        self.mode = mode
        self.seed = int(seed)
        self.drop_last = bool(drop_last) and len(self.rows) > self.batch_size
        per_patch = int(np.prod(patches.shape[1:]))
        budget = default_cache_bytes(self.device) if cache_bytes is None else int(cache_bytes)
        self.cached = len(self.rows) * per_patch <= budget
        self.labels = torch.from_numpy(self.labels_np).to(self.device)
        self._data: Tensor | None = None
        if self.cached and len(self.rows):
            order = np.argsort(self.rows, kind="stable")
            host = np.empty((len(self.rows), *patches.shape[1:]), np.uint8)
            host[order] = patches[self.rows[order]]  # sorted read: sequential on disk
            self._data = torch.from_numpy(host).to(self.device)

    def __len__(self) -> int:
        n = len(self.rows)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def n_samples(self) -> int:
        """Samples served per epoch."""
        return len(self) * self.batch_size if self.drop_last else len(self.rows)

    def order(self, epoch: int) -> np.ndarray:
        """Positions served in ``epoch`` (deterministic in ``(seed, epoch)``)."""
        n = len(self.rows)
        if self.mode == "sequential" or n == 0:
            return np.arange(n)
        rng = np.random.default_rng((self.seed, int(epoch)))
        if self.mode == "shuffle":
            return rng.permutation(n)
        counts = np.bincount(self.labels_np).astype(float)
        w = 1.0 / counts[self.labels_np]  # every class present gets the same total weight
        return rng.choice(n, size=n, replace=True, p=w / w.sum())

    def epoch(self, epoch: int = 0) -> Iterator[Batch]:
        """Iterate over the batches of ``epoch``."""
        order = self.order(epoch)
        if self.drop_last:
            order = order[: len(self) * self.batch_size]
        chunks = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        if self._data is not None:
            for pos in chunks:
                p = torch.from_numpy(pos).to(self.device)
                yield Batch(self._data.index_select(0, p), self.labels[p], p)
            return
        yield from self._stream(chunks)

    def __iter__(self) -> Iterator[Batch]:
        return self.epoch(0)

    def _read(self, pos: np.ndarray) -> Tensor:
        rows = self.rows[pos]
        order = np.argsort(rows, kind="stable")
        host = np.empty((len(rows), *self.source.shape[1:]), np.uint8)
        host[order] = self.source[rows[order]]
        t = torch.from_numpy(host)
        return t.pin_memory() if self.device.type == "cuda" else t

    def _stream(self, chunks: list[np.ndarray]) -> Iterator[Batch]:
        q: queue.Queue = queue.Queue(maxsize=4)
        stop = threading.Event()

        def work() -> None:
            try:
                for pos in chunks:
                    if stop.is_set():
                        return
                    q.put((pos, self._read(pos)))
            except BaseException as exc:  # handed to the consumer, re-raised there
                q.put(exc)
                return
            q.put(None)

        t = threading.Thread(target=work, name="wsdal-patch-reader", daemon=True)
        t.start()
        try:
            while True:
                item = q.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                pos, host = item
                p = torch.from_numpy(pos).to(self.device)
                yield Batch(host.to(self.device, non_blocking=True), self.labels[p], p)
        finally:
            stop.set()
            while t.is_alive():
                try:
                    q.get_nowait()
                except queue.Empty:
                    t.join(timeout=0.05)
