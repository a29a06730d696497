"""Map a slide's colours onto a reference's stains (Macenko normalisation).

A pixel's optical density is unmixed by the slide's own stain vectors into a
haematoxylin amount, an eosin amount and a residual (along the normalised cross
product of the two vectors: what neither stain explains); each stain amount is
rescaled by the reference's staining strength over the slide's; the pixel is
recomposed with the reference's vectors. All of it is one ``3 x 3`` matrix on the
optical density (:func:`stain_matrix`), applied per pixel by
:func:`normalise_rgb` (pure torch, any device). A slide that already matches the
reference maps onto itself (the identity matrix; pixels returned unchanged).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from wsdal_wsi.errors import ConfigError
from wsdal_wsi.stain.estimate import StainEstimate

__all__ = ["MAX_STRENGTH_RATIO", "normalise_rgb", "stain_matrix"]

#: A stain amount is rescaled by at most this factor (or its inverse): past it the
#: estimate is more likely wrong than the slide so differently stained.
MAX_STRENGTH_RATIO = 4.0
_LN10 = math.log(10.0)


def _basis(est: StainEstimate) -> np.ndarray:
    """``(3, 3)`` columns: haematoxylin, eosin, their normalised cross product."""
    h = np.asarray(est.haematoxylin, np.float64)
    e = np.asarray(est.eosin, np.float64)
    r = np.cross(h, e)
    return np.stack([h, e, r / np.linalg.norm(r)], axis=1)


def stain_matrix(source: StainEstimate, reference: StainEstimate) -> np.ndarray:
    """The ``(3, 3)`` float64 matrix ``A`` with ``OD_reference = A @ OD_source`` per pixel.

    Parameters
    ----------
    source : StainEstimate
        The slide's stains.
    reference : StainEstimate
        The stains to map onto (the training slides' median).

    Returns
    -------
    numpy.ndarray
        ``(3, 3)`` float64; the identity when ``source`` equals ``reference``.
        Each stain's strength ratio is clipped to ``[1 / MAX_STRENGTH_RATIO,
        MAX_STRENGTH_RATIO]``.
    """
    scale = np.array(
        [
            reference.haematoxylin_strength_od / source.haematoxylin_strength_od,
            reference.eosin_strength_od / source.eosin_strength_od,
            1.0,
        ]
    )
    scale = np.clip(scale, 1.0 / MAX_STRENGTH_RATIO, MAX_STRENGTH_RATIO)
    return _basis(reference) @ np.diag(scale) @ np.linalg.inv(_basis(source))


def normalise_rgb(rgb: torch.Tensor, matrix: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Recolour uint8 RGB pixels by an optical-density matrix (:func:`stain_matrix`).

    Parameters
    ----------
    rgb : torch.Tensor
        ``(..., 3)`` uint8 RGB, channels last, on any device.
    matrix : torch.Tensor or numpy.ndarray
        ``(3, 3)``: ``OD_out = matrix @ OD_in`` per pixel, ``OD = -log10(max(I, 1) / 255)``.

    Returns
    -------
    torch.Tensor
        A new ``(..., 3)`` uint8 tensor on ``rgb``'s device (rounded, clipped to
        0-255); ``rgb`` itself when ``matrix`` is the identity.

    Raises
    ------
    ConfigError
        ``rgb`` is not ``(..., 3)`` uint8 or ``matrix`` not a finite ``(3, 3)``.
    """
    if not isinstance(rgb, torch.Tensor) or rgb.dtype != torch.uint8 or rgb.shape[-1:] != (3,):
        raise ConfigError(
            f"expected (..., 3) uint8 RGB, got {tuple(getattr(rgb, 'shape', ()))} "
            f"{getattr(rgb, 'dtype', type(rgb).__name__)}"
        )
    m = np.asarray(matrix.cpu() if isinstance(matrix, torch.Tensor) else matrix, np.float64)
    if m.shape != (3, 3) or not np.all(np.isfinite(m)):
        raise ConfigError(f"a stain matrix must be a finite 3 x 3 array, got {m!r:.80}")
    if np.allclose(m, np.eye(3), rtol=0, atol=1e-9):
        return rgb
    device = rgb.device
    with torch.autocast(device_type=device.type, enabled=False):
        table = _od_table(str(device))
        od = table[rgb.long()]  # (..., 3) float32
        # exp(-ln10 * OD_out) * 255 = exp(ln(255) - ln10 * OD_in @ m.T): one matmul, one exp
        weights = torch.as_tensor(-_LN10 * m.T, dtype=torch.float32, device=device)
        out = od.reshape(-1, 3) @ weights
        out.add_(math.log(255.0)).exp_().round_().clamp_(0.0, 255.0)
        return out.to(torch.uint8).reshape(rgb.shape)


@functools.lru_cache(maxsize=8)
def _od_table(device: str) -> torch.Tensor:
    """OD of each 8-bit value, built once per device (normalise_rgb runs per tile)."""
    values = np.maximum(np.arange(256, dtype=np.float64), 1.0) / 255.0
    return torch.as_tensor(-np.log10(values), dtype=torch.float32, device=device)
