"""Candidate nuclei: where the classifier looks, on the CPU and the GPU alike.

- :mod:`~wsdal_wsi.detect.candidates`: haematoxylin optical density, the contrast map and
  its local maxima (:func:`detect_candidates`), with settings in µm (:class:`CandidateParams`);
- :mod:`~wsdal_wsi.detect.merge`: greedy merging of nearby points (non-maximum suppression
  for points), for candidates and for detections.
"""

from wsdal_wsi.detect.candidates import (
    RUIFROK_EOSIN,
    RUIFROK_HAEMATOXYLIN,
    CandidateParams,
    contrast_map,
    detect_candidates,
    haematoxylin_od,
)
from wsdal_wsi.detect.merge import greedy_merge_torch, merge_points

__all__ = [
    "RUIFROK_EOSIN",
    "RUIFROK_HAEMATOXYLIN",
    "CandidateParams",
    "contrast_map",
    "detect_candidates",
    "greedy_merge_torch",
    "haematoxylin_od",
    "merge_points",
]
