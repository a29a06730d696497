"""QuPath integration: the annotation model, QuPath GeoJSON, sources, sinks, COCO import.

Public API (see ``docs/ARCHITECTURE.md``, section ``wsdal_wsi.qupath``)::

    from wsdal_wsi.qupath import (
        PointAnnotation, AreaAnnotation, ImageAnnotations, ClassSettings,
        write_features, write_results_geojson, detection_feature, points_feature, area_feature,
        read_annotations, read_objects, read_points,
    )

Only :mod:`wsdal_wsi.qupath.paquo_adapter` imports paquo, and only when it is used.
"""

from wsdal_wsi.qupath.annotations import (
    PointSet,
    annotations_from_objects,
    read_annotations,
    read_points,
)
from wsdal_wsi.qupath.geojson_read import QuPathObject, read_objects
from wsdal_wsi.qupath.geojson_write import (
    area_feature,
    class_color,
    classification,
    detection_feature,
    make_feature,
    point_feature,
    points_feature,
    write_features,
    write_results_geojson,
)
from wsdal_wsi.qupath.model import (
    DETECTION_CLASS,
    PROBABILITY_MEASUREMENT,
    TOOL_NAME_PREFIX,
    AreaAnnotation,
    ClassSettings,
    ImageAnnotations,
    PointAnnotation,
    is_tool_name,
    tool_name,
)

__all__ = [
    "DETECTION_CLASS",
    "PROBABILITY_MEASUREMENT",
    "TOOL_NAME_PREFIX",
    "AreaAnnotation",
    "ClassSettings",
    "ImageAnnotations",
    "PointAnnotation",
    "PointSet",
    "QuPathObject",
    "annotations_from_objects",
    "area_feature",
    "class_color",
    "classification",
    "detection_feature",
    "is_tool_name",
    "make_feature",
    "point_feature",
    "points_feature",
    "read_annotations",
    "read_objects",
    "read_points",
    "tool_name",
    "write_features",
    "write_results_geojson",
]
