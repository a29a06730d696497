"""Settings of a prediction batch, and which of them decide the results.

:class:`PredictSettings` holds every option of ``wsdal predict`` that library
code needs. :func:`detection_key` is the part of them (with the model's hash and
the slide's resolution) that decides a slide's detections: a slide already
predicted with the same key is not predicted again (only recounted when the
hotspot settings changed). The tile size, batch size, reader threads and device
are not in it: results do not depend on them.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wsdal_wsi.counting import HotspotSettings
from wsdal_wsi.errors import ConfigError
from wsdal_wsi.model.file import ModelSpec
from wsdal_wsi.units import check_probability

__all__ = ["ENGINE_VERSION", "PredictSettings", "detection_key", "file_sha256"]

#: Bumped when the engine changes what it detects (invalidates earlier results on re-run).
#: 2: candidate maps by separable Gaussians, and the cascade's first stage.
ENGINE_VERSION = 2


@dataclass(frozen=True)
class PredictSettings:
    """Options of a prediction batch.

    Attributes
    ----------
    device : str
        ``"auto"`` (CUDA when available), ``"cuda"``, ``"cuda:N"`` or ``"cpu"``.
    tile_size_px : int or None
        Core side of the tiles, px at the model's resolution (None: 2048 on CUDA,
        1024 on the CPU; results do not depend on it: larger tiles read less
        margin twice, smaller ones hold less memory).
    batch_size : int or None
        Patches per classifier batch (None: 2048 on CUDA, 256 on the CPU).
    reader_threads : int or None
        Threads decoding tiles ahead of the device (None: all cores but one on
        CUDA, 1 on a small CPU).
    threshold : float or None
        Probability threshold overriding the model's own (recorded in every output;
        :meth:`threshold_for` applies it).
    hotspot : HotspotSettings
        Counting window and grading settings.
    thumbnail_px : int
        Longest side of the report's slide thumbnail (px).
    gallery_n : int
        Crops of the highest-scoring detections shown in the report.
    cascade : bool
        Let the model's cascade (when its file has one) decide which candidates
        the final network scores; False scores every candidate with it (for
        comparison: at most about 0.5 % of the detections differ).
    review_n : int
        ``WS-DAL check`` objects per slide: the least certain decisions, hotspot first
        (``--review N``; 0: none).
    """

    device: str = "auto"
    tile_size_px: int | None = None
    batch_size: int | None = None
    reader_threads: int | None = None
    threshold: float | None = None
    hotspot: HotspotSettings = field(default_factory=HotspotSettings)
    thumbnail_px: int = 1600
    gallery_n: int = 24
    cascade: bool = True
    review_n: int = 0

    def __post_init__(self) -> None:
        for name, minimum in (
            ("tile_size_px", 64),
            ("thumbnail_px", 64),
            ("gallery_n", 0),
            ("review_n", 0),
        ):
            value = getattr(self, name)
            if value is None and name == "tile_size_px":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
        for name in ("batch_size", "reader_threads"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.threshold is not None:
            object.__setattr__(self, "threshold", check_probability(self.threshold))
        if not isinstance(self.cascade, bool):
            raise ConfigError(f"cascade must be True or False, got {self.cascade!r}")
        if not isinstance(self.hotspot, HotspotSettings):
            raise ConfigError(f"hotspot must be HotspotSettings, got {type(self.hotspot).__name__}")

    def threshold_for(self, spec: ModelSpec) -> float:
        """The probability threshold a detection must reach: ``--threshold``, else the model's."""
        return spec.decision_threshold(self.threshold)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (for ``batch.json`` and provenance blocks)."""
        return {
            "device": self.device,
            "tile_size_px": self.tile_size_px,
            "batch_size": self.batch_size,
            "reader_threads": self.reader_threads,
            "threshold": self.threshold,
            "hotspot": self.hotspot.to_dict(),
            "thumbnail_px": self.thumbnail_px,
            "gallery_n": self.gallery_n,
            "cascade": self.cascade,
            "review_n": self.review_n,
        }


def detection_key(
    *,
    model_sha256: str,
    threshold: float,
    slide_mpp: float | None,
    target_mpp: float,
    cascade: bool = True,
) -> dict[str, Any]:
    """What decides a slide's detections (compared on re-runs to skip finished slides).

    Parameters
    ----------
    model_sha256 : str
        Hash of the model file.
    threshold : float
        The probability threshold applied (the model's or ``--threshold``).
    slide_mpp : float or None
        The slide's level-0 resolution used (µm/px).
    target_mpp : float
        The model's resolution (µm/px).
    cascade : bool
        Whether the model's cascade was allowed (``--no-cascade``: False, which
        enters the key; the default leaves the key as it was).

    Returns
    -------
    dict
        JSON-able.
    """
    key = {
        "engine_version": ENGINE_VERSION,
        "model_sha256": model_sha256,
        "threshold": round(float(threshold), 9),
        "slide_mpp": None if slide_mpp is None else round(float(slide_mpp), 9),
        "target_mpp": round(float(target_mpp), 9),
    }
    if not cascade:
        key["cascade"] = False
    return key


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 (hex) of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(Path(path), "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
