"""Stain model: per-slide H&E colour, and optical density to RGB (Beer-Lambert).

Pixels are composed as haematoxylin and eosin *concentrations* (``c_H``,
``c_E``, in optical-density units along each stain's unit vector) and turned
into RGB by Beer-Lambert::

    OD(x) = s_H * c_H(x) * h_vec + s_E * c_E(x) * e_vec + od_background
    RGB(x) = 255 * 10 ** -OD(x)

so colour deconvolution (Ruifrok-Johnston, Macenko) recovers the stains as it
does on real slides. Each slide draws its own stain vectors, stain strengths,
focus blur, background and JPEG quality from its seed (:func:`sample_look`);
``stain_variation`` scales the spread. ``stain_shift`` moves every slide's look
away from the reference in one direction (another lab's protocol, another
scanner): haematoxylin stronger and bluer, eosin paler and more violet, by an
amount that at 1 lies outside the spread of ``stain_variation`` 1 (see
:func:`sample_look`), for testing how a model trained on one lab's slides
carries over to another's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["E_VEC", "H_VEC", "SlideLook", "od_to_rgb", "sample_look"]

#: Reference haematoxylin OD direction (R, G, B), unit norm (between Ruifrok and Macenko).
H_VEC = np.array([0.60, 0.72, 0.35], dtype=np.float64) / np.linalg.norm([0.60, 0.72, 0.35])
#: Reference eosin OD direction (R, G, B), unit norm.
E_VEC = np.array([0.14, 0.90, 0.41], dtype=np.float64) / np.linalg.norm([0.14, 0.90, 0.41])

_LN10 = math.log(10.0)
#: Directions in which ``stain_shift`` turns the stain vectors (before renormalising):
#: haematoxylin absorbing more red (bluer), eosin absorbing more blue (more violet).
_H_SHIFT = np.array([1.0, -0.25, -0.6]) / np.linalg.norm([1.0, -0.25, -0.6])
_E_SHIFT = np.array([-0.1, -0.35, 1.0]) / np.linalg.norm([-0.1, -0.35, 1.0])


@dataclass(frozen=True)
class SlideLook:
    """The appearance one slide draws from its seed.

    Attributes
    ----------
    h_vec, e_vec : tuple of float
        Unit OD vectors (R, G, B) of haematoxylin and eosin on this slide.
    h_strength, e_strength : float
        Multipliers of the haematoxylin and eosin concentrations (staining
        intensity; 1 = reference).
    od_background : tuple of float
        OD (R, G, B) of the glass background (0.02-0.06: near white).
    blur_sigma_um : float
        Gaussian focus blur sigma (µm).
    jpeg_quality : int
        JPEG quality of this slide's tiles.
    noise_level : float
        Standard deviation of the additive sensor noise (8-bit levels).
    """

    h_vec: tuple[float, float, float]
    e_vec: tuple[float, float, float]
    h_strength: float
    e_strength: float
    od_background: tuple[float, float, float]
    blur_sigma_um: float
    jpeg_quality: int
    noise_level: float

    def to_dict(self) -> dict[str, object]:
        """JSON-able dict of the look (rounded)."""
        return {
            "h_vec": [round(v, 4) for v in self.h_vec],
            "e_vec": [round(v, 4) for v in self.e_vec],
            "h_strength": round(self.h_strength, 4),
            "e_strength": round(self.e_strength, 4),
            "od_background": [round(v, 4) for v in self.od_background],
            "blur_sigma_um": round(self.blur_sigma_um, 4),
            "jpeg_quality": self.jpeg_quality,
            "noise_level": round(self.noise_level, 3),
        }


def sample_look(
    rng: np.random.Generator,
    *,
    stain_variation: float,
    blur_um: float,
    jpeg_quality: int,
    stain_shift: float = 0.0,
) -> SlideLook:
    """Draw one slide's look.

    Parameters
    ----------
    rng : numpy.random.Generator
        The slide's appearance stream.
    stain_variation : float
        0: the reference look on every slide; 1: a realistic spread (pale
        lavender to saturated pink-purple slides); up to 2.
    blur_um : float
        Mean focus blur sigma (µm).
    jpeg_quality : int
        Best JPEG quality; slides lose up to ``12 * stain_variation`` points.
    stain_shift : float
        0: none. s > 0 moves every slide's look, after its own variation: the stain
        vectors turn by ``0.25 s`` (unit vectors; ``stain_variation`` 1 spreads them
        by about 0.07 per component), haematoxylin strength times ``exp(0.45 s)`` and
        eosin strength times ``exp(-0.62 s)``: ``stain_variation`` 1 spreads them within
        ``exp(±0.22)`` and ``exp(±0.30)``, so at s = 1 every slide is stained more
        strongly with haematoxylin, and more weakly with eosin, than any unshifted
        slide. The random stream does not depend on it: the same seed gives the same
        slide, only its colours move.
    """
    v = float(stain_variation)
    s = float(stain_shift)
    # Draw everything unconditionally so the stream does not depend on v.
    dh, de = rng.normal(size=3), rng.normal(size=3)
    u = rng.uniform(-1.0, 1.0, size=6)
    h_shifted = H_VEC + 0.07 * v * dh + 0.25 * s * _H_SHIFT
    e_shifted = E_VEC + 0.07 * v * de + 0.25 * s * _E_SHIFT
    h_vec = tuple(float(x) for x in _unit(np.clip(h_shifted, 0.02, None)))
    e_vec = tuple(float(x) for x in _unit(np.clip(e_shifted, 0.02, None)))
    h_strength = float(np.exp(0.22 * v * u[0] + 0.45 * s))
    e_strength = float(np.exp(0.30 * v * u[1] - 0.62 * s))
    bg = 0.035 + 0.015 * v * u[2]
    od_background = (bg + 0.004 * v * u[3], bg, bg + 0.004 * v * u[4])
    blur = max(0.0, float(blur_um) * (1.0 + 0.5 * v * u[5]))
    q_drop = rng.uniform(0.0, 12.0 * min(v, 1.0) + 6.0 * max(v - 1.0, 0.0))
    quality = int(np.clip(round(jpeg_quality - q_drop), 50, 100))
    noise_level = float(1.2 + 0.8 * v * rng.uniform(0.0, 1.0))
    return SlideLook(
        h_vec=h_vec,  # type: ignore[arg-type]
        e_vec=e_vec,  # type: ignore[arg-type]
        h_strength=h_strength,
        e_strength=e_strength,
        od_background=(float(od_background[0]), float(od_background[1]), float(od_background[2])),
        blur_sigma_um=blur,
        jpeg_quality=quality,
        noise_level=noise_level,
    )


def _unit(vec: np.ndarray) -> np.ndarray:
    return vec / np.linalg.norm(vec)


def od_to_rgb(
    c_h: np.ndarray,
    c_e: np.ndarray,
    look: SlideLook,
    *,
    noise: np.ndarray | None = None,
) -> np.ndarray:
    """Turn stain concentration maps into an RGB image (Beer-Lambert).

    Parameters
    ----------
    c_h, c_e : numpy.ndarray
        ``(h, w)`` float32 haematoxylin and eosin concentrations (OD units
        along the unit stain vectors, before the slide's strengths).
    look : SlideLook
        The slide's stain vectors, strengths and background.
    noise : numpy.ndarray, optional
        ``(h, w)`` float32 additive noise in 8-bit levels (sensor noise).

    Returns
    -------
    numpy.ndarray
        ``(h, w, 3)`` uint8 RGB.
    """
    h, w = c_h.shape
    out = np.empty((h, w, 3), dtype=np.uint8)
    f32 = np.float32
    od = np.empty((h, w), dtype=np.float32)
    tmp = np.empty((h, w), dtype=np.float32)
    offset = noise + f32(0.5) if noise is not None else None
    for k in range(3):
        # 255 * 10^-(OD + background) = exp(-ln10 * OD + ln(255) - ln10 * background)
        np.multiply(c_h, f32(-_LN10 * look.h_strength * look.h_vec[k]), out=od)
        np.multiply(c_e, f32(-_LN10 * look.e_strength * look.e_vec[k]), out=tmp)
        od += tmp
        od += f32(math.log(255.0) - _LN10 * look.od_background[k])
        np.exp(od, out=od)
        if offset is not None:
            od += offset
        else:
            od += f32(0.5)
        np.clip(od, 0.0, 255.0, out=od)
        out[..., k] = od
    return out
