"""Tissue mask: where on the slide there is tissue, at low resolution.

The slide is read at ``mask_mpp`` (8 µm/px by default: a 100k x 100k px scan at
0.25 µm/px becomes 3125 x 3125 px, read from a low pyramid level, never level 0
of a pyramidal slide). A pixel is tissue when it is coloured like H&E and
differs from the glass:

- **background**: the glass colour is estimated from the bright, grey pixels
  (slides scanned with a tint keep working); tissue must be darker than it and
  more coloured than it (chroma), so white and grey glass, and grey dust, fall out;
- **pen marks**: H&E absorbs green most (eosin) or red and green together
  (haematoxylin), so green is the darkest channel of stained tissue. Blue, green
  and cyan marker ink is clearly brighter in green than in red; black ink is dark
  and grey. Both are excluded, with a small margin around the strokes. Navy ink,
  only a little brighter in green than in red, has the colour of haematoxylin on a
  slide stained strongly and bluish (another lab, another scanner), so such pixels
  count as ink only next to a stroke of clear ink (hysteresis): a blue-stained
  slide keeps its tissue;
- **specks**: connected pieces smaller than ``min_component_mm2`` are dropped;
- **holes**: background enclosed by tissue and smaller than ``max_hole_mm2``
  (vessel lumens, ducts, small tears) is filled; bigger holes stay holes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from wsdal_wsi.errors import ConfigError
from wsdal_wsi.units import check_mpp, mm2_to_px2, px2_to_mm2

__all__ = ["TissueMask", "classify_tissue_pixels", "clean_mask", "tissue_mask"]

#: Minimum chroma (max - min channel, 0-255) above the glass for a tissue pixel.
_MIN_CHROMA = 8.0
#: Minimum darkness (mean channel drop below the glass, 0-255) for a tissue pixel.
_MIN_DARKNESS = 3.0
#: Green brighter than red by this much (0-255): blue, cyan or green ink, not H&E.
_PEN_GREEN_OVER_RED = 20.0
#: Or green a little brighter than red and blue much brighter than red: navy ink, or
#: haematoxylin on a slide stained strongly bluish; ink only near a clear-ink stroke.
_PEN_BLUE_GREEN_OVER_RED = 8.0
_PEN_BLUE_OVER_RED = 45.0
#: How far (mask px, 8-connected, through such pixels) a clear-ink stroke extends into them.
_MAYBE_INK_REACH_PX = 4
#: Brightest channel below this, with little chroma: black ink or debris.
_BLACK_MAX = 80.0
_BLACK_CHROMA = 20.0
#: Ink strokes smaller than this many mask px are ignored (stray pixels, not a stroke).
_MIN_PEN_PX = 12


@dataclass(frozen=True, eq=False)
class TissueMask:
    """A low-resolution tissue mask in the slide's level-0 frame.

    Attributes
    ----------
    mask : numpy.ndarray
        ``(h, w) bool``; ``True`` where there is tissue. Mask pixel ``(i, j)``
        (row ``i``, column ``j``) covers the level-0 square from
        ``(j, i) * downsample`` to ``(j + 1, i + 1) * downsample``.
    downsample : float
        Level-0 px per mask px.
    """

    mask: np.ndarray
    downsample: float

    def contains(self, xy_level0: np.ndarray) -> np.ndarray:
        """Whether level-0 points lie on tissue.

        Parameters
        ----------
        xy_level0 : array_like
            ``(N, 2)`` level-0 (x, y) points (float).

        Returns
        -------
        numpy.ndarray
            ``(N,) bool``; points outside the mask's extent are ``False``.
        """
        xy = np.asarray(xy_level0, dtype=np.float64).reshape(-1, 2)
        cols = np.floor(xy[:, 0] / self.downsample)
        rows = np.floor(xy[:, 1] / self.downsample)
        h, w = self.mask.shape
        inside = (cols >= 0) & (rows >= 0) & (cols < w) & (rows < h)
        out = np.zeros(len(xy), dtype=bool)
        out[inside] = self.mask[rows[inside].astype(np.intp), cols[inside].astype(np.intp)]
        return out

    def area_mm2(self, mpp: float) -> float:
        """Tissue area in mm², for level-0 resolution ``mpp`` (µm/px)."""
        return px2_to_mm2(float(self.mask.sum()) * self.downsample**2, mpp)

    def fraction_in(self, box_level0: tuple[float, float, float, float]) -> float:
        """Fraction of the mask pixels touching a level-0 box that are tissue.

        Parameters
        ----------
        box_level0 : (x0, y0, x1, y1)
            Half-open level-0 box.

        Returns
        -------
        float
            In [0, 1]; 0 for a box wholly outside the mask. Every mask pixel the
            box overlaps, even partly, counts.
        """
        x0, y0, x1, y1 = box_level0
        h, w = self.mask.shape
        c0 = max(0, math.floor(x0 / self.downsample))
        r0 = max(0, math.floor(y0 / self.downsample))
        c1 = min(w, math.ceil(x1 / self.downsample))
        r1 = min(h, math.ceil(y1 / self.downsample))
        if c1 <= c0 or r1 <= r0:
            return 0.0
        return float(self.mask[r0:r1, c0:c1].mean())


def classify_tissue_pixels(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-pixel tissue and pen-mark decision, before any clean-up.

    Parameters
    ----------
    rgb : numpy.ndarray
        ``(h, w, 3) uint8`` RGB image of the slide at low resolution.

    Returns
    -------
    tissue : numpy.ndarray
        ``(h, w) bool``: coloured and darker than the glass (ink included).
    pen : numpy.ndarray
        ``(h, w) bool``: coloured like blue, green or black marker ink (or black
        debris); :func:`clean_mask` removes the strokes among them.
    maybe_ink : numpy.ndarray
        ``(h, w) bool``: coloured like navy ink or like strongly bluish
        haematoxylin (not in ``pen``); :func:`clean_mask` removes them only near
        a stroke of ``pen``.
    """
    # int16 planes: a 3125 x 3125 mask (a 100k-px slide) stays near 100 MB in all.
    red, green, blue = (rgb[..., c].astype(np.int16) for c in range(3))
    brightest = np.maximum(np.maximum(red, green), blue)
    darkest = np.minimum(np.minimum(red, green), blue)
    chroma = brightest - darkest
    glass = (darkest > 190) & (chroma < 18)
    if glass.sum() >= max(16, 0.002 * glass.size):
        background = np.median(rgb[glass], axis=0).astype(np.float32)
    else:  # no visible glass (the image is all tissue): assume a white background
        background = np.array([245.0, 245.0, 245.0], np.float32)
    background_chroma = float(background.max() - background.min())
    # Darkness: mean channel drop below the glass.
    darkness = float(background.sum()) - (red + green + blue).astype(np.float32)
    tissue = (chroma - background_chroma >= _MIN_CHROMA) & (darkness >= 3 * _MIN_DARKNESS)
    green_over_red = green - red
    pen = (green_over_red >= _PEN_GREEN_OVER_RED) | (
        (brightest < _BLACK_MAX) & (chroma < _BLACK_CHROMA)
    )
    maybe_ink = (
        (green_over_red >= _PEN_BLUE_GREEN_OVER_RED) & (blue - red >= _PEN_BLUE_OVER_RED) & ~pen
    )
    return tissue, pen, maybe_ink


def clean_mask(
    tissue: np.ndarray,
    pen: np.ndarray,
    maybe_ink: np.ndarray,
    *,
    min_component_px: float,
    max_hole_px: float,
) -> np.ndarray:
    """Remove ink strokes (with a margin), specks, and fill small holes.

    Parameters
    ----------
    tissue, pen, maybe_ink : numpy.ndarray
        ``(h, w) bool`` from :func:`classify_tissue_pixels`; a stroke is a
        connected piece of ``pen`` of at least 12 mask px, extended by up to 4 mask
        px through connected ``maybe_ink`` pixels.
    min_component_px : float
        Connected tissue pieces (8-connected) with fewer mask px are dropped.
    max_hole_px : float
        Enclosed background pieces (4-connected) with at most this many mask px
        become tissue.

    Returns
    -------
    numpy.ndarray
        ``(h, w) bool``.
    """
    cross = ndimage.generate_binary_structure(2, 1)
    square = ndimage.generate_binary_structure(2, 2)
    if pen.any():
        strokes, count = ndimage.label(pen, structure=square)
        sizes = np.bincount(strokes.ravel())
        big = sizes >= _MIN_PEN_PX
        big[0] = False
        if big.any():
            ink = big[strokes]
            if maybe_ink.any():
                ink = ndimage.binary_dilation(
                    ink, structure=square, iterations=_MAYBE_INK_REACH_PX, mask=ink | maybe_ink
                )
            ink = ndimage.binary_dilation(ink, structure=square, iterations=2)
            tissue = tissue & ~ink
    # Bridge one-pixel gaps inside tissue; the border stays as it is.
    tissue = ndimage.binary_closing(tissue, structure=square, border_value=0) | tissue
    labels, count = ndimage.label(tissue, structure=square)
    if count:
        sizes = np.bincount(labels.ravel())
        keep = sizes >= min_component_px
        keep[0] = False
        tissue = keep[labels]
    holes, count = ndimage.label(~tissue, structure=cross)
    if count:
        sizes = np.bincount(holes.ravel())
        fill = sizes <= max_hole_px
        fill[0] = False
        border = np.unique(np.concatenate([holes[0], holes[-1], holes[:, 0], holes[:, -1]]))
        fill[border] = False
        tissue = tissue | fill[holes]
    return tissue


def tissue_mask(
    slide: object,
    *,
    mask_mpp: float = 8.0,
    min_component_mm2: float = 0.005,
    max_hole_mm2: float = 0.2,
) -> TissueMask:
    """Compute the tissue mask of a slide.

    Parameters
    ----------
    slide : wsdal_wsi.slide.Slide
        An open slide with a known resolution.
    mask_mpp : float
        Resolution of the mask in µm/px (8 µm/px: 32 level-0 px of a 0.25 µm/px scan).
    min_component_mm2 : float
        Tissue pieces smaller than this (mm²) are dropped as specks (0.005 mm² is a
        disc of 80 µm).
    max_hole_mm2 : float
        Holes inside tissue up to this size (mm²) are filled.

    Returns
    -------
    TissueMask
        Covers the whole slide: ``ceil(w / downsample)`` x ``ceil(h / downsample)``.

    Raises
    ------
    ResolutionError
        The slide's resolution is unknown.
    ConfigError
        A bad option value.
    """
    mpp = slide.require_mpp()  # type: ignore[attr-defined]
    mask_mpp = check_mpp(mask_mpp, what="mask_mpp")
    for name, value in (("min_component_mm2", min_component_mm2), ("max_hole_mm2", max_hole_mm2)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise ConfigError(f"{name} must be a number of mm² >= 0, got {value!r}")
    downsample = max(1.0, mask_mpp / mpp)
    width, height = slide.dimensions  # type: ignore[attr-defined]
    size = (max(1, math.ceil(width / downsample)), max(1, math.ceil(height / downsample)))
    rgb = slide.read_scaled((0.0, 0.0), size, level0_per_px=downsample)  # type: ignore[attr-defined]
    tissue, pen, maybe_ink = classify_tissue_pixels(rgb)
    mask_px_mpp = downsample * mpp
    mask = clean_mask(
        tissue,
        pen,
        maybe_ink,
        min_component_px=mm2_to_px2(min_component_mm2, mask_px_mpp),
        max_hole_px=mm2_to_px2(max_hole_mm2, mask_px_mpp),
    )
    return TissueMask(mask=mask, downsample=downsample)
