"""Profile: where candidate detection and classification spend their CPU time, per operation.

Reads ``--tiles`` tissue tiles of a slide exactly as ``wsdal predict`` plans them
(cores of 1024 px with the engine's margin, at the model's resolution), then

1. runs :func:`wsdal_wsi.detect.candidates.detect_candidates` on each tile under
   ``torch.profiler`` and prints the operators by their share of self CPU time;
2. crops the candidates' patches of those tiles (only the candidates each tile
   owns, as the engine does) and classifies them in batches of 256 with each model
   (``--model`` files, default: an untrained full-width ResNet-18 at 80 px), again
   per operator; with a cascade in the model file, the first stage and the full
   network appear as their own rows (``record_function`` labels), in a second
   table where the engine's classifier runs with the cascade at the model's threshold;
3. prints the wall time of each part (best of ``--repeat``) and the detection MP/s.

Shares, not absolute times, are the point of this script: it runs on a shared
machine. Run it on another code tree (a baseline) by putting that tree first on
``PYTHONPATH``; it uses public functions only.

Usage::

    python benchmarks/profile_cpu.py --slide SLIDE.tiff --model demo/train/model.pt \\
        [--model full.pt] [--tiles 12] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch

# a script's folder is on sys.path: the benchmarks' shared inputs
from bench_inputs import bench_model, synthetic_slide
from torch.profiler import ProfilerActivity, profile

from wsdal_wsi.detect.candidates import CandidateParams, detect_candidates
from wsdal_wsi.model.file import load_model
from wsdal_wsi.predict.patches import crop_patches
from wsdal_wsi.predict.plan import plan_tiles
from wsdal_wsi.slide import open_slide, tissue_mask


def read_tiles(slide, spec, n_tiles: int):
    """The first ``n_tiles`` tiles (with the most tissue) of the engine's plan: pixels and tiles."""
    tissue = tissue_mask(slide)
    plan = plan_tiles(slide, spec, tissue=tissue, tile_size_px=1024)
    tiles = sorted(plan.tiles, key=lambda t: -(t.tissue_fraction or 0.0))[:n_tiles]
    size = (plan.read_px, plan.read_px)
    pixels = [
        torch.from_numpy(slide.read_region(t.location_level0, size, target_mpp=spec.target_mpp))
        for t in tiles
    ]
    return tiles, pixels


def owned_patches(tiles, pixels, found, patch_px: int) -> torch.Tensor:
    """Patches of the candidates in each tile's core (what the engine classifies)."""
    parts = []
    for tile, px, cand in zip(tiles, pixels, found, strict=True):
        ox, oy = tile.origin_px
        cx0, cy0, cx1, cy1 = tile.core_px
        x, y = cand[:, 0].long(), cand[:, 1].long()
        own = (x + ox >= cx0) & (x + ox < cx1) & (y + oy >= cy0) & (y + oy < cy1)
        b = torch.zeros(int(own.sum()), dtype=torch.long)
        parts.append(crop_patches(px[None], b, x[own], y[own], patch_px).contiguous())
    return torch.cat(parts)


def op_table(prof, total_s: float, rows: int) -> list[str]:
    """Markdown rows: operator, share of self CPU time, calls."""
    # operators only: the library's record_function steps are in labelled()
    events = [e for e in prof.key_averages() if "." not in e.key or e.key.startswith("aten::")]
    events = sorted(events, key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    out = ["| operator | share of self CPU | self CPU (ms) | calls |", "|---|---:|---:|---:|"]
    shown = 0.0
    for e in events[:rows]:
        shown += e.self_cpu_time_total
        out.append(
            f"| `{e.key}` | {100 * e.self_cpu_time_total / total:.1f} % | "
            f"{e.self_cpu_time_total / 1e3:.1f} | {e.count} |"
        )
    out.append(f"| (all others) | {100 * (total - shown) / total:.1f} % | | |")
    out.append(f"\nwall time of the profiled pass: {total_s * 1e3:.0f} ms")
    return out


def labelled(prof) -> list[str]:
    """The ``record_function`` ranges (steps named in the library), by total CPU time."""
    events = [e for e in prof.key_averages() if not e.key.startswith("aten::")]
    events = [e for e in events if "." in e.key and e.cpu_time_total > 0]
    if not events:
        return []
    out = ["| step (record_function) | CPU total (ms) | calls |", "|---|---:|---:|"]
    for e in sorted(events, key=lambda e: -e.cpu_time_total):
        out.append(f"| {e.key} | {e.cpu_time_total / 1e3:.1f} | {e.count} |")
    return out


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def profile_detection(pixels, spec, args) -> list:
    params = CandidateParams.from_dict(spec.candidate_params or {})
    mpp = float(spec.target_mpp)

    def run():
        return [detect_candidates(p[None].permute(0, 3, 1, 2), mpp=mpp, params=params)[0]
                for p in pixels]  # fmt: skip

    found = run()  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        run()
        seconds = time.perf_counter() - t0
    best = best_of(run, args.repeat)
    mp = sum(p.shape[0] * p.shape[1] for p in pixels) / 1e6
    n = sum(len(c) for c in found)
    print(f"\n## detect_candidates: {len(pixels)} tiles of {pixels[0].shape[0]} px ({mp:.1f} MP)")
    print(f"candidates (margins included): {n}; best of {args.repeat}: {best:.3f} s, "
          f"{mp / best:.1f} MP/s\n")  # fmt: skip
    print("\n".join(op_table(prof, seconds, args.rows)))
    steps = labelled(prof)
    if steps:
        print("\n" + "\n".join(steps))
    return found


def profile_classification(path: Path, note: str, patches: torch.Tensor, args) -> None:
    model = load_model(path, device="cpu")
    p = int(model.spec.patch_size_px)
    if patches.shape[-1] != p:
        raise SystemExit(f"{path}: patch size {p} differs from the first model's")
    batches = list(torch.split(patches, 256))

    def run():
        for b in batches:
            model.predict_proba(b)

    run()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        run()
        seconds = time.perf_counter() - t0
    best = best_of(run, args.repeat)
    print(f"\n## classification: {note}")
    print(f"{len(patches)} patches of {p} px in batches of 256; best of {args.repeat}: "
          f"{best:.3f} s, {len(patches) / best:.0f} patches/s\n")  # fmt: skip
    print("\n".join(op_table(prof, seconds, args.rows)))
    steps = labelled(prof)
    if steps:
        print("\n" + "\n".join(steps))
    if getattr(model, "cascade", None) is not None:
        profile_cascade(model, note, patches, args)


def profile_cascade(model, note: str, patches: torch.Tensor, args) -> None:
    """The engine's classifier with the model's cascade, at the model's threshold."""
    from wsdal_wsi.predict.patches import PatchClassifier

    xy = torch.zeros((len(patches), 2), dtype=torch.long)

    def run():
        pool = PatchClassifier(model, batch_size=256, threshold=model.spec.threshold)
        pool.add(patches, xy)
        pool.flush()
        return pool

    run()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        pool = run()
        seconds = time.perf_counter() - t0
    best = best_of(run, args.repeat)
    print(f"\n## classification with the cascade: {note}")
    print(f"{pool.n_full} of {pool.n_classified} patches reach the final network "
          f"(skipped {1 - pool.n_full / max(1, pool.n_classified):.3f}); best of "
          f"{args.repeat}: {best:.3f} s, {len(patches) / best:.0f} patches/s\n")  # fmt: skip
    print("\n".join(op_table(prof, seconds, args.rows)))
    steps = labelled(prof)
    if steps:
        print("\n" + "\n".join(steps))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--slide", help="slide to profile on (default: an 8192 px synthetic one)")
    ap.add_argument(
        "--model",
        action="append",
        default=[],
        help="model file, or 'untrained' for a full-width ResNet-18 at 80 px (repeatable; "
        "default: untrained)",
    )
    ap.add_argument("--tiles", type=int, default=12)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--rows", type=int, default=14, help="operators shown per table")
    ap.add_argument("--work", default=os.environ.get("WSDAL_BENCH_DIR", "/tmp/wsdal-bench"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    models = []
    for m in args.model or ["untrained"]:
        models.append(bench_model(work, None) if m == "untrained" else (Path(m), f"model {m}"))
    slide_path = Path(args.slide) if args.slide else synthetic_slide(work, 8192, workers=2)
    import wsdal_wsi

    print(f"# benchmarks/profile_cpu.py on {platform.node()} ({os.cpu_count()} cores), torch "
          f"{torch.__version__}, {args.threads} torch thread(s); code: "
          f"{Path(wsdal_wsi.__file__).resolve().parent}")  # fmt: skip
    spec = load_model(models[0][0]).spec
    with open_slide(slide_path) as slide:
        tiles, pixels = read_tiles(slide, spec, args.tiles)
    print(f"slide {slide_path.name}: {len(tiles)} tiles with the most tissue")
    found = profile_detection(pixels, spec, args)
    patches = owned_patches(tiles, pixels, found, int(spec.patch_size_px))
    for path, note in models:
        profile_classification(path, note, patches, args)


if __name__ == "__main__":
    main()
