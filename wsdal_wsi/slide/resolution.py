"""Where a slide's resolution (µm/px) comes from.

Four sources, in order (:func:`resolve_mpp`, the one place this order is decided):
the slide's own properties as OpenSlide reports them (``openslide.mpp-x`` /
``openslide.mpp-y``), else the TIFF resolution tags of level 0 (``XResolution`` /
``YResolution`` with ``ResolutionUnit`` centimetre or inch, read with tifffile for
TIFF-family files), else the pixel size set in QuPath for the image (projects), else
the value the user gives (``--mpp``), else nothing. Neither fallback ever replaces a
resolution the slide records (a batch-wide value must not rescale the slides that know their own; a
different value is ignored with a warning). There is never a silent default: a
slide without a resolution has ``mpp = None`` and the commands that need one
refuse it (:meth:`wsdal_wsi.slide.Slide.require_mpp`).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator, Mapping
from pathlib import Path

import tifffile

__all__ = [
    "MPP_FROM_PROJECT",
    "MPP_FROM_PROPERTIES",
    "MPP_FROM_TIFF_TAGS",
    "MPP_FROM_USER",
    "is_tiff_file",
    "mpp_from_properties",
    "mpp_from_tiff_tags",
    "quiet_tifffile",
    "resolve_mpp",
]

log = logging.getLogger(__name__)

#: ``Slide.mpp_source`` values.
MPP_FROM_PROPERTIES = "slide properties"
MPP_FROM_TIFF_TAGS = "TIFF resolution tags"
MPP_FROM_USER = "user (--mpp)"
MPP_FROM_PROJECT = "QuPath project (pixel size in project.qpproj)"

#: Resolutions (µm/px) outside this range are not microscope scans: 72 or 96 dpi
#: written by an image editor by default is 353 or 265 µm/px.
_PLAUSIBLE_MPP = (0.01, 50.0)

_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")

#: Micrometres per ResolutionUnit (TIFF tag 296: 2 = inch, 3 = centimetre).
_UM_PER_UNIT = {2: 25_400.0, 3: 10_000.0}


def is_tiff_file(path: Path) -> bool:
    """Return whether ``path`` starts with a TIFF or BigTIFF header."""
    try:
        with open(path, "rb") as fh:
            return fh.read(4) in _TIFF_MAGICS
    except OSError:
        return False


@contextlib.contextmanager
def quiet_tifffile() -> Iterator[None]:
    """Silence tifffile's warnings about malformed files while we probe one.

    tifffile logs (rather than raises) many problems with a damaged file; we
    report those problems ourselves, with the path, as :class:`SlideError`.
    """
    logger = logging.getLogger("tifffile")
    previous = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(previous)


def _positive_float(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def _combine_xy(mpp_x: float | None, mpp_y: float | None, *, where: str) -> float | None:
    """One isotropic µm/px from x and y values (their mean; warn when they differ > 1 %)."""
    if mpp_x is None and mpp_y is None:
        return None
    if mpp_x is None or mpp_y is None:
        return mpp_x if mpp_y is None else mpp_y
    if abs(mpp_x - mpp_y) > 0.01 * max(mpp_x, mpp_y):
        log.warning(
            "%s: pixels are not square (%.4g x %.4g µm); using the mean %.4g µm/px",
            where,
            mpp_x,
            mpp_y,
            (mpp_x + mpp_y) / 2,
        )
    return (mpp_x + mpp_y) / 2


def _plausible(mpp: float | None, *, where: str, what: str) -> float | None:
    if mpp is None:
        return None
    low, high = _PLAUSIBLE_MPP
    if not low <= mpp <= high:
        log.warning("%s: ignoring %s of %.4g µm/px (not a microscope resolution)", where, what, mpp)
        return None
    return mpp


def mpp_from_properties(properties: Mapping[str, str], *, where: str = "slide") -> float | None:
    """Resolution from OpenSlide's standard properties.

    Parameters
    ----------
    properties : Mapping[str, str]
        ``OpenSlide.properties``.
    where : str
        How warnings name the slide.

    Returns
    -------
    float or None
        µm/px (mean of x and y), or ``None`` when the slide does not say or says
        something that is not a microscope resolution.
    """
    mpp = _combine_xy(
        _positive_float(properties.get("openslide.mpp-x")),
        _positive_float(properties.get("openslide.mpp-y")),
        where=where,
    )
    return _plausible(mpp, where=where, what="the slide's resolution property")


def _rational(value: object) -> float | None:
    if isinstance(value, tuple) and len(value) == 2:
        num, den = value
        return _positive_float(num / den) if den else None
    return _positive_float(value)


def mpp_from_tiff_tags(path: Path) -> float | None:
    """Resolution from the TIFF resolution tags of the first page.

    Parameters
    ----------
    path : Path
        Any file; files that are not TIFF (or BigTIFF) give ``None``.

    Returns
    -------
    float or None
        µm/px from ``XResolution``/``YResolution`` (pixels per unit) and
        ``ResolutionUnit`` (inch or centimetre), or ``None`` when a tag is
        missing, the unit is "none", or the value is not a microscope resolution.
    """
    if not is_tiff_file(path):
        return None

    try:
        with quiet_tifffile(), tifffile.TiffFile(path) as tif:
            tags = tif.pages.first.tags
            unit_tag = tags.get("ResolutionUnit")
            x_tag = tags.get("XResolution")
            y_tag = tags.get("YResolution")
            unit = int(unit_tag.value) if unit_tag is not None else 2  # TIFF default: inch
            x_ppu = _rational(x_tag.value) if x_tag is not None else None
            y_ppu = _rational(y_tag.value) if y_tag is not None else None
    except Exception as exc:  # tifffile raises many kinds on damaged files
        log.debug("%s: cannot read TIFF resolution tags (%s)", path, exc)
        return None
    um_per_unit = _UM_PER_UNIT.get(unit)
    if um_per_unit is None:
        return None
    mpp = _combine_xy(
        um_per_unit / x_ppu if x_ppu else None,
        um_per_unit / y_ppu if y_ppu else None,
        where=str(path),
    )
    return _plausible(mpp, where=str(path), what="the TIFF resolution tags")


def resolve_mpp(
    *,
    file_mpp: float | None,
    file_source: str | None,
    project_mpp: float | None = None,
    user_mpp: float | None = None,
    where: str = "",
) -> tuple[float | None, str | None]:
    """The resolution to use for a slide, and where it comes from.

    The slide's own (``file_mpp``: properties or TIFF tags), else the pixel size
    set in QuPath (``project_mpp``), else ``--mpp`` (``user_mpp``), else none.
    A fallback that differs from the slide's own by more than 2 % is not used,
    with a warning naming the slide (``where``).

    Returns
    -------
    (float or None, str or None)
        µm/px and its source (one of the ``MPP_FROM_*`` labels).
    """
    if file_mpp is not None:
        for value, label in ((project_mpp, "QuPath's pixel size"), (user_mpp, "--mpp")):
            if value is not None and abs(value - file_mpp) > 0.02 * file_mpp:
                log.warning(
                    "%s: %s %.4g not used: the slide records its own resolution %.4g µm/px (%s)",
                    where,
                    label,
                    value,
                    file_mpp,
                    file_source,
                )
        return file_mpp, file_source
    if project_mpp is not None:
        return project_mpp, MPP_FROM_PROJECT
    if user_mpp is not None:
        return user_mpp, MPP_FROM_USER
    return None, None
