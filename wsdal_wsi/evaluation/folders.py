"""Evaluating a folder of results against a folder of ground truth (``wsdal evaluate``).

PRED and TRUTH are folders of QuPath GeoJSON files (a prediction output folder,
a slide folder with annotations beside the slides, the ``truth/`` folder of a
synthetic dataset) or two single files. Files are paired by slide stem:
``<stem>.geojson``, where a slide extension left in the stem
(``CMU-1.svs.geojson``) is ignored. Images present on one side only are
reported, not counted.

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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wsdal_wsi.errors import ConfigError, InputError, ResolutionError
from wsdal_wsi.evaluation.matching import match_points, prf
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

#: File name ending of the GeoJSON files that are paired.
GEOJSON_SUFFIX = ".geojson"


@dataclass(frozen=True)
class ImageEvaluation:
    """The evaluation of one image.

    Attributes
    ----------
    key : str
        The pairing key (slide stem).
    pred_path, truth_path : pathlib.Path
        The two GeoJSON files.
    mpp : float
        Level-0 resolution used (µm/px).
    mpp_source : str
        Where ``mpp`` came from (``"--mpp"``, ``"prediction provenance"``,
        ``"truth provenance"``, ``"slide <path>"``).
    radius_px : float
        Matching radius in level-0 pixels.
    n_pred, n_truth, tp, fp, fn : int
        Counts.
    """

    key: str
    pred_path: Path
    truth_path: Path
    mpp: float
    mpp_source: str
    radius_px: float
    n_pred: int
    n_truth: int
    tp: int
    fp: int
    fn: int

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
            "pred": str(self.pred_path),
            "truth": str(self.truth_path),
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
        One per pair, sorted by key.
    pred_only : tuple of pathlib.Path
        Prediction files without a ground-truth file (not counted).
    truth_only : tuple of pathlib.Path
        Ground-truth files without a prediction file (not counted).
    radius_um : float
        Matching radius (µm).
    classes : tuple of str
        The positive class names or patterns.
    """

    images: tuple[ImageEvaluation, ...]
    pred_only: tuple[Path, ...] = ()
    truth_only: tuple[Path, ...] = ()
    radius_um: float = 7.5
    classes: tuple[str, ...] = ("Mitosis",)

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


# ----------------------------------------------------------------------------- pairing


def _strip_slide_extension(stem: str) -> str:
    lower = stem.lower()
    for ext in SLIDE_EXTENSIONS:
        if lower.endswith(ext) and len(stem) > len(ext):
            return stem[: -len(ext)]
    return stem


def _geojson_files(folder: Path, what: str) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        name = path.name
        if name.startswith(".") or not name.lower().endswith(GEOJSON_SUFFIX) or not path.is_file():
            continue
        key = _strip_slide_extension(name[: -len(GEOJSON_SUFFIX)])
        if key in files:
            raise InputError(
                f"{what} folder {folder}: {files[key].name} and {name} are both for image {key!r}; "
                "keep one"
            )
        files[key] = path
    return files


def _pairs(pred: Path, truth: Path) -> tuple[list[tuple[str, Path, Path]], list[Path], list[Path]]:
    for path, what in ((pred, "prediction"), (truth, "ground-truth")):
        if not path.exists():
            raise InputError(f"{what} path {path} does not exist")
    if pred.is_file() and truth.is_file():
        name = pred.name
        stem = name[: -len(GEOJSON_SUFFIX)] if name.lower().endswith(GEOJSON_SUFFIX) else pred.stem
        key = _strip_slide_extension(stem)
        return [(key, pred, truth)], [], []
    if pred.is_file() != truth.is_file():
        raise InputError(
            f"PRED {pred} and TRUTH {truth} must both be folders or both be GeoJSON files"
        )
    pred_files = _geojson_files(pred, "prediction")
    truth_files = _geojson_files(truth, "ground-truth")
    common = sorted(set(pred_files) & set(truth_files))
    pred_only = [pred_files[k] for k in sorted(set(pred_files) - set(truth_files))]
    truth_only = [truth_files[k] for k in sorted(set(truth_files) - set(pred_files))]
    if not common:
        raise InputError(
            f"no image has a GeoJSON file in both {pred} ({len(pred_files)} files) and {truth} "
            f"({len(truth_files)} files); files are paired by slide stem (<stem>.geojson)"
        )
    return [(k, pred_files[k], truth_files[k]) for k in common], pred_only, truth_only


def evaluate_folders(
    pred: str | os.PathLike[str],
    truth: str | os.PathLike[str],
    *,
    radius_um: float = 7.5,
    mpp: float | None = None,
    classes: Iterable[str] | ClassSettings = ("Mitosis",),
    progress: Progress | None = None,
) -> FolderEvaluation:
    """Match predictions to ground truth in every paired image and sum the counts.

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
    pairs, pred_only, truth_only = _pairs(Path(pred), Path(truth))
    progress = progress or NULL_PROGRESS
    results: list[ImageEvaluation] = []
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
        images=tuple(results),
        pred_only=tuple(pred_only),
        truth_only=tuple(truth_only),
        radius_um=radius,
        classes=roles.positive,
    )
