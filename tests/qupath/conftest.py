"""Fixtures for the QuPath tests: tiny pyramidal slides, QuPath projects, the same clicks.

Everything is made in ``tmp_path``: no network, no QuPath.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
from shapely.geometry import box

from wsdal_wsi.qupath.geojson_write import area_feature, points_feature, write_features
from wsdal_wsi.qupath.model import AreaAnnotation, ImageAnnotations, PointAnnotation


def make_tiff(path: Path, *, size_px: int = 512, levels: int = 3, mpp: float | None = 0.25) -> Path:
    """A tiny pyramidal tiled JPEG TIFF (``size_px`` square level 0), with resolution tags."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        for lvl in range(levels):
            side = size_px // 2**lvl
            kwargs: dict[str, Any] = {}
            if mpp is not None:
                kwargs = {
                    "resolution": (1e4 / (mpp * 2**lvl),) * 2,
                    "resolutionunit": "CENTIMETER",
                }
            tw.write(
                np.full((side, side, 3), 200, np.uint8),
                tile=(128, 128),
                compression="jpeg",
                photometric="rgb",
                subfiletype=1 if lvl else 0,
                **kwargs,
            )
    return path


#: The same clicks on two slides, used by every source (folder, project, COCO).
CLICKS: dict[str, ImageAnnotations] = {
    "slide_a": ImageAnnotations(
        points=(
            PointAnnotation(100.0, 120.0, "Mitosis"),
            PointAnnotation(300.5, 310.25, "Mitosis"),
            PointAnnotation(50.0, 400.0, "Mitosis-like"),
        ),
        areas=(AreaAnnotation(box(10, 10, 500, 500), "Region", name="Region 1"),),
    ),
    "slide_b": ImageAnnotations(
        points=(
            PointAnnotation(256.0, 256.0, "Mitosis"),
            PointAnnotation(20.0, 30.0, "Mitosis-like"),
        ),
    ),
}


def clicks_features(ann: ImageAnnotations) -> list[dict]:
    """The features QuPath would export for ``ann``: one Points annotation per class, areas."""
    features = []
    for cls in sorted({p.class_name for p in ann.points}):
        xy = [(p.x, p.y) for p in ann.points if p.class_name == cls]
        features.append(points_feature(xy, cls))
    for area in ann.areas:
        features.append(area_feature(area.geometry, area.class_name, name=area.name))
    return features


OPENSLIDE = "qupath.lib.images.servers.openslide.OpenslideServerBuilder"
BIOFORMATS = "qupath.lib.images.servers.bioformats.BioFormatsServerBuilder"


def qpproj_image(
    entry_id: int,
    name: str,
    uri: str | None,
    *,
    mpp: float | None = None,
    provider: str = OPENSLIDE,
    args: Sequence[str] = (),
    size: tuple[int, int] = (512, 512),
) -> dict:
    """One ``images`` entry of a project.qpproj, as QuPath 0.5 writes it."""
    meta: dict[str, Any] = {"width": size[0], "height": size[1]}
    if mpp is not None:
        meta["pixelCalibration"] = {
            "pixelWidth": {"value": mpp, "unit": "µm"},
            "pixelHeight": {"value": mpp, "unit": "µm"},
        }
    builder: dict[str, Any] = {
        "builderType": "uri",
        "providerClassName": provider,
        "args": list(args),
        "metadata": meta,
    }
    if uri is not None:
        builder["uri"] = uri
    return {
        "serverBuilder": builder,
        "entryID": entry_id,
        "randomizedName": f"00000000-0000-4000-8000-{entry_id:012d}",
        "imageName": name,
        "metadata": {},
    }


def wrap_image(image: dict, builder_type: str, **fields: Any) -> dict:
    """``image`` with its serverBuilder wrapped, as QuPath 0.5/0.6 write a transformed image.

    The wrapper comes first with ``builderType``, then ``builder`` (the wrapped
    one), then its own fields and a copy of the metadata (GsonTools' order).
    """
    inner = image["serverBuilder"]
    outer = {"builderType": builder_type, "builder": inner, **fields}
    outer["metadata"] = dict(inner.get("metadata", {}))
    return {**image, "serverBuilder": outer}


def write_qpproj(project_dir: Path, images: Sequence[dict], *, uri: str | None = None) -> Path:
    """Write ``project_dir/project.qpproj`` (``uri``: where QuPath last saved it)."""
    project_dir.mkdir(parents=True, exist_ok=True)
    path = project_dir / "project.qpproj"
    doc = {
        "version": "0.5.1",
        "createTimestamp": 1700000000000,
        "modifyTimestamp": 1700000000000,
        "uri": uri or (project_dir / "project.qpproj").as_uri(),
        "lastID": len(images),
        "images": list(images),
    }
    path.write_text(json.dumps(doc, indent=2))
    return path


@pytest.fixture
def tiff_factory(tmp_path: Path) -> Callable[..., Path]:
    """Make a tiny pyramidal TIFF: ``tiff_factory("dir/name.tiff", mpp=0.25)``."""

    def make(rel: str, **kwargs: Any) -> Path:
        return make_tiff(tmp_path / rel, **kwargs)

    return make


@pytest.fixture
def slide_folder(tmp_path: Path) -> Path:
    """A folder with two slides and their sidecar GeoJSON (the :data:`CLICKS`)."""
    folder = tmp_path / "slides"
    for stem, ann in CLICKS.items():
        make_tiff(folder / f"{stem}.tiff")
        write_features(folder / f"{stem}.geojson", clicks_features(ann))
    return folder


@pytest.fixture
def exported_project(tmp_path: Path) -> Path:
    """A QuPath project (without QuPath) over the two slides, with the annotation exports."""
    slides = tmp_path / "scans"
    for stem in CLICKS:
        make_tiff(slides / f"{stem}.tiff")
    project = tmp_path / "project"
    images = [
        qpproj_image(i + 1, f"{stem}.tiff", (slides / f"{stem}.tiff").as_uri())
        for i, stem in enumerate(CLICKS)
    ]
    write_qpproj(project, images)
    for i, ann in enumerate(CLICKS.values()):
        write_features(project / "wsdal" / "annotations" / f"{i + 1}.geojson", clicks_features(ann))
    return project
