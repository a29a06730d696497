"""QuPath integration: the annotation model, QuPath GeoJSON, sources, sinks, COCO import.

Public API (see ``docs/ARCHITECTURE.md``, section ``wsdal_wsi.qupath``)::

    # the model
    PointAnnotation, AreaAnnotation, ImageAnnotations, ClassSettings
    TOOL_NAME_PREFIX ("WS-DAL"), is_tool_name, tool_name

    # sources: images, slides, annotations
    open_source(path, *, classes, relink, mpp, backend) -> Source
    Source.images() -> list[ImageRecord]; Source.results_path(record, out_dir)
    Source.exchange_results_path(record)

    # reading QuPath GeoJSON
    read_annotations(path, *, classes) -> ImageAnnotations
    read_points(path, *, classes, tool_made) -> PointSet     # arrays, for evaluation
    read_objects(path) -> list[QuPathObject]                  # everything, low level

    # writing QuPath GeoJSON
    write_results_geojson(path, *, detections, areas, provenance) -> ResultsReport
    complete_classification(feature, class_colors)    # the colour QuPath needs, on kept objects
    write_features(path, features, *, provenance) -> int
    detection_feature, points_feature, area_feature, point_feature, make_feature

    # sinks
    GeoJsonSink(source, out_dir).write(record, *, detections, areas, provenance)
    write_to_qupath(source, records)                          # paquo, --write-qupath

    # COCO
    import_coco(db_json, *, images_dir, out_dir) -> CocoImportReport

Only :mod:`wsdal_wsi.qupath.paquo_adapter` imports paquo, and only when used.
"""

from wsdal_wsi.qupath.annotations import (
    PointSet,
    annotations_from_objects,
    read_annotations,
    read_points,
)
from wsdal_wsi.qupath.coco import CocoImportReport, coco_annotations, import_coco
from wsdal_wsi.qupath.factory import open_source
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
from wsdal_wsi.qupath.results import (
    ResultsReport,
    answered_id,
    class_colors_for,
    complete_classification,
    write_results_geojson,
)
from wsdal_wsi.qupath.sinks import GeoJsonSink, write_to_qupath
from wsdal_wsi.qupath.sources import (
    SLIDE_EXTENSIONS,
    ImageRecord,
    Source,
)

__all__ = [
    "DETECTION_CLASS",
    "PROBABILITY_MEASUREMENT",
    "SLIDE_EXTENSIONS",
    "TOOL_NAME_PREFIX",
    "AreaAnnotation",
    "ClassSettings",
    "CocoImportReport",
    "GeoJsonSink",
    "ImageAnnotations",
    "ImageRecord",
    "PointAnnotation",
    "PointSet",
    "QuPathObject",
    "ResultsReport",
    "Source",
    "annotations_from_objects",
    "answered_id",
    "area_feature",
    "class_color",
    "class_colors_for",
    "classification",
    "coco_annotations",
    "complete_classification",
    "detection_feature",
    "import_coco",
    "is_tool_name",
    "make_feature",
    "open_source",
    "point_feature",
    "points_feature",
    "read_annotations",
    "read_objects",
    "read_points",
    "tool_name",
    "write_features",
    "write_results_geojson",
    "write_to_qupath",
]
