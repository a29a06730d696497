"""Checks of an image's clicks against its slide: points outside it, implausible densities.

A click outside the slide (negative coordinates, or beyond its level-0 width or
height, or not a finite number) cannot be a mitosis of that slide: training on it
would teach the network that blank white glass is a mitosis. Such points are
taken out of the image's annotations, with a warning naming the file and how
many (:func:`drop_points_outside`).

A file with far more clicks of a positive class than any tissue holds mitoses is
most likely not a pathologist's clicks (another tool's detections, every
nucleus): :func:`density_warning` says so. The threshold,
:data:`MAX_PLAUSIBLE_PER_MM2` = 1000 positive points per mm² of slide, is about
20 times the densest real mitotic counts: even the most proliferative breast
carcinomas hold well under 50 mitoses per mm² of tumour (the Nottingham score 3
starts at 7.4 per mm² for a 0.55 mm field), and tumour nuclei themselves number a
few thousand per mm². It is measured over the whole slide (at least its tissue),
so glass never makes it fire, and only from :data:`MIN_POINTS_FOR_DENSITY`
points on, so that one click on a small crop does not.
"""

from __future__ import annotations

import dataclasses
import math

from wsdal_wsi.qupath.model import ClassSettings, ImageAnnotations
from wsdal_wsi.units import px2_to_mm2

__all__ = [
    "MAX_PLAUSIBLE_PER_MM2",
    "MIN_POINTS_FOR_DENSITY",
    "density_warning",
    "drop_points_outside",
]

#: Positive-class points per mm² of slide above which a file is not plausibly clicks.
MAX_PLAUSIBLE_PER_MM2 = 1000.0
#: Fewer positive points than this are never called implausible (a small crop).
MIN_POINTS_FOR_DENSITY = 100


def _inside(x: float, y: float, width: int, height: int) -> bool:
    return math.isfinite(x) and math.isfinite(y) and 0 <= x <= width and 0 <= y <= height


def drop_points_outside(
    ann: ImageAnnotations, dimensions: tuple[int, int], *, source: str
) -> tuple[ImageAnnotations, str | None, int]:
    """``ann`` without the points outside the slide.

    Parameters
    ----------
    ann : ImageAnnotations
    dimensions : (int, int)
        The slide's level-0 ``(w, h)``; a point inside has ``0 <= x <= w`` and
        ``0 <= y <= h`` (level-0 pixels).
    source : str
        The annotation file (or image name) for the warning.

    Returns
    -------
    (ImageAnnotations, str or None, int)
        The annotations kept, a warning when points were dropped (None otherwise)
        and how many were dropped.
    """
    w, h = dimensions
    kept = tuple(p for p in ann.points if _inside(p.x, p.y, w, h))
    n_out = len(ann.points) - len(kept)
    if not n_out:
        return ann, None, 0
    shown = [p for p in ann.points if not _inside(p.x, p.y, w, h)][:3]
    examples = ", ".join(f"({p.x:g}, {p.y:g}) {p.class_name or 'Unclassified'}" for p in shown)
    warning = (
        f"{source}: {n_out} point(s) outside the slide (level-0 {w} x {h} px), not used: "
        f"{examples}{', ...' if n_out > len(shown) else ''}"
    )
    return dataclasses.replace(ann, points=kept), warning, n_out


def density_warning(
    ann: ImageAnnotations,
    dimensions: tuple[int, int],
    mpp: float,
    *,
    classes: ClassSettings,
    source: str,
) -> str | None:
    """A warning when the positive points are implausibly dense (see the module docstring).

    Parameters
    ----------
    ann : ImageAnnotations
    dimensions : (int, int)
        Level-0 ``(w, h)`` of the slide.
    mpp : float
        Its resolution (µm/px).
    classes : ClassSettings
    source : str
        The annotation file (or image name) for the warning.
    """
    n = len(ann.points_with_role("positive", classes))
    area_mm2 = px2_to_mm2(float(dimensions[0]) * float(dimensions[1]), mpp)
    if n < MIN_POINTS_FOR_DENSITY or area_mm2 <= 0 or n <= MAX_PLAUSIBLE_PER_MM2 * area_mm2:
        return None
    return (
        f"{source}: {n:,} points of a positive class on {area_mm2:.3g} mm² of slide "
        f"({n / area_mm2:,.0f} per mm²), far above any real mitotic density (under 50 per mm² "
        "even in the most proliferative tumours): are these clicks, or another tool's "
        "detections?"
    )
