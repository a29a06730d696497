"""A slide's stains, estimated from its own pixels (Macenko et al. 2009).

H&E colour varies from lab to lab and scanner to scanner: the haematoxylin may be
stronger and bluer, the eosin paler. Macenko's method finds a slide's two stain
vectors and how strongly each is applied from the slide alone:

1. every pixel's optical density ``OD_c = -log10(max(I_c, 1) / 255)`` (R, G, B;
   white glass is 0); pixels whose OD vector is shorter than :data:`MIN_OD`
   (glass, faint edges) are left out (not Macenko's "below in any channel", which
   drops the purest eosin, absorbing little red, and biases the eosin vector
   towards haematoxylin: 8.6° mean error against 3.9° on the development slides,
   whose true vectors ``wsdal synth`` records);
2. the plane of the two largest principal directions of the remaining ODs holds
   both stains; each pixel's angle in that plane is taken, and the directions at
   the :data:`ANGLE_PERCENTILE` and ``100 - ANGLE_PERCENTILE`` percentiles of the
   angle are the two stain vectors (robust extremes: the purest haematoxylin and
   the purest eosin); the one absorbing more red is haematoxylin;
3. each pixel's stain amounts are its OD unmixed by the two vectors; the
   :data:`STRENGTH_PERCENTILE` percentile of each amount over *all* the pixels read
   is how strongly the slide is stained (``haematoxylin_strength_od``,
   ``eosin_strength_od``). Over all pixels, not only the stained ones, so that the
   set a percentile is taken over does not itself change with the staining (a
   paler eosin drops stroma below :data:`MIN_OD`, which raised the haematoxylin
   percentile of 1.6x stronger staining to 1.86x). Macenko takes the 99th
   percentile; it depends on how many very dark objects a slide holds: on the
   development slides (``wsdal synth``, whose true stain strengths are recorded)
   it made test slides with 30 mitoses per mm² 11 % lighter than training slides
   with 220, the 95th 2 %.

:mod:`wsdal_wsi.stain.transform` maps a slide's pixels onto a reference estimate
(the training slides' median, stored in the model file), so that the candidate
detector and the classifier see every slide as they saw the training slides.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from wsdal_wsi.errors import ConfigError, StainError

__all__ = [
    "ANGLE_PERCENTILE",
    "MIN_OD",
    "MIN_STAINED_PX",
    "STRENGTH_PERCENTILE",
    "StainEstimate",
    "estimate_stains",
    "median_estimate",
    "optical_density",
]

#: Pixels whose optical-density vector is shorter than this are glass or faint edges.
MIN_OD = 0.3
#: Percentile (and 100 minus it) of the stain-plane angle that gives the two stain vectors
#: (Macenko: 1; 0.5 halved the haematoxylin vector's largest error on development slides).
ANGLE_PERCENTILE = 0.5
#: Percentile of each stain's amount over the pixels read: the slide's staining strength.
STRENGTH_PERCENTILE = 95.0
#: Fewest stained pixels an estimate is made from (5 % of a slide's sampled regions).
MIN_STAINED_PX = 50_000
#: A stain whose strength (:data:`STRENGTH_PERCENTILE` of its amount) is below this is absent.
MIN_STRENGTH_OD = 1e-3
#: Smallest angle (degrees) between the two stain vectors: closer is one stain, not two.
MIN_STAIN_ANGLE_DEG = 5.0


@dataclass(frozen=True)
class StainEstimate:
    """One slide's (or a reference's) stains.

    Attributes
    ----------
    haematoxylin, eosin : tuple of 3 float
        Unit optical-density vectors (R, G, B) of the two stains.
    haematoxylin_strength_od, eosin_strength_od : float
        The :data:`STRENGTH_PERCENTILE` percentile of each stain's amount (optical
        density along its vector) over the pixels read: how strongly the slide is
        stained.
    n_pixels : int
        Stained pixels the estimate was made from (for a median: their sum).
    """

    haematoxylin: tuple[float, float, float]
    eosin: tuple[float, float, float]
    haematoxylin_strength_od: float
    eosin_strength_od: float
    n_pixels: int = 0

    def __post_init__(self) -> None:
        for name in ("haematoxylin", "eosin"):
            value = getattr(self, name)
            try:
                vec = np.asarray([float(v) for v in value], np.float64)
            except (TypeError, ValueError):
                raise ConfigError(f"stain {name} vector must be 3 numbers, got {value!r}") from None
            norm = float(np.linalg.norm(vec)) if vec.shape == (3,) else 0.0
            if vec.shape != (3,) or not np.all(np.isfinite(vec)) or norm <= 0:
                raise ConfigError(
                    f"stain {name} vector must be 3 finite numbers, not all 0, got {value!r}"
                )
            # stored as recorded (6 decimals), so a model or store reproduces it exactly
            object.__setattr__(self, name, tuple(round(float(v), 6) for v in vec / norm))
        for name in ("haematoxylin_strength_od", "eosin_strength_od"):
            value = getattr(self, name)
            if isinstance(value, bool) or not _positive(value) or round(float(value), 6) <= 0:
                raise ConfigError(f"stain {name} must be a positive number, got {value!r}")
            object.__setattr__(self, name, round(float(value), 6))
        angle = math.degrees(math.acos(min(1.0, abs(float(np.dot(self.haematoxylin, self.eosin))))))
        if angle < MIN_STAIN_ANGLE_DEG:
            raise ConfigError(
                f"the haematoxylin and eosin vectors are {angle:.1f}° apart (at least "
                f"{MIN_STAIN_ANGLE_DEG}° needed): {self.haematoxylin} / {self.eosin}"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (vectors as lists; every value has 6 decimals)."""
        return {
            "haematoxylin": list(self.haematoxylin),
            "eosin": list(self.eosin),
            "haematoxylin_strength_od": self.haematoxylin_strength_od,
            "eosin_strength_od": self.eosin_strength_od,
            "n_pixels": int(self.n_pixels),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StainEstimate:
        """Inverse of :meth:`to_dict`.

        Raises
        ------
        ConfigError
            Missing or unknown keys, bad values.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"a stain estimate must be a JSON object, got {data!r:.80}")
        need = {"haematoxylin", "eosin", "haematoxylin_strength_od", "eosin_strength_od"}
        known = need | {"n_pixels"}
        if not need <= set(data) or not set(data) <= known:
            raise ConfigError(
                f"a stain estimate needs the keys {sorted(need)} (and optionally n_pixels), "
                f"got {sorted(data)}"
            )
        return cls(**dict(data))


def _positive(value: Any) -> bool:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return False
    return math.isfinite(v) and v > 0


def optical_density(rgb: np.ndarray) -> np.ndarray:
    """Optical density ``-log10(max(I, 1) / 255)`` of uint8 RGB.

    Parameters
    ----------
    rgb : numpy.ndarray
        ``(..., 3)`` uint8 RGB.

    Returns
    -------
    numpy.ndarray
        ``(N, 3)`` float64 optical densities (dimensionless, >= 0), one row per pixel.
    """
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.shape[-1:] != (3,):
        raise ConfigError(
            f"expected (..., 3) uint8 RGB pixels, got "
            f"{getattr(rgb, 'shape', type(rgb).__name__)} {getattr(rgb, 'dtype', '')}"
        )
    table = -np.log10(np.maximum(np.arange(256, dtype=np.float64), 1.0) / 255.0)
    return table[rgb.reshape(-1, 3)]


def estimate_stains(rgb: np.ndarray, *, what: str = "these pixels") -> StainEstimate:
    """Estimate the stains of a set of H&E pixels (Macenko et al. 2009).

    Parameters
    ----------
    rgb : numpy.ndarray
        ``(..., 3)`` uint8 RGB pixels (any arrangement: regions of one slide,
        flattened or not).
    what : str
        What the pixels are (a slide's name), for error messages.

    Returns
    -------
    StainEstimate

    Raises
    ------
    StainError
        Fewer than :data:`MIN_STAINED_PX` stained pixels, or no second stain
        (the two vectors closer than :data:`MIN_STAIN_ANGLE_DEG`).
    ConfigError
        ``rgb`` is not uint8 RGB.
    """
    od_all = optical_density(rgb)
    od = od_all[np.linalg.norm(od_all, axis=1) >= MIN_OD]
    if len(od) < MIN_STAINED_PX:
        raise StainError(
            f"{what}: {len(od):,} stained pixels (optical density >= {MIN_OD}), at least "
            f"{MIN_STAINED_PX:,} needed to estimate the stains"
        )
    # The stain plane: the two largest principal directions of the ODs (about the
    # origin, as Macenko: OD is linear in the stain amounts, so the plane goes through 0).
    _, vecs = np.linalg.eigh(np.cov(od, rowvar=False))
    plane = vecs[:, [2, 1]]
    if plane[:, 0].sum() < 0:
        plane[:, 0] = -plane[:, 0]
    proj = od @ plane
    phi = np.arctan2(proj[:, 1], proj[:, 0])
    lo, hi = np.percentile(phi, [ANGLE_PERCENTILE, 100.0 - ANGLE_PERCENTILE])
    v_lo = plane @ np.array([math.cos(lo), math.sin(lo)])
    v_hi = plane @ np.array([math.cos(hi), math.sin(hi)])
    v_lo, v_hi = _positive_unit(v_lo), _positive_unit(v_hi)
    h_vec, e_vec = (v_lo, v_hi) if v_lo[0] > v_hi[0] else (v_hi, v_lo)
    angle = math.degrees(math.acos(min(1.0, float(np.dot(h_vec, e_vec)))))
    if angle < MIN_STAIN_ANGLE_DEG:
        raise StainError(
            f"{what}: one stain only (the two extreme colours are {angle:.1f}° apart, at least "
            f"{MIN_STAIN_ANGLE_DEG}° needed for haematoxylin and eosin)"
        )
    amounts, *_ = np.linalg.lstsq(np.stack([h_vec, e_vec], axis=1), od_all.T, rcond=None)
    max_h, max_e = np.percentile(amounts, STRENGTH_PERCENTILE, axis=1)
    if not (max_h >= MIN_STRENGTH_OD and max_e >= MIN_STRENGTH_OD):
        raise StainError(f"{what}: no haematoxylin or no eosin found ({max_h:.3f} / {max_e:.3f})")
    return StainEstimate(
        haematoxylin=tuple(h_vec),
        eosin=tuple(e_vec),
        haematoxylin_strength_od=float(max_h),
        eosin_strength_od=float(max_e),
        n_pixels=len(od),
    )


def _positive_unit(vec: np.ndarray) -> np.ndarray:
    """``vec`` turned to the positive octant (a stain absorbs, it never emits), unit norm."""
    if vec.sum() < 0:
        vec = -vec
    vec = np.clip(vec, 1e-6, None)
    return vec / np.linalg.norm(vec)


def median_estimate(estimates: Sequence[StainEstimate]) -> StainEstimate:
    """The component-wise median of several slides' estimates (vectors renormalised).

    Raises
    ------
    ConfigError
        ``estimates`` is empty.
    """
    if not estimates:
        raise ConfigError("a median of stain estimates needs at least one estimate")
    h = np.median([e.haematoxylin for e in estimates], axis=0)
    e = np.median([e.eosin for e in estimates], axis=0)
    return StainEstimate(
        haematoxylin=tuple(h),
        eosin=tuple(e),
        haematoxylin_strength_od=float(np.median([x.haematoxylin_strength_od for x in estimates])),
        eosin_strength_od=float(np.median([x.eosin_strength_od for x in estimates])),
        n_pixels=sum(x.n_pixels for x in estimates),
    )
