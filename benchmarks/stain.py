"""Benchmark: what stain normalisation costs at prediction.

``wsdal train --stain-normalise`` makes prediction estimate each slide's stains
(:func:`wsdal_wsi.stain.slide_stains`: 256 regions of 64 px read in the tissue) and map
every tile onto the model's reference (:func:`wsdal_wsi.stain.normalise_rgb`, one 3 x 3
matrix on the optical density, per pixel) before the candidate detector sees it. This
prints, on one synthetic slide (``wsdal_wsi.synth``, generated into a temporary folder,
or ``--slide``):

1. the stain estimate of the slide, seconds;
2. ``normalise_rgb`` alone on 1104 x 1104 tiles (a 1024 px core and its margins),
   megapixels per second;
3. ``predict_slide`` with a demo-sized network (ResNet-18 at 1/4 width, untrained: the
   work is the same), with and without a stain reference in the model (2 % darker in
   haematoxylin than the slide: every pixel mapped, about the same candidates), the median of
   ``--repeats`` alternating runs, and their ratio (the baseline: without, measured in
   the same run).

Usage::

    python benchmarks/stain.py [--slide SLIDE] [--threads 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from bench_inputs import untrained_model  # this script's folder is on sys.path

from wsdal_wsi.model.file import load_model
from wsdal_wsi.predict import predict_slide
from wsdal_wsi.slide import open_slide, tissue_mask
from wsdal_wsi.stain import StainEstimate, normalise_rgb, slide_stains, stain_matrix


def _model(path: Path, reference: StainEstimate | None) -> object:
    ref = None if reference is None else reference.to_dict()
    return load_model(untrained_model(path, width=16, stain_reference=ref), device="cpu")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slide", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        slide_path = args.slide
        if slide_path is None:
            from wsdal_wsi.synth import SynthParams, generate_slide

            params = SynthParams(width_px=4096, height_px=4096, mpp=0.25, tissue_fraction=0.7)
            slide_path = generate_slide(Path(tmp), name="bench", params=params, seed=3).slide_path
        with open_slide(slide_path) as slide:
            tissue = tissue_mask(slide)
            t0 = time.perf_counter()
            est = slide_stains(slide, tissue, target_mpp=0.25)
            estimate_s = time.perf_counter() - t0
            # a reference 2 % darker in haematoxylin: every pixel goes through the matrix
            # (an identity is skipped), and the candidates, the classifier's work, stay alike
            reference = StainEstimate(
                est.haematoxylin,
                est.eosin,
                1.02 * est.haematoxylin_strength_od,
                est.eosin_strength_od,
            )
            tile = torch.from_numpy(slide.read_region((0.0, 0.0), (1104, 1104), target_mpp=0.25))
            matrix = stain_matrix(est, reference)
            normalise_rgb(tile, matrix)
            t0 = time.perf_counter()
            n = 10
            for _ in range(n):
                normalise_rgb(tile, matrix)
            mp_s = n * 1104 * 1104 / 1e6 / (time.perf_counter() - t0)
            models = {
                "as scanned": _model(Path(tmp) / "plain.pt", None),
                "normalised": _model(Path(tmp) / "norm.pt", reference),
            }
            times: dict[str, list[float]] = {k: [] for k in models}
            candidates: dict[str, int] = {}
            for _ in range(args.repeats):
                for name, model in models.items():
                    t0 = time.perf_counter()
                    pred = predict_slide(slide, model, tissue=tissue)
                    times[name].append(time.perf_counter() - t0)
                    assert (pred.stain["normalised"] is True) == (name == "normalised")
                    candidates[name] = pred.n_candidates
            size = slide.dimensions
    print(f"# stain normalisation at prediction; {platform.node()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, {args.threads} threads")  # fmt: skip
    print(f"slide {size[0]} x {size[1]} px: stain estimate {estimate_s:.2f} s; "
          f"normalise_rgb {mp_s:.0f} MP/s")  # fmt: skip
    print(f"| model | predict_slide s (median of {args.repeats}) | candidates |")
    print("|---|---:|---:|")
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in med.items():
        print(f"| {k} | {v:.2f} | {candidates[k]:,} |")
    print(f"ratio normalised / as scanned: {med['normalised'] / med['as scanned']:.3f}")


if __name__ == "__main__":
    main()
