"""What every stage of a run starts from: the trunk's initial weights and the stage context.

:func:`resolve_init_weights` decides, once, which weights every trunk starts from
(``--init``, else ``--pretrained``, else local ImageNet weights, else none);
:func:`stage_context` builds the :class:`~wsdal_wsi.train.common.StageContext` the
stages share (device, process rank, patch store, negatives jittered as the store
jittered its positives).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from wsdal_wsi.errors import ConfigError, TrainingError
from wsdal_wsi.model.file import read_spec
from wsdal_wsi.model.nets import find_imagenet_weights
from wsdal_wsi.progress import NULL_PROGRESS, Progress
from wsdal_wsi.train.common import SampleSet, StageContext
from wsdal_wsi.train.distributed import rank, world_size
from wsdal_wsi.train.settings import RunSettings
from wsdal_wsi.train.store import PatchStore

__all__ = ["require_both_classes", "resolve_init_weights", "stage_context"]

log = logging.getLogger(__name__)


def resolve_init_weights(
    pretrained: str | None, width: int, init_model: str | None = None
) -> Path | None:
    """The weights every trunk starts from: ``--init`` (an earlier wsdal model), else
    ``--pretrained``, else local ImageNet weights (full width only), else none."""
    if init_model:
        spec = read_spec(init_model)  # ModelFileError (exit 2) for a wrong or damaged file
        if int(spec.arch_kwargs.get("width", 64)) != width:
            raise ConfigError(
                f"--init {init_model}: its network is {spec.arch_kwargs.get('width', 64)} "
                f"channels wide, the preset's {width}; use the same preset as that run"
            )
        return Path(init_model)
    if pretrained:
        p = Path(pretrained)
        if not p.is_file():
            raise ConfigError(f"--pretrained {p}: file not found")
        return p
    found = find_imagenet_weights()
    if found is not None and width == 64:
        return found
    return None


def stage_context(
    store: PatchStore,
    device: torch.device,
    settings: RunSettings,
    pretrained: Path | None,
    progress: Progress | None,
    cache_bytes: int | None,
) -> StageContext:
    """The stages' context; negatives jittered as the store jittered its positives."""
    preset = settings.preset
    ext = store.meta.get("settings", {}).get("extract", {})
    n_jitter = int(ext.get("n_jitter", 0) or 0)
    jitter_px = float(ext.get("jitter_px", 0.0) or 0.0)
    on = preset.extract.jitter_negatives and n_jitter > 0 and jitter_px > 0
    margin = (store.context_px - store.patch_px) / 2
    if on and jitter_px > margin:
        log.warning(
            "jitter of %g px beyond the stored context (%g px each side): shifted negatives "
            "show reflected borders the positives' copies do not",
            jitter_px,
            margin,
        )
    return StageContext(
        rank=rank(),
        world=world_size(),
        store=store,
        device=device,
        seed=settings.seed,
        width=preset.width,
        pretrained=pretrained,
        progress=progress or NULL_PROGRESS,
        cache_bytes=cache_bytes,
        negative_jitter_px=jitter_px if on else 0.0,
        negative_jitter_prob=n_jitter / (n_jitter + 1) if on else 0.0,
        stain_jitter=preset.stain_jitter,
    )


def require_both_classes(samples: SampleSet, what: str) -> None:
    n1, n0 = int(np.sum(samples.labels == 1)), int(np.sum(samples.labels == 0))
    if n1 < 2 or n0 < 2:
        raise TrainingError(f"{what}: too few samples left ({n1} mitosis, {n0} non-mitosis)")
