"""Benchmark: ``wsdal predict --ray`` on this machine, as ratios measured in one run.

One folder of synthetic slides (``wsdal_wsi.synth``, cached in ``--work``) is predicted
three times, each into a fresh output folder, with the same model and settings:

``plain``
    ``run_batch`` in this process, one slide after the other, one torch thread and
    one tile reader (what a one-CPU Ray task gets), so that the next row differs
    only by Ray.
``ray x1``
    ``RayExecutor("local")`` with a local Ray of 1 CPU: one task at a time.
``ray x2``
    The same with 2 CPUs: two slides at a time.

Every wall time includes what a user pays: for Ray, starting the local instance,
its workers importing torch, shipping the model, and stopping it. Printed:
*overhead* = ray x1 / plain (Ray's cost for one worker), *speed-up* = ray x1 /
ray xN, *efficiency* = speed-up / N. The detections of every slide are checked to
be identical in the three runs.

On a shared machine the timings are noisy: rerun on a quiet one for the numbers in
RESULTS.md. The default model is an untrained network of the real architecture
(full-width ResNet-18, 80 px patches): timing does not depend on the weights.

Usage::

    python benchmarks/ray_predict.py                       # 4 slides of 2048 x 2048 px
    python benchmarks/ray_predict.py --slides 8 --size 4096 --workers 1,2,4
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

from bench_inputs import bench_model  # this script's folder is on sys.path


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def slide_folder(work: Path, n: int, size_px: int) -> Path:
    """``n`` synthetic slides of ``size_px`` square with sidecars (generated once)."""
    from wsdal_wsi.synth import AnnotationNoise, SynthParams, generate_dataset

    folder = work / f"ray_slides_{n}x{size_px}"
    if (folder / "synth.json").is_file():
        return folder
    _log(f"generating {n} synthetic slides of {size_px} x {size_px} px ...")
    params = SynthParams(width_px=size_px, height_px=size_px, mpp=0.25)
    generate_dataset(folder, n_slides=n, params=params, noise=AnnotationNoise(), seed=7)
    return folder


def detections(out: Path) -> dict[str, list]:
    """Every slide's detections (points and probabilities) of an output folder."""
    found = {}
    for path in sorted(out.glob("*.geojson")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        found[path.stem] = [
            (f["geometry"]["coordinates"], f["properties"]["measurements"])
            for f in doc["features"]
            if f["properties"].get("objectType") == "detection"
        ]
    return found


def run(config: str, folder: Path, model: Path, out: Path, *, cpus: int) -> float:
    """Wall seconds of one batch (``plain`` or ``ray``) into a fresh ``out``."""
    import torch

    from wsdal_wsi.predict import PredictSettings, RayExecutor, run_batch
    from wsdal_wsi.qupath import open_source

    shutil.rmtree(out, ignore_errors=True)
    settings = PredictSettings(device="cpu")
    executor = None
    if config == "plain":
        torch.set_num_threads(1)
        settings = PredictSettings(device="cpu", reader_threads=1)
    else:
        executor = RayExecutor("local", local_cpus=cpus, cpus_per_slide=1)
    t0 = time.perf_counter()
    result = run_batch(open_source(folder), model, out, settings=settings, executor=executor)
    seconds = time.perf_counter() - t0
    failed = [im.key for im in result.state.images if im.status != "done"]
    if failed:
        raise SystemExit(f"{config}: slides not done: {failed}")
    return seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default="/tmp/wsdal-bench", help="cache of slides and outputs")
    p.add_argument("--slides", type=int, default=4, help="slides in the folder")
    p.add_argument("--size", type=int, default=2048, help="slide side, px at 0.25 µm/px")
    p.add_argument("--workers", default="1,2", help="Ray CPUs (= concurrent slide tasks)")
    p.add_argument("--model", default=None, help="a model file (default: untrained ResNet-18)")
    args = p.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    folder = slide_folder(work, args.slides, args.size)
    model, note = bench_model(work, args.model)
    workers = [int(w) for w in args.workers.split(",")]
    rows = []
    _log("plain batch ...")
    plain = run("plain", folder, model, work / "out_plain", cpus=1)
    rows.append(("plain", 1, plain))
    reference = detections(work / "out_plain")
    for n in workers:
        _log(f"ray x{n} ...")
        seconds = run("ray", folder, model, work / f"out_ray{n}", cpus=n)
        rows.append((f"ray x{n}", n, seconds))
        if detections(work / f"out_ray{n}") != reference:
            raise SystemExit(f"ray x{n}: detections differ from the plain run")
    ray1 = next((s for name, n, s in rows if name == "ray x1"), None)
    print(f"# Ray prediction: {args.slides} slides of {args.size} x {args.size} px, {note}")
    print(f"# {platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print("| run | workers | wall s | slides/min | vs plain | speed-up vs ray x1 | efficiency |")
    print("|---|---|---|---|---|---|---|")
    for name, n, s in rows:
        speed = f"{ray1 / s:.2f}" if ray1 and name.startswith("ray") else ""
        eff = f"{ray1 / s / n:.2f}" if ray1 and name.startswith("ray") else ""
        print(
            f"| {name} | {n} | {s:.1f} | {args.slides / s * 60:.1f} | {s / plain:.2f} "
            f"| {speed} | {eff} |"
        )
    print("detections identical in every run: yes")


if __name__ == "__main__":
    main()
