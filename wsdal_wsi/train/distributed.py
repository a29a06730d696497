"""Training on several processes with torchrun: DistributedDataParallel in every stage.

``torchrun --standalone --nproc-per-node N -m wsdal_wsi train SOURCE --out RUN ...``
starts N copies of ``wsdal train``; :func:`distributed_session` joins them into one
process group from torchrun's environment (NCCL on CUDA, one GPU per process;
gloo on the CPU) and every stage then trains one network together, in the style of
the torchvision references (``is_main_process``, ``save_on_master``):

- each process sees a share of every batch (:class:`~wsdal_wsi.train.data.PatchBatches`
  with ``rank``/``world``: the global batch of the single-process run is split, so the
  schedule and the hyper-parameters mean the same), and DistributedDataParallel
  averages the gradients;
- whatever a stage computes over all samples (scores for mining and the threshold,
  DMU features, CSDGL projections) is computed in shares and gathered
  (:func:`fill_across_ranks`), DMU's memory is merged after every epoch, CSDGL's
  subclasses are broadcast from rank 0, so every process holds the same state;
- only rank 0 writes files (:func:`is_main_process`); steps that only read and write
  files (the patch store's extraction, the config check, DLE, the label audit) run on
  rank 0 alone while the others wait (:func:`on_main`), and a stage's files are read
  after a :func:`barrier`.

Without torchrun (or with one process) every helper is a no-op and training is the
single-process code path, unchanged.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from wsdal_wsi.errors import ConfigError, WsdalError
from wsdal_wsi.model.device import resolve_device

__all__ = [
    "TIMEOUT",
    "all_reduce_sum",
    "barrier",
    "broadcast_",
    "distributed_session",
    "fill_across_ranks",
    "is_distributed",
    "is_main_process",
    "launched_rank",
    "on_main",
    "rank",
    "sync_buffers",
    "world_size",
    "wrap_ddp",
]

T = TypeVar("T")

#: How long a process waits for the others (rank 0 extracting a large patch store).
TIMEOUT = timedelta(hours=6)

_CONTROL: dict[str, Any] = {}  # the gloo group for objects and barriers (CPU-side control)


def launched_rank() -> int:
    """This process's rank as torchrun set it (``RANK``; 0 when not launched by torchrun)."""
    return int(os.environ.get("RANK", "0") or 0)


def is_distributed() -> bool:
    """True inside a process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 alone)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Processes training together (1 alone)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """Whether this process writes the run's files (rank 0, or alone)."""
    return rank() == 0


def _control() -> Any:
    return _CONTROL.get("group")


def barrier() -> None:
    """Wait until every process got here (no-op alone)."""
    if is_distributed():
        dist.barrier(group=_control())


def _device_for_collectives(t: Tensor) -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if _is_nccl() else t.device


def _is_nccl() -> bool:
    return is_distributed() and dist.get_backend() == "nccl"


def all_reduce_sum(t: Tensor) -> Tensor:
    """Sum ``t`` over the processes, in place (returned); no-op alone."""
    if not is_distributed():
        return t
    dev = _device_for_collectives(t)
    if dev == t.device:
        dist.all_reduce(t)
        return t
    moved = t.to(dev)
    dist.all_reduce(moved)
    t.copy_(moved)
    return t


def broadcast_(t: Tensor, src: int = 0) -> Tensor:
    """Overwrite ``t`` with rank ``src``'s, in place (returned); no-op alone."""
    if not is_distributed():
        return t
    dev = _device_for_collectives(t)
    moved = t if dev == t.device else t.to(dev)
    dist.broadcast(moved, src=src)
    if moved is not t:
        t.copy_(moved)
    return t


def fill_across_ranks(out: np.ndarray | None, n: int) -> np.ndarray:
    """The rows every process filled, gathered: each process filled its own rows of an
    ``(n, ...)`` array (zeros elsewhere, or ``None`` for none), all get the whole array."""
    if not is_distributed():
        return out if out is not None else np.zeros((0,), np.float32)
    shapes: list[Any] = [None] * world_size()
    mine = None if out is None else (tuple(out.shape[1:]), out.dtype.str)
    dist.all_gather_object(shapes, mine, group=_control())
    known = [s for s in shapes if s is not None]
    if not known:
        return np.zeros((0,), np.float32)
    trailing, dtype = known[0]
    if out is None:
        out = np.zeros((n, *trailing), np.dtype(dtype))
    t = torch.from_numpy(np.ascontiguousarray(out))
    return all_reduce_sum(t).numpy()


def sync_buffers(model: nn.Module) -> None:
    """Give every process rank 0's buffers (batch-norm statistics differ per process)."""
    for b in model.buffers():
        broadcast_(b.data)


def on_main(fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0 only; the others wait and get its result, or its error.

    ``fn``'s result must be picklable (small: it is broadcast). A
    :class:`~wsdal_wsi.errors.WsdalError` on rank 0 is raised on every process
    with the same message, so all stop the same way.
    """
    if not is_distributed():
        return fn()
    box: list[Any] = [None]
    if is_main_process():
        try:
            box[0] = ("ok", fn())
        except WsdalError as exc:
            box[0] = ("error", exc)
        except BaseException as exc:
            box[0] = ("crash", f"{type(exc).__name__}: {exc}")
            dist.broadcast_object_list(box, src=0, group=_control())
            raise
    dist.broadcast_object_list(box, src=0, group=_control())
    kind, value = box[0]
    if kind == "error":
        raise value
    if kind == "crash":
        raise RuntimeError(f"rank 0 failed: {value}")
    return value


class _Entry(nn.Module):
    """``forward(method, *args)``: every entry point of a network through one forward, so
    DistributedDataParallel sees (and synchronises) calls like ``forward_views``."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, method: str, *args: Any) -> Any:
        return self.net(*args) if method == "forward" else getattr(self.net, method)(*args)


class _Calls:
    """What a stage's loss function sees: the network's calls, through DDP."""

    def __init__(self, ddp: nn.Module) -> None:
        self._ddp = ddp

    def __call__(self, *args: Any) -> Any:
        return self._ddp("forward", *args)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        ddp = self._ddp
        return lambda *args: ddp(name, *args)


def wrap_ddp(
    model: nn.Module, device: torch.device, *, unused_parameters: bool = False
) -> tuple[nn.Module, Any]:
    """``(ddp, calls)``: the DDP module to train (``.train()``, the optimizer's parameters
    are ``model``'s) and the object a loss function calls like ``model``."""
    ids = [device.index] if device.type == "cuda" else None
    ddp = nn.parallel.DistributedDataParallel(
        _Entry(model), device_ids=ids, find_unused_parameters=unused_parameters
    )
    return ddp, _Calls(ddp)


@contextlib.contextmanager
def distributed_session(device: str | torch.device) -> Iterator[torch.device]:
    """Join torchrun's process group (if it started several); yield this process's device.

    Launched with one process, or without torchrun: yields ``resolve_device(device)``
    and does nothing else. With several: NCCL and ``cuda:LOCAL_RANK`` when the device
    is CUDA, gloo on the CPU; the group is left at the end. A group the caller already
    made is used as it is.

    Raises
    ------
    ConfigError
        CUDA with fewer visible GPUs than processes per node.
    """
    dev = resolve_device(str(device))
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1 or (dist.is_available() and dist.is_initialized()):
        yield _local_device(dev) if is_distributed() else dev
        return
    local = int(os.environ.get("LOCAL_RANK", "0") or 0)
    if dev.type == "cuda":
        if local >= torch.cuda.device_count():
            raise ConfigError(
                f"torchrun: process {local} of this node has no GPU "
                f"({torch.cuda.device_count()} visible); start at most that many per node"
            )
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, timeout=TIMEOUT)
    _CONTROL["group"] = (
        dist.new_group(backend="gloo", timeout=TIMEOUT) if backend == "nccl" else None
    )
    try:
        yield dev
    finally:
        _CONTROL.clear()
        dist.destroy_process_group()


def _local_device(dev: torch.device) -> torch.device:
    if dev.type == "cuda":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0") or 0))
    return dev
