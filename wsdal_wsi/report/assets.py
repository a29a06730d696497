"""What the PNG report is drawn from, saved beside the summary at predict time.

``wsdal count`` redraws reports without the slide, so ``wsdal predict`` saves
the slide thumbnail (``<key>.thumb.jpg``) and the crops of the top detections
(``<key>.gallery.png``: square crops side by side in one row) and records
them in the summary's ``assets`` (:class:`~wsdal_wsi.report.summary.AssetInfo`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from wsdal_wsi.atomic import atomic_path
from wsdal_wsi.report.layout import slide_files
from wsdal_wsi.report.summary import AssetInfo

__all__ = [
    "Gallery",
    "load_gallery",
    "load_thumbnail",
    "read_gallery",
    "top_detections",
    "write_report_assets",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Gallery:
    """Crops around the highest-scoring detections.

    Attributes
    ----------
    crops : numpy.ndarray
        ``(K, S, S, 3)`` uint8 RGB, centred on the detections.
    points_level0 : numpy.ndarray
        ``(K, 2)`` float64 level-0 ``(x, y)``.
    scores : numpy.ndarray
        ``(K,)`` float64 probabilities, descending.
    mpp : float
        Resolution of the crops (µm/px).
    """

    crops: np.ndarray
    points_level0: np.ndarray
    scores: np.ndarray
    mpp: float

    def __len__(self) -> int:
        return len(self.crops)


def top_detections(scores: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` highest scores, best first (ties: lower index first).

    Parameters
    ----------
    scores : numpy.ndarray
        ``(N,)`` probabilities.
    n : int

    Returns
    -------
    numpy.ndarray
        ``(min(n, N),)`` int64.
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    order = np.lexsort((np.arange(len(s)), -np.nan_to_num(s, nan=-np.inf)))
    return order[: max(0, int(n))].astype(np.int64)


def read_gallery(
    slide: Any,
    points_level0: np.ndarray,
    scores: np.ndarray,
    *,
    n: int = 24,
    size_px: int = 128,
    target_mpp: float = 0.25,
) -> Gallery:
    """Read crops around the ``n`` best detections from a slide.

    Parameters
    ----------
    slide : wsdal_wsi.slide.Slide
        Anything with ``read_region(location_level0, size_px, *, target_mpp)``
        and ``level0_per_px(target_mpp)`` (the slide contract).
    points_level0 : numpy.ndarray
        ``(N, 2)`` level-0 ``(x, y)``.
    scores : numpy.ndarray
        ``(N,)`` probabilities.
    n : int
        Crops to read (default 24).
    size_px : int
        Side of each crop at ``target_mpp`` (default 128 px = 32 µm at 0.25 µm/px).
    target_mpp : float
        Resolution of the crops (µm/px).
    """
    pts = np.asarray(points_level0, dtype=np.float64).reshape(-1, 2)
    idx = top_detections(scores, n)
    step = float(slide.level0_per_px(target_mpp))
    crops = np.zeros((len(idx), size_px, size_px, 3), dtype=np.uint8)
    for k, i in enumerate(idx):
        x, y = pts[i]
        loc = (x - size_px / 2 * step, y - size_px / 2 * step)
        crops[k] = slide.read_region(loc, (size_px, size_px), target_mpp=target_mpp)
    return Gallery(crops, pts[idx], np.asarray(scores, dtype=np.float64)[idx], float(target_mpp))


def write_report_assets(
    out_dir: str | os.PathLike[str],
    key: str,
    *,
    thumbnail: np.ndarray | None,
    thumbnail_downsample: float | None,
    gallery: Gallery | None,
) -> AssetInfo:
    """Save the thumbnail (JPEG) and the gallery strip (PNG); return the summary's ``assets``.

    Parameters
    ----------
    out_dir : path-like
    key : str
        The slide key.
    thumbnail : numpy.ndarray or None
        ``(h, w, 3)`` uint8 RGB.
    thumbnail_downsample : float or None
        Level-0 px per thumbnail px.
    gallery : Gallery or None
    """
    files = slide_files(out_dir, key)
    info: dict[str, Any] = {}
    if thumbnail is not None:
        with atomic_path(files.thumbnail) as tmp:
            Image.fromarray(np.asarray(thumbnail, dtype=np.uint8)).save(
                tmp, format="JPEG", quality=90, subsampling=0
            )
        info.update(
            thumbnail=files.thumbnail.name, thumbnail_downsample=float(thumbnail_downsample)
        )
    if gallery is not None and len(gallery):
        k, s = len(gallery), gallery.crops.shape[1]
        strip = gallery.crops.transpose(1, 0, 2, 3).reshape(s, k * s, 3)
        with atomic_path(files.gallery) as tmp:
            Image.fromarray(strip).save(tmp, format="PNG", optimize=True)
        info.update(
            gallery=files.gallery.name,
            gallery_size_px=int(s),
            gallery_mpp=gallery.mpp,
            gallery_items=[
                {"x": float(x), "y": float(y), "score": float(p)}
                for (x, y), p in zip(gallery.points_level0, gallery.scores, strict=True)
            ],
        )
    return AssetInfo(**info)


def load_thumbnail(out_dir: str | os.PathLike[str], assets: AssetInfo):
    """The saved thumbnail ``(h, w, 3)`` uint8 and its downsample, or ``(None, None)``.

    A missing or unreadable file is logged and treated as absent.
    """
    if not assets.thumbnail or not assets.thumbnail_downsample:
        return None, None
    path = Path(out_dir) / assets.thumbnail
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB")), float(assets.thumbnail_downsample)
    except (OSError, ValueError) as exc:
        log.warning("%s: cannot read the thumbnail (%s); the report is drawn without it", path, exc)
        return None, None


def load_gallery(out_dir: str | os.PathLike[str], assets: AssetInfo) -> Gallery | None:
    """The saved gallery, or None (a missing or unreadable file is logged)."""
    if not assets.gallery or not assets.gallery_size_px or not assets.gallery_items:
        return None
    path = Path(out_dir) / assets.gallery
    s, k = int(assets.gallery_size_px), len(assets.gallery_items)
    try:
        with Image.open(path) as im:
            strip = np.asarray(im.convert("RGB"))
    except (OSError, ValueError) as exc:
        log.warning("%s: cannot read the gallery (%s); the report is drawn without it", path, exc)
        return None
    if strip.shape[:2] != (s, k * s):
        log.warning("%s: gallery is %s px, expected %d x %d", path, strip.shape[:2], s, k * s)
        return None
    crops = strip.reshape(s, k, s, 3).transpose(1, 0, 2, 3)
    items = assets.gallery_items
    return Gallery(
        crops=np.ascontiguousarray(crops),
        points_level0=np.array([[it["x"], it["y"]] for it in items], dtype=np.float64),
        scores=np.array([it["score"] for it in items], dtype=np.float64),
        mpp=float(assets.gallery_mpp or 0.0),
    )
