"""Drawing primitives for sprites, in pixel units (callers convert µm with ``mpp``).

All functions are vectorised with NumPy; arrays are float32. Coordinates are
sprite-local: ``(0, 0)`` is the sprite centre, x to the right, y down.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage, special

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


def noise2d(rng: np.random.Generator, shape: tuple[int, ...], sigma_px: float) -> np.ndarray:
    """Gaussian-filtered noise over the last two axes, standard deviation about 1.

    Parameters
    ----------
    shape : tuple of int
        ``(..., S, S)``; leading axes are independent samples.
    sigma_px : float
        Correlation length (px); 0 gives white noise.
    """
    noise = rng.standard_normal(shape).astype(np.float32)
    if sigma_px <= 0:
        return noise
    sig = (0,) * (len(shape) - 2) + (sigma_px, sigma_px)
    out = ndimage.gaussian_filter(noise, sigma=sig, mode="wrap")
    std = float(out.std())
    return out / np.float32(std if std > 0 else 1.0)


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
