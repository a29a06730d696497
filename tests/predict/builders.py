"""Builders for the prediction tests: a tiny model, small synthetic slides, a QuPath project.

Plain functions (no fixtures), so ``tests/cli/test_predict.py`` can load this file
by path too.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

_PROVIDER = "qupath.lib.images.servers.openslide.OpenslideServerBuilder"

#: Patch side of the tiny test model (px at 0.25 µm/px).
PATCH_PX = 32
#: ``wsdal predict`` options giving the settings of the ``scaleout_batch`` reference run.
SCALEOUT_ARGS = ("--device", "cpu", "--tile-size", "512")


def make_tiny_model(
    path: Path,
    *,
    threshold: float = 0.2,
    seed: int = 0,
    annotation_classes: dict | None = None,
    stain_reference: dict | None = None,
) -> Path:
    """An untrained, very narrow ResNet-18 model file (random weights, fixed seed).

    Its probabilities are arbitrary but deterministic, which is all the engine tests need.
    """
    from wsdal_wsi.detect.candidates import CandidateParams
    from wsdal_wsi.model.file import ModelSpec, save_model
    from wsdal_wsi.model.nets import ProjNet

    torch.manual_seed(seed)
    net = ProjNet(width=4, proj_dim=8).eval()
    spec = ModelSpec(
        arch="proj_resnet18",
        arch_kwargs={"width": 4, "proj_dim": 8, "input_px": None},
        patch_size_px=PATCH_PX,
        target_mpp=0.25,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        threshold=threshold,
        class_names=("Non-mitosis", "Mitosis"),
        candidate_params=CandidateParams().to_dict(),
        merge_radius_um=5.0,
        provenance={"test": "untrained tiny model"},
        annotation_classes=annotation_classes or {},
        stain_reference=stain_reference or {},
    )
    return save_model(path, net, spec)


def make_dataset(
    out: Path, *, n_slides: int = 2, size=(1024, 768), regions: int = 1, seed: int = 5
):
    """A small synthetic slide folder (slides, sidecar clicks, ``truth/``)."""
    from wsdal_wsi.synth import AnnotationNoise, SynthParams, generate_dataset, load_dataset

    params = SynthParams(
        width_px=size[0],
        height_px=size[1],
        mpp=0.25,
        mitoses_per_mm2=200.0,
        lookalikes_per_mm2=200.0,
        tissue_fraction=0.7,
    )
    noise = AnnotationNoise(regions=regions, region_area_mm2=0.02) if regions else AnnotationNoise()
    generate_dataset(out, n_slides=n_slides, params=params, noise=noise, seed=seed, workers=1)
    return load_dataset(out)


def _dimensions(slide: Path) -> tuple[int, int]:
    """Level-0 (w, h) of a slide, as QuPath records it in the project."""
    from wsdal_wsi.slide import open_slide

    if not slide.is_file():  # a missing slide: the size QuPath recorded no longer matters
        return (1024, 768)
    with open_slide(slide) as opened:
        return opened.dimensions


def make_project(project: Path, slides: list[Path], sidecars: list[Path]) -> Path:
    """A QuPath project (no QuPath) over ``slides``, with the annotation exports.

    Entry IDs are 1, 2, ...; the export of entry ``i`` is a copy of ``sidecars[i-1]``
    in ``<project>/wsdal/annotations/<i>.geojson`` (export_annotations.groovy's layout).
    """
    images = []
    for i, slide in enumerate(slides, start=1):
        images.append(
            {
                "serverBuilder": {
                    "builderType": "uri",
                    "providerClassName": _PROVIDER,
                    "uri": slide.resolve().as_uri(),
                    "args": [],
                    "metadata": dict(zip(("width", "height"), _dimensions(slide), strict=True)),
                },
                "entryID": i,
                "randomizedName": f"00000000-0000-4000-8000-{i:012d}",
                "imageName": slide.name,
                "metadata": {},
            }
        )
    project.mkdir(parents=True, exist_ok=True)
    doc = {
        "version": "0.5.1",
        "createTimestamp": 1700000000000,
        "modifyTimestamp": 1700000000000,
        "uri": (project / "project.qpproj").resolve().as_uri(),
        "lastID": len(images),
        "images": images,
    }
    (project / "project.qpproj").write_text(json.dumps(doc, indent=2))
    exports = project / "wsdal" / "annotations"
    exports.mkdir(parents=True, exist_ok=True)
    for i, sidecar in enumerate(sidecars, start=1):
        shutil.copyfile(sidecar, exports / f"{i}.geojson")
    return project / "project.qpproj"


def corrupt_copy(slide: Path, target: Path, *, keep_bytes: int = 4000) -> Path:
    """A truncated copy of a slide (a TIFF whose image data is cut off)."""
    target.write_bytes(slide.read_bytes()[:keep_bytes])
    return target


def detections_of(geojson: Path) -> list[tuple[tuple[float, float], float]]:
    """The detections of a results GeoJSON: ((x, y) level-0, probability), in file order."""
    doc = json.loads(Path(geojson).read_text(encoding="utf-8"))
    found = []
    for f in doc["features"]:
        props = f.get("properties") or {}
        if props.get("objectType") == "detection":
            x, y = f["geometry"]["coordinates"]
            found.append(((x, y), props["measurements"]["WS-DAL probability"]))
    return found


def counts_rows(csv_path: Path) -> list[dict[str, str]]:
    """The rows of a counts.csv without the columns that differ between runs (the date)."""
    import csv

    with open(csv_path, encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        row.pop("Date (UTC)", None)
    return rows


def batch_folder(data, target: Path) -> Path:
    """The dataset's slides with their sidecars, plus ``broken.tiff`` (a truncated copy)."""
    target.mkdir(parents=True, exist_ok=True)
    for s in data.slides:
        shutil.copy(s.slide_path, target)
        shutil.copy(s.annotation_path, target)
    corrupt_copy(data.slides[0].slide_path, target / "broken.tiff")
    return target
