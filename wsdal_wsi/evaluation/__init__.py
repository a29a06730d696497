"""Evaluation as MIDOG does it: one-to-one matching within 7.5 µm, micro-averaged F1.

- :mod:`~wsdal_wsi.evaluation.matching`: matching points, P/R/F1, the exact threshold sweep
  and the F1-maximising threshold (used by training to choose the model's threshold);
- :mod:`~wsdal_wsi.evaluation.folders`: a folder of results against a folder of ground
  truth (``wsdal evaluate``).
"""

from wsdal_wsi.evaluation.folders import (
    FolderEvaluation,
    ImageEvaluation,
    evaluate_folders,
    provenance_mpp,
    read_mitosis_points,
)
from wsdal_wsi.evaluation.matching import (
    Match,
    ThresholdSweep,
    best_f1_threshold,
    match_points,
    prf,
    threshold_sweep,
)

__all__ = [
    "FolderEvaluation",
    "ImageEvaluation",
    "Match",
    "ThresholdSweep",
    "best_f1_threshold",
    "evaluate_folders",
    "match_points",
    "prf",
    "provenance_mpp",
    "read_mitosis_points",
    "threshold_sweep",
]
