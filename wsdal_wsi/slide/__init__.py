"""Whole-slide images: open, resolution, read at a target resolution, tissue mask, tile grid.

The only part of wsdal-wsi that imports OpenSlide. Coordinates are level-0
pixels ``(x, y)``; sizes are ``(w, h)``; images are ``(h, w, 3) uint8`` RGB.

- :func:`open_slide` -> :class:`Slide` (``read_region`` at a target µm/px,
  ``read_thumbnail``, ``info``, ``require_mpp``);
- :func:`tissue_mask` -> :class:`TissueMask`;
- :func:`tile_grid` -> list of :class:`Tile`.

Pixels come from OpenSlide, or, for slides whose every level is a JPEG-tiled
TIFF page (generic pyramidal TIFF, Aperio SVS with JPEG tiles, the synthetic
slides), from the raw tiles decoded directly (the same pixels, several times
faster); either way the same resampling puts every read on one global lattice.
"""

from wsdal_wsi.slide.reader import Slide, open_slide
from wsdal_wsi.slide.resolution import (
    MPP_FROM_PROJECT,
    MPP_FROM_PROPERTIES,
    MPP_FROM_TIFF_TAGS,
    MPP_FROM_USER,
    resolve_mpp,
)
from wsdal_wsi.slide.tiles import Tile, tile_grid
from wsdal_wsi.slide.tissue import TissueMask, tissue_mask

__all__ = [
    "MPP_FROM_PROJECT",
    "MPP_FROM_PROPERTIES",
    "MPP_FROM_TIFF_TAGS",
    "MPP_FROM_USER",
    "Slide",
    "Tile",
    "TissueMask",
    "open_slide",
    "resolve_mpp",
    "tile_grid",
    "tissue_mask",
]
