"""Writing the tool's results for one image, without ever touching anyone else's objects.

:func:`write_results_geojson` writes point detections (class ``Mitosis``, the
measurement ``"WS-DAL probability"``) and area annotations (regions, the
hotspot, with count measurements), every one named ``"WS-DAL..."``. If the file
already exists, the objects in it that wsdal-wsi did not make (a pathologist's
sidecar annotations, when the output folder is the slide folder) are kept
unchanged, and the tool's objects of an earlier run are replaced: writing twice
never duplicates anything. The file is written atomically and streamed.

One change is made to a kept object: a classification object without a
``"color"`` gets one (:func:`complete_classification`), because QuPath 0.5/0.6
(``GsonTools.PathClassTypeAdapter``) throw on such a classification and then
refuse the *whole* file, the tool's results included.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wsdal_wsi.errors import AnnotationFormatError
from wsdal_wsi.provenance import provenance as make_provenance
from wsdal_wsi.qupath.geojson_read import load_geojson
from wsdal_wsi.qupath.geojson_write import (
    area_feature,
    class_color,
    classification,
    encode_measurement,
    write_features,
)
from wsdal_wsi.qupath.model import (
    DETECTION_CLASS,
    PROBABILITY_MEASUREMENT,
    AreaAnnotation,
    is_answered,
    is_tool_name,
    tool_name,
)
from wsdal_wsi.qupath.project import EXCHANGE_DIR, RESULTS_DIR, class_id, read_class_colors

__all__ = [
    "ID_NAMESPACE",
    "ResultsReport",
    "answered_id",
    "class_colors_for",
    "complete_classification",
    "iter_detection_json",
    "stable_id",
    "write_results_geojson",
]

_JSON_KW: dict[str, Any] = {"ensure_ascii": False, "allow_nan": False, "separators": (", ", ": ")}
#: Kept features are written back as read (QuPath 0.4's bare NaN included).
_KEPT_JSON_KW: dict[str, Any] = {"ensure_ascii": False, "separators": (", ", ": ")}
ClassColors = Mapping[str, Sequence[int]]


def class_colors_for(path: str | os.PathLike[str]) -> dict[str, tuple[int, int, int]]:
    """The class colours for a results file: its project's class list, if it has one.

    A file in a project's exchange folder (``<project>/wsdal/results/<id>.geojson``)
    gets ``<project>/classifiers/classes.json``
    (:func:`~wsdal_wsi.qupath.project.read_class_colors`); any other file none.
    """
    folder = Path(path).absolute().parent
    project = folder.parent.parent
    if folder.name == RESULTS_DIR and folder.parent.name == EXCHANGE_DIR:
        if (project / "project.qpproj").is_file():
            return read_class_colors(project)
    return {}


def complete_classification(feature: Any, class_colors: ClassColors) -> bool:
    """Give a feature's classification object the ``"color"`` QuPath requires, in place.

    The colour is the class's in ``class_colors`` (keyed by full id, ``"Tumor:
    Mitosis"``), else :func:`~wsdal_wsi.qupath.geojson_write.class_color`.
    Classifications given as a string, with ``"color"`` or the old
    ``"colorRGB"``, or without a usable name are left alone.

    Returns
    -------
    bool
        True when the feature was changed.
    """
    props = feature.get("properties") if isinstance(feature, dict) else None
    cls = props.get("classification") if isinstance(props, dict) else None
    if not isinstance(cls, dict) or "color" in cls or "colorRGB" in cls:
        return False
    names = cls["names"] if "names" in cls else [cls.get("name")]
    if (
        not isinstance(names, list)
        or not names
        or not all(isinstance(n, str) and n.strip() for n in names)
    ):
        return False
    full = class_id(": ".join(names))
    rgb = class_colors.get(full) or class_color(full)
    props["classification"] = {**cls, "color": [int(c) for c in rgb]}
    return True


def iter_detection_json(
    detections: Iterable[Sequence[float]] | np.ndarray,
    *,
    class_name: str = DETECTION_CLASS,
    name: str | None = None,
    chunk_rows: int = 4096,
    id_seed: str | None = None,
    skip_ids: set[str] | frozenset[str] = frozenset(),
) -> Iterator[str]:
    """Serialised detection features, fast: the same JSON as :func:`detection_feature`.

    Parameters
    ----------
    detections : iterable of (x, y, probability), or ndarray (N, 3)
        Level-0 pixel coordinates and the probability (0..1).
    id_seed : str, optional
        Makes each id stable: :func:`stable_id` of the seed, ``"detection"`` and the
        position, so a re-run writes the same ids (random uuid4s without it).
    skip_ids : set of str
        Ids not to write (objects a pathologist answered, kept from an earlier file).
    """
    head = json.dumps(
        {
            "objectType": "detection",
            "name": tool_name(name),
            "classification": classification(class_name),
            "isLocked": False,
        },
        **_JSON_KW,
    )[:-1]  # drop the closing brace: measurements follow
    prob_key = json.dumps(PROBABILITY_MEASUREMENT)

    def rows() -> Iterator[Sequence[float]]:
        if isinstance(detections, np.ndarray):
            arr = detections.reshape(-1, 3) if detections.size else detections.reshape(0, 3)
            for start in range(0, len(arr), chunk_rows):
                yield from arr[start : start + chunk_rows].tolist()
        else:
            yield from detections

    ids: list[str] = []
    for i, row in enumerate(rows()):
        try:
            x, y, p = (float(v) for v in row)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"detection {i}: expected (x, y, probability), got {row!r}") from exc
        if not (math.isfinite(x) and math.isfinite(y)):
            raise ValueError(f"detection {i}: non-finite coordinates ({x}, {y})")
        pj = repr(p) if math.isfinite(p) else f'"{encode_measurement(p)}"'
        if id_seed is not None:
            fid = stable_id(id_seed, "detection", x, y)
            if fid in skip_ids:
                continue
        else:
            if not ids:
                ids = _uuid4_batch(512)
            fid = ids.pop()
        yield (
            f'{{"type": "Feature", "id": "{fid}", '
            f'"geometry": {{"type": "Point", "coordinates": [{x!r}, {y!r}]}}, '
            f'"properties": {head}, "measurements": {{{prob_key}: {pj}}}}}}}'
        )


#: Namespace of the tool's stable object ids (uuid5).
ID_NAMESPACE = uuid.UUID("6d3c1f2e-7a4b-5c8d-9e0f-a1b2c3d4e5f6")


def stable_id(seed: str, kind: str, x: float, y: float) -> str:
    """A uuid5 for a tool object: the same seed (e.g. the slide key), kind and level-0
    position (to 0.01 px) give the same id in every run, so a QuPath import can tell a
    re-written object from one the pathologist has already answered."""
    return str(uuid.uuid5(ID_NAMESPACE, f"{seed}/{kind}/{x:.2f},{y:.2f}"))


def _uuid4_batch(n: int) -> list[str]:
    """``n`` random uuid4 strings (RFC 4122 version and variant bits), faster than uuid.uuid4()."""
    raw = bytearray(os.urandom(16 * n))
    out = []
    for i in range(0, 16 * n, 16):
        raw[i + 6] = (raw[i + 6] & 0x0F) | 0x40
        raw[i + 8] = (raw[i + 8] & 0x3F) | 0x80
        h = raw[i : i + 16].hex()
        out.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return out


@dataclass(frozen=True)
class ResultsReport:
    """What :func:`write_results_geojson` wrote.

    Attributes
    ----------
    path : Path
    written : int
        Tool objects written (detections + areas + extra features).
    removed : int
        Tool objects of an earlier run that were replaced.
    kept : int
        Other objects already in the file, kept unchanged.
    """

    path: Path
    written: int
    removed: int
    kept: int


def _is_tool_feature(feature: Any) -> bool:
    props = feature.get("properties") if isinstance(feature, dict) else None
    return isinstance(props, dict) and is_tool_name(props.get("name"))


def answered_id(feature: Any) -> str | None:
    """The id of a tool feature a pathologist answered (kept on a re-run), else None."""
    props = feature.get("properties") or {}
    cls = props.get("classification")
    name = cls.get("name") if isinstance(cls, dict) else cls
    if isinstance(cls, dict) and name is None and isinstance(cls.get("names"), list):
        name = ": ".join(str(n) for n in cls["names"])
    geometry = feature.get("geometry") or {}
    answered = is_answered(
        object_type=str(props.get("objectType", props.get("object_type", "annotation"))),
        class_name=name if isinstance(name, str) else None,
        is_locked=bool(props.get("isLocked", False)),
        is_point=geometry.get("type") in ("Point", "MultiPoint"),
    )
    return str(feature.get("id") or "") if answered else None


_Kept = tuple[list[str], int, set[str]]


def _kept_from_own_layout(path: Path, colors: ClassColors) -> _Kept | None:
    """Like :func:`_kept_features`, line by line, for files in :func:`write_features`' layout.

    That layout has one feature per line, so an earlier result file with 100k
    detections is filtered without loading it whole. Returns ``None`` for any
    other layout (a file QuPath or a person wrote), which is then parsed whole.
    """
    kept: list[str] = []
    removed = 0
    answered: set[str] = set()
    try:
        with open(path, encoding="utf-8") as fh:
            if fh.readline() != '{"type": "FeatureCollection",\n':
                return None
            line = fh.readline()
            if line.startswith('"wsdal": '):
                line = fh.readline()
            if line.rstrip("\n") != '"features": [':
                return None
            for line in fh:
                text = line.rstrip("\n")
                if text == "]}":
                    return kept, removed, answered
                text = text[:-1] if text.endswith(",") else text
                feature = json.loads(text)
                if not isinstance(feature, dict):
                    return None
                if _is_tool_feature(feature) and (fid := answered_id(feature)) is None:
                    removed += 1
                    continue
                if _is_tool_feature(feature):
                    answered.add(fid)
                if complete_classification(feature, colors):
                    kept.append(json.dumps(feature, **_KEPT_JSON_KW))
                else:
                    kept.append(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return None  # no closing "]}": truncated or not ours


def _kept_features(path: Path, colors: ClassColors) -> _Kept:
    """Serialised features of ``path`` the tool did not make or the pathologist answered,
    how many tool features are dropped, and the ids of the answered ones."""
    if not path.exists():
        return [], 0, set()
    fast = _kept_from_own_layout(path, colors)
    if fast is not None:
        return fast
    try:
        existing = load_geojson(path)
    except AnnotationFormatError as exc:
        raise AnnotationFormatError(
            f"{exc}; not overwriting it (it may hold someone's annotations): move it away "
            "or write the results to another folder"
        ) from None
    kept, removed, answered = [], 0, set()
    for feature in existing:
        if _is_tool_feature(feature):
            fid = answered_id(feature)
            if fid is None:
                removed += 1
                continue
            answered.add(fid)
        # same content as read, a missing classification colour added
        complete_classification(feature, colors)
        kept.append(json.dumps(feature, **_KEPT_JSON_KW))
    return kept, removed, answered


def write_results_geojson(
    path: str | os.PathLike[str],
    *,
    detections: Iterable[Sequence[float]] | np.ndarray,
    areas: Iterable[AreaAnnotation] = (),
    provenance: Mapping[str, Any] | None = None,
    extra_features: Iterable[dict[str, Any]] = (),
    id_seed: str | None = None,
    class_colors: ClassColors | None = None,
) -> ResultsReport:
    """Write the tool's results for one image, keeping every object it did not make.

    Parameters
    ----------
    path : path-like
        The GeoJSON file; created if missing. If it exists, its objects not
        named ``"WS-DAL..."`` are kept as they are and come first.
    detections : iterable of (x, y, probability), or ndarray (N, 3)
        Level-0 pixels; class ``Mitosis`` point detections with the measurement
        ``"WS-DAL probability"``.
    areas : iterable of AreaAnnotation
        Regions and the hotspot with count measurements; written as annotations
        (a name not starting with ``"WS-DAL"`` gets the prefix).
    provenance : mapping, optional
        The top-level ``"wsdal"`` member: which slide, model and settings
        (:func:`wsdal_wsi.provenance.provenance`). Without one, the file still
        records the tool, its version and the time.
    extra_features : iterable of dict
        More features, written as given (they should be tool-marked).
    id_seed : str, optional
        Stable detection ids (see :func:`iter_detection_json`); e.g. the slide key.
    class_colors : mapping of str to (r, g, b), optional
        Colours by full class id for kept objects whose classification has
        none (:func:`complete_classification`); default
        :func:`class_colors_for` ``(path)``, the project's class list.

    Returns
    -------
    ResultsReport

    Raises
    ------
    AnnotationFormatError
        ``path`` exists but is not readable GeoJSON (it is left untouched).
    """
    path = Path(path)
    colors = class_colors_for(path) if class_colors is None else class_colors
    kept, removed, answered = _kept_features(path, colors)
    written = 0

    def all_features() -> Iterator[dict[str, Any] | str]:
        nonlocal written
        yield from kept
        for text in iter_detection_json(detections, id_seed=id_seed, skip_ids=answered):
            written += 1
            yield text
        for area in areas:
            written += 1
            yield area_feature(
                area.geometry,
                area.class_name,
                name=tool_name(area.name),
                measurements=area.measurements,
            )
        for feature in extra_features:
            if feature.get("id") in answered:  # the pathologist's answer to it is kept
                continue
            written += 1
            yield feature

    if provenance is None:
        provenance = make_provenance()
    write_features(path, all_features(), provenance=provenance)
    return ResultsReport(path=path, written=written, removed=removed, kept=len(kept))
