"""Settings of the cascade's first stage (a preset's ``cascade``).

Kept apart from :mod:`wsdal_wsi.train.cascade` (which re-exports it) so that the
presets can hold it without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from wsdal_wsi.errors import ConfigError

__all__ = ["CascadeSettings"]


@dataclass(frozen=True)
class CascadeSettings:
    """Settings of the cascade's first stage.

    Attributes
    ----------
    epochs, batch_size, lr, weight_decay
        Distillation schedule (AdamW, cosine decay); at least ``min_steps``
        optimiser steps in all (more epochs on a small store).
    min_steps : int
    views : int
        Flips and turns of each training patch the first stage learns from (1 to
        8, of :data:`wsdal_wsi.train.cascade.VIEWS`: the final model scores each of
        them, so this multiplies its work).
    appearance : bool
        Distil from patches recoloured and blurred
        (:data:`~wsdal_wsi.train.augment.APPEARANCE`, raised to the run's stain
        jitter); False: from the stored patches as they are.
    width : int
        Channels of the first stage's first convolution.
    downsample : int
        The first stage sees the patch average-pooled by this factor.
    keep_fraction : float
        Fraction of the final model's detections on the validation slides the
        first stage must let through (0.995).
    max_samples : int
        Training patches distilled at most (a seeded subset beyond).
    logit_clip : float
        The teacher's logits are clipped to ``[-logit_clip, logit_clip]``.
    positive_weight : float
        Extra weight of a patch, times the final model's probability.
    margin : float
        Every first-stage cut is lowered by this much (logit units). The cuts are
        chosen on the store's patches, which are read centred on the candidate's
        pixel centre (resampled by half a pixel), while inference crops the tile's
        own pixels: the same candidate's logit differs by up to about 0.1 between
        the two (and bf16 on CUDA rounds it too).
    """

    epochs: int = 8
    min_steps: int = 1200
    views: int = 4
    appearance: bool = True
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 1e-4
    width: int = 16
    downsample: int = 2
    keep_fraction: float = 0.995
    max_samples: int = 50_000
    logit_clip: float = 10.0
    positive_weight: float = 4.0
    margin: float = 0.25

    def __post_init__(self) -> None:
        if not 0.0 < self.keep_fraction <= 1.0:
            raise ConfigError(f"keep_fraction must be in (0, 1], got {self.keep_fraction!r}")
        for name in ("epochs", "min_steps", "batch_size", "width", "downsample", "max_samples"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"CascadeSettings.{name} must be >= 1")
        if not 1 <= int(self.views) <= 8:
            raise ConfigError(f"CascadeSettings.views must be in 1..8, got {self.views!r}")
        if not self.margin >= 0.0:
            raise ConfigError(f"CascadeSettings.margin must be >= 0, got {self.margin!r}")
