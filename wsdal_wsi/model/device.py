"""Where a network runs: choosing the device, moving a network there, mixed precision.

What training and inference share: ``resolve_device("auto")`` is CUDA when available,
else the CPU; CUDA gets bf16 autocast and channels-last memory, the CPU plain fp32.
Inference (:func:`prepare_inference`) folds batch norms into the convolutions before
them and uses channels-last memory on every device (oneDNN's fast path on a CPU:
1.4-1.8x for ResNet-18 at 80 px on the 2-core development machine, the same fp32
arithmetic).
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from wsdal_wsi.errors import ConfigError
from wsdal_wsi.model.nets import fold_batchnorm

__all__ = ["autocast", "prepare_inference", "prepare_model", "resolve_device"]


def resolve_device(name: str) -> torch.device:
    """``"auto"`` (CUDA when available, else CPU), ``"cuda"``, ``"cuda:N"`` or ``"cpu"``.

    Raises
    ------
    ConfigError
        ``cuda`` was asked for and is not available, or the name is unknown.
    """
    name = (name or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {name}: CUDA is not available on this machine")
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise ConfigError(f"--device must be auto, cuda or cpu, got {name!r}")


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA, nothing on the CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def prepare_model(model: nn.Module, device: torch.device) -> nn.Module:
    """Move ``model`` to ``device`` (channels-last on CUDA)."""
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    return model


def prepare_inference(model: nn.Module, device: torch.device) -> nn.Module:
    """Eval mode, batch norms folded, on ``device``, channels-last (any device)."""
    fold_batchnorm(model.eval())
    model.to(device)
    return model.to(memory_format=torch.channels_last)
