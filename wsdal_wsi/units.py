"""The one conversion layer between physical units and pixels.

User-facing options and outputs are in µm, mm and mm²; everything inside the
package works in level-0 pixels of the slide (or in pixels at the model's target
resolution, which the name of the variable says: ``*_px``). Every conversion
between the two goes through these functions, so a resolution of zero, a NaN or
a negative value is caught in one place.

``mpp`` is always micrometres per pixel (µm/px), the same along x and y.
"""

from __future__ import annotations

import math

from wsdal_wsi.errors import ConfigError

__all__ = [
    "DEFAULT_TARGET_MPP",
    "UM_PER_MM",
    "check_mpp",
    "check_probability",
    "mm2_to_px2",
    "mm_to_px",
    "px2_to_mm2",
    "px_to_mm",
    "px_to_um",
    "um2_to_px2",
    "um_to_px",
]

#: The model's default working resolution (µm/px): 0.25 µm/px is a "40x" scan.
DEFAULT_TARGET_MPP: float = 0.25

#: Micrometres in a millimetre.
UM_PER_MM: float = 1000.0


def check_mpp(mpp: float, *, what: str = "resolution") -> float:
    """Return ``mpp`` as a float if it is a usable resolution, else raise.

    Parameters
    ----------
    mpp : float
        Micrometres per pixel. Must be finite and in (0, 1000].
    what : str
        How the message names the value (e.g. ``"--mpp"``).

    Raises
    ------
    ConfigError
        If ``mpp`` is not a finite number in (0, 1000].
    """
    try:
        value = float(mpp)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a number of µm/px, got {mpp!r}") from None
    if not math.isfinite(value) or value <= 0 or value > 1000:
        raise ConfigError(f"{what} must be a positive number of µm/px (e.g. 0.25), got {mpp!r}")
    return value


def check_probability(value: float, *, what: str = "--threshold") -> float:
    """Return ``value`` as a float if it is a probability in [0, 1], else raise ConfigError."""
    if isinstance(value, bool):
        raise ConfigError(f"{what} must be a probability in [0, 1], got {value!r}")
    try:
        p = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a probability in [0, 1], got {value!r}") from None
    if not (math.isfinite(p) and 0.0 <= p <= 1.0):
        raise ConfigError(f"{what} must be a probability in [0, 1], got {value!r}")
    return p


def um_to_px(length_um: float, mpp: float) -> float:
    """Convert a length in µm to pixels at resolution ``mpp`` (µm/px)."""
    return float(length_um) / check_mpp(mpp)


def px_to_um(length_px: float, mpp: float) -> float:
    """Convert a length in pixels at resolution ``mpp`` (µm/px) to µm."""
    return float(length_px) * check_mpp(mpp)


def mm_to_px(length_mm: float, mpp: float) -> float:
    """Convert a length in mm to pixels at resolution ``mpp`` (µm/px)."""
    return float(length_mm) * UM_PER_MM / check_mpp(mpp)


def px_to_mm(length_px: float, mpp: float) -> float:
    """Convert a length in pixels at resolution ``mpp`` (µm/px) to mm."""
    return float(length_px) * check_mpp(mpp) / UM_PER_MM


def um2_to_px2(area_um2: float, mpp: float) -> float:
    """Convert an area in µm² to square pixels at resolution ``mpp`` (µm/px)."""
    return float(area_um2) / check_mpp(mpp) ** 2


def mm2_to_px2(area_mm2: float, mpp: float) -> float:
    """Convert an area in mm² to square pixels at resolution ``mpp`` (µm/px)."""
    return float(area_mm2) * (UM_PER_MM / check_mpp(mpp)) ** 2


def px2_to_mm2(area_px2: float, mpp: float) -> float:
    """Convert an area in square pixels at resolution ``mpp`` (µm/px) to mm²."""
    return float(area_px2) * (check_mpp(mpp) / UM_PER_MM) ** 2
