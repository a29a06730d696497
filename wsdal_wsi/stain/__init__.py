"""Stains: each slide's haematoxylin and eosin, estimated and normalised.

- :mod:`wsdal_wsi.stain.estimate`: a slide's stain vectors and strengths from its own
  pixels (Macenko), and the median of several (:class:`StainEstimate`);
- :mod:`wsdal_wsi.stain.transform`: the ``3 x 3`` optical-density matrix that maps
  one estimate onto another, applied to uint8 RGB on any device;
- :mod:`wsdal_wsi.stain.slide`: the same for whole slides (regions sampled in the
  tissue; a slide whose reads come back normalised).

Training estimates every training slide, keeps their median as the *reference* (in
the patch store and the model file) and reads every patch normalised to it;
prediction estimates each slide and normalises every tile before the candidate
detector and the classifier see it.
"""

from wsdal_wsi.stain.estimate import StainEstimate, estimate_stains, median_estimate
from wsdal_wsi.stain.slide import StainNormalisedSlide, slide_stains, stain_normaliser
from wsdal_wsi.stain.transform import normalise_rgb, stain_matrix

__all__ = [
    "StainEstimate",
    "StainNormalisedSlide",
    "estimate_stains",
    "median_estimate",
    "normalise_rgb",
    "slide_stains",
    "stain_matrix",
    "stain_normaliser",
]
