"""Say precisely why a file is not a usable slide.

OpenSlide answers "Unsupported or missing image file" for a missing file, a
directory, a text file and a damaged TIFF alike. These checks run before and
after OpenSlide so the user reads which of those it is, with the path.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import tifffile

from wsdal_wsi.errors import SlideError
from wsdal_wsi.slide.resolution import is_tiff_file, quiet_tifffile

__all__ = ["check_slide_file", "explain_unsupported", "find_tiff_damage"]


def check_slide_file(path: Path) -> None:
    """Raise :class:`SlideError` unless ``path`` is an existing, readable, non-empty file."""
    if not path.exists():
        raise SlideError(f"{path}: no such file")
    if path.is_dir():
        raise SlideError(f"{path}: is a directory, not a slide file")
    if not path.is_file():
        raise SlideError(f"{path}: not a regular file")
    if not os.access(path, os.R_OK):
        raise SlideError(f"{path}: cannot read the file (permission denied)")
    if path.stat().st_size == 0:
        raise SlideError(f"{path}: empty file (0 bytes)")


def _looks_like_text(head: bytes) -> bool:
    if not head or b"\x00" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in text)
    return printable >= 0.95 * len(text)


def find_tiff_damage(path: Path, *, truncation_only: bool = False) -> str | None:
    """Return what is wrong with a TIFF file's structure, or ``None`` if nothing is.

    Checks that every page's image data (strips or tiles) lies inside the file:
    a truncated download or copy fails this check.

    Parameters
    ----------
    path : Path
        A TIFF or BigTIFF file.
    truncation_only : bool
        Report only image data beyond the end of the file, not structures that
        tifffile cannot parse (for files OpenSlide itself opened: its vendor
        formats may use TIFF in ways tifffile does not expect).

    Returns
    -------
    str or None
        A one-line reason (for example ``"truncated: the image data of TIFF page
        2 ends at byte 1200000 but the file has 800000 bytes"``), or ``None``.
    """

    size = path.stat().st_size
    try:
        with quiet_tifffile(), tifffile.TiffFile(path) as tif:
            pages = list(tif.pages)
            if not pages and not truncation_only:
                return "a TIFF file without any image"
            for index, page in enumerate(pages):
                offsets = np.asarray(getattr(page, "dataoffsets", ()), dtype=np.int64)
                counts = np.asarray(getattr(page, "databytecounts", ()), dtype=np.int64)
                if offsets.size == 0 or offsets.size != counts.size:
                    if truncation_only:
                        continue
                    return f"truncated or damaged: TIFF page {index} has no image data"
                end = int((offsets + counts).max())
                if end > size:
                    return (
                        f"truncated: the image data of TIFF page {index} ends at byte {end} "
                        f"but the file has {size} bytes"
                    )
    except Exception as exc:  # tifffile raises many kinds on damaged files
        return None if truncation_only else f"damaged TIFF structure ({exc})"
    return None


def explain_unsupported(path: Path, exc: Exception) -> str:
    """The reason OpenSlide could not open ``path``, as one line (without the path)."""
    if is_tiff_file(path):
        damage = find_tiff_damage(path)
        if damage is not None:
            return f"not a readable slide: {damage}"
        return (
            "a TIFF file that OpenSlide cannot read as a whole-slide image "
            f"(it must be tiled, and pyramidal for large images) ({exc})"
        )
    with open(path, "rb") as fh:
        head = fh.read(512)
    if _looks_like_text(head):
        return "not a slide: this is a text file, not a whole-slide image format"
    return (
        f"not a whole-slide image format OpenSlide can open ({exc}; the file starts with "
        f"{head[:8]!r})"
    )
