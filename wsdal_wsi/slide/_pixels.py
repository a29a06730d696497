"""Pixels out of OpenSlide as NumPy RGB, composited on white, with few copies.

OpenSlide hands out premultiplied ARGB words. openslide-python turns them into a
straight-alpha RGBA Pillow image, and converting that to an ``(h, w, 3)`` array
costs as much again as the read. When openslide-python's low-level binding is
available we read straight into a NumPy buffer instead (one read, one channel
shuffle); the public API is the fallback, and the two give the same pixels.
"""

from __future__ import annotations

import ctypes
import math
import sys
from collections.abc import Callable

import numpy as np
from PIL import Image

__all__ = ["openslide_failed", "read_level_rgb", "resample_rgb"]

try:  # openslide-python >= 1.2: the ctypes binding of openslide_read_region
    from openslide import lowlevel as _lowlevel

    _C_READ = _lowlevel._read_region
    _C_PTR = ctypes.POINTER(ctypes.c_uint32)
except (ImportError, AttributeError):  # pragma: no cover - older or changed bindings
    _C_READ = None
    _C_PTR = None

# Byte positions of R, G, B, A inside a native-endian ARGB uint32.
_R, _G, _B, _A = (2, 1, 0, 3) if sys.byteorder == "little" else (1, 2, 3, 0)


def _argb_to_rgb(argb: np.ndarray) -> np.ndarray:
    """Premultiplied ARGB words ``(h, w) uint32`` -> ``(h, w, 3) uint8`` RGB on white."""
    h, w = argb.shape
    b = argb.view(np.uint8).reshape(h, w, 4)
    alpha = b[..., _A]
    out = np.empty((h, w, 3), np.uint8)
    if alpha.size and int(alpha.min()) < 255:
        # Premultiplied: c <= a, so c + (255 - a) composites on white without overflow.
        fill = 255 - alpha
        np.add(b[..., _R], fill, out=out[..., 0])
        np.add(b[..., _G], fill, out=out[..., 1])
        np.add(b[..., _B], fill, out=out[..., 2])
    else:
        out[..., 0] = b[..., _R]
        out[..., 1] = b[..., _G]
        out[..., 2] = b[..., _B]
    return out


def _rgba_to_rgb(rgba: np.ndarray) -> np.ndarray:
    """Straight-alpha ``(h, w, 4) uint8`` -> ``(h, w, 3) uint8`` RGB on white."""
    rgb = rgba[..., :3]
    alpha = rgba[..., 3]
    if alpha.size == 0 or int(alpha.min()) == 255:
        return np.ascontiguousarray(rgb)
    a = alpha.astype(np.uint16)[..., None]
    out = (rgb.astype(np.uint16) * a + 255 * (255 - a) + 127) // 255
    return out.astype(np.uint8)


def read_level_rgb(
    osr: object, level: int, x_level0: int, y_level0: int, w: int, h: int, *, use_c: bool = True
) -> np.ndarray:
    """Read ``(w, h)`` pixels of ``level`` at level-0 ``(x, y)`` through OpenSlide.

    Parameters
    ----------
    osr : openslide.OpenSlide
        The open slide.
    level : int
        Pyramid level.
    x_level0, y_level0 : int
        Top-left corner in level-0 px (OpenSlide's convention).
    w, h : int
        Size in the level's pixels.
    use_c : bool
        Read through the low-level binding when available (``False``: the public
        API, for tests).

    Returns
    -------
    numpy.ndarray
        ``(h, w, 3) uint8`` RGB, C-contiguous and writable; transparent pixels
        (outside the scanned area) are white.

    Raises
    ------
    openslide.OpenSlideError
        As OpenSlide raises it; the caller adds the path.
    """
    if use_c and _C_READ is not None and hasattr(osr, "_osr"):
        argb = np.empty((h, w), np.uint32)
        if argb.size:
            _C_READ(osr._osr, argb.ctypes.data_as(_C_PTR), x_level0, y_level0, level, w, h)
        return _argb_to_rgb(argb)
    image = osr.read_region((x_level0, y_level0), level, (w, h))
    return _rgba_to_rgb(np.asarray(image))


def resample_rgb(
    rgb: np.ndarray,
    size_px: tuple[int, int],
    box: tuple[float, float, float, float],
    *,
    reduce: int = 1,
) -> np.ndarray:
    """Resample the source ``box`` of ``rgb`` to ``size_px`` with antialiased bicubic.

    Parameters
    ----------
    rgb : numpy.ndarray
        ``(H, W, 3) uint8`` source.
    size_px : (int, int)
        Output (w, h).
    box : (float, float, float, float)
        Source region ``(left, top, right, bottom)`` in pixel-edge coordinates
        (pixel ``k`` spans ``[k, k + 1)``) of the source after the reduction,
        inside it.
    reduce : int
        First average ``reduce`` x ``reduce`` blocks (``H`` and ``W`` are
        multiples of it).

    Returns
    -------
    numpy.ndarray
        ``(h, w, 3) uint8``, C-contiguous and writable.
    """
    image = Image.fromarray(np.ascontiguousarray(rgb))
    if reduce > 1:
        image = image.reduce(reduce)
    out = image.resize(size_px, Image.Resampling.BICUBIC, box=box)
    array = np.asarray(out)
    return array if array.flags.writeable else array.copy()


def openslide_failed(osr: object) -> bool:
    """Whether an OpenSlide handle is in its (permanent) error state."""
    try:
        from openslide import lowlevel

        return lowlevel.get_error(osr._osr) is not None  # type: ignore[attr-defined]
    except Exception:  # an older binding without get_error: assume it is fine
        return False


def read_chunked(
    read: Callable[..., np.ndarray],
    location: tuple[float, float],
    size: tuple[int, int],
    scale: float,
    ratio: tuple[float, float],
    max_px: int,
) -> np.ndarray:
    """Read a big request as a grid of smaller ones on the same lattice.

    ``read(location_level0, size_px, level0_per_px=scale)`` reads one piece;
    ``ratio`` is the level pixels read per output pixel along x and y, so that
    every piece reads at most about ``max_px`` level pixels.
    """
    (x0, y0), (w, h) = location, size
    side = int(math.sqrt(max_px))
    step_w = max(1, int(side / max(ratio[0], 1e-9)) - 8)
    step_h = max(1, int(side / max(ratio[1], 1e-9)) - 8)
    out = np.empty((h, w, 3), np.uint8)
    for j in range(0, h, step_h):
        for i in range(0, w, step_w):
            cw, ch = min(step_w, w - i), min(step_h, h - j)
            out[j : j + ch, i : i + cw] = read(
                (x0 + i * scale, y0 + j * scale), (cw, ch), level0_per_px=scale
            )
    return out
