"""Import a MIDOG-style COCO annotation database as a slide folder with sidecars.

Public mitosis data sets (MIDOG 2021, MIDOG++) ship their labels as one COCO
JSON: ``images`` (``id``, ``file_name``, ``width``, ``height``), ``categories``
and ``annotations`` (``image_id``, ``category_id``, ``bbox``), each box a fixed
square around the cell. :func:`import_coco` turns it into the slide-folder form
every other command reads::

    OUT/<slide stem>.geojson     one QuPath "Points" annotation per class (box centres)
    OUT/<slide file>             a link to the slide in --images (when it is there)

Category 1 becomes ``Mitosis`` and 2 ``Mitosis-like`` (MIDOG's "mitotic figure"
and "not mitotic figure"); others keep their category name unless mapped.
MIDOG writes boxes as ``[x1, y1, x2, y2]``, not COCO's ``[x, y, w, h]``; the
format is detected from the data (or given), and the choice is recorded in each
sidecar's provenance. A slide missing from ``--images`` still gets its sidecar
and is reported.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from wsdal_wsi.atomic import make_dirs, writing
from wsdal_wsi.errors import AnnotationFormatError, ConfigError, InputError
from wsdal_wsi.progress import NULL_PROGRESS, Progress
from wsdal_wsi.provenance import provenance
from wsdal_wsi.qupath.geojson_write import points_feature, write_features
from wsdal_wsi.qupath.model import ImageAnnotations, PointAnnotation

__all__ = [
    "DEFAULT_CATEGORY_CLASSES",
    "CocoImportReport",
    "coco_annotations",
    "detect_bbox_format",
    "import_coco",
    "load_coco",
]

#: MIDOG's categories: 1 "mitotic figure", 2 "not mitotic figure" (a look-alike).
DEFAULT_CATEGORY_CLASSES: dict[int, str] = {1: "Mitosis", 2: "Mitosis-like"}

_SOURCE_TAG = "coco-import"


def load_coco(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load and check a COCO database (images, annotations; categories optional).

    Raises
    ------
    AnnotationFormatError
        Not JSON, or not the COCO structure; the message names the file and the entry.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AnnotationFormatError(f"{path}: cannot read ({exc})") from exc
    if not text.strip():
        raise AnnotationFormatError(f"{path}: empty file (expected a COCO JSON database)")
    try:
        db = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AnnotationFormatError(
            f"{path}: not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    if not isinstance(db, dict) or not isinstance(db.get("images"), list):
        raise AnnotationFormatError(f"{path}: not a COCO database (no 'images' list)")
    if not isinstance(db.get("annotations", []), list):
        raise AnnotationFormatError(f"{path}: 'annotations' must be a list")
    for i, im in enumerate(db["images"]):
        if not isinstance(im, dict) or "id" not in im or not isinstance(im.get("file_name"), str):
            raise AnnotationFormatError(f"{path}: images[{i}] needs 'id' and 'file_name'")
    for i, ann in enumerate(db.get("annotations", [])):
        box = ann.get("bbox") if isinstance(ann, dict) else None
        ok = (
            isinstance(ann, dict)
            and "image_id" in ann
            and "category_id" in ann
            and isinstance(box, list)
            and len(box) == 4
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box)
        )
        if not ok:
            raise AnnotationFormatError(
                f"{path}: annotations[{i}] needs 'image_id', 'category_id' and a 4-number "
                f"'bbox', got {ann!r:.120}"
            )
    return db


def detect_bbox_format(db: Mapping[str, Any]) -> str:
    """Return ``"xyxy"`` (MIDOG) or ``"xywh"`` (COCO standard) from the boxes themselves.

    A box with ``x2 <= x1`` (or ``y2 <= y1``) rules out ``xyxy``; a box whose
    ``x + w`` passes its image's width rules out ``xywh``.

    Raises
    ------
    ConfigError
        The boxes fit both readings: say which with ``bbox_format``.
    """
    sizes = {im["id"]: (im.get("width"), im.get("height")) for im in db["images"]}
    xyxy_possible, xywh_possible = True, True
    for ann in db.get("annotations", []):
        a, b, c, d = ann["bbox"]
        if c <= a or d <= b:
            xyxy_possible = False
        w, h = sizes.get(ann["image_id"], (None, None))
        if isinstance(w, (int, float)) and isinstance(h, (int, float)) and (a + c > w or b + d > h):
            xywh_possible = False
    if xyxy_possible and not xywh_possible:
        return "xyxy"
    if xywh_possible and not xyxy_possible:
        return "xywh"
    if not db.get("annotations"):
        return "xywh"
    raise ConfigError(
        "cannot tell the box format from the data (both [x1, y1, x2, y2] and [x, y, w, h] "
        "fit): give --bbox-format xyxy (MIDOG) or xywh (standard COCO)"
    )


def _category_classes(
    db: Mapping[str, Any], mapping: Mapping[int, str] | None
) -> tuple[dict[int, str], list[str]]:
    classes = dict(DEFAULT_CATEGORY_CLASSES)
    classes.update({int(k): v for k, v in (mapping or {}).items()})
    notes = []
    for cat in db.get("categories", []) or []:
        if isinstance(cat, dict) and "id" in cat and int(cat["id"]) not in classes:
            name = str(cat.get("name") or f"category {cat['id']}")
            classes[int(cat["id"])] = name
            notes.append(f"category {cat['id']} ({name!r}) has no class given: used its name")
    return classes, notes


def coco_annotations(
    db: Mapping[str, Any],
    *,
    category_classes: Mapping[int, str] | None = None,
    bbox_format: str = "auto",
) -> tuple[dict[Any, ImageAnnotations], dict[str, Any]]:
    """The annotation model of every image of a COCO database (box centres as points).

    Returns
    -------
    (dict, dict)
        image id -> ImageAnnotations (points in the database's order), and info:
        ``bbox_format``, ``category_classes``, ``notes``, ``orphans`` (annotations
        of an image id not in ``images``).
    """
    if bbox_format not in ("auto", "xyxy", "xywh"):
        raise ConfigError(f"bbox format must be auto, xyxy or xywh, got {bbox_format!r}")
    fmt = detect_bbox_format(db) if bbox_format == "auto" else bbox_format
    classes, notes = _category_classes(db, category_classes)
    points: dict[Any, list[PointAnnotation]] = defaultdict(list)
    image_ids = {im["id"] for im in db["images"]}
    orphans = 0
    unmapped: Counter[Any] = Counter()
    for ann in db.get("annotations", []):
        if ann["image_id"] not in image_ids:
            orphans += 1
            continue
        a, b, c, d = (float(v) for v in ann["bbox"])
        x, y = ((a + c) / 2, (b + d) / 2) if fmt == "xyxy" else (a + c / 2, b + d / 2)
        cat = ann["category_id"]
        cls = classes.get(int(cat)) if isinstance(cat, (int, float, str)) else None
        if cls is None:
            unmapped[cat] += 1
            cls = f"category {cat}"
        points[ann["image_id"]].append(PointAnnotation(x, y, cls))
    for cat, n in unmapped.items():
        notes.append(f"category {cat!r} is not in 'categories' ({n} annotations): kept as such")
    out = {
        im["id"]: ImageAnnotations(points=tuple(points.get(im["id"], ()))) for im in db["images"]
    }
    info = {"bbox_format": fmt, "category_classes": classes, "notes": notes, "orphans": orphans}
    return out, info


@dataclass
class CocoImportReport:
    """What :func:`import_coco` did.

    Attributes
    ----------
    out_dir : Path
    bbox_format : str
    sidecars : list of Path
        Written, one per image.
    missing_slides : list of str
        Images whose slide file is not in the images folder (sidecar written anyway).
    linked : int
        Slides linked or copied into ``out_dir``.
    skipped : dict
        file name -> why nothing was written for it.
    counts : dict
        file name -> {class: points}.
    notes : list of str
    """

    out_dir: Path
    bbox_format: str
    sidecars: list[Path] = field(default_factory=list)
    missing_slides: list[str] = field(default_factory=list)
    linked: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _foreign_sidecar(path: Path) -> bool:
    """True when ``path`` exists and was not written by a COCO import (so keep it)."""
    if not path.exists():
        return False
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            head = fh.read(65536)
    except OSError:
        return True
    return f'"source": "{_SOURCE_TAG}"' not in head


def _link(src: Path, dst: Path, mode: str) -> bool:
    if dst.exists() or dst.is_symlink():
        return dst.resolve() == src.resolve()
    make_dirs(dst.parent)
    with writing(dst):
        if mode == "symlink":
            os.symlink(src.resolve(), dst)
        else:
            shutil.copy2(src, dst)
    return True


def import_coco(
    db_path: str | os.PathLike[str],
    *,
    images_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    category_classes: Mapping[int, str] | None = None,
    bbox_format: str = "auto",
    link: str = "symlink",
    progress: Progress | None = None,
) -> CocoImportReport:
    """Write a slide folder with one sidecar GeoJSON per image of a COCO database.

    Parameters
    ----------
    db_path : path-like
        The COCO JSON (e.g. ``MIDOGpp.json``).
    images_dir : path-like
        Where the slides (``file_name`` of each image) are.
    out_dir : path-like
        The slide folder to make (may be ``images_dir`` itself).
    category_classes : mapping of int -> str, optional
        Class of each category id (default 1 -> Mitosis, 2 -> Mitosis-like).
    bbox_format : {"auto", "xyxy", "xywh"}
    link : {"symlink", "copy", "none"}
        How slides get into ``out_dir`` when it is not ``images_dir``.

    Returns
    -------
    CocoImportReport
    """
    if link not in ("symlink", "copy", "none"):
        raise ConfigError(f"link must be symlink, copy or none, got {link!r}")
    db_path, images_dir, out_dir = Path(db_path), Path(images_dir), Path(out_dir)
    if not images_dir.is_dir():
        raise InputError(f"{images_dir}: the images folder does not exist")
    db = load_coco(db_path)
    per_image, info = coco_annotations(
        db, category_classes=category_classes, bbox_format=bbox_format
    )
    report = CocoImportReport(out_dir=out_dir, bbox_format=info["bbox_format"], notes=info["notes"])
    if info["orphans"]:
        report.notes.append(f"{info['orphans']} annotations refer to no image: left out")
    same_folder = out_dir.resolve() == images_dir.resolve()
    stems = Counter(PurePosixPath(im["file_name"]).stem for im in db["images"])
    progress = progress or NULL_PROGRESS
    make_dirs(out_dir)
    with progress.task("Writing sidecars", total=len(db["images"])) as task:
        for im in db["images"]:
            task.advance()
            rel = PurePosixPath(im["file_name"].replace("\\", "/"))
            name = rel.name
            if stems[rel.stem] > 1:
                report.skipped[name] = f"another image has the same name stem {rel.stem!r}"
                continue
            sidecar = out_dir / f"{rel.stem}.geojson"
            if _foreign_sidecar(sidecar):
                report.skipped[name] = f"{sidecar} exists and was not made by a COCO import: kept"
                continue
            ann = per_image[im["id"]]
            by_class: dict[str, list[tuple[float, float]]] = defaultdict(list)
            for p in ann.points:
                by_class[p.class_name or "Unclassified"].append((p.x, p.y))
            features = [points_feature(xy, cls) for cls, xy in sorted(by_class.items())]
            image_meta = {k: v for k, v in im.items() if isinstance(v, (str, int, float, bool))}
            prov = provenance(
                source=_SOURCE_TAG,
                coco_database=str(db_path.resolve()),
                coco_image=image_meta,
                bbox_format=info["bbox_format"],
                category_classes={str(k): v for k, v in info["category_classes"].items()},
            )
            write_features(sidecar, features, provenance=prov)
            report.sidecars.append(sidecar)
            report.counts[name] = ann.points_per_class()
            slide = images_dir / Path(*rel.parts)
            if not slide.exists():
                report.missing_slides.append(name)
            elif not same_folder and link != "none":
                try:
                    if _link(slide, out_dir / name, link):
                        report.linked += 1
                    else:
                        report.skipped[name] = f"{out_dir / name} exists and is another file: kept"
                except OSError as exc:
                    raise InputError(
                        f"{out_dir / name}: cannot {link} the slide ({exc}); try --link copy, or "
                        "--out the images folder itself"
                    ) from exc
    return report
