"""Benchmark: whole-slide prediction (``wsdal_wsi.predict.predict_slide``), as ratios in one run.

Three measurements, each on one synthetic slide made by ``wsdal_wsi.synth`` (cached
in ``--work``) or on ``--slide``:

``overlap``
    Full prediction wall time against the larger of (a) reading every tissue tile
    alone (the engine's own reader threads and queue, pixels discarded) and (b)
    candidate detection + patch cropping + classification alone on tiles read
    beforehand into memory (the same engine, reading from RAM). A ratio near 1
    means the device work and the decoding overlap completely. Target <= 1.15 on
    the 2-core CPU.
``throughput``
    Tissue megapixels per second of the full prediction of a large slide (40k x
    40k px or more) and its ratio to reading alone: on a GPU the engine should be
    bound by decoding (target <= 1.3).
``memory``
    Peak resident memory of a fresh process predicting slides of growing size
    (e.g. 25k, 50k, 100k px square): it must stay flat (target < 3 GB).
``speedup``
    Tissue MP/s of today's code against a baseline commit on the CPU, on the
    held-out slides of a ``wsdal demo`` run (``--demo DIR``), with the demo model
    and a full-width network: baseline, today without and with the cascade, in
    alternating rounds, with the ratio and the test F1 (``bench_speedup.py``).

Each timing is the best of ``--repeat`` passes after one warm-up pass (page cache,
cuDNN / cuFFT plans). The model is ``--model`` if given, else an untrained network
of the real architecture (ResNet-18 trunk, full width, 80 px patches at 0.25 µm/px):
timing does not depend on the weights (the output says which was used).

Usage::

    python benchmarks/predict.py --run overlap --size 8192 --device cpu
    python benchmarks/predict.py --run throughput,memory --size 40000 \\
        --sizes 25000,50000,100000 --device cuda --synth-workers 16
    python benchmarks/predict.py --run speedup --demo DEMO_RUN [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

# the slides and the model (this script's folder is on sys.path when it runs as a script)
from bench_inputs import bench_model, make_slide
from bench_speedup import BASELINE_REF, child_speed, print_speedup, run_speedup


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class MemorySlide:
    """A slide whose tiles were read beforehand: ``read_region`` returns them from RAM."""

    def __init__(self, slide: Any, tiles: dict[tuple[float, float], np.ndarray]) -> None:
        self._slide = slide
        self._tiles = tiles

    def read_region(self, location_level0, size_px, *, target_mpp):
        return self._tiles[tuple(location_level0)]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._slide, name)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _rss_mb() -> float:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


def _sync(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


# ----------------------------------------------------------------------------- passes


def read_pass(slide, plan, *, target_mpp: float, threads: int, depth: int, pinned: bool) -> float:
    """Wall time to read (decode) every tile of ``plan`` with the engine's reader."""
    from wsdal_wsi.predict.reader import TileStream

    stream = TileStream(
        slide,
        plan.tiles,
        read_px=plan.read_px,
        target_mpp=target_mpp,
        threads=threads,
        depth=depth,
        pinned=pinned,
    )
    t0 = time.perf_counter()
    for item in stream:
        stream.release(item.pixels)
    return time.perf_counter() - t0


def predict_pass(slide, model, tissue, opts: dict[str, Any]):
    from wsdal_wsi.predict import predict_slide

    _sync(model.device)
    t0 = time.perf_counter()
    pred = predict_slide(slide, model, tissue=tissue, **opts)
    _sync(model.device)
    return time.perf_counter() - t0, pred


def _setup(slide_path: Path, model_path: Path, args):
    import torch

    from wsdal_wsi.model.device import resolve_device
    from wsdal_wsi.model.file import load_model
    from wsdal_wsi.predict import (
        default_reader_threads,
        default_tile_size,
        plan_tiles,
    )
    from wsdal_wsi.slide import open_slide, tissue_mask

    device = resolve_device(args.device)
    model = load_model(model_path, device=device)
    slide = open_slide(slide_path)
    tissue = tissue_mask(slide)
    tile = args.tile_size or default_tile_size(device)
    threads = args.reader_threads or default_reader_threads(device)
    plan = plan_tiles(slide, model.spec, tissue=tissue, tile_size_px=tile)
    opts = {"tile_size_px": tile, "reader_threads": threads, "batch_size": args.batch_size}
    cuda = device.type == "cuda"
    tps = 8 if cuda else 1
    info = {
        "device": torch.cuda.get_device_name(device) if cuda else f"CPU ({os.cpu_count()} cores)",
        "torch_threads": torch.get_num_threads(),
        "tile": tile,
        "threads": threads,
        "depth": threads + tps,
        "pinned": cuda,
    }
    return model, slide, tissue, plan, opts, info


def _slide_row(slide_path: Path, slide, plan, pred, info: dict[str, Any]) -> dict[str, Any]:
    """The columns every timing row shares: engine settings, slide, tiles, candidates."""
    return {
        **info,
        "slide": slide_path.name,
        "dimensions": slide.dimensions,
        "tiles": len(plan.tiles),
        "read_px": plan.read_px,
        "tissue_mp": pred.tissue_mp,
        "read_mp": pred.read_mp,
        "candidates": pred.n_candidates,
    }


def run_overlap(slide_path: Path, model_path: Path, args) -> dict[str, Any]:
    model, slide, tissue, plan, opts, info = _setup(slide_path, model_path, args)
    target = model.spec.target_mpp
    _log(f"overlap: {slide_path.name}, {len(plan.tiles)} tiles of {plan.read_px} px, warm-up ...")
    _, pred = predict_pass(slide, model, tissue, opts)  # warm-up (page cache, allocator)
    cache = {
        t.location_level0: slide.read_region(
            t.location_level0, (plan.read_px, plan.read_px), target_mpp=target
        )
        for t in plan.tiles
    }
    mem = MemorySlide(slide, cache)
    reads, computes, fulls = [], [], []
    # Interleaved rounds, so a burst of load from other jobs hits all three alike.
    for r in range(args.repeat):
        reads.append(
            read_pass(
                slide,
                plan,
                target_mpp=target,
                threads=info["threads"],
                depth=info["depth"],
                pinned=info["pinned"],
            )
        )
        computes.append(predict_pass(mem, model, tissue, opts)[0])
        fulls.append(predict_pass(slide, model, tissue, opts)[0])
        _log(
            f"  round {r + 1}: read {reads[-1]:.2f} s, compute on pre-read tiles "
            f"{computes[-1]:.2f} s, full {fulls[-1]:.2f} s"
        )
    read, compute, full = min(reads), min(computes), min(fulls)
    per_round = [f / max(rd, c) for rd, c, f in zip(reads, computes, fulls, strict=True)]
    return {
        **_slide_row(slide_path, slide, plan, pred, info),
        "read_s": read,
        "compute_s": compute,
        "full_s": full,
        "ratio": full / max(read, compute),
        "round_ratios": per_round,
        "full_mp_s": pred.tissue_mp / full,
        "read_mp_s": pred.tissue_mp / read,
    }


def run_throughput(slide_path: Path, model_path: Path, args) -> dict[str, Any]:
    import torch

    model, slide, tissue, plan, opts, info = _setup(slide_path, model_path, args)
    _log(f"throughput: {slide_path.name}, {len(plan.tiles)} tiles of {plan.read_px} px, warm-up")
    _, pred = predict_pass(slide, model, tissue, opts)
    reads, fulls = [], []
    for r in range(args.repeat):
        reads.append(
            read_pass(
                slide,
                plan,
                target_mpp=model.spec.target_mpp,
                threads=info["threads"],
                depth=info["depth"],
                pinned=info["pinned"],
            )
        )
        t, pred = predict_pass(slide, model, tissue, opts)
        fulls.append(t)
        _log(f"  pass {r + 1}: read {reads[-1]:.2f} s, full {t:.2f} s, {pred.timings}")
    read, full = min(reads), min(fulls)
    cuda = torch.device(model.device).type == "cuda"
    return {
        **_slide_row(slide_path, slide, plan, pred, info),
        "read_s": read,
        "full_s": full,
        "ratio": full / read,
        "full_mp_s": pred.tissue_mp / full,
        "read_mp_s": pred.tissue_mp / read,
        "timings": pred.timings,
        "engine": pred.engine_info() if hasattr(pred, "engine_info") else {},
        "gpu_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
        "peak_rss_mb": _peak_rss_mb(),
    }


def child_predict(slide_path: Path, model_path: Path, args) -> dict[str, Any]:
    """One prediction in this (fresh) process; peak memory of the whole process."""
    import torch

    from wsdal_wsi.model.device import resolve_device
    from wsdal_wsi.model.file import load_model
    from wsdal_wsi.predict import predict_slide
    from wsdal_wsi.slide import open_slide

    device = resolve_device(args.device)
    model = load_model(model_path, device=device)
    with open_slide(slide_path) as slide:
        before = _rss_mb()
        t0 = time.perf_counter()
        pred = predict_slide(
            slide,
            model,
            tile_size_px=args.tile_size,
            reader_threads=args.reader_threads,
            batch_size=args.batch_size,
        )
        _sync(device)
        seconds = time.perf_counter() - t0
    cuda = device.type == "cuda"
    return {
        "size": slide.dimensions[0],
        "tissue_mp": pred.tissue_mp,
        "tiles": pred.n_tiles,
        "candidates": pred.n_candidates,
        "detections": len(pred.scores),
        "seconds": seconds,
        "rss_before_mb": before,
        "peak_rss_mb": _peak_rss_mb(),
        "gpu_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
    }


def run_memory(sizes: list[int], model_path: Path, args) -> list[dict[str, Any]]:
    rows = []
    for size in sizes:
        slide = make_slide(Path(args.work), size, args)
        _log(f"memory: predicting {slide.name} in a fresh process ...")
        cmd = [
            sys.executable,
            __file__,
            "--child-predict",
            str(slide),
            "--model",
            str(model_path),
            "--device",
            args.device,
        ]
        for flag, value in (
            ("--tile-size", args.tile_size),
            ("--batch-size", args.batch_size),
            ("--reader-threads", args.reader_threads),
            ("--torch-threads", args.torch_threads),
        ):
            if value:
                cmd += [flag, str(value)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        _log(f"  {row}")
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- tables


def _print_overlap(row: dict[str, Any], title: str) -> None:
    print(
        f"\n## {title}: {row['slide']} {row['dimensions'][0]} x {row['dimensions'][1]} px, "
        f"{row['device']}, torch threads {row['torch_threads']}"
    )
    print(
        f"tiles: {row['tiles']} of {row['read_px']} px (core {row['tile']}), reader threads "
        f"{row['threads']}, tissue {row['tissue_mp']:.1f} MP, read {row['read_mp']:.1f} MP, "
        f"candidates {row['candidates']:,}"
    )
    print("| read alone (s) | compute alone (s) | full predict (s) | ratio | tissue MP/s |")
    print("|---:|---:|---:|---:|---:|")
    compute = row.get("compute_s")
    print(
        f"| {row['read_s']:.2f} | {'' if compute is None else f'{compute:.2f}'} | "
        f"{row['full_s']:.2f} | {row['ratio']:.3f} | {row['full_mp_s']:.1f} |"
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", default="overlap", help="overlap, throughput, memory (comma list)")
    p.add_argument("--slide", help="use this slide instead of a synthetic one")
    p.add_argument("--size", type=int, default=8192, help="synthetic slide side (px)")
    p.add_argument("--sizes", default="25000,50000,100000", help="memory: slide sides (px)")
    p.add_argument("--device", default="auto")
    p.add_argument("--model", help="model file (default: untrained real architecture)")
    p.add_argument("--tile-size", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--reader-threads", type=int)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--torch-threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument(
        "--generator",
        choices=("synth", "mosaic"),
        default="synth",
        help="big slides: wsdal_wsi.synth (minutes of CPU per 10 GP) or a mosaic of an 8192 px "
        "synthetic slide's JPEG tiles (seconds)",
    )
    p.add_argument("--synth-workers", type=int, default=max(1, min(16, os.cpu_count() or 1)))
    p.add_argument("--work", default=os.environ.get("WSDAL_BENCH_DIR", "/tmp/wsdal-bench"))
    p.add_argument("--demo", help="speedup: a finished `wsdal demo` run folder")
    p.add_argument("--baseline-ref", default=BASELINE_REF, help="speedup: the baseline commit")
    p.add_argument("--demo-only", action="store_true", help="speedup: no full-width rows")
    p.add_argument("--child-predict", help=argparse.SUPPRESS)
    p.add_argument("--child-speed", help=argparse.SUPPRESS)
    p.add_argument("--no-cascade", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.child_predict:
        if args.torch_threads:
            import torch

            torch.set_num_threads(args.torch_threads)
        print(json.dumps(child_predict(Path(args.child_predict), Path(args.model), args)))
        return
    if args.child_speed:
        if args.torch_threads:
            import torch

            torch.set_num_threads(args.torch_threads)
        slides = [Path(s) for s in args.child_speed.split(",")]
        print(json.dumps(child_speed(slides, Path(args.model), cascade=not args.no_cascade)))
        return
    if args.run == "speedup":
        print_speedup(run_speedup(args), args)
        return
    import torch

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    model_path, note = bench_model(work, args.model)
    print(
        f"# benchmarks/predict.py on {platform.node()} ({platform.machine()}, "
        f"{os.cpu_count()} cores, torch {torch.__version__}); model: {note}"
    )
    runs = [r.strip() for r in args.run.split(",") if r.strip()]
    need_slide = any(r in ("overlap", "throughput") for r in runs)
    slide = None
    if need_slide:
        slide = Path(args.slide) if args.slide else make_slide(work, args.size, args)
    for run in runs:
        if run == "overlap":
            row = run_overlap(slide, model_path, args)
            _print_overlap(row, "Overlap")
            print("ratio of each round: " + ", ".join(f"{x:.3f}" for x in row["round_ratios"]))
        elif run == "throughput":
            row = run_throughput(slide, model_path, args)
            _print_overlap(row, "Throughput (full predict vs reading alone)")
            print(f"step timings of the last pass: {row['timings']}")
            eng = row["engine"]
            print(f"tile decoder: {eng.get('tile_decoder')}; cascade: {eng.get('cascade')}, "
                  f"skipped {eng.get('skipped_fraction')} of the candidates")  # fmt: skip
            print(
                f"peak host RSS {row['peak_rss_mb']:.0f} MB, GPU peak "
                f"{row['gpu_peak_mb'] or 0:.0f} MB"
            )
        elif run == "memory":
            sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
            rows = run_memory(sizes, model_path, args)
            print("\n## Peak memory of a fresh process predicting one slide")
            print(
                "| slide (px) | tissue MP | tiles | candidates | time (s) | RSS before "
                "predict (MB) | peak RSS (MB) | GPU peak (MB) |"
            )
            print("|---:|---:|---:|---:|---:|---:|---:|---:|")
            for r in rows:
                gpu = "" if r["gpu_peak_mb"] is None else f"{r['gpu_peak_mb']:.0f}"
                print(
                    f"| {r['size']:,} | {r['tissue_mp']:.0f} | {r['tiles']:,} | "
                    f"{r['candidates']:,} | {r['seconds']:.1f} | {r['rss_before_mb']:.0f} | "
                    f"{r['peak_rss_mb']:.0f} | {gpu} |"
                )
        else:
            raise SystemExit(f"unknown --run {run!r} (overlap, throughput, memory)")


if __name__ == "__main__":
    main()
