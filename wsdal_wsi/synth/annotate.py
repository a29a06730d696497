"""The ground truth, and the noisy annotations a pathologist would make, of a synthetic slide.

:func:`simulate_annotations` plays the pathologist on the slide's truth
(:class:`~wsdal_wsi.synth.layout.Objects`) with the settings of
:class:`~wsdal_wsi.synth.params.AnnotationNoise`:

- optional ``Region`` polygons (hand-drawn-looking, over tumour) mark the
  exhaustively annotated areas; then only mitoses inside them are considered,
  and no click falls outside them;
- of the mitoses considered, exactly ``round(missed_fraction * n)`` get no
  click (chosen at random); the others get a ``Mitosis`` click a few µm off
  centre;
- ``round(false_click_fraction * true clicks)`` look-alikes get a false
  ``Mitosis`` click (borderline look-alikes three times as likely);
- optionally, look-alikes get negative-class clicks (``Mitosis-like``), and a
  share of the missed mitoses get one too (mistaken for a look-alike).

Writers: :func:`write_truth` (every object, one QuPath point annotation each,
class ``Mitosis`` / ``Apoptotic body`` / ``Pyknotic nucleus`` / ``Lymphocyte``,
named by phase or variant, with the truth index as a measurement),
:func:`write_annotations` (one ``MultiPoint`` "Points" annotation per clicked
class, plus the regions) and :func:`write_noise` (every click with what truly
lies under it, every missed mitosis). Feature ids are drawn from the slide's
seed, so the files are identical run to run except for their provenance block.
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from shapely.geometry import MultiPoint, Point, Polygon, box

from wsdal_wsi.atomic import write_json_atomic
from wsdal_wsi.qupath.geojson_write import make_feature, write_features
from wsdal_wsi.synth.objects import KIND_NAMES, MITOSIS_PHASES, VARIANT_NAMES, Objects
from wsdal_wsi.synth.params import MITOSIS_CLASS, REGION_CLASS, AnnotationNoise
from wsdal_wsi.units import mm2_to_px2, px_to_um, um_to_px

__all__ = [
    "Annotations",
    "Click",
    "object_label",
    "simulate_annotations",
    "write_annotations",
    "write_noise",
    "write_truth",
]


@dataclass(frozen=True)
class Click:
    """One click of the simulated pathologist.

    Attributes
    ----------
    x, y : float
        Level-0 position of the click.
    class_name : str
        Class clicked (``Mitosis`` or the negative class).
    truth_index : int
        Index of the object under the click in the truth.
    kind : str
        ``"true"`` (a mitosis clicked as Mitosis), ``"false"`` (a look-alike
        clicked as Mitosis), ``"negative"`` (a look-alike clicked as the
        negative class), ``"mislabelled"`` (a missed mitosis clicked as the
        negative class).
    offset_um : float
        Distance from the object's centre (µm).
    """

    x: float
    y: float
    class_name: str
    truth_index: int
    kind: str
    offset_um: float


@dataclass(frozen=True)
class Annotations:
    """The simulated annotation of one slide.

    Attributes
    ----------
    clicks : tuple of Click
        Every click, ``Mitosis`` first, then the negative class; each group
        in reading order (top to bottom, left to right).
    missed : tuple of int
        Truth indices of the mitoses that were considered and not clicked.
    outside_regions : tuple of int
        Truth indices of the mitoses outside every region (not considered).
    regions : tuple of shapely.geometry.Polygon
        The exhaustively annotated regions (empty: the whole slide).
    """

    clicks: tuple[Click, ...]
    missed: tuple[int, ...]
    outside_regions: tuple[int, ...]
    regions: tuple[Polygon, ...]

    def count(self, kind: str) -> int:
        """Number of clicks of a kind (``"true"``, ``"false"``, ...)."""
        return sum(1 for c in self.clicks if c.kind == kind)


def object_label(kind: int, variant: int) -> str:
    """Human name of an object's phase or variant (``"anaphase"``, ``"round"``...)."""
    if kind == 0:
        return MITOSIS_PHASES[variant]
    return VARIANT_NAMES[kind][variant]


def _region_polygon(rng: np.random.Generator, cx: float, cy: float, area_px2: float) -> Polygon:
    """A hand-drawn-looking closed outline of about ``area_px2`` around ``(cx, cy)``."""
    n = 40
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    aspect = rng.uniform(0.75, 1.33)
    radius = np.ones(n)
    for k in range(2, 5):
        radius += rng.normal(0, 0.06 / k * 2) * np.cos(k * t + rng.uniform(0, 2 * np.pi))
    radius += rng.normal(0, 0.008, n)
    ang = rng.uniform(0, np.pi)
    xs, ys = radius * np.cos(t) * aspect, radius * np.sin(t) / aspect
    rot_x = xs * math.cos(ang) - ys * math.sin(ang)
    rot_y = xs * math.sin(ang) + ys * math.cos(ang)
    unit = Polygon(np.column_stack([rot_x, rot_y]))
    scale = math.sqrt(area_px2 / unit.area)
    return Polygon(np.column_stack([cx + rot_x * scale, cy + rot_y * scale]))


def _place_regions(
    rng: np.random.Generator,
    noise: AnnotationNoise,
    *,
    size_px: tuple[int, int],
    mpp: float,
    in_tumour: Callable[[np.ndarray], np.ndarray],
) -> list[Polygon]:
    w, h = size_px
    area = min(mm2_to_px2(noise.region_area_mm2, mpp), 0.8 * w * h / max(noise.regions, 1))
    bounds = box(0, 0, w, h)
    regions: list[Polygon] = []
    for _ in range(noise.regions):
        best = None
        r = math.sqrt(area / math.pi)
        for attempt in range(80):
            # Prefer regions wholly inside the slide and centred on tumour; relax later.
            m = min(r * 1.45, w / 2, h / 2) if attempt < 60 else r * 0.5
            cx, cy = rng.uniform(m, w - m), rng.uniform(m, h - m)
            if attempt < 40 and not in_tumour(np.array([[cx, cy]]))[0]:
                continue
            poly = _region_polygon(rng, cx, cy, area).intersection(bounds)
            if not isinstance(poly, Polygon) or poly.is_empty:
                continue
            if any(poly.intersects(other) for other in regions):
                continue
            best = poly
            break
        if best is not None:
            regions.append(shapely.set_precision(best, 0.01))
    return regions


def _offset(rng: np.random.Generator, rms_um: float, mpp: float) -> tuple[float, float]:
    if rms_um <= 0:
        return 0.0, 0.0
    dx, dy = rng.normal(0, rms_um / math.sqrt(2), 2)
    dist = math.hypot(dx, dy)
    cap = 3 * rms_um
    if dist > cap:
        dx, dy = dx * cap / dist, dy * cap / dist
    return um_to_px(dx, mpp), um_to_px(dy, mpp)


def _exact_choice(
    rng: np.random.Generator, items: np.ndarray, n: int, weights: np.ndarray | None = None
) -> np.ndarray:
    n = min(n, len(items))
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    p = None if weights is None else weights / weights.sum()
    return np.sort(rng.choice(items, size=n, replace=False, p=p))


def simulate_annotations(
    objects: Objects,
    noise: AnnotationNoise,
    *,
    rng: np.random.Generator,
    size_px: tuple[int, int],
    mpp: float,
    in_tumour: Callable[[np.ndarray], np.ndarray],
) -> Annotations:
    """Play the pathologist: which objects get which click.

    Parameters
    ----------
    objects : Objects
        The slide's truth.
    noise : AnnotationNoise
        The noise settings.
    rng : numpy.random.Generator
        The slide's annotation stream.
    size_px : tuple of int
        Level-0 slide size ``(w, h)`` (regions stay inside it).
    mpp : float
        Resolution (µm/px).
    in_tumour : callable
        ``(N, 2)`` level-0 points -> ``(N,)`` bool, where regions may be centred.
    """
    xy = objects.xy
    regions = (
        _place_regions(rng, noise, size_px=size_px, mpp=mpp, in_tumour=in_tumour)
        if noise.regions
        else []
    )
    if regions:
        union = shapely.union_all(regions)
        inside = shapely.contains_xy(union, xy[:, 0], xy[:, 1]) if len(xy) else np.zeros(0, bool)
    else:
        inside = np.ones(len(xy), dtype=bool)
    is_mit = objects.kind == 0
    considered = np.nonzero(is_mit & inside)[0]
    outside = np.nonzero(is_mit & ~inside)[0]
    missed = _exact_choice(rng, considered, round(noise.missed_fraction * len(considered)))
    clicked = np.setdiff1d(considered, missed)
    looks = np.nonzero(~is_mit & inside)[0]
    weights = np.where(objects.hard[looks], 3.0, 1.0)
    false = _exact_choice(rng, looks, round(noise.false_click_fraction * len(clicked)), weights)
    rest = np.setdiff1d(looks, false)
    negative = _exact_choice(rng, rest, round(noise.negative_click_fraction * len(rest)))
    mislabelled = _exact_choice(rng, missed, round(noise.missed_as_negative_fraction * len(missed)))

    def make(indices: np.ndarray, class_name: str, kind: str) -> list[Click]:
        out = []
        for i in indices.tolist():
            dx, dy = _offset(rng, noise.click_offset_um, mpp)
            x = float(np.clip(xy[i, 0] + dx, 0, size_px[0] - 1))
            y = float(np.clip(xy[i, 1] + dy, 0, size_px[1] - 1))
            off = px_to_um(math.hypot(x - xy[i, 0], y - xy[i, 1]), mpp)
            out.append(Click(round(x, 2), round(y, 2), class_name, int(i), kind, round(off, 3)))
        return out

    positives = make(clicked, MITOSIS_CLASS, "true") + make(false, MITOSIS_CLASS, "false")
    negatives = make(negative, noise.negative_class, "negative") + make(
        mislabelled, noise.negative_class, "mislabelled"
    )
    positives.sort(key=lambda c: (c.y, c.x))
    negatives.sort(key=lambda c: (c.y, c.x))
    return Annotations(
        clicks=tuple(positives + negatives),
        missed=tuple(int(i) for i in missed),
        outside_regions=tuple(int(i) for i in outside),
        regions=tuple(regions),
    )


def _ids(rng: np.random.Generator) -> Callable[[], str]:
    def next_id() -> str:
        return str(
            uuid.UUID(
                int=int(rng.integers(0, 1 << 63)) << 65 | int(rng.integers(0, 1 << 63)), version=4
            )
        )

    return next_id


def write_truth(
    path: str | os.PathLike[str], objects: Objects, *, seed: int, provenance: Mapping[str, Any]
) -> int:
    """Write the ground truth: one point annotation per object.

    Each feature: class (``Mitosis``, ``Apoptotic body``, ``Pyknotic nucleus``,
    ``Lymphocyte``), name = phase or variant (e.g. ``"metaphase (edge-on)"``),
    measurements ``Truth index``, ``Ambiguous`` (1 for the hard cases),
    ``Variant code``, ``Cluster`` (lymphocytes). Returns the number of features.
    """
    next_id = _ids(np.random.default_rng([seed, 101]))

    def features():
        for i in range(len(objects)):
            kind, var = int(objects.kind[i]), int(objects.variant[i])
            meas = {"Truth index": i, "Ambiguous": int(objects.hard[i]), "Variant code": var}
            if kind == 3:
                meas["Cluster"] = int(objects.cluster[i])
            yield make_feature(
                Point(round(float(objects.xy[i, 0]), 2), round(float(objects.xy[i, 1]), 2)),
                class_name=KIND_NAMES[kind],
                name=object_label(kind, var),
                measurements=meas,
                feature_id=next_id(),
            )

    return write_features(path, features(), provenance=provenance)


def write_annotations(
    path: str | os.PathLike[str], ann: Annotations, *, seed: int, provenance: Mapping[str, Any]
) -> int:
    """Write the pathologist's annotation file (QuPath GeoJSON).

    One ``MultiPoint`` "Points" annotation per clicked class, in the order of
    :attr:`Annotations.clicks`, then one polygon annotation of class
    ``Region`` per region (named ``Region 1``, ``Region 2``...). Returns the
    number of features.
    """
    next_id = _ids(np.random.default_rng([seed, 102]))
    by_class: dict[str, list[tuple[float, float]]] = {}
    for c in ann.clicks:
        by_class.setdefault(c.class_name, []).append((c.x, c.y))

    def features():
        for class_name, pts in by_class.items():
            yield make_feature(MultiPoint(pts), class_name=class_name, feature_id=next_id())
        for k, poly in enumerate(ann.regions, start=1):
            yield make_feature(
                poly, class_name=REGION_CLASS, name=f"Region {k}", feature_id=next_id()
            )

    return write_features(path, features(), provenance=provenance)


def write_noise(
    path: str | os.PathLike[str],
    ann: Annotations,
    objects: Objects,
    *,
    noise: AnnotationNoise,
    provenance: Mapping[str, Any],
) -> dict[str, int]:
    """Write the injected noise (JSON) and return its summary counts.

    ``clicks``: every click in the order of the annotation file (``Mitosis``
    points first, then negative-class points), each with ``x``, ``y``,
    ``class``, ``kind``, ``truth_index``, ``truth_class``, ``truth_label``,
    ``offset_um``. ``missed``: every mitosis considered and not clicked as
    ``Mitosis`` (``clicked_as`` is the negative class when it was mislabelled).
    ``outside_regions``: mitoses outside every region.
    """
    mislabelled = {c.truth_index for c in ann.clicks if c.kind == "mislabelled"}

    def label(i: int) -> tuple[str, str]:
        kind, var = int(objects.kind[i]), int(objects.variant[i])
        return KIND_NAMES[kind], object_label(kind, var)

    clicks = []
    for c in ann.clicks:
        truth_class, truth_label = label(c.truth_index)
        clicks.append(
            {
                "x": c.x,
                "y": c.y,
                "class": c.class_name,
                "kind": c.kind,
                "truth_index": c.truth_index,
                "truth_class": truth_class,
                "truth_label": truth_label,
                "offset_um": c.offset_um,
            }
        )
    missed = [
        {
            "truth_index": i,
            "x": round(float(objects.xy[i, 0]), 2),
            "y": round(float(objects.xy[i, 1]), 2),
            "phase": label(i)[1],
            "clicked_as": noise.negative_class if i in mislabelled else None,
        }
        for i in ann.missed
    ]
    summary = {
        "mitoses": int((objects.kind == 0).sum()),
        "mitoses_considered": int((objects.kind == 0).sum()) - len(ann.outside_regions),
        "true_clicks": ann.count("true"),
        "missed": len(ann.missed),
        "false_clicks": ann.count("false"),
        "negative_clicks": ann.count("negative"),
        "mislabelled": ann.count("mislabelled"),
        "outside_regions": len(ann.outside_regions),
        "regions": len(ann.regions),
    }
    write_json_atomic(
        path,
        {
            "wsdal": dict(provenance),
            "noise": noise.to_dict(),
            "summary": summary,
            "clicks": clicks,
            "missed": missed,
            "outside_regions": list(ann.outside_regions),
        },
    )
    return summary
