"""Drawing primitives for sprites, in pixel units (callers convert µm with ``mpp``).

All functions are vectorised with NumPy; arrays are float32. Coordinates are
sprite-local: ``(0, 0)`` is the sprite centre, x to the right, y down.
"""

from __future__ import annotations

import numpy as np
from scipy import special

__all__ = [
    "capsule_distance",
    "grid",
    "noise2d",
    "rotate",
    "soft_inside",
    "wobbly_radius",
]


def grid(size_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Centred coordinates of an ``S x S`` sprite (S odd): ``(yy, xx)`` float32 ``(S, S)``."""
    c = size_px // 2
    ax = np.arange(size_px, dtype=np.float32) - np.float32(c)
    return np.meshgrid(ax, ax, indexing="ij")


def rotate(
    xx: np.ndarray, yy: np.ndarray, angle: float | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates in a frame rotated by ``angle`` (rad): returns ``(u, v)``, u along the angle."""
    ca, sa = np.cos(angle).astype(np.float32), np.sin(angle).astype(np.float32)
    return xx * ca + yy * sa, -xx * sa + yy * ca


#: Side of the periodic noise tiles that :func:`noise2d` cuts windows from (px).
NOISE_TILE_PX = 256
_NOISE_TILES: dict[int, np.ndarray] = {}


def _noise_tile(sigma_q: int) -> np.ndarray:
    """Periodic unit-variance noise filtered at sigma ``sigma_q / 4`` px, tiled 2 x 2."""
    tile = _NOISE_TILES.get(sigma_q)
    if tile is None:
        p = NOISE_TILE_PX
        rng = np.random.default_rng([20261127, sigma_q])
        white = rng.standard_normal((p, p), dtype=np.float32)
        if sigma_q > 0:
            f2 = np.fft.fftfreq(p)[:, None] ** 2 + np.fft.rfftfreq(p)[None, :] ** 2
            gain = np.exp(-2.0 * np.pi**2 * (sigma_q / 4.0) ** 2 * f2).astype(np.float32)
            white = np.fft.irfft2(np.fft.rfft2(white) * gain, s=(p, p)).astype(np.float32)
        white /= np.float32(white.std())
        tile = np.tile(white, (2, 2))
        _NOISE_TILES[sigma_q] = tile
    return tile


def noise2d(rng: np.random.Generator, shape: tuple[int, ...], sigma_px: float) -> np.ndarray:
    """Gaussian-filtered noise over the last two axes, standard deviation about 1.

    Windows are cut at random offsets (and in a random one of 8 orientations)
    from a fixed periodic noise tile per sigma (quantised to 0.25 px), which
    is much cheaper than filtering fresh noise and just as random for sprites.

    Parameters
    ----------
    rng : numpy.random.Generator
        Picks the windows.
    shape : tuple of int
        ``(..., S, S)`` with ``S <= 256``; leading axes are independent samples.
    sigma_px : float
        Correlation length (px); 0 gives white noise.
    """
    *lead, sy, sx = shape
    if sy > NOISE_TILE_PX or sx > NOISE_TILE_PX:
        raise ValueError(f"noise window {sy}x{sx} larger than {NOISE_TILE_PX} px")
    tile = _noise_tile(max(0, round(sigma_px * 4)))
    n = int(np.prod(lead)) if lead else 1
    offs = rng.integers(0, NOISE_TILE_PX, (n, 2))
    flips = rng.integers(0, 4, n)
    out = np.empty((n, sy, sx), dtype=np.float32)
    for i in range(n):
        oy, ox = int(offs[i, 0]), int(offs[i, 1])
        win = tile[oy : oy + sy, ox : ox + sx]
        f = int(flips[i])
        if f & 1:
            win = win[::-1]
        if f & 2:
            win = win[:, ::-1]
        out[i] = win
    return out.reshape(shape)


def soft_inside(signed_dist: np.ndarray, edge_px: float) -> np.ndarray:
    """Soft indicator of ``signed_dist < 0`` (inside), edge width ``edge_px`` (logistic)."""
    return special.expit(signed_dist * np.float32(-1.0 / max(edge_px, 0.05))).astype(np.float32)


def capsule_distance(u: np.ndarray, v: np.ndarray, half_len: float, radius: float) -> np.ndarray:
    """Signed distance (px) to a capsule along u: ``|u| <= half_len``, thickness ``2 radius``."""
    du = np.maximum(np.abs(u) - np.float32(half_len), 0.0)
    return np.sqrt(du * du + v * v) - np.float32(radius)


def wobbly_radius(
    rng: np.random.Generator,
    phi: np.ndarray,
    amount: float,
    *,
    harmonics: int = 5,
    batch: tuple[int, ...] = (),
) -> np.ndarray:
    """Radius factor ``1 + sum_n c_n cos(n phi + p_n)`` for irregular outlines.

    Parameters
    ----------
    phi : numpy.ndarray
        Polar angle of each pixel, ``batch + (S, S)``.
    amount : float
        Overall irregularity (0: a perfect ellipse; 0.1: clearly lumpy).
    harmonics : int
        Highest harmonic (from 2).
    batch : tuple of int
        Leading batch shape (one outline per batch element).
    """
    out = np.ones_like(phi)
    for n in range(2, harmonics + 1):
        c = rng.normal(0.0, amount / n, (*batch, 1, 1)).astype(np.float32)
        p = rng.uniform(0, 2 * np.pi, (*batch, 1, 1)).astype(np.float32)
        out = out + c * np.cos(n * phi + p)
    return out
