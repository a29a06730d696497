"""The hotspot and region counts as QuPath objects, and the results GeoJSON they live in.

Objects (both written by ``wsdal predict`` and replaced by ``wsdal count``):

- the hotspot: an area annotation of class ``"WS-DAL hotspot"`` (an ellipse ROI
  for a circular window), named ``"WS-DAL hotspot: <count> mitoses / <area> mm²
  (score <s>)"``, with the measurements ``WS-DAL mitoses``, ``WS-DAL area mm^2``,
  ``WS-DAL mitoses per mm^2``, ``WS-DAL mitotic score``, ``WS-DAL field diameter
  mm``, ``WS-DAL count per 10 HPF`` and ``WS-DAL tissue fraction``;
- one annotation per counted region, class ``"WS-DAL region count"``, named
  ``"WS-DAL count: <region>"``, with ``WS-DAL mitoses``, ``WS-DAL area mm^2``,
  ``WS-DAL tissue area mm^2`` and ``WS-DAL mitoses per mm^2``. (The
  pathologist's own region is never changed; this is a locked copy that carries
  the numbers.)

Their names start with ``"WS-DAL"``: that is how a re-run recognises the tool's
annotations and replaces them, leaving the detections and everything else alone.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from wsdal_wsi.counting import CountRange, Hotspot, RegionCount
from wsdal_wsi.errors import InputError
from wsdal_wsi.qupath import (
    PROBABILITY_MEASUREMENT,
    AreaAnnotation,
    answered_id,
    class_colors_for,
    complete_classification,
    is_tool_name,
    make_feature,
    write_features,
)
from wsdal_wsi.report.summary import SlideSummary

__all__ = [
    "HOTSPOT_CLASS",
    "HOTSPOT_COLOR",
    "REGION_COUNT_CLASS",
    "REGION_COUNT_COLOR",
    "count_annotations",
    "count_features",
    "hotspot_measurements",
    "read_detections",
    "region_measurements",
    "replace_count_features",
]

HOTSPOT_CLASS = "WS-DAL hotspot"
HOTSPOT_COLOR = (255, 200, 0)
REGION_COUNT_CLASS = "WS-DAL region count"
REGION_COUNT_COLOR = (0, 170, 255)


def _num(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def hotspot_measurements(
    hotspot: Hotspot, count_range: CountRange | None = None
) -> dict[str, float]:
    """The hotspot's QuPath measurements (name -> number; NaN where unknown).

    With a count range: ``WS-DAL count range low`` / ``high`` and ``WS-DAL borderline``
    (1 when the score could differ within the range, else 0).
    """
    rng = {}
    if count_range is not None:
        rng = {
            "WS-DAL count range low": float(count_range.low),
            "WS-DAL count range high": float(count_range.high),
            "WS-DAL borderline": float(count_range.borderline),
        }
    return {
        "WS-DAL mitoses": float(hotspot.count),
        "WS-DAL area mm^2": float(hotspot.area_mm2),
        "WS-DAL mitoses per mm^2": float(hotspot.per_mm2),
        "WS-DAL mitotic score": float(hotspot.score.score),
        "WS-DAL field diameter mm": float(hotspot.field_diameter_mm),
        "WS-DAL count per 10 HPF": float(hotspot.score.count_10hpf),
        "WS-DAL tissue fraction": _num(hotspot.tissue_fraction),
        **rng,
    }


def region_measurements(region: RegionCount) -> dict[str, float]:
    """A region's QuPath measurements."""
    return {
        "WS-DAL mitoses": float(region.mitoses),
        "WS-DAL area mm^2": float(region.area_mm2),
        "WS-DAL tissue area mm^2": _num(region.tissue_area_mm2),
        "WS-DAL mitoses per mm^2": _num(region.per_mm2),
    }


def _hotspot_name(h: Hotspot, count_range: CountRange | None = None) -> str:
    flag = ", borderline" if count_range is not None and count_range.borderline else ""
    return f"WS-DAL hotspot: {h.count} mitoses / {h.area_mm2:.2f} mm² (score {h.score.score}{flag})"


def _region_name(r: RegionCount) -> str:
    return f"WS-DAL count: {r.label}"


def count_annotations(summary: SlideSummary) -> list[AreaAnnotation]:
    """The hotspot and region-count objects as :class:`~wsdal_wsi.qupath.AreaAnnotation`.

    For sinks that take annotation objects (the paquo sink); for GeoJSON use
    :func:`count_features` (it also marks a circular hotspot as an ellipse).
    """
    out = []
    if summary.hotspot is not None:
        h = summary.hotspot
        out.append(
            AreaAnnotation(
                h.geometry,
                HOTSPOT_CLASS,
                _hotspot_name(h, summary.hotspot_range),
                hotspot_measurements(h, summary.hotspot_range),
            )
        )
    for r in summary.regions:
        if r.geometry is not None:
            out.append(
                AreaAnnotation(
                    r.geometry,
                    REGION_COUNT_CLASS,
                    _region_name(r),
                    region_measurements(r),
                )
            )
    return out


def count_features(summary: SlideSummary) -> list[dict[str, Any]]:
    """The hotspot and region-count objects as QuPath GeoJSON features (locked annotations).

    Pass them to :func:`wsdal_wsi.qupath.write_results_geojson` as
    ``extra_features`` (``wsdal predict``), or to :func:`replace_count_features`
    (``wsdal count``).
    """
    feats = []
    if summary.hotspot is not None:
        h = summary.hotspot
        feats.append(
            make_feature(
                h.geometry,
                class_name=HOTSPOT_CLASS,
                color=HOTSPOT_COLOR,
                name=_hotspot_name(h, summary.hotspot_range),
                measurements=hotspot_measurements(h, summary.hotspot_range),
                is_ellipse=h.window == "circle" and h.is_whole_window,
                locked=True,
            )
        )
    for r in summary.regions:
        if r.geometry is None:
            continue
        feats.append(
            make_feature(
                r.geometry,
                class_name=REGION_COUNT_CLASS,
                color=REGION_COUNT_COLOR,
                name=_region_name(r),
                measurements=region_measurements(r),
                locked=True,
            )
        )
    return feats


def _load(path: Path) -> tuple[dict[str, Any], list[Any]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{path}: results GeoJSON not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the results GeoJSON ({exc})") from exc
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    if isinstance(doc, list):
        return {}, doc
    if isinstance(doc, dict) and isinstance(doc.get("features"), list):
        return doc, doc["features"]
    raise InputError(f"{path}: not a GeoJSON FeatureCollection")


def _is_detection(feature: Any) -> bool:
    if not isinstance(feature, dict):
        return False
    props = feature.get("properties") or {}
    kind = props.get("objectType", props.get("object_type"))
    return kind == "detection" and is_tool_name(props.get("name"))


def read_detections(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """The tool's point detections in a results GeoJSON.

    Returns
    -------
    points : numpy.ndarray
        ``(N, 2)`` float64, level-0 ``(x, y)``.
    scores : numpy.ndarray
        ``(N,)`` float64 probabilities (NaN where the measurement is missing).

    Raises
    ------
    InputError
        Missing or malformed file, or a detection without a Point geometry
        (the message names the file and the feature index).
    """
    p = Path(path)
    _, features = _load(p)
    xy, prob = [], []
    for i, f in enumerate(features):
        if not _is_detection(f):
            continue
        geo = f.get("geometry") or {}
        try:
            if geo.get("type") != "Point":
                raise ValueError(f"geometry is {geo.get('type')!r}, expected 'Point'")
            x, y = (float(v) for v in geo["coordinates"][:2])
            meas = (f.get("properties") or {}).get("measurements") or {}
            if isinstance(meas, list):  # QuPath < 0.4
                meas = {m.get("name"): m.get("value") for m in meas if isinstance(m, dict)}
            value = meas.get(PROBABILITY_MEASUREMENT)
            score = float(value) if value is not None else math.nan
        except (TypeError, ValueError, KeyError, IndexError) as exc:
            raise InputError(f"{p}: feature {i}: bad detection ({exc})") from None
        xy.append((x, y))
        prob.append(score)
    return np.asarray(xy, dtype=np.float64).reshape(-1, 2), np.asarray(prob, dtype=np.float64)


def replace_count_features(
    path: str | os.PathLike[str],
    features: list[dict[str, Any]],
    *,
    provenance: dict[str, Any] | None = None,
) -> int:
    """Replace the tool's annotations in a results GeoJSON by ``features``, atomically.

    Every feature that is an annotation named ``"WS-DAL..."`` is dropped (the
    previous hotspot and region counts); detections and any other object are
    kept as they are, in order (a classification without a colour gets one,
    which QuPath requires: :func:`~wsdal_wsi.qupath.complete_classification`);
    ``features`` are appended.

    Parameters
    ----------
    path : path-like
        An existing results GeoJSON.
    features : list of dict
        From :func:`count_features`.
    provenance : dict, optional
        Recorded as ``"counts"`` inside the file's top-level ``"wsdal"`` member
        (the rest of that member, from ``wsdal predict``, is kept).

    Returns
    -------
    int
        Features written.
    """
    p = Path(path)
    doc, old = _load(p)
    colors = class_colors_for(p)
    kept, answered = [], set()
    for f in old:
        props = (f.get("properties") or {}) if isinstance(f, dict) else {}
        kind = props.get("objectType", props.get("object_type", "annotation"))
        if kind == "annotation" and is_tool_name(props.get("name")):
            fid = answered_id(f)
            if fid is None:
                continue
            answered.add(fid)  # the pathologist's answer to a question: kept
        complete_classification(f, colors)  # QuPath refuses the whole file without it
        kept.append(f)
    prov = dict(doc.get("wsdal") or {})
    if provenance is not None:
        prov["counts"] = provenance
    new = [f for f in features if f.get("id") not in answered]
    return write_features(p, [*kept, *new], provenance=prov or None)
