"""Evaluating a folder of results against a folder of ground truth (``wsdal evaluate``).

PRED and TRUTH are folders of QuPath GeoJSON files (a prediction output folder,
a slide folder with annotations beside the slides, the ``truth/`` folder of a
synthetic dataset) or two single files. Files are paired by slide stem:
``<stem>.geojson``, where a slide extension left in the stem
(``CMU-1.svs.geojson``) is ignored. An image present on one side only counts
as MIDOG counts it: ground truth without a prediction file is all false
negatives (a slide whose prediction failed, for instance), predictions without
ground truth all false positives; ``count_unpaired=False`` leaves such images
out (when the truth covers only some of the predicted slides).

What counts
-----------
- Ground truth: Point / MultiPoint objects of the positive classes (default
  ``Mitosis``) that wsdal-wsi did not make (annotations and detections; other
  classes, areas and the tool's own objects are ignored).
- Predictions: points of the positive classes that wsdal-wsi made (named
  ``WS-DAL...``) when the file holds any object the tool made; otherwise (a file
  from another tool) every point of the positive classes.

Resolution
----------
The matching radius is in µm, so each image needs its level-0 resolution, taken
from (first found): ``--mpp``; the provenance block (top-level ``"wsdal"`` member)
of the prediction file, then of the truth file (``wsdal.slide.mpp`` as the
prediction writer stores it, ``wsdal.settings.params.mpp`` as the synthetic
generator does, or ``wsdal.mpp``); a slide with the same stem beside the GeoJSON
file (in either folder).
"""

from __future__ import annotations

import gzip
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wsdal_wsi.errors import ConfigError, ResolutionError
from wsdal_wsi.evaluation.matching import match_points, prf
from wsdal_wsi.evaluation.pairing import image_key, pair_files
from wsdal_wsi.progress import NULL_PROGRESS, Progress
from wsdal_wsi.qupath import SLIDE_EXTENSIONS, ClassSettings, read_objects
from wsdal_wsi.slide import open_slide
from wsdal_wsi.units import check_mpp, um_to_px

__all__ = [
    "FolderEvaluation",
    "ImageEvaluation",
    "evaluate_folders",
    "provenance_mpp",
    "read_mitosis_points",
]


@dataclass(frozen=True)
class ImageEvaluation:
    """The evaluation of one image.

    Attributes
    ----------
    key : str
        The pairing key (slide stem).
    pred_path, truth_path : pathlib.Path or None
        The two GeoJSON files; None for the side an unpaired image lacks.
    mpp : float or None
        Level-0 resolution used (µm/px); None for an unpaired image (nothing
        to match).
    mpp_source : str or None
        Where ``mpp`` came from (``"--mpp"``, ``"prediction provenance"``,
        ``"truth provenance"``, ``"slide <path>"``).
    radius_px : float or None
        Matching radius in level-0 pixels.
    n_pred, n_truth, tp, fp, fn : int
        Counts.
    """

    key: str
    pred_path: Path | None
    truth_path: Path | None
    mpp: float | None
    mpp_source: str | None
    radius_px: float | None
    n_pred: int
    n_truth: int
    tp: int
    fp: int
    fn: int

    @property
    def side(self) -> str:
        """``"both"``, ``"truth only"`` (no prediction file) or ``"predictions only"``."""
        if self.pred_path is None:
            return "truth only"
        return "predictions only" if self.truth_path is None else "both"

    @property
    def precision(self) -> float:
        """TP / (TP + FP); NaN without predictions."""
        return prf(self.tp, self.fp, self.fn)[0]

    @property
    def recall(self) -> float:
        """TP / (TP + FN); NaN without ground truth."""
        return prf(self.tp, self.fp, self.fn)[1]

    @property
    def f1(self) -> float:
        """2 TP / (2 TP + FP + FN); NaN with neither."""
        return prf(self.tp, self.fp, self.fn)[2]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (undefined ratios are ``None``)."""
        return {
            "image": self.key,
            "pred": None if self.pred_path is None else str(self.pred_path),
            "truth": None if self.truth_path is None else str(self.truth_path),
            "side": self.side,
            "mpp": self.mpp,
            "mpp_source": self.mpp_source,
            "radius_px": self.radius_px,
            "n_pred": self.n_pred,
            "n_truth": self.n_truth,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "precision": _json_float(self.precision),
            "recall": _json_float(self.recall),
            "f1": _json_float(self.f1),
        }


@dataclass(frozen=True)
class FolderEvaluation:
    """Micro-averaged evaluation of paired images.

    Attributes
    ----------
    images : tuple of ImageEvaluation
        One per counted image, sorted by key: every pair, and the unpaired
        images when they are counted.
    pred_only : tuple of pathlib.Path
        Prediction files without a ground-truth file (their points are false
        positives when ``unpaired_counted``).
    truth_only : tuple of pathlib.Path
        Ground-truth files without a prediction file (their points are false
        negatives when ``unpaired_counted``).
    radius_um : float
        Matching radius (µm).
    classes : tuple of str
        The positive class names or patterns.
    unpaired_counted : bool
        Whether the images on one side only are in ``images`` and the totals.
    """

    images: tuple[ImageEvaluation, ...]
    pred_only: tuple[Path, ...] = ()
    truth_only: tuple[Path, ...] = ()
    radius_um: float = 7.5
    classes: tuple[str, ...] = ("Mitosis",)
    unpaired_counted: bool = True

    @property
    def tp(self) -> int:
        """True positives summed over the images."""
        return sum(i.tp for i in self.images)

    @property
    def fp(self) -> int:
        """False positives summed over the images."""
        return sum(i.fp for i in self.images)

    @property
    def fn(self) -> int:
        """False negatives summed over the images."""
        return sum(i.fn for i in self.images)

    def prf(self) -> tuple[float, float, float]:
        """Micro-averaged (precision, recall, F1); NaN where undefined."""
        return prf(self.tp, self.fp, self.fn)

    def to_dict(self) -> dict[str, Any]:
        """``{"tp", "fp", "fn", "precision", "recall", "f1", "images": [...], ...}``."""
        precision, recall, f1 = self.prf()
        return {
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "precision": _json_float(precision),
            "recall": _json_float(recall),
            "f1": _json_float(f1),
            "radius_um": self.radius_um,
            "classes": list(self.classes),
            "images": [i.to_dict() for i in self.images],
            "pred_only": [str(p) for p in self.pred_only],
            "truth_only": [str(p) for p in self.truth_only],
            "unpaired_counted": self.unpaired_counted,
        }


def _json_float(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


# ----------------------------------------------------------------------------- reading


def _class_roles(classes: Iterable[str] | ClassSettings) -> ClassSettings:
    """Positive class names/patterns as :class:`ClassSettings` (which may also say what
    unclassified points are)."""
    if isinstance(classes, ClassSettings):
        return classes
    patterns = (classes,) if isinstance(classes, str) else tuple(classes)
    if not patterns or not all(isinstance(c, str) and c.strip() for c in patterns):
        raise ConfigError(f"classes must be non-empty class names, got {patterns!r}")
    return ClassSettings(positive=patterns)


def read_mitosis_points(
    path: str | os.PathLike[str],
    *,
    role: str,
    classes: Iterable[str] | ClassSettings = ("Mitosis",),
) -> np.ndarray:
    """Read the points of a QuPath GeoJSON file that count for evaluation.

    Parameters
    ----------
    path : path-like
        A QuPath GeoJSON file.
    role : {"truth", "pred"}
        ``"truth"``: positive-class points not made by wsdal-wsi. ``"pred"``: the
        tool's own positive-class points if the file holds any object the tool
        made, else every positive-class point.
    classes : sequence of str, or ClassSettings
        Positive class names or shell-style patterns (default ``("Mitosis",)``), or
        class roles (their positive classes, and ``unclassified_as``).

    Returns
    -------
    numpy.ndarray
        ``(N, 2)`` float64 level-0 (x, y), in file order.

    Raises
    ------
    AnnotationFormatError
        If the file is not readable QuPath GeoJSON.
    """
    if role not in ("truth", "pred"):
        raise ConfigError(f"role must be 'truth' or 'pred', got {role!r}")
    roles = _class_roles(classes)
    objects = read_objects(path)
    if role == "truth":
        wanted_tool = False
    else:
        wanted_tool = True if any(o.tool_made for o in objects) else None
    xy: list[tuple[float, float]] = []
    for obj in objects:
        if wanted_tool is not None and obj.tool_made != wanted_tool:
            continue
        is_point = obj.geometry_type in ("Point", "MultiPoint")
        if is_point and roles.role(obj.class_name) == "positive":
            xy.extend(obj.points)
    return np.asarray(xy, dtype=np.float64).reshape(-1, 2)


def _top_level_block(path: Path) -> Any:
    """The top-level ``"wsdal"`` member of a GeoJSON file, or None (never raises)."""
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        doc = json.loads(raw.decode("utf-8-sig"))
    except (OSError, EOFError, ValueError):
        return None
    return doc.get("wsdal") if isinstance(doc, dict) else None


def provenance_mpp(block: Any) -> float | None:
    """The slide resolution (µm/px) recorded in a provenance block, if any.

    Looks at ``block["slide"]["mpp"]`` (prediction files), ``block["mpp"]``,
    ``block["settings"]["params"]["mpp"]`` (synthetic datasets) and
    ``block["settings"]["mpp"]``, in that order; values that are not a usable
    resolution are skipped.
    """
    if not isinstance(block, Mapping):
        return None
    paths = (("slide", "mpp"), ("mpp",), ("settings", "params", "mpp"), ("settings", "mpp"))
    for keys in paths:
        value: Any = block
        for key in keys:
            value = value.get(key) if isinstance(value, Mapping) else None
        if value is None or isinstance(value, bool):
            continue
        try:
            return check_mpp(value)
        except ConfigError:
            continue
    return None


def _slide_beside(geojson: Path, key: str) -> Path | None:
    folder = geojson.parent
    for ext in SLIDE_EXTENSIONS:
        for candidate in (folder / f"{key}{ext}", folder / f"{key}{ext.upper()}"):
            if candidate.is_file():
                return candidate
    return None


def _resolve_mpp(
    key: str, pred_path: Path, truth_path: Path, user_mpp: float | None
) -> tuple[float, str]:
    if user_mpp is not None:
        return user_mpp, "--mpp"
    for path, what in ((pred_path, "prediction provenance"), (truth_path, "truth provenance")):
        value = provenance_mpp(_top_level_block(path))
        if value is not None:
            return value, what
    for path in (pred_path, truth_path):
        slide_path = _slide_beside(path, key)
        if slide_path is None:
            continue

        with open_slide(slide_path) as slide:
            if slide.mpp is not None:
                return float(slide.mpp), f"slide {slide_path}"
    raise ResolutionError(
        f"{pred_path}: no resolution (µm/px) for image {key!r}: neither file records the slide's "
        "mpp and no slide with a resolution lies beside them; pass --mpp (e.g. --mpp 0.25 for a "
        "40x scan)"
    )


def evaluate_folders(
    pred: str | os.PathLike[str],
    truth: str | os.PathLike[str],
    *,
    radius_um: float = 7.5,
    mpp: float | None = None,
    classes: Iterable[str] | ClassSettings = ("Mitosis",),
    count_unpaired: bool = True,
    progress: Progress | None = None,
) -> FolderEvaluation:
    """Match predictions to ground truth in every image and sum the counts.

    Parameters
    ----------
    pred, truth : path-like
        Folders of QuPath GeoJSON files paired by slide stem, or two GeoJSON files.
    radius_um : float
        Matching radius (µm); MIDOG uses 7.5 µm.
    mpp : float, optional
        Level-0 resolution (µm/px) of every image, overriding what the files say.
    classes : iterable of str, or ClassSettings
        Positive class names or shell-style patterns (default ``("Mitosis",)``), or
        class roles (their positive classes, and ``unclassified_as``).
    count_unpaired : bool
        Count the images found on one side only, as MIDOG does: ground truth
        without predictions as false negatives, predictions without ground
        truth as false positives (default). False: list them, count nothing.
    progress : Progress, optional
        Progress reporter (one step per image).

    Returns
    -------
    FolderEvaluation

    Raises
    ------
    InputError
        A missing path, no pair, two files for one image, a malformed GeoJSON
        file (:class:`~wsdal_wsi.errors.AnnotationFormatError`), an image without
        a resolution (:class:`~wsdal_wsi.errors.ResolutionError`), a bad option.
    """
    try:
        radius = float(radius_um)
    except (TypeError, ValueError):
        raise ConfigError(f"--radius-um must be a number of µm, got {radius_um!r}") from None
    if not math.isfinite(radius) or radius <= 0:
        raise ConfigError(f"--radius-um must be a positive number of µm, got {radius_um!r}")
    user_mpp = None if mpp is None else check_mpp(mpp, what="--mpp")
    roles = _class_roles(classes)
    pairs, pred_only, truth_only = pair_files(Path(pred), Path(truth))
    progress = progress or NULL_PROGRESS
    results: list[ImageEvaluation] = []
    if count_unpaired:
        results += _unpaired(pred_only, truth_only, roles)
    with progress.task("Evaluating", total=len(pairs)) as task:
        for key, pred_path, truth_path in pairs:
            pred_xy = read_mitosis_points(pred_path, role="pred", classes=roles)
            truth_xy = read_mitosis_points(truth_path, role="truth", classes=roles)
            image_mpp, source = _resolve_mpp(key, pred_path, truth_path, user_mpp)
            radius_px = um_to_px(radius, image_mpp)
            match = match_points(pred_xy, truth_xy, radius_px=radius_px)
            results.append(
                ImageEvaluation(
                    key=key,
                    pred_path=pred_path,
                    truth_path=truth_path,
                    mpp=image_mpp,
                    mpp_source=source,
                    radius_px=radius_px,
                    n_pred=match.n_pred,
                    n_truth=match.n_truth,
                    tp=match.tp,
                    fp=match.fp,
                    fn=match.fn,
                )
            )
            task.advance()
    return FolderEvaluation(
        images=tuple(sorted(results, key=lambda r: r.key)),
        pred_only=tuple(pred_only),
        truth_only=tuple(truth_only),
        radius_um=radius,
        classes=roles.positive,
        unpaired_counted=count_unpaired,
    )


def _unpaired(
    pred_only: Sequence[Path], truth_only: Sequence[Path], classes: ClassSettings
) -> list[ImageEvaluation]:
    """The images on one side only: all false positives, or all false negatives."""
    out = []
    for path, role in [*((p, "pred") for p in pred_only), *((p, "truth") for p in truth_only)]:
        n = len(read_mitosis_points(path, role=role, classes=classes))
        out.append(
            ImageEvaluation(
                key=image_key(path),
                pred_path=path if role == "pred" else None,
                truth_path=path if role == "truth" else None,
                mpp=None,
                mpp_source=None,
                radius_px=None,
                n_pred=n if role == "pred" else 0,
                n_truth=n if role == "truth" else 0,
                tp=0,
                fp=n if role == "pred" else 0,
                fn=n if role == "truth" else 0,
            )
        )
    return out
