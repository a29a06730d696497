"""Reading tiles ahead of the device: threads, a bounded queue, pinned buffers on CUDA.

:class:`TileStream` hands the engine one tile's pixels after another, in grid
order, while ``threads`` worker threads decode the next ones. At most ``depth``
tiles are read ahead (queued or being decoded), so memory stays flat whatever
the slide size: about ``depth + 2`` tiles of pixels. On CUDA each tile is
copied into a page-locked (pinned) buffer taken from a fixed pool, so the
host-to-device copy can be asynchronous (``non_blocking=True``); the engine
hands the buffer back with :meth:`TileStream.release` once the copy is done.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["ReadTile", "TileStream"]


@dataclass
class ReadTile:
    """One tile's pixels, as the stream yields them.

    Attributes
    ----------
    index : int
        Position of the tile in the grid list.
    tile : wsdal_wsi.slide.Tile
    pixels : torch.Tensor
        ``(S, S, 3)`` uint8 RGB on the CPU (pinned on CUDA), ``S`` the read side
        in px at the target resolution.
    """

    index: int
    tile: Any
    pixels: torch.Tensor


class TileStream:
    """Decode tiles in background threads; iterate to get them in order.

    Parameters
    ----------
    slide : wsdal_wsi.slide.Slide
        Thread-safe reader (``read_region``).
    tiles : sequence of Tile
        The tiles, in the order they are wanted.
    read_px : int
        Side of every read in px at ``target_mpp`` (tiles at the slide's right
        and bottom edges are read at the same size; beyond the slide is white).
    target_mpp : float
        Resolution of the reads (µm/px).
    threads : int
        Reader threads (>= 1).
    depth : int
        Largest number of tiles read ahead of the consumer (>= 1).
    pinned : bool
        Copy each tile into a buffer of a fixed pool, page-locked (pinned) for
        asynchronous copies to CUDA.
    held : int
        Largest number of yielded tiles the consumer holds before releasing
        them (sizes the pool: ``depth + held`` buffers).
    pin_memory : bool, optional
        Page-lock the pool's buffers (default: ``pinned``; needs CUDA). False
        keeps the pool in ordinary memory (tests of the pool without a GPU).

    Attributes
    ----------
    read_s : float
        Total time the reader threads spent decoding (s, summed over threads).
    wait_s : float
        Time the consumer waited for a tile that was not ready yet (s).
    """

    def __init__(
        self,
        slide: Any,
        tiles: Sequence[Any],
        *,
        read_px: int,
        target_mpp: float,
        threads: int,
        depth: int,
        pinned: bool = False,
        held: int = 1,
        pin_memory: bool | None = None,
    ) -> None:
        self.slide = slide
        self.tiles = list(tiles)
        self.read_px = int(read_px)
        self.target_mpp = float(target_mpp)
        self.threads = max(1, int(threads))
        self.depth = max(1, int(depth))
        self.pinned = bool(pinned)
        self.read_s = 0.0
        self.wait_s = 0.0
        self._lock = threading.Lock()
        self._buffers: queue.Queue[torch.Tensor] | None = None
        if self.pinned:
            # depth buffers being filled or queued, plus those the consumer holds: a
            # read can always get one, so the pool never deadlocks.
            self._buffers = queue.Queue()
            pin = self.pinned if pin_memory is None else bool(pin_memory)
            for _ in range(self.depth + max(1, int(held))):
                buf = torch.empty((self.read_px, self.read_px, 3), dtype=torch.uint8)
                self._buffers.put(buf.pin_memory() if pin else buf)

    def _read(self, tile: Any) -> torch.Tensor:
        t0 = time.perf_counter()
        rgb = self.slide.read_region(
            tile.location_level0, (self.read_px, self.read_px), target_mpp=self.target_mpp
        )
        if self._buffers is not None:
            buf = self._buffers.get()
            # numpy's copy: one thread, GIL released (torch's copy_ would start an
            # OpenMP team from every reader thread).
            np.copyto(buf.numpy(), rgb)
            out = buf
        else:
            out = torch.from_numpy(np.ascontiguousarray(rgb))
        with self._lock:
            self.read_s += time.perf_counter() - t0
        return out

    def release(self, pixels: torch.Tensor) -> None:
        """Give a pinned buffer back to the pool (no-op without pinning).

        Call only once no copy from it is pending (e.g. after the device work
        that used it has been synchronised).
        """
        if self._buffers is not None:
            self._buffers.put(pixels)

    def __iter__(self) -> Iterator[ReadTile]:
        pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="wsdal-read")
        pending: deque[tuple[int, Future[torch.Tensor]]] = deque()
        next_index = 0
        try:
            while next_index < len(self.tiles) and len(pending) < self.depth:
                pending.append((next_index, pool.submit(self._read, self.tiles[next_index])))
                next_index += 1
            while pending:
                index, future = pending.popleft()
                t0 = time.perf_counter()
                pixels = future.result()
                self.wait_s += time.perf_counter() - t0
                if next_index < len(self.tiles):
                    pending.append((next_index, pool.submit(self._read, self.tiles[next_index])))
                    next_index += 1
                yield ReadTile(index, self.tiles[index], pixels)
        finally:
            # Stop early (an error downstream, or the consumer stopped): reads not
            # started are cancelled, those running finish and are dropped.
            for _, future in pending:
                future.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
