"""Speed-up of ``wsdal predict`` on the CPU against a baseline commit, in one run.

Used by ``benchmarks/predict.py --run speedup``. The baseline is another commit of
this repository (default: the last one before the CPU speed-up work), extracted
with ``git archive`` into the work folder and run from there; today's code is
this checkout. Every measurement is a fresh process (``--child-speed``) that
loads the model and predicts every held-out slide once (after a small warm-up of
the kernels), timed with the tissue mask included, as ``wsdal predict`` runs it.
Rounds alternate baseline and today's code (with and without the cascade), so a
burst of load from other jobs hits them alike; the table shows the median of the
rounds and each round.

Inputs: a finished ``wsdal demo`` run (``--demo DIR``: its trained model and its
held-out test slides with their ground truth) and a full-width model: an
untrained ResNet-18 at width 64 (timing does not depend on the weights) carrying
the demo model's cascade (the first stage and its thresholds; the fraction it
skips is the demo model's). F1 is only meaningful for the demo model.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

#: The last commit before the CPU speed-up (separable candidate maps, cascade, ...).
BASELINE_REF = "344a005"
REPO = Path(__file__).resolve().parents[1]


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def baseline_tree(work: Path, ref: str) -> Path:
    """The baseline commit's files in ``work/baseline-<sha>`` (``git archive``, once)."""
    sha = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short=10", ref],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    tree = work / f"baseline-{sha}"
    if not (tree / "wsdal_wsi" / "__init__.py").is_file():
        tree.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", sha], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def full_width_model(work: Path, demo_model: Path) -> Path:
    """An untrained full-width ResNet-18 model file carrying the demo model's cascade."""
    import torch

    from wsdal_wsi.model.file import ModelSpec, read_spec, save_model
    from wsdal_wsi.model.nets import ProjNet

    path = work / "untrained_w64_with_demo_cascade.pt"
    if path.is_file():
        return path
    demo = read_spec(demo_model)
    payload = torch.load(demo_model, map_location="cpu", weights_only=True)
    torch.manual_seed(0)
    kwargs = {"width": 64, "proj_dim": 128, "input_px": None}
    spec = ModelSpec.from_dict(
        {**json.loads(demo.to_json()), "arch_kwargs": kwargs,
         "provenance": {"benchmark": "untrained full width, the demo model's cascade"}}
    )  # fmt: skip
    save_model(path, ProjNet(**kwargs).eval(), spec)
    if "cascade" in payload:  # the same first stage and table, on the untrained network
        full = torch.load(path, map_location="cpu", weights_only=True)
        full["cascade"] = payload["cascade"]
        torch.save(full, path)
    return path


def child_speed(slides: list[Path], model_path: Path, *, cascade: bool) -> dict[str, Any]:
    """Predict every slide once in this process (the code on ``sys.path`` first)."""
    import inspect

    import torch

    import wsdal_wsi
    from wsdal_wsi.model.file import load_model
    from wsdal_wsi.predict import predict_slide
    from wsdal_wsi.slide import open_slide

    model = load_model(model_path, device="cpu")
    p = int(model.spec.patch_size_px)
    model.predict_proba(torch.zeros((4, 3, p, p), dtype=torch.uint8))  # warm-up
    opts = {}
    if "cascade" in inspect.signature(predict_slide).parameters:
        opts["cascade"] = cascade
    out = []
    for path in slides:
        with open_slide(path) as slide:
            t0, c0 = time.perf_counter(), time.process_time()
            pred = predict_slide(slide, model, **opts)
            seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        out.append({
            "slide": str(path),
            "seconds": seconds,
            "cpu_s": cpu,
            "tissue_mp": pred.tissue_mp,
            "candidates": pred.n_candidates,
            "full": getattr(pred, "n_full", pred.n_candidates),
            "points": pred.points_level0.tolist(),
            "timings": pred.timings,
        })  # fmt: skip
    return {
        "code": str(Path(wsdal_wsi.__file__).resolve().parent),
        "torch_threads": torch.get_num_threads(),
        "slides": out,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }


def _run_child(tree: Path, slides: list[Path], model: Path, *, cascade: bool, threads: int | None):
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = [sys.executable, str(Path(__file__).with_name("predict.py")), "--child-speed",
           ",".join(map(str, slides)), "--model", str(model)]  # fmt: skip
    if not cascade:
        cmd.append("--no-cascade")
    if threads:
        cmd += ["--torch-threads", str(threads)]
    res = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env, cwd=tree)
    return json.loads(res.stdout.strip().splitlines()[-1])


def _f1(result: dict[str, Any], truth: dict[str, np.ndarray], radius_px: float) -> float:
    from wsdal_wsi.evaluation.matching import match_points, prf

    tp = fp = fn = 0
    for s in result["slides"]:
        pts = np.asarray(s["points"], dtype=np.float64).reshape(-1, 2)
        m = match_points(pts, truth[s["slide"]], radius_px=radius_px)
        tp, fp, fn = tp + m.tp, fp + m.fp, fn + m.fn
    return prf(tp, fp, fn)[2]


def run_speedup(args) -> list[dict[str, Any]]:
    """Rows of the speed-up table (one per model and code), measured in alternating rounds."""
    from wsdal_wsi.evaluation.folders import read_mitosis_points

    work = Path(args.work)
    demo = Path(args.demo)
    demo_model = demo / "train" / "model.pt"
    slides = sorted((demo / "data" / "test").glob("*.tiff"))
    if not demo_model.is_file() or not slides:
        raise SystemExit(f"{demo}: not a finished `wsdal demo` run (run `wsdal demo --out {demo}`)")
    truth = {
        str(s): read_mitosis_points(s.parent / "truth" / f"{s.stem}.geojson", role="truth")
        for s in slides
    }
    base = baseline_tree(work, args.baseline_ref)
    models = {"demo model (ResNet-18 width 16)": demo_model}
    if not args.demo_only:
        models["full width (untrained ResNet-18 width 64)"] = full_width_model(work, demo_model)
    variants = [("baseline", base, False), ("today, --no-cascade", REPO, False),
                ("today, cascade", REPO, True)]  # fmt: skip
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in range(args.repeat):
        for name, model in models.items():
            for label, tree, cascade in variants:
                res = _run_child(tree, slides, model, cascade=cascade, threads=args.torch_threads)
                results.setdefault((name, label), []).append(res)
                secs = sum(s["seconds"] for s in res["slides"])
                _log(f"round {r + 1}: {name} / {label}: {secs:.1f} s")
    return _rows(results, truth, radius_px=7.5 / 0.25)


def _rows(results, truth, *, radius_px: float) -> list[dict[str, Any]]:
    rows = []
    for (name, label), runs in results.items():
        rates = [sum(s["tissue_mp"] for s in r["slides"]) / sum(s["seconds"] for s in r["slides"])
                 for r in runs]  # fmt: skip
        last = runs[-1]["slides"]
        cand = sum(s["candidates"] for s in last)
        full = sum(s["full"] for s in last)
        cpu = [sum(s["tissue_mp"] for s in r["slides"]) / sum(s["cpu_s"] for s in r["slides"])
               for r in runs]  # fmt: skip
        rows.append({
            "model": name, "code": label, "mp_s": statistics.median(rates), "rounds": rates,
            "mp_cpu_s": statistics.median(cpu), "cpu_rounds": cpu,
            "candidates": cand, "full": full, "skipped": 1 - full / cand if cand else 0.0,
            "f1": _f1(runs[-1], truth, radius_px),
            "detections": sum(len(s["points"]) for s in last),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
            "seconds": statistics.median(sum(s["seconds"] for s in r["slides"]) for r in runs),
        })  # fmt: skip
    for row in rows:
        ref = next(r for r in rows if r["model"] == row["model"] and r["code"] == "baseline")
        row["ratio"] = row["mp_s"] / ref["mp_s"]
        row["round_ratios"] = [a / b for a, b in zip(row["rounds"], ref["rounds"], strict=True)]
        row["cpu_ratio"] = row["mp_cpu_s"] / ref["mp_cpu_s"]
    return rows


def print_speedup(rows: list[dict[str, Any]], args) -> None:
    print(f"\n## Speed-up of whole-slide prediction on the CPU (baseline {args.baseline_ref})")
    threads = args.torch_threads or "default"
    print(f"held-out slides of {args.demo}/data/test; medians of {args.repeat} alternating "
          f"rounds, fresh process each, tissue mask included, torch threads {threads}; CPU s: "
          "the process's user + system time over the predictions (all threads)")  # fmt: skip
    print("| model | code | tissue MP/s | ratio | ratio per round | tissue MP per CPU s | ratio "
          "| candidates | scored by the final network | skipped | detections | test F1 "
          "| peak RSS (MB) |")  # fmt: skip
    print("|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        f1 = f"{r['f1']:.4f}" if r["model"].startswith("demo") else "(untrained)"
        per = ", ".join(f"{x:.2f}" for x in r["round_ratios"])
        print(f"| {r['model']} | {r['code']} | {r['mp_s']:.1f} | **{r['ratio']:.2f}** | {per} | "
              f"{r['mp_cpu_s']:.1f} | {r['cpu_ratio']:.2f} | {r['candidates']:,} | "
              f"{r['full']:,} | {r['skipped']:.3f} | {r['detections']} | {f1} | "
              f"{r['peak_rss_mb']:.0f} |")  # fmt: skip
