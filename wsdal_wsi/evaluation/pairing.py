"""Pairing prediction and ground-truth GeoJSON files by slide stem (``wsdal evaluate``).

``<stem>.geojson``, where a slide extension left in the stem (``CMU-1.svs.geojson``)
is ignored; two files for one image in a folder are refused. Files are paired
folder to folder, or two single files with each other.
"""

from __future__ import annotations

from pathlib import Path

from wsdal_wsi.errors import InputError
from wsdal_wsi.qupath import SLIDE_EXTENSIONS

__all__ = ["GEOJSON_SUFFIX", "geojson_files", "image_key", "pair_files", "strip_slide_extension"]

#: File name ending of the GeoJSON files that are paired.
GEOJSON_SUFFIX = ".geojson"


def image_key(path: Path) -> str:
    """The pairing key of a GeoJSON file: its stem without ``.geojson`` and a slide extension."""
    name = path.name
    stem = name[: -len(GEOJSON_SUFFIX)] if name.lower().endswith(GEOJSON_SUFFIX) else path.stem
    return strip_slide_extension(stem)


def strip_slide_extension(stem: str) -> str:
    """``stem`` without a trailing slide extension (``CMU-1.svs`` -> ``CMU-1``)."""
    lower = stem.lower()
    for ext in SLIDE_EXTENSIONS:
        if lower.endswith(ext) and len(stem) > len(ext):
            return stem[: -len(ext)]
    return stem


def geojson_files(folder: Path, what: str) -> dict[str, Path]:
    """The visible ``*.geojson`` files of ``folder`` by pairing key.

    Raises
    ------
    InputError
        Two files of the folder are for one image (``what`` names the folder's role).
    """
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        name = path.name
        if name.startswith(".") or not name.lower().endswith(GEOJSON_SUFFIX) or not path.is_file():
            continue
        key = strip_slide_extension(name[: -len(GEOJSON_SUFFIX)])
        if key in files:
            raise InputError(
                f"{what} folder {folder}: {files[key].name} and {name} are both for image {key!r}; "
                "keep one"
            )
        files[key] = path
    return files


def pair_files(
    pred: Path, truth: Path
) -> tuple[list[tuple[str, Path, Path]], list[Path], list[Path]]:
    """``(key, pred file, truth file)`` pairs, the prediction files without ground truth and
    the ground-truth files without prediction.

    Raises
    ------
    InputError
        A missing path, a file with a folder, or no image on both sides.
    """
    for path, what in ((pred, "prediction"), (truth, "ground-truth")):
        if not path.exists():
            raise InputError(f"{what} path {path} does not exist")
    if pred.is_file() and truth.is_file():
        return [(image_key(pred), pred, truth)], [], []
    if pred.is_file() != truth.is_file():
        raise InputError(
            f"PRED {pred} and TRUTH {truth} must both be folders or both be GeoJSON files"
        )
    pred_files = geojson_files(pred, "prediction")
    truth_files = geojson_files(truth, "ground-truth")
    common = sorted(set(pred_files) & set(truth_files))
    pred_only = [pred_files[k] for k in sorted(set(pred_files) - set(truth_files))]
    truth_only = [truth_files[k] for k in sorted(set(truth_files) - set(pred_files))]
    if not common:
        raise InputError(
            f"no image has a GeoJSON file in both {pred} ({len(pred_files)} files) and {truth} "
            f"({len(truth_files)} files); files are paired by slide stem (<stem>.geojson)"
        )
    return [(k, pred_files[k], truth_files[k]) for k in common], pred_only, truth_only
