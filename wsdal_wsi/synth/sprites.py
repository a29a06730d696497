"""Sprites and their compositing: small stain pictures added into a chunk.

A *sprite* is a small picture of one object in stain space, ``(3, S, S)``
float32 with ``S`` odd and the object's centre at ``S // 2``: per pixel a
haematoxylin concentration ``h``, an eosin concentration ``e``, and a background
suppression ``m`` (0..1: how much of the underlying cytoplasm or stroma the
object replaces, e.g. the nucleus itself or a clear halo). Sprites of one size
are kept in a :class:`SpriteLib` and stamped with one of the 8 dihedral
transforms (views, no copies) and a haematoxylin gain.

Compositing in a chunk (see :mod:`wsdal_wsi.synth.render`)::

    c_H = background_H * (1 - M) + H      c_E = background_E * (1 - M) + E

with ``H, E, M`` the sums of the stamped sprites (``M`` clipped to [0, 1]);
overlapping nuclei add their optical densities, as in Beer-Lambert.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["Canvas", "SpriteLib", "StampSet", "blur_sprites"]


def blur_sprites(stack: np.ndarray, sigma_px: float) -> np.ndarray:
    """Apply focus blur to dense sprites.

    Parameters
    ----------
    stack : numpy.ndarray
        ``(K, 3, S, S)`` float32 sprites.
    sigma_px : float
        Gaussian sigma (px); below 0.2 the sprites are returned unchanged.

    Returns
    -------
    numpy.ndarray
        ``(K, 3, S, S)`` float32.
    """
    if sigma_px < 0.2:
        return stack
    out = ndimage.gaussian_filter(
        stack, sigma=(0, 0, sigma_px, sigma_px), mode="constant", truncate=3.0
    )
    return out.astype(np.float32, copy=False)


@dataclass
class SpriteLib:
    """Sprites of one size.

    Attributes
    ----------
    data : numpy.ndarray
        ``(K, 3, S, S)`` float32 ``(h, e, m)`` sprites, S odd.
    """

    data: np.ndarray

    def __len__(self) -> int:
        return len(self.data)

    @property
    def radius(self) -> int:
        """Half size ``S // 2`` (px)."""
        return self.data.shape[-1] // 2


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
    gain : numpy.ndarray
        ``(N,)`` float32 multiplier of the sprite's ``h``.
    """

    cx: np.ndarray
    cy: np.ndarray
    sprite: np.ndarray
    transform: np.ndarray
    gain: np.ndarray

    def __len__(self) -> int:
        return len(self.cx)

    @staticmethod
    def concat(parts: list[StampSet]) -> StampSet:
        """Stamps of ``parts`` in order."""
        return StampSet(
            **{
                f: np.concatenate([getattr(p, f) for p in parts])
                for f in StampSet.__dataclass_fields__
            }
        )

    def select(self, keep: np.ndarray) -> StampSet:
        """The stamps where ``keep`` (bool or index array)."""
        return StampSet(**{f: getattr(self, f)[keep] for f in StampSet.__dataclass_fields__})


class Canvas:
    """``(H, E, M)`` accumulation buffers for a level-0 window; stamps are clipped to it.

    Parameters
    ----------
    x0, y0 : int
        Level-0 top-left of the window.
    w, h : int
        Window size (px).
    """

    def __init__(self, x0: int, y0: int, w: int, h: int) -> None:
        self.x0, self.y0, self.w, self.h = x0, y0, w, h
        self.buf = np.zeros((3, h, w), dtype=np.float32)

    def add(self, lib: SpriteLib, stamps: StampSet) -> None:
        """Add the sprites of ``stamps`` (the parts inside the window)."""
        data = lib.data
        for cx, cy, k, t, g in zip(
            stamps.cx.tolist(),
            stamps.cy.tolist(),
            stamps.sprite.tolist(),
            stamps.transform.tolist(),
            stamps.gain.tolist(),
            strict=True,
        ):
            self.add_one(data[k], cx, cy, transform=t, gain=g)

    def add_one(
        self, sprite: np.ndarray, cx: int, cy: int, *, transform: int = 0, gain: float = 1.0
    ) -> None:
        """Add one ``(3, S, S)`` sprite centred at level-0 ``(cx, cy)`` (clipped to the window)."""
        r = sprite.shape[-1] // 2
        size = 2 * r + 1
        x, y = cx - self.x0 - r, cy - self.y0 - r
        xa, ya = max(x, 0), max(y, 0)
        xb, yb = min(x + size, self.w), min(y + size, self.h)
        if xa >= xb or ya >= yb:
            return  # does not touch the window
        s = sprite
        if transform & 1:
            s = s[:, ::-1, :]
        if transform & 2:
            s = s[:, :, ::-1]
        if transform & 4:
            s = s.transpose(0, 2, 1)
        s = s[:, ya - y : yb - y, xa - x : xb - x]
        region = self.buf[:, ya:yb, xa:xb]
        if gain != 1.0:
            region[0] += s[0] * gain
            region[1:] += s[1:]
        else:
            region += s

    def maps(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The window's ``(H, E, M)``: ``(h, w)`` float32 arrays (``M`` not clipped)."""
        return self.buf[0], self.buf[1], self.buf[2]
