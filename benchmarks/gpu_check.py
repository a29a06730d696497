"""GPU check: the CUDA prediction path gives the CPU's detections, whatever the tile size.

Runs ``wsdal_wsi.predict.predict_slide`` on one synthetic slide on the CPU (fp32) and on CUDA
(bf16 + channels-last) with two tile sizes and two batch sizes, and prints how well the
detections agree: the share of detections found by every run (matched within 1 µm) and the
largest probability difference among matched ones. bf16 and the batch composition change the
probabilities slightly, so detections whose probability lies right at the threshold may differ;
everything else must agree.

Usage (on a machine with CUDA)::

    python benchmarks/gpu_check.py --size 4096 --workers 16 --work /tmp/wsdal-gpu-check
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree


def _agreement(a, b, *, radius_px: float) -> tuple[float, float]:
    """Share of a's detections matched in b, and the largest |p_a - p_b| among matches."""
    if len(a.points_level0) == 0:
        return (1.0 if len(b.points_level0) == 0 else 0.0), 0.0
    if len(b.points_level0) == 0:
        return 0.0, float("nan")
    dist, idx = cKDTree(b.points_level0).query(a.points_level0, distance_upper_bound=radius_px)
    hit = np.isfinite(dist)
    dp = np.abs(a.scores[hit] - b.scores[idx[hit]])
    return float(hit.mean()), float(dp.max()) if dp.size else 0.0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=4096, help="synthetic slide side (px)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--work", default="/tmp/wsdal-gpu-check")
    p.add_argument("--device", default="cuda", help="device of the accelerated runs (cpu: dry run)")
    args = p.parse_args()

    import torch

    from wsdal_wsi.model.file import load_model
    from wsdal_wsi.predict import predict_slide
    from wsdal_wsi.slide import open_slide, tissue_mask
    from wsdal_wsi.synth import SynthParams, generate_slide

    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: nothing to check", file=sys.stderr)
        return 1
    name = torch.cuda.get_device_name(0) if args.device == "cuda" else args.device
    print(f"device: {name}, torch {torch.__version__}")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    synth = generate_slide(
        work,
        name="check",
        params=SynthParams(width_px=args.size, height_px=args.size),
        seed=1,
        workers=args.workers,
    )
    print(f"synthetic slide {args.size}² in {time.perf_counter() - t0:.1f} s")
    # The same untrained full-width network as benchmarks/predict.py (this script's folder
    # is on sys.path when it runs as a script).
    from bench_inputs import bench_model

    model_path, _ = bench_model(work, None)
    with open_slide(synth.slide_path) as slide:
        tissue = tissue_mask(slide)
        gpu = load_model(model_path, device=args.device)
        cpu = load_model(model_path, device="cpu")
        # An untrained network scores near 0.5: put the threshold at the median score of the
        # candidates so about half of them are detections.
        probe = predict_slide(slide, gpu, tissue=tissue, threshold=0.0)
        thr = float(np.median(probe.scores)) if len(probe.scores) else 0.5
        runs = {}
        for name, model, tile, batch in (
            ("reference: cpu tile 1024 batch 256", cpu, 1024, 256),
            (f"{args.device} tile 1024 batch 256", gpu, 1024, 256),
            (f"{args.device} tile 2048 batch 4096", gpu, 2048, 4096),
        ):
            t = time.perf_counter()
            runs[name] = predict_slide(
                slide, model, tissue=tissue, threshold=thr, tile_size_px=tile, batch_size=batch
            )
            r = runs[name]
            print(
                f"{name}: {len(r.scores)} detections of {r.n_candidates} candidates, "
                f"{time.perf_counter() - t:.2f} s"
            )
    radius_px = 1.0 / 0.25
    ref = runs["reference: cpu tile 1024 batch 256"]
    print(f"threshold {thr:.4f}; agreement with the CPU run (matched within 1 µm):")
    for name, r in runs.items():
        share, dp = _agreement(ref, r, radius_px=radius_px)
        back, _ = _agreement(r, ref, radius_px=radius_px)
        print(
            f"  {name}: {share:.4f} of CPU detections found, {back:.4f} of its own in the CPU "
            f"run, max |dp| {dp:.4f}, candidates {r.n_candidates} vs {ref.n_candidates}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
