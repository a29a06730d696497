"""The prediction output folder: file names, and the tissue-mask PNG.

::

    OUT/batch.json             batch state (the prediction runner's)
    OUT/<key>.geojson          detections + the hotspot and region-count annotations
    OUT/<key>.summary.json     the slide summary (wsdal_wsi.report.summary)
    OUT/<key>.tissue.png       the tissue mask used (1 bit; downsample in the summary)
    OUT/<key>.thumb.jpg        slide thumbnail (downsample in the summary)
    OUT/<key>.gallery.png      crops of the top detections, one row (items in the summary)
    OUT/<key>.report.png       the PNG report
    OUT/<key>.near.csv         near misses (candidates just below the threshold), level-0
    OUT/counts.csv, OUT/counts.xlsx, OUT/index.html

``wsdal count`` needs the summary, the GeoJSON and the tissue mask; the
thumbnail and the gallery only make the report richer (it is drawn without
them when they are missing).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from wsdal_wsi.atomic import atomic_path
from wsdal_wsi.errors import InputError

__all__ = [
    "COUNTS_CSV",
    "COUNTS_XLSX",
    "INDEX_HTML",
    "SUMMARY_SUFFIX",
    "SlideFiles",
    "find_summaries",
    "read_tissue_png",
    "slide_files",
    "write_tissue_png",
]

SUMMARY_SUFFIX = ".summary.json"
COUNTS_CSV = "counts.csv"
COUNTS_XLSX = "counts.xlsx"
INDEX_HTML = "index.html"


@dataclass(frozen=True)
class SlideFiles:
    """The per-slide files of an output folder (see the module docstring)."""

    geojson: Path
    summary: Path
    tissue: Path
    thumbnail: Path
    gallery: Path
    report: Path
    near: Path


def slide_files(out_dir: str | os.PathLike[str], key: str) -> SlideFiles:
    """The paths of slide ``key``'s files in ``out_dir``."""
    if not key or "/" in key or "\\" in key or key in (".", ".."):
        raise InputError(f"bad slide key {key!r}: must be a file-safe name")
    d = Path(out_dir)
    return SlideFiles(
        geojson=d / f"{key}.geojson",
        summary=d / f"{key}{SUMMARY_SUFFIX}",
        tissue=d / f"{key}.tissue.png",
        thumbnail=d / f"{key}.thumb.jpg",
        gallery=d / f"{key}.gallery.png",
        report=d / f"{key}.report.png",
        near=d / f"{key}.near.csv",
    )


def find_summaries(out_dir: str | os.PathLike[str]) -> list[Path]:
    """The slide summaries in ``out_dir``, sorted by file name."""
    d = Path(out_dir)
    return sorted(p for p in d.glob(f"*{SUMMARY_SUFFIX}") if p.is_file())


def write_tissue_png(path: str | os.PathLike[str], mask: np.ndarray) -> None:
    """Write a tissue mask ``(h, w)`` bool as a 1-bit PNG, atomically."""
    arr = np.asarray(mask, dtype=bool)
    if arr.ndim != 2:
        raise ValueError(f"tissue mask must be 2-D, got shape {arr.shape}")
    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp, format="PNG", optimize=True)


def read_tissue_png(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a tissue mask PNG (any mode; non-zero = tissue) as ``(h, w)`` bool.

    Raises
    ------
    InputError
        Missing or unreadable file (the message names it).
    """
    p = Path(path)
    try:
        with Image.open(p) as im:
            im.load()
            arr = np.asarray(im.convert("L"))
    except FileNotFoundError:
        raise InputError(f"{p}: tissue mask not found") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{p}: cannot read the tissue mask ({exc})") from exc
    return arr > 0
