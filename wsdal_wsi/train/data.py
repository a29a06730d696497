"""Batches of stored patches on the training device, without starving it.

:class:`PatchBatches` serves a fixed set of store rows (a stage's training
set) as ``uint8`` batches on the device. When the selected patches fit a memory
budget they are copied to the device once (GPU memory on CUDA, RAM on the CPU)
and every batch is an index operation there; otherwise a few threads read
the next batches from the memory-mapped store straight into pinned memory, and
each is copied with ``non_blocking=True`` while the device computes.

The order of every epoch is drawn from ``numpy.random.default_rng((seed, epoch))``,
so an epoch is the same whether the run was resumed or not, on any device.

Trained by several processes (torchrun, ``world > 1``), every process draws the
same epoch order and cuts the same global batches; process ``rank`` takes every
``world``-th sample of each (a distributed sampler that splits each batch, so the
global batch and the number of steps are those of one process). A last batch too
small to give each process two samples joins the previous one. Sequential batches
(scoring every sample) are split the same way, without the equal-steps constraint.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from wsdal_wsi.errors import TrainingError

__all__ = ["Batch", "PatchBatches", "default_cache_bytes"]

Mode = Literal["balanced", "shuffle", "sequential"]

#: Threads reading streamed batches from the store, and batches read ahead.
READ_THREADS = 3
PREFETCH = 6


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
    groups : ndarray, optional
        ``(M,)`` int group of each sample (``shuffle`` mode only): each epoch serves
        one randomly chosen member of every group, so the jittered copies of a click
        count as one sample seen in a different copy each epoch.
    rank, world : int
        This process's share of every batch, when ``world`` processes train
        together (see the module docstring; default: one process).
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
        groups: np.ndarray | None = None,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} of {world} processes")
        self.rank, self.world = int(rank), int(world)
        self._shares: tuple[int, int] | None = None
        self.rows = np.asarray(rows, dtype=np.int64)
        self.labels_np = np.asarray(labels, dtype=np.int64)
        if self.rows.shape != self.labels_np.shape:
            raise ValueError(f"{self.rows.shape[0]} rows but {self.labels_np.shape[0]} labels")
        self.source = patches
        self.batch_size = max(1, int(batch_size))
        self.device = torch.device(device)
        self.mode = mode
        self.seed = int(seed)
        self.groups = None
        if groups is not None:
            if mode != "shuffle" or len(groups) != len(self.rows):
                raise ValueError("groups need shuffle mode and one group per sample")
            _, self.groups = np.unique(np.asarray(groups), return_inverse=True)
            self._members = np.argsort(self.groups, kind="stable")
            self._starts = np.searchsorted(self.groups[self._members], np.arange(self.n_groups))
            self._sizes = np.bincount(self.groups)
        self.drop_last = bool(drop_last) and self.n_per_epoch > self.batch_size
        if self.world > 1 and mode != "sequential" and self.n_per_epoch < 2 * self.world:
            raise TrainingError(
                f"{self.n_per_epoch} training samples are too few for {self.world} processes "
                "(each needs two per batch); train with fewer processes"
            )
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

    @property
    def n_groups(self) -> int:
        """Groups (samples without ``groups``)."""
        return int(self.groups.max()) + 1 if self.groups is not None and len(self.groups) else 0

    @property
    def n_per_epoch(self) -> int:
        """Positions in an epoch's order (one per group with ``groups``)."""
        return self.n_groups if self.groups is not None else len(self.rows)

    def __len__(self) -> int:
        if self.world > 1:
            return self._share()[0]
        n, b = self.n_per_epoch, self.batch_size
        if self.drop_last:
            return n // b
        k = -(-n // b)
        return k - 1 if k >= 2 and n % b == 1 else k  # a last batch of one joins the previous

    @property
    def n_samples(self) -> int:
        """Samples served per epoch (to this process)."""
        if self.world > 1:
            return self._share()[1]
        return len(self) * self.batch_size if self.drop_last else self.n_per_epoch

    def _share(self) -> tuple[int, int]:
        """This process's batches and samples per epoch (the same every epoch)."""
        if self._shares is None:
            chunks = self._chunks(self.order(0))
            self._shares = (len(chunks), int(sum(len(c) for c in chunks)))
        return self._shares

    def order(self, epoch: int) -> np.ndarray:
        """Positions served in ``epoch`` (deterministic in ``(seed, epoch)``)."""
        n = len(self.rows)
        if self.mode == "sequential" or n == 0:
            return np.arange(n)
        rng = np.random.default_rng((self.seed, int(epoch)))
        if self.groups is not None:
            pick = self._starts + (rng.random(self.n_groups) * self._sizes).astype(np.int64)
            return self._members[pick][rng.permutation(self.n_groups)]
        if self.mode == "shuffle":
            return rng.permutation(n)
        counts = np.bincount(self.labels_np).astype(float)
        w = 1.0 / counts[self.labels_np]  # every class present gets the same total weight
        return rng.choice(n, size=n, replace=True, p=w / w.sum())

    def _chunks(self, order: np.ndarray) -> list[np.ndarray]:
        """The positions of each batch of an epoch's ``order``, for this process."""
        b, world = self.batch_size, self.world
        if world > 1 and self.mode == "sequential":
            own = order[self.rank :: world]
            return [own[i : i + b] for i in range(0, len(own), b)]
        if self.drop_last:
            order = order[: (self.n_per_epoch // b if world > 1 else len(self)) * b]
        chunks = [order[i : i + b] for i in range(0, len(order), b)]
        # a batch of one breaks batch norm in training: give it to the previous batch
        # (several processes: each needs two samples of it)
        if len(chunks) >= 2 and len(chunks[-1]) < 2 * world:
            last = chunks.pop()
            chunks[-1] = np.concatenate([chunks[-1], last])
        return chunks if world == 1 else [c[self.rank :: world] for c in chunks]

    def epoch(self, epoch: int = 0) -> Iterator[Batch]:
        """Iterate over the batches of ``epoch`` (this process's share of them)."""
        order = self.order(epoch)
        chunks = self._chunks(order)
        # the epoch's order goes to the device once: slicing it there needs no host sync
        order_dev = torch.from_numpy(np.concatenate(chunks) if chunks else order).to(self.device)
        bounds = np.cumsum([0] + [len(c) for c in chunks])
        if self._data is not None:
            for i in range(len(chunks)):
                p = order_dev[bounds[i] : bounds[i + 1]]
                yield Batch(self._data.index_select(0, p), self.labels[p], p)
            return
        yield from self._stream(chunks, order_dev, bounds)

    def __iter__(self) -> Iterator[Batch]:
        return self.epoch(0)

    def _read(self, pos: np.ndarray) -> Tensor:
        """Read a batch from the store (sorted rows: sequential on disk), pinned on CUDA."""
        rows = self.rows[pos]
        order = np.argsort(rows, kind="stable")
        shape = (len(rows), *self.source.shape[1:])
        t = torch.empty(shape, dtype=torch.uint8, pin_memory=self.device.type == "cuda")
        t.numpy()[order] = self.source[rows[order]]
        return t

    def _stream(
        self, chunks: list[np.ndarray], order_dev: Tensor, bounds: np.ndarray
    ) -> Iterator[Batch]:
        """Batches read by a few threads, ``PREFETCH`` ahead, in order."""
        with ThreadPoolExecutor(max_workers=READ_THREADS, thread_name_prefix="wsdal-read") as pool:
            pending: deque = deque()
            nxt = 0
            try:
                while nxt < len(chunks) or pending:
                    while nxt < len(chunks) and len(pending) < PREFETCH:
                        pending.append(pool.submit(self._read, chunks[nxt]))
                        nxt += 1
                    i = nxt - len(pending)
                    host = pending.popleft().result()
                    p = order_dev[bounds[i] : bounds[i + 1]]
                    yield Batch(host.to(self.device, non_blocking=True), self.labels[p], p)
            finally:
                for f in pending:
                    f.cancel()
