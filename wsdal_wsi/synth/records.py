"""Records of generated synthetic slides and datasets, and reading a dataset folder back.

:class:`SynthSlide` is what :func:`~wsdal_wsi.synth.generate_slide` returns
(paths and counts of one slide); a dataset folder's ``synth.json`` lists them,
and :func:`load_dataset` reads it back as a :class:`SynthDataset`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wsdal_wsi.errors import InputError

__all__ = ["MANIFEST_NAME", "MANIFEST_VERSION", "SynthDataset", "SynthSlide", "load_dataset"]

#: File name of the dataset manifest.
MANIFEST_NAME = "synth.json"
#: Format version of the manifest.
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class SynthSlide:
    """One generated slide and its files.

    Attributes
    ----------
    name : str
        Slide name (file stem).
    seed : int
        The slide's own seed (``generate_slide(seed=...)`` makes it again).
    slide_path : Path
        The pyramidal TIFF.
    annotation_path : Path
        The noisy pathologist annotations (QuPath GeoJSON), beside the slide.
    truth_path : Path
        The ground truth (QuPath GeoJSON).
    noise_path : Path
        The injected annotation noise (JSON).
    width_px, height_px : int
        Level-0 size.
    mpp : float
        Resolution (µm/px).
    level_count : int
        Pyramid levels.
    tissue_area_mm2 : float
        Tissue area (holes excluded).
    counts : dict of str to int
        ``mitoses``, ``apoptotic_bodies``, ``pyknotic_nuclei``,
        ``lymphocytes``, ``lookalikes``, ``ambiguous_mitoses``, and the
        annotation summary: ``true_clicks``, ``missed``, ``false_clicks``,
        ``negative_clicks``, ``mislabelled``, ``outside_regions``, ``regions``.
    look : dict
        The slide's drawn appearance (stain vectors, strengths, blur, JPEG quality).
    """

    name: str
    seed: int
    slide_path: Path
    annotation_path: Path
    truth_path: Path
    noise_path: Path
    width_px: int
    height_px: int
    mpp: float
    level_count: int
    tissue_area_mm2: float
    counts: dict[str, int] = field(default_factory=dict)
    look: dict[str, Any] = field(default_factory=dict)

    @property
    def n_mitoses(self) -> int:
        """Number of mitoses in the truth."""
        return self.counts.get("mitoses", 0)

    @property
    def n_lookalikes(self) -> int:
        """Number of look-alikes in the truth."""
        return self.counts.get("lookalikes", 0)

    def to_dict(self, *, relative_to: Path | None = None) -> dict[str, Any]:
        """JSON-able record (paths relative to ``relative_to`` when given)."""

        def rel(p: Path) -> str:
            return p.relative_to(relative_to).as_posix() if relative_to else str(p)

        return {
            "name": self.name,
            "seed": self.seed,
            "slide": rel(self.slide_path),
            "annotations": rel(self.annotation_path),
            "truth": rel(self.truth_path),
            "noise": rel(self.noise_path),
            "width_px": self.width_px,
            "height_px": self.height_px,
            "mpp": self.mpp,
            "level_count": self.level_count,
            "tissue_area_mm2": round(self.tissue_area_mm2, 6),
            "counts": dict(self.counts),
            "look": self.look,
        }

    @staticmethod
    def from_dict(d: dict[str, Any], *, base: Path) -> SynthSlide:
        """Inverse of :meth:`to_dict` (paths resolved against ``base``)."""
        return SynthSlide(
            name=d["name"],
            seed=int(d["seed"]),
            slide_path=base / d["slide"],
            annotation_path=base / d["annotations"],
            truth_path=base / d["truth"],
            noise_path=base / d["noise"],
            width_px=int(d["width_px"]),
            height_px=int(d["height_px"]),
            mpp=float(d["mpp"]),
            level_count=int(d["level_count"]),
            tissue_area_mm2=float(d["tissue_area_mm2"]),
            counts=dict(d["counts"]),
            look=dict(d.get("look", {})),
        )


@dataclass(frozen=True)
class SynthDataset:
    """A generated dataset folder.

    Attributes
    ----------
    out_dir : Path
        The folder (a slide-folder source).
    slides : tuple of SynthSlide
        Its slides in order.
    manifest : dict
        The content of ``synth.json``.
    """

    out_dir: Path
    slides: tuple[SynthSlide, ...]
    manifest: dict[str, Any]


def load_dataset(out_dir: str | os.PathLike[str]) -> SynthDataset:
    """Read a dataset folder's ``synth.json``.

    Raises
    ------
    InputError
        If the folder has no readable manifest.
    """
    out = Path(out_dir)
    path = out / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        slides = tuple(SynthSlide.from_dict(d, base=out) for d in manifest["slides"])
    except FileNotFoundError:
        raise InputError(f"{path}: not found (not a wsdal synth folder?)") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: not a readable synth manifest ({exc})") from exc
    return SynthDataset(out_dir=out, slides=slides, manifest=manifest)
