"""Per-slide and batch outputs: summary JSON, QuPath count objects, PNG report, spreadsheets.

Public API for ``wsdal predict`` (per slide, once its detections are known)::

    from wsdal_wsi.report import SlideInfo, ModelInfo, finish_slide, read_gallery
    gallery = read_gallery(slide, points, scores)            # crops of the top detections
    thumb, thumb_ds = slide.read_thumbnail(max_size_px=1600)
    summary = finish_slide(out_dir, slide=SlideInfo(...), model=ModelInfo(...),
                           threshold=t, points_level0=points, scores=scores,
                           tissue=tissue_mask, regions=regions, settings=HotspotSettings(),
                           thumbnail=thumb, thumbnail_downsample=thumb_ds, gallery=gallery,
                           timings={...})
    # a failed slide:
    write_summary(slide_files(out_dir, key).summary, SlideSummary.failed(SlideInfo(...), reason))
    # at the end of the batch:
    write_batch_outputs(out_dir, summaries)

``wsdal count`` calls :func:`recount_folder`; ``wsdal report`` :func:`rebuild_batch_outputs`.
"""

from wsdal_wsi.report.assets import Gallery, read_gallery, top_detections, write_report_assets
from wsdal_wsi.report.batch import (
    RebuildResult,
    RecountResult,
    load_summaries,
    rebuild_batch_outputs,
    recount_folder,
    write_batch_outputs,
)
from wsdal_wsi.report.html import write_index_html
from wsdal_wsi.report.layout import (
    COUNTS_CSV,
    COUNTS_XLSX,
    INDEX_HTML,
    SlideFiles,
    find_summaries,
    read_tissue_png,
    slide_files,
    write_tissue_png,
)
from wsdal_wsi.report.png import Report, ReportText, render_report
from wsdal_wsi.report.qupath_objects import (
    HOTSPOT_CLASS,
    REGION_COUNT_CLASS,
    count_annotations,
    count_features,
    read_detections,
    replace_count_features,
)
from wsdal_wsi.report.slide import (
    draw_slide_report,
    finish_slide,
    recount_slide,
    report_text,
    write_slide_report,
)
from wsdal_wsi.report.spreadsheet import count_rows, write_counts_csv, write_counts_xlsx
from wsdal_wsi.report.summary import (
    AssetInfo,
    ModelInfo,
    SlideInfo,
    SlideSummary,
    build_summary,
    read_summary,
    write_summary,
)

__all__ = [
    "COUNTS_CSV",
    "COUNTS_XLSX",
    "HOTSPOT_CLASS",
    "INDEX_HTML",
    "REGION_COUNT_CLASS",
    "AssetInfo",
    "Gallery",
    "ModelInfo",
    "RebuildResult",
    "RecountResult",
    "Report",
    "ReportText",
    "SlideFiles",
    "SlideInfo",
    "SlideSummary",
    "build_summary",
    "count_annotations",
    "count_features",
    "count_rows",
    "draw_slide_report",
    "find_summaries",
    "finish_slide",
    "load_summaries",
    "read_detections",
    "read_gallery",
    "read_summary",
    "read_tissue_png",
    "rebuild_batch_outputs",
    "recount_folder",
    "recount_slide",
    "render_report",
    "replace_count_features",
    "report_text",
    "slide_files",
    "top_detections",
    "write_batch_outputs",
    "write_counts_csv",
    "write_counts_xlsx",
    "write_index_html",
    "write_report_assets",
    "write_slide_report",
    "write_summary",
    "write_tissue_png",
]
