"""One slide's outputs: count, then write the tissue mask, assets, GeoJSON, report, summary.

:func:`finish_slide` is what ``wsdal predict`` calls once a slide's detections
are known; :func:`recount_slide` is what ``wsdal count`` calls to redo the
counting from the files alone (no slide, no model).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wsdal_wsi.atomic import atomic_path
from wsdal_wsi.counting import HotspotSettings, Region, count_slide
from wsdal_wsi.counting.grid import as_tissue
from wsdal_wsi.errors import ConfigError, InputError
from wsdal_wsi.model.calibration import Calibration
from wsdal_wsi.progress import Progress
from wsdal_wsi.provenance import provenance as make_provenance
from wsdal_wsi.qupath import write_results_geojson
from wsdal_wsi.report.assets import (
    Gallery,
    load_gallery,
    load_thumbnail,
    write_report_assets,
)
from wsdal_wsi.report.layout import read_tissue_png, slide_files, write_tissue_png
from wsdal_wsi.report.png import Report, ReportText, render_report
from wsdal_wsi.report.qupath_objects import count_features, read_detections, replace_count_features
from wsdal_wsi.report.review import (
    read_near_misses,
    review_features,
    review_items,
    write_near_misses,
)
from wsdal_wsi.report.summary import (
    ModelInfo,
    SlideInfo,
    SlideSummary,
    build_summary,
    write_summary,
)
from wsdal_wsi.units import check_probability

log = logging.getLogger(__name__)

__all__ = [
    "draw_slide_report",
    "finish_slide",
    "recount_slide",
    "report_text",
    "write_slide_report",
]


def _jsonable(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` as it reads back from JSON (tuples become lists)."""
    return json.loads(json.dumps(obj, allow_nan=False))


def _fmt(value: float | None, digits: int = 2, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:,.{digits}f}{unit}"


def report_text(summary: SlideSummary) -> ReportText:
    """The words and numbers of a slide's PNG report, from its summary."""
    s, hs = summary, summary.hotspot
    date = (s.created or "").replace("T", " ").replace("Z", " UTC")
    thr = f", threshold {s.threshold:.2f}" if s.threshold is not None else ""
    subtitle = f"WS-DAL mitosis report · model {s.model.label}{thr} · {date}".rstrip(" ·")
    settings = s.hotspot_settings
    cards = [
        ("Detections", f"{s.detections or 0:,}", f"{s.in_tissue or 0:,} in tissue"),
        (
            "Hotspot",
            f"{hs.count} mitoses" if hs else "–",
            f"in {settings.describe().split(' (')[0]}" if hs else "no admissible window",
        ),
        (
            "Hotspot density",
            f"{_fmt(hs.per_mm2, 1)} /mm²" if hs else "–",
            "cut-offs {:.1f} / {:.1f} /mm²".format(*hs.score.cutoffs_per_mm2) if hs else "",
        ),
        (
            "Tissue",
            f"{_fmt(s.tissue_area_mm2, 1)} mm²",
            f"{_fmt(s.tissue_per_mm2, 2)} mitoses/mm² overall",
        ),
    ]
    caption = ""
    rng = s.hotspot_range
    if hs:
        caption = f"{hs.score.count_10hpf_rounded} per 10 HPF (Ø {hs.field_diameter_mm:.2f} mm)"
        if rng is not None and rng.borderline:
            caption = f"BORDERLINE {rng.score_low}-{rng.score_high} · " + caption
    rows = [
        [
            r.label,
            r.class_name or "",
            _fmt(r.area_mm2, 3),
            _fmt(r.tissue_area_mm2, 3),
            str(r.mitoses),
            _fmt(r.per_mm2, 2),
        ]
        for r in s.regions
    ]
    frac = f"{settings.min_tissue_fraction:.0%}"
    notes = [
        f"Score: {hs.score.basis}." if hs else "Score: no counting window fits the tissue.",
        *(
            [
                f"Count range {rng.low}-{rng.high} ({rng.level:.0%}, calibrated probabilities of "
                f"{rng.n_candidates} candidates): "
                + (
                    f"borderline, score {rng.score_low} to {rng.score_high}: count this hotspot "
                    "yourself."
                    if rng.borderline
                    else f"score {rng.score_low} throughout."
                )
            ]
            if rng is not None
            else []
        ),
        f"Hotspot: {settings.describe()} with the most detections in tissue; window ≥ {frac} "
        f"tissue; centres on a {hs.grid_cell_um if hs else settings.grid_um:.1f} µm grid.",
        f"Slide {s.slide.name} ({s.slide.key}), {_fmt(s.slide.mpp, 4)} µm/px"
        f" · wsdal-wsi {s.provenance.get('version', '?')}",
    ]
    return ReportText(
        title=s.slide.name,
        subtitle=subtitle,
        cards=cards,
        score=hs.score.score if hs else None,
        score_caption=caption,
        table_header=["Region", "Class", "Area (mm²)", "Tissue (mm²)", "Mitoses", "Per mm²"],
        table_rows=rows,
        notes=notes,
    )


def draw_slide_report(
    summary: SlideSummary,
    *,
    points_level0: np.ndarray,
    tissue_mask: np.ndarray | None = None,
    thumbnail: np.ndarray | None = None,
    thumbnail_downsample: float | None = None,
    gallery: Gallery | None = None,
) -> Report:
    """Render a slide's report from its summary and arrays (see :func:`render_report`)."""
    hs = summary.hotspot
    regions = [(r.label, r.geometry) for r in summary.regions if r.geometry is not None]
    return render_report(
        report_text(summary),
        thumbnail=thumbnail,
        thumbnail_downsample=thumbnail_downsample,
        points_level0=points_level0,
        mpp=summary.slide.mpp or 0.25,
        hotspot=hs.geometry if hs else None,
        hotspot_label=f"Hotspot: {hs.count} mitoses" if hs else "",
        regions=regions,
        tissue_mask=tissue_mask,
        tissue_downsample=summary.tissue_downsample,
        slide_dimensions=summary.slide.dimensions,
        crops=gallery.crops if gallery is not None else (),
        crop_scores=gallery.scores.tolist() if gallery is not None else (),
        cutoffs_per_mm2=hs.score.cutoffs_per_mm2 if hs else None,
    )


def write_slide_report(out_dir: str | os.PathLike[str], summary: SlideSummary, **arrays) -> Path:
    """Draw the report (keyword arrays of :func:`draw_slide_report`) to ``<key>.report.png``."""
    path = slide_files(out_dir, summary.key).report
    report = draw_slide_report(summary, **arrays)
    with atomic_path(path) as tmp:
        report.image.save(tmp, format="PNG", compress_level=3)
    return path


def finish_slide(
    out_dir: str | os.PathLike[str],
    *,
    slide: SlideInfo,
    model: ModelInfo,
    threshold: float | None,
    points_level0: np.ndarray,
    scores: np.ndarray,
    tissue: Any = None,
    regions: list[Region] | tuple[Region, ...] = (),
    settings: HotspotSettings = HotspotSettings(),
    thumbnail: np.ndarray | None = None,
    thumbnail_downsample: float | None = None,
    gallery: Gallery | None = None,
    provenance: dict[str, Any] | None = None,
    timings: dict[str, float] | None = None,
    geojson_copies: Sequence[str | os.PathLike[str]] = (),
    near_points_level0: np.ndarray | None = None,
    near_scores: np.ndarray | None = None,
    review_n: int = 0,
    progress: Progress | None = None,
) -> SlideSummary:
    """Count a predicted slide and write all its files (the ``wsdal predict`` per-slide step).

    Writes ``<key>.tissue.png``, ``<key>.thumb.jpg``, ``<key>.gallery.png``,
    ``<key>.geojson`` (detections + hotspot/region-count annotations),
    ``<key>.report.png`` and, last, ``<key>.summary.json`` (its presence marks
    the slide as done).

    Parameters
    ----------
    out_dir : path-like
    slide : SlideInfo
        ``slide.mpp`` is required.
    model : ModelInfo
    threshold : float or None
        The probability threshold the detections passed.
    points_level0 : numpy.ndarray
        ``(N, 2)`` float level-0 ``(x, y)`` of the detections.
    scores : numpy.ndarray
        ``(N,)`` float probabilities.
    tissue : TissueMask or None
        The mask used (``.mask``, ``.downsample``).
    regions : list of Region
    settings : HotspotSettings
    thumbnail, thumbnail_downsample
        ``(h, w, 3)`` uint8 and level-0 px per thumbnail px (``Slide.read_thumbnail``).
    gallery : Gallery, optional
        From :func:`wsdal_wsi.report.assets.read_gallery`.
    provenance : dict, optional
        Default: :func:`wsdal_wsi.provenance.provenance` of slide, model, settings.
    timings : dict, optional
        ``{"<step>_s": seconds}`` so far (e.g. ``read_s``, ``model_s``).
    geojson_copies : sequence of path-like
        More places to write the same results GeoJSON (e.g. the QuPath
        project's ``wsdal/results/<entryID>.geojson``); recorded in the
        summary, so ``wsdal count`` keeps them in step.
    near_points_level0, near_scores : numpy.ndarray, optional
        ``(M, 2)`` level-0 near misses (candidates below the threshold) and their
        ``(M,)`` probabilities: they widen the hotspot's count range and can be
        reviewed; saved as ``<key>.near.csv``.
    review_n : int
        Write this many ``WS-DAL check`` objects (:mod:`wsdal_wsi.report.review`).
    progress : Progress, optional

    Returns
    -------
    SlideSummary
    """
    t0 = time.perf_counter()
    if slide.mpp is None:
        raise InputError(f"{slide.name}: no resolution (µm/px), cannot count per mm²")
    pts = np.asarray(points_level0, dtype=np.float64).reshape(-1, 2)
    prob = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(prob) != len(pts):
        raise ValueError(f"{len(pts)} points but {len(prob)} scores")
    tis = as_tissue(tissue)
    near = _near_arrays(near_points_level0, near_scores)
    cal = Calibration.from_dict(model.calibration)
    counts = count_slide(
        pts,
        mpp=slide.mpp,
        tissue=tis,
        regions=regions,
        settings=settings,
        slide_dimensions=slide.dimensions,
        probabilities=cal.apply(prob),
        near_points=near[0],
        near_probabilities=cal.apply(near[1]),
        progress=progress,
    )
    files = slide_files(out_dir, slide.key)
    if tis is not None:
        write_tissue_png(files.tissue, tis.mask)
    write_near_misses(files.near, *near)
    assets = write_report_assets(
        out_dir,
        slide.key,
        thumbnail=thumbnail,
        thumbnail_downsample=thumbnail_downsample,
        gallery=gallery,
    )
    prov = _jsonable(
        provenance
        or make_provenance(
            slide=dataclasses.asdict(slide),
            model=dataclasses.asdict(model),
            settings={"threshold": threshold, "hotspot": settings.to_dict()},
        )
    )
    summary = build_summary(
        counts,
        slide=slide,
        model=model,
        threshold=threshold,
        provenance=prov,
        tissue_downsample=tis.downsample if tis is not None else None,
        assets=assets,
        timings=dict(timings or {}),
    )
    review = review_items(pts, prob, *near, threshold=threshold or 0.0, calibration=cal,
                          hotspot=counts.hotspot, n=review_n)  # fmt: skip
    summary = dataclasses.replace(
        summary,
        geojson_copies=[str(Path(c).resolve()) for c in geojson_copies],
        review=len(review),
        review_requested=review_n,
    )
    features = [*count_features(summary), *review_features(review, key=slide.key)]
    _write_results(summary, files.geojson, pts, prob, features, prov)
    write_slide_report(
        out_dir,
        summary,
        points_level0=pts[tis.contains(pts)] if tis is not None else pts,
        tissue_mask=tis.mask if tis is not None else None,
        thumbnail=thumbnail,
        thumbnail_downsample=thumbnail_downsample,
        gallery=gallery,
    )
    summary.timings["count_and_report_s"] = round(time.perf_counter() - t0, 3)
    write_summary(files.summary, summary)
    return summary


def recount_slide(
    out_dir: str | os.PathLike[str],
    summary: SlideSummary,
    *,
    settings: HotspotSettings,
    threshold: float | None = None,
    review_n: int | None = None,
    progress: Progress | None = None,
) -> SlideSummary:
    """Recount one slide from its output files (no slide, no model); rewrite its outputs.

    Reads ``<key>.geojson`` (detections), ``<key>.tissue.png`` and the regions
    stored in the summary; rewrites the summary, the hotspot/region annotations
    in the GeoJSON (detections kept) and the report.

    Parameters
    ----------
    out_dir : path-like
    summary : SlideSummary
        The slide's current summary (``status == "ok"``).
    settings : HotspotSettings
    threshold : float, optional
        Keep only detections with probability >= this; must not be below the
        threshold they were saved with (those below were never saved). Detections
        below it become near misses.
    review_n : int, optional
        ``WS-DAL check`` objects to write (default: as many as before).
    progress : Progress, optional

    Raises
    ------
    ConfigError
        ``threshold`` below the saved one.
    InputError
        A missing or malformed file (named in the message).
    """
    t0 = time.perf_counter()
    out = Path(out_dir)
    check_threshold(summary, threshold)
    thr = summary.threshold if threshold is None else float(threshold)
    if summary.slide.mpp is None:
        raise InputError(f"{summary.key}: the summary records no resolution (µm/px)")
    files = slide_files(out, summary.key)
    geojson = out / (summary.geojson or files.geojson.name)
    pts, prob = read_detections(geojson)
    keep = prob >= thr if thr is not None else np.ones(len(prob), dtype=bool)
    near_xy, near_p = read_near_misses(files.near)
    near = (np.concatenate([near_xy, pts[~keep]]), np.concatenate([near_p, prob[~keep]]))
    pts, prob = pts[keep], prob[keep]
    cal = Calibration.from_dict(summary.model.calibration)
    mask = None
    if summary.tissue_mask:
        if not summary.tissue_downsample:
            raise InputError(f"{summary.key}: the summary has a tissue mask but no downsample")
        mask = read_tissue_png(out / summary.tissue_mask)
    regions = [
        Region(r.geometry, r.class_name, r.name) for r in summary.regions if r.geometry is not None
    ]
    counts = count_slide(
        pts,
        mpp=summary.slide.mpp,
        tissue=mask,
        tissue_downsample=summary.tissue_downsample,
        regions=regions,
        settings=settings,
        slide_dimensions=summary.slide.dimensions,
        probabilities=cal.apply(prob),
        near_points=near[0],
        near_probabilities=cal.apply(near[1]),
        progress=progress,
    )
    old = summary.provenance
    prov = _jsonable(
        make_provenance(
            slide=dataclasses.asdict(summary.slide),
            model=dataclasses.asdict(summary.model),
            settings={"threshold": thr, "hotspot": settings.to_dict()},
            prediction=old.get("prediction", old),
        )
    )
    wanted = summary.review_requested if review_n is None else review_n
    review = review_items(pts, prob, *near, threshold=thr or 0.0, calibration=cal,
                          hotspot=counts.hotspot, n=wanted)  # fmt: skip
    new = dataclasses.replace(
        summary.with_counts(counts),
        threshold=thr,
        provenance=prov,
        review=len(review),
        review_requested=wanted,
    )
    features = [*count_features(new), *review_features(review, key=summary.key)]
    replace_count_features(geojson, features, provenance=prov)
    for copy in new.geojson_copies:
        if Path(copy).is_file():
            replace_count_features(copy, features, provenance=prov)
        else:
            log.warning("%s: results copy not found; not updated", copy)
    thumb, thumb_ds = load_thumbnail(out, new.assets)
    gallery = load_gallery(out, new.assets)
    if gallery is not None and thr is not None:
        sel = gallery.scores >= thr
        gallery = Gallery(gallery.crops[sel], gallery.points_level0[sel], gallery.scores[sel],
                          gallery.mpp)  # fmt: skip
    tis = as_tissue(mask, summary.tissue_downsample) if mask is not None else None
    write_slide_report(
        out,
        new,
        points_level0=pts[tis.contains(pts)] if tis is not None else pts,
        tissue_mask=mask,
        thumbnail=thumb,
        thumbnail_downsample=thumb_ds,
        gallery=gallery,
    )
    new.timings["recount_s"] = round(time.perf_counter() - t0, 3)
    write_summary(files.summary, new)
    return new


def _write_results(
    summary: SlideSummary,
    geojson: Path,
    pts: np.ndarray,
    prob: np.ndarray,
    features: list[dict[str, Any]],
    prov: dict[str, Any],
) -> None:
    """The results GeoJSON and its copies: detections ``(N, 2)`` level-0 with ``(N,)``
    probabilities, then the count and review objects.

    Every results file is merged, never copied over: a copy's target (or the output
    file itself, when the output folder is the slide folder) may hold a pathologist's
    objects, which :func:`write_results_geojson` keeps.
    """
    detections = np.column_stack([pts, prob]) if len(pts) else np.zeros((0, 3))
    for target in (geojson, *summary.geojson_copies):
        write_results_geojson(
            target,
            detections=detections,
            extra_features=features,
            provenance=prov,
            id_seed=summary.key,
        )


def _near_arrays(xy: np.ndarray | None, scores: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Near misses as ``(M, 2)`` float64 level-0 points and ``(M,)`` probabilities."""
    if xy is None or scores is None:
        return np.zeros((0, 2)), np.zeros(0)
    pts = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    p = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(p) != len(pts):
        raise ValueError(f"{len(pts)} near misses but {len(p)} scores")
    return pts, p


def check_threshold(summary: SlideSummary, threshold: float | None) -> None:
    """Raise ConfigError if ``threshold`` is below the one ``summary``'s detections passed."""
    if threshold is None:
        return
    t = check_probability(threshold)
    if summary.threshold is not None and t < summary.threshold - 1e-12:
        raise ConfigError(
            f"--threshold {t:g} is below {summary.threshold:g}, the threshold slide "
            f"{summary.key!r} was predicted with (weaker detections were not saved); "
            f"re-run wsdal predict to lower it"
        )
