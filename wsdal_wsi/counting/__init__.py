"""Counting for grading: region counts, the hotspot window, its exact grid search, the score.

- :mod:`~wsdal_wsi.counting.regions`: detections per region, per class and per slide
  (:func:`count_slide` is what prediction and ``wsdal count`` call);
- :mod:`~wsdal_wsi.counting.hotspot`: the counting window with the most detections (at least half
  tissue);
- :mod:`~wsdal_wsi.counting.grid`: exact window counts on a grid of centres (the search);
- :mod:`~wsdal_wsi.counting.grading`: mitoses per mm² and the Nottingham mitotic score.

Pure functions over level-0 points, a tissue mask, polygons and the slide's µm/px;
no slide I/O.
"""

from wsdal_wsi.counting.grading import (
    DEFAULT_FIELD_DIAMETER_MM,
    NOTTINGHAM_TABLE,
    SUPPORTED_FIELD_DIAMETERS_MM,
    MitoticScore,
    NottinghamRow,
    check_field_diameter,
    hpf_area_mm2,
    mitotic_score,
    nottingham_row,
    per_mm2_cutoffs,
    score_window,
    ten_hpf_area_mm2,
)
from wsdal_wsi.counting.grid import TissueGrid, as_tissue
from wsdal_wsi.counting.hotspot import (
    WINDOW_SHAPES,
    Hotspot,
    HotspotSearch,
    HotspotSettings,
    find_hotspot,
    hotspot_search,
    window_geometry,
)
from wsdal_wsi.counting.regions import (
    ClassCount,
    Region,
    RegionCount,
    SlideCounts,
    count_by_class,
    count_regions,
    count_slide,
)
from wsdal_wsi.counting.uncertainty import CountRange, count_range, poisson_binomial_pmf

__all__ = [
    "DEFAULT_FIELD_DIAMETER_MM",
    "NOTTINGHAM_TABLE",
    "SUPPORTED_FIELD_DIAMETERS_MM",
    "WINDOW_SHAPES",
    "ClassCount",
    "CountRange",
    "Hotspot",
    "HotspotSearch",
    "HotspotSettings",
    "MitoticScore",
    "NottinghamRow",
    "Region",
    "RegionCount",
    "SlideCounts",
    "TissueGrid",
    "as_tissue",
    "check_field_diameter",
    "count_by_class",
    "count_range",
    "count_regions",
    "count_slide",
    "find_hotspot",
    "hotspot_search",
    "hpf_area_mm2",
    "mitotic_score",
    "nottingham_row",
    "per_mm2_cutoffs",
    "poisson_binomial_pmf",
    "score_window",
    "ten_hpf_area_mm2",
    "window_geometry",
]
