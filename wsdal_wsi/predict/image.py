"""One image of a source, end to end: open, predict, count, write every per-slide output.

:func:`predict_image` is the unit of work of a batch (and what a distributed
engine such as Ray would run per slide); :func:`previous_result` decides
whether an earlier run already did it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

from wsdal_wsi.counting import Region
from wsdal_wsi.errors import InputError
from wsdal_wsi.predict.engine import predict_slide
from wsdal_wsi.predict.settings import PredictSettings, detection_key
from wsdal_wsi.progress import Progress
from wsdal_wsi.provenance import provenance as make_provenance
from wsdal_wsi.qupath import ClassSettings
from wsdal_wsi.report import (
    ModelInfo,
    SlideInfo,
    SlideSummary,
    finish_slide,
    read_gallery,
    read_summary,
    slide_files,
)
from wsdal_wsi.slide import tissue_mask

__all__ = ["exchange_copies", "predict_image", "previous_result", "regions_of", "slide_info_of"]

log = logging.getLogger(__name__)


def regions_of(record: Any, classes: ClassSettings) -> list[Region]:
    """The image's area annotations to count in: every area whose class is not ignored.

    Parameters
    ----------
    record : wsdal_wsi.qupath.ImageRecord
    classes : ClassSettings
        Areas of an ``ignored`` class (default ``Ignore*``) are left out; the
        tool's own objects were already left out when reading.

    Returns
    -------
    list of Region
        Level-0 polygons with their class and name.
    """
    ann = record.annotations
    if ann is None:
        return []
    return [
        Region(a.geometry, a.class_name, a.name)
        for a in ann.areas
        if classes.role(a.class_name) != "ignored"
    ]


def slide_info_of(record: Any) -> SlideInfo:
    """What the source knows about an image's slide (for a failed slide's summary)."""
    return SlideInfo(
        name=record.name,
        key=record.key,
        path=str(record.slide_path) if record.slide_path else None,
        mpp=record.mpp,
        mpp_source=record.mpp_source,
        dimensions=tuple(record.dimensions) if record.dimensions else None,
    )


def exchange_copies(source: Any, record: Any, out_dir: Path) -> list[Path]:
    """More places for the results GeoJSON: the project's ``wsdal/results/<entryID>.geojson``."""
    exchange = source.exchange_results_path(record)
    if exchange is None:
        return []
    if exchange.resolve() == slide_files(out_dir, record.key).geojson.resolve():
        return []
    return [exchange]


def _find_detection_key(prov: Any) -> dict[str, Any] | None:
    """The detection key in a summary's provenance (``wsdal count`` nests it under "prediction")."""
    depth = 0
    while isinstance(prov, dict) and depth < 16:
        settings = prov.get("settings")
        if isinstance(settings, dict) and isinstance(settings.get("detection"), dict):
            return settings["detection"]
        prov = prov.get("prediction")
        depth += 1
    return None


def previous_result(
    out_dir: Path,
    record: Any,
    *,
    key: dict[str, Any],
    threshold: float,
    settings: PredictSettings,
    copies: list[Path],
) -> tuple[str, SlideSummary] | None:
    """What an earlier run left for ``record``, if it can be reused.

    Returns
    -------
    ("skip", summary) or ("recount", summary) or None
        ``skip``: finished with the same detection key, threshold and hotspot
        settings, all its files present. ``recount``: same detections, other
        hotspot settings or threshold (counted again without the model).
        ``None``: predict it (no summary, a failed one, another model or
        settings, or a missing file).
    """
    files = slide_files(out_dir, record.key)
    if not files.summary.is_file():
        return None
    try:
        summary = read_summary(files.summary)
    except InputError as exc:
        log.info("%s; predicting the slide again", exc)
        return None
    if not summary.ok or _find_detection_key(summary.provenance) != key:
        return None
    geojson = out_dir / (summary.geojson or files.geojson.name)
    have = {str(Path(c)) for c in summary.geojson_copies}
    if not geojson.is_file() or any(
        str(c.resolve()) not in have or not c.is_file() for c in copies
    ):
        return None
    same_counts = (
        summary.threshold is not None
        and abs(summary.threshold - threshold) < 1e-12
        and summary.hotspot_settings.to_dict() == settings.hotspot.to_dict()
        and summary.review_requested == settings.review_n
    )
    return ("skip" if same_counts else "recount"), summary


def _settings_record(
    settings: PredictSettings, threshold: float, key: dict[str, Any], pred: Any
) -> dict[str, Any]:
    """What the provenance records of the settings that made a slide's results."""
    return {
        "threshold": threshold,
        "threshold_source": "--threshold" if settings.threshold is not None else "model",
        "hotspot": settings.hotspot.to_dict(),
        "detection": key,
        "engine": pred.engine_info(),
        "predict": settings.to_dict(),
    }


def predict_image(
    record: Any,
    model: Any,
    out_dir: Path,
    *,
    model_info: ModelInfo,
    settings: PredictSettings,
    classes: ClassSettings,
    copies: list[Path],
    source_info: dict[str, Any],
    progress: Progress | None = None,
) -> SlideSummary:
    """Predict one image and write all its outputs (``finish_slide``).

    Parameters
    ----------
    record : wsdal_wsi.qupath.ImageRecord
    model : wsdal_wsi.model.file.LoadedModel
    out_dir : Path
    model_info : ModelInfo
        The model's path, hash, own threshold and resolution.
    settings : PredictSettings
    classes : ClassSettings
        Roles of the annotation classes (which areas are regions to count).
    copies : list of Path
        More results GeoJSON files to keep in step (the project's exchange file).
    source_info : dict
        The source's description (recorded in the provenance).
    progress : Progress, optional

    Returns
    -------
    SlideSummary

    Raises
    ------
    WsdalError
        The slide is missing, does not open, has no resolution, cannot be read;
        an output cannot be written (e.g. a malformed GeoJSON already there).
    """
    with record.open_slide() as slide:
        threshold = settings.threshold_for(model.spec)
        slide_mpp = slide.require_mpp()
        t_tissue = time.perf_counter()
        tissue = tissue_mask(slide)
        tissue_s = time.perf_counter() - t_tissue
        pred = predict_slide(
            slide,
            model,
            tissue=tissue,
            threshold=threshold,
            tile_size_px=settings.tile_size_px,
            batch_size=settings.batch_size,
            reader_threads=settings.reader_threads,
            cascade=settings.cascade,
            progress=progress,
        )
        t_assets = time.perf_counter()
        thumb, thumb_ds = slide.read_thumbnail(max_size_px=settings.thumbnail_px)
        gallery = None
        if settings.gallery_n:
            gallery = read_gallery(
                slide,
                pred.points_level0,
                pred.scores,
                n=settings.gallery_n,
                target_mpp=model.spec.target_mpp,
            )
        timings = {
            "tissue_s": round(tissue_s, 4),
            **{k: v for k, v in pred.timings.items() if k not in ("tissue_s", "total_s")},
            "predict_s": pred.timings["total_s"],
            "thumbnail_gallery_s": round(time.perf_counter() - t_assets, 4),
        }
        info = SlideInfo(
            name=record.name,
            key=record.key,
            path=str(slide.path),
            mpp=slide_mpp,
            mpp_source=slide.mpp_source,
            dimensions=tuple(slide.dimensions),
        )
    key = detection_key(
        model_sha256=model_info.sha256 or "",
        threshold=threshold,
        slide_mpp=slide_mpp,
        target_mpp=model.spec.target_mpp,
        cascade=settings.cascade,
    )
    prov = make_provenance(
        slide=dataclasses.asdict(info),
        model=dataclasses.asdict(model_info),
        settings=_settings_record(settings, threshold, key, pred),
        source={**source_info, "entry_id": record.entry_id, "image": record.name},
    )
    return finish_slide(
        out_dir,
        slide=info,
        model=model_info,
        threshold=threshold,
        points_level0=pred.points_level0,
        scores=pred.scores,
        tissue=tissue,
        regions=regions_of(record, classes),
        settings=settings.hotspot,
        thumbnail=thumb,
        thumbnail_downsample=thumb_ds,
        gallery=gallery,
        provenance=prov,
        timings=timings,
        geojson_copies=copies,
        near_points_level0=pred.near_points_level0,
        near_scores=pred.near_scores,
        review_n=settings.review_n,
        progress=None,
    )
