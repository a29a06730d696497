"""Inputs of the prediction benchmarks: the synthetic or mosaic slide, and the model.

Used by ``benchmarks/predict.py`` and ``benchmarks/gpu_check.py`` (imported as a sibling
module: a script's folder is on ``sys.path`` when it runs).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def synthetic_slide(work: Path, size_px: int, *, workers: int) -> Path:
    """A square synthetic slide of ``size_px`` (generated once, cached in ``work``)."""
    from wsdal_wsi.synth import AnnotationNoise, SynthParams, generate_slide

    folder = work / f"synth_{size_px}"
    path = folder / f"bench_{size_px}.tiff"
    done = folder / "done.json"
    if path.is_file() and done.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    _log(f"generating a {size_px} x {size_px} px synthetic slide with {workers} workers ...")
    t0 = time.perf_counter()
    params = SynthParams(width_px=size_px, height_px=size_px, mpp=0.25)
    generate_slide(
        folder, name=path.stem, params=params, noise=AnnotationNoise(), seed=1, workers=workers
    )
    seconds = time.perf_counter() - t0
    done.write_text(json.dumps({"seconds": seconds, "workers": workers}))
    _log(f"  generated in {seconds:.0f} s")
    return path


def mosaic_slide(work: Path, size_px: int, *, base_px: int = 8192, workers: int) -> Path:
    """A ``size_px`` square slide tiled from a ``base_px`` synthetic slide's JPEG tiles (seconds).

    Every pyramid level repeats the base slide's level of the same downsample (its
    encoded tiles are copied, not re-encoded; levels below the base's last whole-tile
    level repeat that level). Same tile layout, compression and resolution tags as
    ``wsdal_wsi.synth``: a stand-in for a big synthetic slide where generating one
    (minutes of CPU per 10 GP) would dominate the benchmark. Memory and speed of the
    prediction do not depend on whether the content repeats.
    """
    import math

    import tifffile

    from wsdal_wsi.synth.pyramid import SUBSAMPLING, level_shapes

    path = work / f"mosaic_{size_px}_of_{base_px}" / f"mosaic_{size_px}.tiff"
    if path.is_file():
        return path
    base = synthetic_slide(work, base_px, workers=workers)
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with tifffile.TiffFile(base) as src:
        pages = list(src.pages)
        tile = pages[0].tilewidth
        mpp = 1e4 / pages[0].tags["XResolution"].value[0] * pages[0].tags["XResolution"].value[1]
        last = max(
            i
            for i, pg in enumerate(pages)
            if pg.imagewidth % tile == 0 and pg.imagelength % tile == 0
        )
        with (
            open(base, "rb") as fh,
            tifffile.TiffWriter(path.with_suffix(".part"), bigtiff=True) as tw,
        ):
            shapes = level_shapes(size_px, size_px)
            for k, (w, h) in enumerate(shapes):
                pg = pages[min(k, last)]
                nbx = pg.imagewidth // tile
                nby = pg.imagelength // tile
                offsets, counts = pg.dataoffsets, pg.databytecounts
                cache: dict[int, bytes] = {}

                def tiles(
                    pg=pg, nbx=nbx, nby=nby, offsets=offsets, counts=counts, cache=cache, w=w, h=h
                ):
                    for j in range(math.ceil(h / tile)):
                        for i in range(math.ceil(w / tile)):
                            idx = (j % nby) * nbx + (i % nbx)
                            if idx not in cache:
                                fh.seek(offsets[idx])
                                cache[idx] = fh.read(counts[idx])
                            yield cache[idx]

                res = 1e4 / (mpp * size_px / w)
                tw.write(
                    tiles(),
                    shape=(h, w, 3),
                    dtype="uint8",
                    tile=(tile, tile),
                    compression="jpeg",
                    photometric="rgb",
                    subsampling=SUBSAMPLING,
                    resolution=(res, res),
                    resolutionunit="CENTIMETER",
                    subfiletype=0 if k == 0 else 1,
                    metadata=None,
                    description=f"wsdal-wsi benchmark mosaic of {base.name}" if k == 0 else None,
                )
    os.replace(path.with_suffix(".part"), path)
    _log(f"  mosaic {size_px} x {size_px} px written in {time.perf_counter() - t0:.0f} s")
    return path


def untrained_model(
    path: Path, *, width: int = 64, stain_reference: dict | None = None, note: str = ""
) -> Path:
    """Write an untrained ResNet-18 model file (80 px patches, seeded weights) to ``path``."""
    import torch

    from wsdal_wsi.detect.candidates import CandidateParams
    from wsdal_wsi.model.file import ModelSpec, save_model
    from wsdal_wsi.model.nets import ProjNet

    torch.manual_seed(0)
    spec = ModelSpec(
        arch="proj_resnet18",
        arch_kwargs={"width": width, "proj_dim": 128, "input_px": None},
        patch_size_px=80,
        target_mpp=0.25,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        threshold=0.5,
        class_names=("Non-mitosis", "Mitosis"),
        candidate_params=CandidateParams().to_dict(),
        merge_radius_um=5.0,
        provenance={"benchmark": note or "untrained, real architecture"},
        stain_reference=stain_reference or {},
    )
    return save_model(path, ProjNet(width=width, proj_dim=128).eval(), spec)


def bench_model(work: Path, model: str | None) -> tuple[Path, str]:
    """The model file to use and a note saying what it is."""
    if model:
        return Path(model), f"trained model {model}"
    path = work / "untrained_resnet18_w64_p80.pt"
    if not path.is_file():
        untrained_model(path)
    return path, "untrained ResNet-18 (width 64, 80 px patches): timing does not depend on weights"


def make_slide(work: Path, size_px: int, args) -> Path:
    """The benchmark slide of ``size_px``: ``--generator synth`` or ``mosaic``."""
    if args.generator == "mosaic" and size_px > 8192:
        return mosaic_slide(work, size_px, workers=args.synth_workers)
    return synthetic_slide(work, size_px, workers=args.synth_workers)
