"""The per-slide summary: ``OUT/<key>.summary.json`` (this module owns its schema).

One JSON object per slide of a prediction output folder, written by ``wsdal
predict`` and rewritten by ``wsdal count``; everything the spreadsheets, the
index page and the PNG report show comes from it. Schema
``"wsdal-wsi/slide-summary"``, version 1::

    {"schema": "wsdal-wsi/slide-summary", "schema_version": 1,
     "status": "ok" | "failed", "reason": null | "<why the slide failed>",
     "provenance": {"tool", "version", "created", ...},         # wsdal_wsi.provenance
     "slide": {"name", "key", "path", "mpp", "mpp_source", "dimensions": [w, h]},
     "model": {"path", "sha256", "threshold", "target_mpp", "calibration"},
     "settings": {"threshold", "hotspot": {window, mode, area_mm2, field_diameter_mm,
                  window_area_mm2, min_tissue_fraction, grid_um}, "description"},
     "detections": {"count", "in_tissue", "geojson": "<key>.geojson",
                    "copies": ["<other results GeoJSON kept in step, e.g. in the project>"]},
     "tissue": {"area_mm2", "per_mm2", "mask": "<key>.tissue.png", "downsample"},
     "regions": [{"name", "class_name", "area_mm2", "tissue_area_mm2", "mitoses",
                  "per_mm2", "geometry": <GeoJSON geometry, level-0>}],
     "classes": [... the same, one per region class, over the union of its regions],
     "hotspot": null | {"geometry", "centre_level0", "window", "half_sizes_level0",
                        "count", "area_mm2", "per_mm2", "tissue_fraction",
                        "grid_cell_um", "field_diameter_mm", "score": <MitoticScore>,
                        "count_range": null | {"low", "high", "expected", "level",
                                               "score_low", "score_high", "n_candidates",
                                               "borderline"}},
     "assets": {"report": "<key>.report.png", "thumbnail": "<key>.thumb.jpg" | null,
                "thumbnail_downsample", "gallery": "<key>.gallery.png" | null,
                "gallery_size_px", "gallery_mpp", "gallery_items": [{"x", "y", "score"}]},
     "timings": {"<step>_s": seconds, ...},
     "review": {"requested": <--review N>, "checks": <WS-DAL check objects written>}}

File names are relative to the summary's folder. Areas in mm², densities in
mitoses per mm², coordinates level-0 pixels, ``mpp`` in µm/px. A failed slide
has ``status = "failed"``, its ``reason``, and nulls where nothing was counted.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from wsdal_wsi.atomic import write_json_atomic
from wsdal_wsi.counting import CountRange, Hotspot, HotspotSettings, RegionCount, SlideCounts
from wsdal_wsi.errors import InputError
from wsdal_wsi.report.layout import slide_files

__all__ = [
    "SCHEMA",
    "SCHEMA_VERSION",
    "AssetInfo",
    "ModelInfo",
    "SlideInfo",
    "SlideSummary",
    "build_summary",
    "read_summary",
    "write_summary",
]

SCHEMA = "wsdal-wsi/slide-summary"
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class SlideInfo:
    """Which slide.

    Attributes
    ----------
    name : str
        File name without extension (or the QuPath image name).
    key : str
        Unique, file-safe key naming every output file of the slide.
    path : str or None
        The slide file as it was opened.
    mpp : float or None
        Level-0 resolution (µm/px).
    mpp_source : str or None
        Where ``mpp`` came from (``"slide properties"``, ``"user (--mpp)"``...).
    dimensions : (int, int) or None
        Level-0 ``(w, h)``.
    """

    name: str
    key: str
    path: str | None = None
    mpp: float | None = None
    mpp_source: str | None = None
    dimensions: tuple[int, int] | None = None


@dataclass(frozen=True)
class ModelInfo:
    """Which model made the detections.

    Attributes
    ----------
    path : str or None
    sha256 : str or None
    threshold : float or None
        The model's own decision threshold (probability).
    target_mpp : float or None
        The model's working resolution (µm/px).
    calibration : dict
        The model's calibration of p(mitosis) (empty: none fitted), so counts can be
        recomputed without the model.
    """

    path: str | None = None
    sha256: str | None = None
    threshold: float | None = None
    target_mpp: float | None = None
    calibration: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """A short label for tables: the model file name and the first hash digits."""
        name = Path(self.path).name if self.path else "model"
        return f"{name} ({self.sha256[:8]})" if self.sha256 else name


@dataclass(frozen=True)
class AssetInfo:
    """Files beside the summary that the PNG report is drawn from (names relative).

    Attributes
    ----------
    report : str or None
        The PNG report, ``<key>.report.png``.
    thumbnail : str or None
        Slide thumbnail (JPEG), ``<key>.thumb.jpg``.
    thumbnail_downsample : float or None
        Level-0 px per thumbnail px.
    gallery : str or None
        Crops of the top detections side by side in one PNG row, ``<key>.gallery.png``.
    gallery_size_px : int or None
        Side of each (square) crop.
    gallery_mpp : float or None
        Resolution of the crops (µm/px).
    gallery_items : list of dict
        ``{"x", "y", "score"}`` (level-0, probability) of each crop, in strip order.
    """

    report: str | None = None
    thumbnail: str | None = None
    thumbnail_downsample: float | None = None
    gallery: str | None = None
    gallery_size_px: int | None = None
    gallery_mpp: float | None = None
    gallery_items: list[dict[str, float]] = field(default_factory=list)


@dataclass(frozen=True)
class SlideSummary:
    """Everything about one slide's result (see the module docstring for the JSON)."""

    slide: SlideInfo
    model: ModelInfo = field(default_factory=ModelInfo)
    status: str = "ok"
    reason: str | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    threshold: float | None = None
    counts: SlideCounts | None = None
    geojson: str | None = None
    geojson_copies: list[str] = field(default_factory=list)
    tissue_mask: str | None = None
    tissue_downsample: float | None = None
    assets: AssetInfo = field(default_factory=AssetInfo)
    timings: dict[str, float] = field(default_factory=dict)
    review: int = 0
    review_requested: int = 0

    @property
    def key(self) -> str:
        """The slide's key (names every output file)."""
        return self.slide.key

    @property
    def ok(self) -> bool:
        """True unless the slide failed."""
        return self.status == "ok"

    @property
    def created(self) -> str | None:
        """When the summary was made (ISO 8601 UTC), from the provenance."""
        return self.provenance.get("created")

    def with_counts(self, counts: SlideCounts) -> SlideSummary:
        """A copy holding ``counts`` (detections, tissue, regions, classes, hotspot)."""
        return replace(self, counts=counts)

    # -------------------------------------------------- what the counts say (None: not counted)

    @property
    def hotspot_settings(self) -> HotspotSettings:
        """The counting-window settings the slide was counted with (defaults if not counted)."""
        return HotspotSettings() if self.counts is None else self.counts.settings

    @property
    def detections(self) -> int | None:
        """All detections of the slide."""
        return None if self.counts is None else self.counts.detections

    @property
    def in_tissue(self) -> int | None:
        """Detections in tissue."""
        return None if self.counts is None else self.counts.in_tissue

    @property
    def tissue_area_mm2(self) -> float | None:
        """Tissue area (mm²)."""
        return None if self.counts is None else self.counts.tissue_area_mm2

    @property
    def tissue_per_mm2(self) -> float | None:
        """Detections in tissue per mm² of tissue."""
        return None if self.counts is None else self.counts.per_mm2

    @property
    def regions(self) -> list[RegionCount]:
        """One count per region (pathologist's area annotation)."""
        return [] if self.counts is None else list(self.counts.regions)

    @property
    def classes(self) -> list[RegionCount]:
        """One count per region class (geometry None once read back)."""
        return [] if self.counts is None else list(self.counts.classes)

    @property
    def hotspot(self) -> Hotspot | None:
        """The hotspot, if one was found."""
        return None if self.counts is None else self.counts.hotspot

    @property
    def hotspot_range(self) -> CountRange | None:
        """The hotspot's count range (None without probabilities or hotspot)."""
        return None if self.counts is None else self.counts.hotspot_range

    # ------------------------------------------------------------------ JSON

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able form (see the module docstring)."""
        c = None if self.counts is None else self.counts.to_dict()
        return {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "status": self.status,
            "reason": self.reason,
            "provenance": self.provenance,
            "slide": asdict(self.slide),
            "model": asdict(self.model),
            "settings": {
                "threshold": self.threshold,
                "hotspot": self.hotspot_settings.to_dict(),
                "description": self.hotspot_settings.describe(),
            },
            "detections": {
                "count": None if c is None else c["detections"],
                "in_tissue": None if c is None else c["in_tissue"],
                "geojson": self.geojson,
                "copies": list(self.geojson_copies),
            },
            "tissue": {
                "area_mm2": None if c is None else c["tissue_area_mm2"],
                "per_mm2": None if c is None else c["per_mm2"],
                "mask": self.tissue_mask,
                "downsample": self.tissue_downsample,
            },
            "regions": [] if c is None else c["regions"],
            "classes": [] if c is None else c["classes"],
            "hotspot": None
            if c is None or c["hotspot"] is None
            else {**c["hotspot"], "count_range": c["hotspot_range"]},
            "assets": asdict(self.assets),
            "timings": dict(self.timings),
            "review": {"requested": self.review_requested, "checks": self.review},
        }

    def to_json(self) -> str:
        """The summary as JSON text (UTF-8 safe, no NaN)."""
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False, allow_nan=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SlideSummary:
        """Inverse of :meth:`to_dict` (``KeyError``, ``TypeError``, ``ValueError`` on bad data)."""
        if data.get("schema") != SCHEMA:
            raise ValueError(f"not a wsdal-wsi slide summary (schema {data.get('schema')!r})")
        if int(data.get("schema_version", 0)) > SCHEMA_VERSION:
            raise ValueError(
                f"summary schema version {data['schema_version']} is newer than this "
                f"wsdal-wsi understands ({SCHEMA_VERSION}); update wsdal-wsi"
            )
        s = dict(data["slide"])
        if s.get("dimensions") is not None:
            s["dimensions"] = tuple(int(v) for v in s["dimensions"])
        settings = data.get("settings") or {}
        det, tis = data.get("detections") or {}, data.get("tissue") or {}
        return cls(
            slide=SlideInfo(**s),
            model=ModelInfo(**(data.get("model") or {})),
            status=data.get("status", "ok"),
            reason=data.get("reason"),
            provenance=dict(data.get("provenance") or {}),
            threshold=settings.get("threshold"),
            counts=_counts_from_dict(
                data, HotspotSettings.from_dict(settings.get("hotspot") or {})
            ),
            geojson=det.get("geojson"),
            geojson_copies=[str(c) for c in det.get("copies") or []],
            tissue_mask=tis.get("mask"),
            tissue_downsample=tis.get("downsample"),
            assets=AssetInfo(**(data.get("assets") or {})),
            timings={k: float(v) for k, v in (data.get("timings") or {}).items()},
            review=int((data.get("review") or {}).get("checks", 0)),
            review_requested=int((data.get("review") or {}).get("requested", 0)),
        )

    @classmethod
    def from_json(cls, text: str) -> SlideSummary:
        """Parse :meth:`to_json` output."""
        return cls.from_dict(json.loads(text))

    @classmethod
    def failed(
        cls,
        slide: SlideInfo,
        reason: str,
        *,
        model: ModelInfo | None = None,
        provenance: dict[str, Any] | None = None,
        timings: dict[str, float] | None = None,
    ) -> SlideSummary:
        """The summary of a slide that could not be processed, with the reason."""
        return cls(
            slide=slide,
            model=model or ModelInfo(),
            status="failed",
            reason=str(reason),
            provenance=dict(provenance or {}),
            timings=dict(timings or {}),
        )


def _counts_from_dict(data: dict[str, Any], settings: HotspotSettings) -> SlideCounts | None:
    """The :class:`SlideCounts` of a summary's JSON (None for a slide that was not counted)."""
    det, tis = data.get("detections") or {}, data.get("tissue") or {}
    if det.get("count") is None:
        return None
    hs = data.get("hotspot")
    return SlideCounts(
        detections=int(det["count"]),
        in_tissue=int(det.get("in_tissue") or 0),
        tissue_area_mm2=tis.get("area_mm2"),
        per_mm2=tis.get("per_mm2"),
        regions=[RegionCount.from_dict(r) for r in data.get("regions") or []],
        classes=[RegionCount.from_dict(c) for c in data.get("classes") or []],
        hotspot=None if hs is None else Hotspot.from_dict(hs, settings=settings),
        settings=settings,
        hotspot_range=(
            CountRange.from_dict(hs["count_range"])
            if hs is not None and hs.get("count_range")
            else None
        ),
    )


def build_summary(
    counts: SlideCounts,
    *,
    slide: SlideInfo,
    model: ModelInfo,
    threshold: float | None,
    provenance: dict[str, Any],
    tissue_downsample: float | None,
    assets: AssetInfo | None = None,
    timings: dict[str, float] | None = None,
) -> SlideSummary:
    """Assemble the summary of a counted slide, with the layout's file names.

    Parameters
    ----------
    counts : SlideCounts
        From :func:`wsdal_wsi.counting.count_slide`.
    slide, model : SlideInfo, ModelInfo
    threshold : float or None
        The probability threshold the detections passed.
    provenance : dict
        From :func:`wsdal_wsi.provenance.provenance`.
    tissue_downsample : float or None
        Level-0 px per tissue-mask px (None when no mask was used).
    assets : AssetInfo, optional
        Thumbnail and gallery files (see :mod:`wsdal_wsi.report.assets`).
    timings : dict, optional
        ``{"<step>_s": seconds}``.
    """
    files = slide_files(".", slide.key)
    base = SlideSummary(
        slide=slide,
        model=model,
        provenance=dict(provenance),
        threshold=threshold,
        geojson=files.geojson.name,
        tissue_mask=files.tissue.name if tissue_downsample is not None else None,
        tissue_downsample=tissue_downsample,
        assets=replace(assets or AssetInfo(), report=files.report.name),
        timings=dict(timings or {}),
    )
    return base.with_counts(counts)


def write_summary(path: str | os.PathLike[str], summary: SlideSummary) -> None:
    """Write ``summary`` as JSON to ``path`` atomically."""
    write_json_atomic(path, summary.to_dict())


def read_summary(path: str | os.PathLike[str]) -> SlideSummary:
    """Read a summary file.

    Raises
    ------
    InputError
        Missing, unreadable, not JSON, or not a wsdal-wsi slide summary (the
        message names the file and what is wrong).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{p}: summary file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: cannot read the summary ({exc})") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{p}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{p}: not a wsdal-wsi slide summary (expected a JSON object)")
    try:
        return SlideSummary.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{p}: not a usable wsdal-wsi slide summary ({exc})") from None
