"""Benchmark: writing and reading QuPath GeoJSON results (100k detections by default).

Measures, for ``N`` point detections (level-0 x, y and a probability):

- ``write_results_geojson`` (streamed, atomic) into a new file, and again over
  that file (a re-run: the earlier objects are read and replaced): time, peak
  Python memory (tracemalloc, in a separate pass so its overhead does not
  distort the time) and file size;
- the baseline, measured in the same run: build the whole FeatureCollection as
  Python dicts with :func:`detection_feature` and ``json.dump`` it, as a
  straightforward exporter does;
- reading back with ``read_points`` (the evaluation path) and ``read_objects``.

Prints a table with the ratios against the baseline. Usage::

    python benchmarks/qupath_geojson.py [--n 100000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from wsdal_wsi.qupath.annotations import read_points
from wsdal_wsi.qupath.geojson_read import read_objects
from wsdal_wsi.qupath.geojson_write import detection_feature
from wsdal_wsi.qupath.results import write_results_geojson


def streamed(path: Path, dets: np.ndarray) -> None:
    path.unlink(missing_ok=True)
    write_results_geojson(path, detections=dets, provenance={"tool": "wsdal-wsi"})


def rerun(path: Path, dets: np.ndarray) -> None:
    """A second run over the first run's file: its 100k objects are read and replaced."""
    write_results_geojson(path, detections=dets, provenance={"tool": "wsdal-wsi"})


def baseline(path: Path, dets: np.ndarray) -> None:
    doc = {
        "type": "FeatureCollection",
        "features": [detection_feature(x, y, p) for x, y, p in dets.tolist()],
    }
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(doc, fh)


def timed(fn, *args, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - t0)
    return best


def peak_mb(fn, *args) -> float:
    tracemalloc.start()
    try:
        fn(*args)
        return tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="number of detections")
    ap.add_argument("--repeat", type=int, default=3, help="timing repeats (best is kept)")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    dets = np.column_stack([rng.uniform(0, 100_000, (args.n, 2)), rng.uniform(0, 1, args.n)])
    with tempfile.TemporaryDirectory() as tmp:
        a, b = Path(tmp) / "streamed.geojson", Path(tmp) / "baseline.geojson"
        rows = []
        for name, fn, path in [
            ("write_results_geojson, new file", streamed, a),
            ("write_results_geojson, re-run over it", rerun, a),
            ("baseline: dicts + json.dump", baseline, b),
        ]:
            rows.append((name, timed(fn, path, dets, repeat=args.repeat), peak_mb(fn, path, dets)))
        size_mb = a.stat().st_size / 1e6
        t_points = timed(read_points, a, repeat=1)
        t_objects = timed(read_objects, a, repeat=1)
        assert len(read_points(a)) == args.n
    t_base, m_base = rows[-1][1], rows[-1][2]
    print(
        f"QuPath GeoJSON, {args.n} detections; {platform.machine()} "
        f"({os.cpu_count()} CPUs), Python {platform.python_version()}"
    )
    print(
        f"| {'what':<40} | {'time s':>7} | {'peak MB':>8} | {'time vs baseline':>16} "
        f"| {'memory vs baseline':>18} |"
    )
    print(f"|{'-' * 42}|{'-' * 9}|{'-' * 10}|{'-' * 18}|{'-' * 20}|")
    for name, t, m in rows:
        print(
            f"| {name:<40} | {t:>7.2f} | {m:>8.1f} | {t / t_base:>15.2f}x | {m / m_base:>17.3f}x |"
        )
    print(
        f"| {'read_points (arrays, for evaluation)':<40} | {t_points:>7.2f} | {'':>8} | {'':>16} "
        f"| {'':>18} |"
    )
    print(
        f"| {'read_objects (all objects)':<40} | {t_objects:>7.2f} | {'':>8} | {'':>16} "
        f"| {'':>18} |"
    )
    print(f"file size {size_mb:.1f} MB ({size_mb * 1e6 / args.n:.0f} bytes a detection)")


if __name__ == "__main__":
    main()
