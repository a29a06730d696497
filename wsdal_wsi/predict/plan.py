"""What the engine reads and how: the tile plan of a slide and the engine's options.

The tiles lie on the model's global pixel lattice (:func:`wsdal_wsi.slide.tile_grid`)
over the inference area (the tissue mask dilated by one mask pixel); each is read
with a margin (:func:`margin_px_for`) so that the candidates and patches of its core
are exactly those of the whole slide. Device-dependent defaults (tile size, batch
size, reader threads) are decided here, once.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from wsdal_wsi.detect.candidates import CandidateParams
from wsdal_wsi.errors import ConfigError
from wsdal_wsi.slide import TissueMask, tile_grid
from wsdal_wsi.units import um_to_px

__all__ = [
    "TilePlan",
    "default_batch_size",
    "default_reader_threads",
    "default_tile_size",
    "engine_options",
    "inference_area",
    "margin_px_for",
    "plan_tiles",
    "tile_decode_device",
]

#: Extra context (µm) beyond what the candidate detector needs, against rounding.
_MARGIN_SLACK_UM = 2.0


def default_reader_threads(device: torch.device | str, *, cores: int | None = None) -> int:
    """Reader threads by default: all cores but one for the device loop (1 to 16).

    ``cores``: the cores this prediction may use (default: the machine's; a Ray task
    passes the CPUs it was given).
    """
    cores = cores or os.cpu_count() or 1
    if torch.device(device).type == "cuda":
        return max(1, min(16, cores - 1))
    # On the CPU the model needs the cores too: one reader is plenty.
    return 1 if cores <= 4 else 2


def default_tile_size(device: torch.device | str) -> int:
    """Core side of the tiles by default (px): 2048 on CUDA (less margin read twice), else 1024."""
    return 2048 if torch.device(device).type == "cuda" else 1024


def tile_decode_device(device: torch.device | str) -> str | None:
    """Where raw JPEG tiles are decoded: on the model's GPU (nvJPEG, in batches), else None.

    None keeps the reader threads' CPU decoder (libjpeg-turbo): on a CPU the model
    and the candidate detector need the cores, and decoding is a small part of them.
    """
    device = torch.device(device)
    return str(device) if device.type == "cuda" else None


def default_batch_size(device: torch.device | str) -> int:
    """Patches per classifier batch by default (large on CUDA, moderate on the CPU)."""
    return 2048 if torch.device(device).type == "cuda" else 256


def margin_px_for(*, patch_size_px: int, params: CandidateParams, target_mpp: float) -> int:
    """Tile margin (px at ``target_mpp``): half a patch, or the detector's context if larger.

    With this margin the candidates found in a tile's core, and the patches
    cropped around them, are those of the whole slide.
    """
    context_px = um_to_px(params.context_um() + _MARGIN_SLACK_UM, target_mpp)
    return int(max(math.ceil(patch_size_px / 2), math.ceil(context_px)))


def inference_area(tissue: TissueMask, *, dilate_px: int = 1) -> TissueMask:
    """The tissue mask dilated by ``dilate_px`` mask pixels (the area searched for mitoses)."""
    if dilate_px <= 0 or not tissue.mask.any():
        return tissue
    grown = ndimage.binary_dilation(
        tissue.mask, structure=np.ones((3, 3), bool), iterations=int(dilate_px)
    )
    return TissueMask(mask=grown, downsample=tissue.downsample)


@dataclass(frozen=True)
class TilePlan:
    """The tiles of a slide as the engine reads them.

    Attributes
    ----------
    tiles : list of Tile
        Tiles whose core touches the inference area, row by row.
    area : TissueMask
        The inference area (tissue dilated by one mask pixel).
    margin_px : int
        Context read around each core (px at the model's resolution).
    read_px : int
        Side of every read: ``tile_size_px + 2 * margin_px``.
    """

    tiles: list[Any]
    area: TissueMask
    margin_px: int
    read_px: int


def plan_tiles(slide: Any, spec: Any, *, tissue: TissueMask, tile_size_px: int) -> TilePlan:
    """The tiles :func:`predict_slide` reads for ``slide`` with a model of ``spec``.

    Parameters
    ----------
    slide : wsdal_wsi.slide.Slide
    spec : wsdal_wsi.model.file.ModelSpec
        Patch size, resolution and candidate settings.
    tissue : TissueMask
    tile_size_px : int
        Core side (px at ``spec.target_mpp``).
    """
    params = CandidateParams.from_dict(spec.candidate_params or {})
    area = inference_area(tissue)
    margin_px = margin_px_for(
        patch_size_px=int(spec.patch_size_px), params=params, target_mpp=spec.target_mpp
    )
    tiles = tile_grid(
        slide,
        target_mpp=spec.target_mpp,
        tile_size_px=tile_size_px,
        margin_px=margin_px,
        tissue=area,
    )
    return TilePlan(
        tiles=tiles, area=area, margin_px=margin_px, read_px=tile_size_px + 2 * margin_px
    )


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def engine_options(
    device: torch.device,
    *,
    tile_size_px: int | None,
    batch_size: int | None,
    reader_threads: int | None,
    tiles_per_step: int | None,
) -> tuple[int, int, int, int]:
    """The engine's options with the device's defaults for those not given, checked."""
    tiles_default = 8 if device.type == "cuda" else 1
    return (
        _check_int(
            "tile_size_px",
            default_tile_size(device) if tile_size_px is None else tile_size_px,
            16,
        ),
        _check_int(
            "batch_size", default_batch_size(device) if batch_size is None else batch_size, 1
        ),
        _check_int(
            "reader_threads",
            default_reader_threads(device) if reader_threads is None else reader_threads,
            1,
        ),
        _check_int(
            "tiles_per_step", tiles_default if tiles_per_step is None else tiles_per_step, 1
        ),
    )
