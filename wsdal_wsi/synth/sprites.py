"""Sprites and their compositing: sparse stain stamps added into a chunk with ``bincount``.

A *sprite* is a small picture of one object in stain space: per pixel a
haematoxylin concentration ``h``, an eosin concentration ``e``, and a background
suppression ``m`` (0..1: how much of the underlying cytoplasm or stroma the
object replaces, e.g. the nucleus itself or a clear halo). Sprites are stored
sparsely (only pixels where something is drawn) in one pooled
:class:`SpriteLib`, and any number of them are stamped into a chunk at once:
three ``numpy.bincount`` calls, no Python loop over objects.

Compositing in a chunk (see :mod:`wsdal_wsi.synth.render`)::

    c_H = background_H * (1 - M) + H      c_E = background_E * (1 - M) + E

with ``H, E, M`` the sums of the stamped sprites (``M`` clipped to [0, 1]);
overlapping nuclei add their optical densities, as in Beer-Lambert.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SpriteLib", "StampSet", "stamp"]


@dataclass
class SpriteLib:
    """A pool of sparse sprites.

    Attributes
    ----------
    dy, dx : numpy.ndarray
        ``(P,)`` int32 pixel offsets from the sprite centre, pooled.
    h, e, m : numpy.ndarray
        ``(P,)`` float32 stain values at those pixels.
    start, length : numpy.ndarray
        ``(K,)`` int64: sprite ``k`` is pool entries ``start[k] : start[k] + length[k]``.
    radius : numpy.ndarray
        ``(K,)`` int32 largest ``|dy|`` or ``|dx|`` of each sprite.
    """

    dy: np.ndarray
    dx: np.ndarray
    h: np.ndarray
    e: np.ndarray
    m: np.ndarray
    start: np.ndarray
    length: np.ndarray
    radius: np.ndarray

    def __len__(self) -> int:
        return len(self.start)

    @staticmethod
    def from_dense(stack: np.ndarray, *, threshold: float = 2e-3) -> SpriteLib:
        """Build a pool from dense sprites.

        Parameters
        ----------
        stack : numpy.ndarray
            ``(K, S, S, 3)`` float32 ``(h, e, m)`` per pixel, centre at
            ``S // 2`` (S odd).
        threshold : float
            Pixels where every channel is below this are dropped.
        """
        k, s = stack.shape[0], stack.shape[1]
        c = s // 2
        keep = (np.abs(stack) > threshold).any(axis=3)
        kk, yy, xx = np.nonzero(keep)
        vals = stack[kk, yy, xx]
        length = np.bincount(kk, minlength=k).astype(np.int64)
        start = np.concatenate([[0], np.cumsum(length)[:-1]]).astype(np.int64)
        dy, dx = (yy - c).astype(np.int32), (xx - c).astype(np.int32)
        rad = np.zeros(k, dtype=np.int32)
        if len(kk):
            np.maximum.at(rad, kk, np.maximum(np.abs(dy), np.abs(dx)))
        return SpriteLib(
            dy=dy,
            dx=dx,
            h=vals[:, 0].copy(),
            e=vals[:, 1].copy(),
            m=vals[:, 2].copy(),
            start=start,
            length=length,
            radius=rad,
        )

    @staticmethod
    def concat(libs: list[SpriteLib]) -> SpriteLib:
        """One pool holding the sprites of ``libs`` in order."""
        offsets = np.cumsum([0] + [len(lib.dy) for lib in libs[:-1]])
        return SpriteLib(
            dy=np.concatenate([lib.dy for lib in libs]),
            dx=np.concatenate([lib.dx for lib in libs]),
            h=np.concatenate([lib.h for lib in libs]),
            e=np.concatenate([lib.e for lib in libs]),
            m=np.concatenate([lib.m for lib in libs]),
            start=np.concatenate([lib.start + off for lib, off in zip(libs, offsets, strict=True)]),
            length=np.concatenate([lib.length for lib in libs]),
            radius=np.concatenate([lib.radius for lib in libs]),
        )


@dataclass
class StampSet:
    """Sprites to stamp into one chunk.

    Attributes
    ----------
    cx, cy : numpy.ndarray
        ``(N,)`` int64 level-0 centre pixel of each stamp.
    sprite : numpy.ndarray
        ``(N,)`` int64 sprite index in the library.
    transform : numpy.ndarray
        ``(N,)`` int8 dihedral transform (bit 0: flip y, bit 1: flip x, bit 2: transpose).
    gain_h, gain_e : numpy.ndarray
        ``(N,)`` float32 multipliers of the sprite's ``h`` and ``e``.
    """

    cx: np.ndarray
    cy: np.ndarray
    sprite: np.ndarray
    transform: np.ndarray
    gain_h: np.ndarray
    gain_e: np.ndarray


def stamp(
    lib: SpriteLib, stamps: StampSet, x0: int, y0: int, w: int, h: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Add sprites into a window and return its ``(H, E, M)`` maps.

    Parameters
    ----------
    lib : SpriteLib
        Sprite pool.
    stamps : StampSet
        Where and which sprites; stamps partly or wholly outside the window
        are clipped.
    x0, y0 : int
        Level-0 top-left of the window.
    w, h : int
        Window size (px).

    Returns
    -------
    tuple of numpy.ndarray
        ``H``, ``E``, ``M``: ``(h, w)`` float32 sums over the stamps (``M`` not
        yet clipped).
    """
    n = len(stamps.sprite)
    if n == 0:
        zero = np.zeros((h, w), dtype=np.float32)
        return zero, zero.copy(), zero.copy()
    sid = stamps.sprite
    lens = lib.length[sid]
    total = int(lens.sum())
    owner = np.repeat(np.arange(n), lens)
    first = np.cumsum(lens) - lens
    pos = np.arange(total, dtype=np.int64) + np.repeat(lib.start[sid] - first, lens)
    dy = lib.dy[pos]
    dx = lib.dx[pos]
    t = stamps.transform[owner]
    dy = np.where(t & 1, -dy, dy)
    dx = np.where(t & 2, -dx, dx)
    swap = (t & 4).astype(bool)
    dy, dx = np.where(swap, dx, dy), np.where(swap, dy, dx)
    yy = stamps.cy[owner] - y0 + dy
    xx = stamps.cx[owner] - x0 + dx
    ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
    flat = (yy * w + xx)[ok]
    owner, pos = owner[ok], pos[ok]
    size = h * w
    hh = np.bincount(flat, weights=lib.h[pos] * stamps.gain_h[owner], minlength=size)
    ee = np.bincount(flat, weights=lib.e[pos] * stamps.gain_e[owner], minlength=size)
    mm = np.bincount(flat, weights=lib.m[pos], minlength=size)
    return (
        hh.astype(np.float32).reshape(h, w),
        ee.astype(np.float32).reshape(h, w),
        mm.astype(np.float32).reshape(h, w),
    )
