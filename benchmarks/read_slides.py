"""Benchmark: reading slides at a target resolution, and the tissue mask.

Measures ``Slide.read_region`` in target-resolution megapixels per second (MP/s)
with 1 and 2 threads, through OpenSlide (``open_slide(fast_tiles=False)``) and
through the raw JPEG tile path (the default where a slide allows it), against raw
OpenSlide ``read_region`` on the same tiles (the baseline, measured in the same
run), on

- a synthetic slide at 0.25 µm/px: made by ``wsdal_wsi.synth.generate_slide``
  (``--textured``: a plain textured pyramidal JPEG TIFF written here instead;
  ``--slide PATH``: any slide), read at its native 0.25 µm/px, at 0.5 µm/px
  (a pyramid level) and at 0.3 µm/px (resampled);
- CMU-1-Small-Region (0.499 µm/px), read at 0.25 µm/px (upsampled about 2x),
  against raw OpenSlide reads of the same level-0 area.

and the time of ``tissue_mask`` on each. Usage::

    python benchmarks/read_slides.py [--size 8192] [--tile 1024] [--threads 1 2]
        [--repeats 3] [--cmu ../shared/data/slides/cmu-1-small-region.svs]
        [--slide PATH | --textured]

Each rate is the best of ``--repeats`` passes (the machine is shared).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CMU = REPO.parent / "shared" / "data" / "slides" / "cmu-1-small-region.svs"


def write_textured_slide(path: Path, size_px: int, *, mpp: float = 0.25, seed: int = 0) -> Path:
    """Write an H&E-coloured textured pyramidal JPEG TIFF, tile by tile (256 px tiles)."""
    import tifffile

    rng = np.random.default_rng(seed)
    # A bank of textured tiles (pink stroma, purple nuclei-like blobs), reused with shifts.
    bank = []
    for _ in range(16):
        base = np.empty((256, 256, 3), np.float32)
        base[:] = (225, 160, 200)
        noise = rng.normal(0, 1, (64, 64)).repeat(4, 0).repeat(4, 1)
        nuclei = noise > 1.2
        base[nuclei] = (120, 70, 160)
        base += rng.normal(0, 8, base.shape)
        bank.append(np.clip(base, 0, 255).astype(np.uint8))

    def tiles(h: int, w: int, level: int) -> Iterator[np.ndarray]:
        for y in range(0, h, 256):
            for x in range(0, w, 256):
                yield bank[(x // 256 * 7 + y // 256 * 3 + level) % len(bank)]

    sizes = []
    side = size_px
    while True:
        sizes.append(side)
        if side <= 1024:
            break
        side //= 2
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        for level, side in enumerate(sizes):
            tw.write(
                tiles(side, side, level),
                shape=(side, side, 3),
                dtype="uint8",
                tile=(256, 256),
                compression="jpeg",
                compressionargs={"level": 90},
                photometric="rgb",
                resolution=(1e4 / (mpp * 2**level),) * 2,
                resolutionunit="CENTIMETER",
                subfiletype=1 if level else 0,
                metadata=None,
            )
    return path


def _seconds(
    make_reader: Callable[[], Any],
    read: Callable[[Any, tuple[float, float]], object],
    locations: list,
    threads: int,
    repeats: int,
) -> float:
    """Best time of ``repeats`` passes over ``locations``, each with a freshly opened reader.

    A fresh reader per pass keeps OpenSlide's tile cache and our decoded-tile
    cache cold, as they are for a slide streamed once.
    """
    best = float("inf")
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(repeats):
            reader = make_reader()
            try:
                start = time.perf_counter()
                if threads == 1:
                    for location in locations:
                        read(reader, location)
                else:
                    for _ in pool.map(lambda loc, r=reader: read(r, loc), locations):
                        pass
                best = min(best, time.perf_counter() - start)
            finally:
                reader.close()
    return best


def _grid(slide_w: float, slide_h: float, step: float, count: int) -> list[tuple[float, float]]:
    """Up to ``count`` distinct, non-overlapping tile origins (level-0), row by row."""
    cols = max(1, int(slide_w // step))
    rows = max(1, int(slide_h // step))
    cells = [(c * step, r * step) for r in range(rows) for c in range(cols)]
    return cells[:count]


def bench_slide(
    path: Path, *, targets: list[float], tile: int, threads: list[int], count: int, repeats: int
) -> list[tuple[str, ...]]:
    """Table rows for one slide (see :data:`HEADER`)."""
    import openslide

    from wsdal_wsi.slide import open_slide, tissue_mask
    from wsdal_wsi.slide._geometry import choose_level

    rows = []
    with open_slide(path) as slide:
        fast_available = slide.info()["reader"] == "raw JPEG tiles"
        width, height = slide.dimensions
        for target in targets:
            f = slide.level0_per_px(target)
            locations = _grid(width - tile * f, height - tile * f, tile * f, count)
            # Baseline: raw OpenSlide reading the same level-0 area from the level we use.
            level = choose_level(slide.level_downsamples, f)
            downsample = slide.level_downsamples[level]
            raw_side = max(1, round(tile * f / downsample))
            megapixels = len(locations) * tile * tile / 1e6

            def raw_read(reader: Any, loc: tuple[float, float], lv=level, s=raw_side) -> object:
                return reader.read_region((int(loc[0]), int(loc[1])), lv, (s, s))

            def ours(reader: Any, loc: tuple[float, float], t=target) -> object:
                return reader.read_region(loc, (tile, tile), target_mpp=t)

            for n in threads:
                t_raw = _seconds(
                    lambda: openslide.OpenSlide(str(path)), raw_read, locations, n, repeats
                )
                t_slow = _seconds(
                    lambda: open_slide(path, fast_tiles=False), ours, locations, n, repeats
                )
                t_fast = (
                    _seconds(lambda: open_slide(path), ours, locations, n, repeats)
                    if fast_available
                    else None
                )
                rows.append(
                    (
                        slide.name,
                        f"read_region {tile}² (level {level}, x{f / downsample:.3g})",
                        f"{target:g}",
                        str(n),
                        f"{megapixels / t_raw:.1f}",
                        f"{megapixels / t_slow:.1f}",
                        f"{megapixels / t_fast:.1f}" if t_fast else "n/a",
                        f"{t_raw / t_fast:.2f}" if t_fast else "n/a",
                    )
                )
        elapsed = float("inf")
        for _ in range(repeats):
            with open_slide(path) as fresh:
                start = time.perf_counter()
                mask = tissue_mask(fresh)
                elapsed = min(elapsed, time.perf_counter() - start)
        rows.append(
            (
                slide.name,
                f"tissue_mask {mask.mask.shape[1]}x{mask.mask.shape[0]} px @ 8 µm/px",
                "8",
                "1",
                "",
                f"{elapsed * 1e3:.0f} ms",
                "",
                "",
            )
        )
    return rows


HEADER = (
    "slide",
    "what",
    "target µm/px",
    "threads",
    "OpenSlide only",
    "read_region (OpenSlide)",
    "read_region (raw tiles)",
    "raw tiles / OpenSlide only",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=8192, help="synthetic slide side (px)")
    parser.add_argument("--tile", type=int, default=1024, help="tile side at target (px)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--count", type=int, default=40, help="tiles per measurement")
    parser.add_argument("--cmu", type=Path, default=DEFAULT_CMU)
    parser.add_argument("--slide", type=Path, help="benchmark this slide instead of generating one")
    parser.add_argument(
        "--textured", action="store_true", help="generate a plain textured slide, not wsdal synth's"
    )
    parser.add_argument("--repeats", type=int, default=3, help="passes per rate (best is kept)")
    args = parser.parse_args(argv)

    rows: list[tuple[str, ...]] = []
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        if args.slide:
            synthetic = args.slide
        elif args.textured:
            synthetic = write_textured_slide(Path(tmp) / "textured.tiff", args.size)
        else:
            from wsdal_wsi.synth import SynthParams, generate_slide

            params = SynthParams(width_px=args.size, height_px=args.size, mpp=0.25)
            synthetic = generate_slide(tmp, name="synth", params=params, seed=1).slide_path
        if not args.slide:
            print(
                f"generated {synthetic.name} ({args.size}² px, 0.25 µm/px) in "
                f"{time.perf_counter() - start:.1f} s",
                file=sys.stderr,
            )
        rows += bench_slide(
            synthetic,
            targets=[0.25, 0.5, 0.3],
            tile=args.tile,
            threads=args.threads,
            count=args.count,
            repeats=args.repeats,
        )
    if args.cmu.is_file():
        # CMU-1 is small (2220 x 2967 px): 512² tiles at 0.25 µm/px fit 8 x 11 times.
        rows += bench_slide(
            args.cmu,
            targets=[0.25],
            tile=512,
            threads=args.threads,
            count=args.count,
            repeats=args.repeats,
        )
    else:
        print(f"skipping CMU-1: {args.cmu} not found", file=sys.stderr)

    widths = [max(len(r[i]) for r in [HEADER, *rows]) for i in range(len(HEADER))]
    print(
        f"machine: {os.cpu_count()} CPU cores. Rates in MP/s, MP = megapixels at the target "
        "resolution, best of the passes, caches cold. 'OpenSlide only': raw OpenSlide "
        "read_region of the same level-0 area from the same level (no conversion, no "
        "resampling): the baseline, measured in the same run."
    )
    print("  ".join(h.ljust(w) for h, w in zip(HEADER, widths, strict=True)))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
