"""Accuracy benchmark: WS-DAL against the cross-entropy baseline on noisy synthetic clicks.

1. A synthetic set (``wsdal_wsi.synth``) with realistic annotation noise: 15 % of the
   mitoses missed, false ``Mitosis`` clicks on look-alikes worth 15 % of the true clicks,
   ``Mitosis-like`` clicks on some look-alikes; split **by slide** into train / validation
   (inside ``wsdal train``'s store, ``--val-fraction``) and test (``--test-fraction``).
2. One patch store for both methods; ``baseline`` and ``wsdal`` trained with the same
   preset and seed; the stage ablations (cross-entropy on the NS set, on the NS set
   without DMU's noisy samples, on DLE's kept set) from the WS-DAL run.
3. Test slides, as inference would run: tissue tiles -> candidates -> 80 px patches ->
   each model's p(mitosis) -> its validation threshold -> merge within its merge radius ->
   MIDOG one-to-one matching within 7.5 µm against the **true** mitoses. Micro-averaged
   F1 / precision / recall. The candidate recall on the test slides bounds every recall.
4. DMU's noisy flags against the injected noise: positive clicks on look-alikes, negative
   clicks on mitoses, negatives (random or mined candidates) within 7.5 µm of a missed
   mitosis.

CPU here (a small run)::

    nice python benchmarks/accuracy.py --preset demo --slides 9 --size 3072x3072

GPU, about 5 minutes on an H100 (16 CPU cores for the slides)::

    python benchmarks/accuracy.py --preset fast --device cuda --slides 16 \\
        --size 4096x4096 --workers 16

Everything lands in ``--out`` (default ``bench-accuracy/``); a rerun with the same
options reuses the data and finished training stages (``results.json`` is rewritten).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from wsdal_wsi.candidates import CandidateParams, detect_candidates, merge_points
from wsdal_wsi.evaluation import match_points, prf
from wsdal_wsi.model_file import load_model
from wsdal_wsi.qupath import read_points
from wsdal_wsi.slide import open_slide, tile_grid, tissue_mask
from wsdal_wsi.synth import AnnotationNoise, SynthParams, generate_dataset, load_dataset, parse_size
from wsdal_wsi.train.audit import flag_annotations
from wsdal_wsi.train.dmu import read_dmu_table
from wsdal_wsi.train.engine import resolve_device
from wsdal_wsi.train.extract import extract_store
from wsdal_wsi.train.presets import get_preset
from wsdal_wsi.train.run import RunSettings, train_ablation, train_from_store
from wsdal_wsi.train.store import PatchStore
from wsdal_wsi.units import um_to_px

MATCH_UM = 7.5
ABLATIONS = (("ns", "NS only"), ("ns_dmu", "NS + DMU"), ("ns_dmu_dle", "NS + DMU + DLE"))


def make_data(out: Path, args) -> tuple[list, list]:
    """Generate (or reuse) the synthetic set; return (train+val slides, test slides)."""
    data = out / "data"
    w, h = parse_size(args.size)
    params = SynthParams(
        width_px=w,
        height_px=h,
        mitoses_per_mm2=args.mitoses_per_mm2,
        lookalikes_per_mm2=args.lookalikes_per_mm2,
        hard_fraction=args.hard_fraction,
        tissue_fraction=0.7,
    )
    noise = AnnotationNoise(
        missed_fraction=0.15,
        false_click_fraction=0.15,
        click_offset_um=1.5,
        negative_click_fraction=0.2,
    )
    if not (data / "synth.json").is_file():
        generate_dataset(
            data,
            n_slides=args.slides,
            params=params,
            noise=noise,
            seed=args.seed,
            workers=args.workers,
        )
    ds = load_dataset(data)
    order = np.random.default_rng((args.seed, 5)).permutation(len(ds.slides))
    n_test = max(1, round(args.test_fraction * len(ds.slides)))
    test = [ds.slides[i] for i in sorted(order[:n_test])]
    trainval = [ds.slides[i] for i in sorted(order[n_test:])]
    folder = out / "trainval"
    folder.mkdir(parents=True, exist_ok=True)
    for s in trainval:
        for src in (s.slide_path, s.annotation_path):
            link = folder / src.name
            if not link.exists():
                os.symlink(src.resolve(), link)
    return trainval, test


def train_all(out: Path, args, device: str) -> dict[str, Path]:
    """Train baseline, WS-DAL and the ablations; return model files by method name."""
    preset = get_preset(args.preset)
    store_dir = out / "store"
    store = (
        PatchStore(store_dir)
        if PatchStore.is_complete(store_dir)
        else extract_store(
            out / "trainval",
            store_dir,
            settings=preset.extract,
            val_fraction=args.val_fraction,
            seed=args.seed,
            device=resolve_device(device),
        )
    )
    print(f"store: {len(store)} patches {store.meta['counts']}", flush=True)
    models: dict[str, Path] = {}
    for method in ("baseline", "wsdal"):
        t0 = time.perf_counter()
        s = RunSettings(
            method=method,
            preset=preset,
            seed=args.seed,
            val_fraction=args.val_fraction,
            source=str(out / "trainval"),
        )
        summary = train_from_store(store, out / method, s, device=device, resume=True)
        models[method] = Path(summary["model"])
        print(
            f"{method}: trained in {time.perf_counter() - t0:.0f} s, threshold "
            f"{summary['threshold']:.3f}, validation F1 {summary['val_f1']}",
            flush=True,
        )
    if not args.no_ablations:
        for name, label in ABLATIONS:
            t0 = time.perf_counter()
            summary = train_ablation(out / "wsdal", name, device=device)
            models[f"ablation: {label}"] = Path(summary["model"])
            print(f"ablation {label}: {time.perf_counter() - t0:.0f} s", flush=True)
    return models


def test_scores(models: dict[str, Path], test: list, *, device: torch.device, threads: int) -> dict:
    """Whole-slide evaluation of every model on the test slides (candidates found once)."""
    loaded = {k: load_model(p, device=device) for k, p in models.items()}
    spec = next(iter(loaded.values())).spec
    params = CandidateParams.from_dict(spec.candidate_params)
    t, p_px = spec.target_mpp, spec.patch_size_px
    half = p_px // 2
    margin = max(math.ceil(params.context_um() / t) + 1, half + 1)
    totals = {k: [0, 0, 0] for k in loaded}
    cand_hits = cand_truth = n_cand = 0
    area = 0.0
    for s in test:
        truth = read_points(s.truth_path, classes=["Mitosis"]).xy
        with open_slide(s.slide_path) as slide:
            mpp = slide.require_mpp()
            mask = tissue_mask(slide)
            area += mask.area_mm2(mpp)
            tiles = tile_grid(slide, target_mpp=t, tile_size_px=1024, margin_px=margin, tissue=mask)
            with ThreadPoolExecutor(threads) as pool:
                reads = pool.map(
                    lambda tl: slide.read_region(tl.location_level0, tl.size_px, target_mpp=t),
                    tiles,
                )
                xy_all, patches_all = [], []
                for tile, img in zip(tiles, reads, strict=True):
                    rgb = torch.from_numpy(img).permute(2, 0, 1)[None].to(device)
                    pts = (
                        detect_candidates(rgb, mpp=t, params=params)[0][:, :2].long().cpu().numpy()
                    )
                    pts = pts[tile.in_core(pts + 0.5)]
                    if not len(pts):
                        continue
                    pad = torch.nn.functional.pad(rgb[0], (half, half, half, half), value=255)
                    crops = torch.stack([pad[:, y : y + p_px, x : x + p_px] for x, y in pts])
                    xy_all.append(tile.to_level0(pts + 0.5))
                    patches_all.append(crops)
        if not xy_all:
            continue
        xy = np.concatenate(xy_all)
        patches = torch.cat(patches_all)
        n_cand += len(xy)
        radius = um_to_px(MATCH_UM, mpp)
        cm = match_points(xy, truth, radius_px=radius)
        cand_hits += cm.tp
        cand_truth += len(truth)
        for k, m in loaded.items():
            prob = m.predict_proba(patches, batch_size=1024).float().cpu().numpy()
            keep = prob >= m.spec.threshold
            kept = merge_points(
                xy[keep], prob[keep], radius_px=um_to_px(m.spec.merge_radius_um, mpp)
            )
            res = match_points(xy[keep][kept], truth, radius_px=radius)
            for i, v in enumerate((res.tp, res.fp, res.fn)):
                totals[k][i] += v
    out = {}
    for k, (tp, fp, fn) in totals.items():
        p, r, f = prf(tp, fp, fn)
        out[k] = {
            "f1": f,
            "precision": p,
            "recall": r,
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "threshold": loaded[k].spec.threshold,
        }
    out["_candidates"] = {
        "recall": cand_hits / max(1, cand_truth),
        "n_truth": cand_truth,
        "per_mm2": n_cand / max(area, 1e-9),
        "tissue_mm2": area,
    }
    return out


def dmu_flags(run: Path, trainval: list) -> dict:
    """Precision / recall of DMU's noisy flags against the injected noise."""
    store = PatchStore(json.loads((run / "config.json").read_text())["store"])
    flags = flag_annotations(read_dmu_table(run / "dmu"), store)
    wrong = np.zeros(len(flags), bool)
    by_name = {s.name: s for s in trainval}
    for key in set(flags.image_key):
        s = by_name[key]
        noise = json.loads(Path(s.noise_path).read_text())
        cxy = np.array([[c["x"], c["y"]] for c in noise["clicks"]]).reshape(-1, 2)
        bad = np.array([c["kind"] in ("false", "mislabelled") for c in noise["clicks"]])
        missed = np.array([[m["x"], m["y"]] for m in noise["missed"]]).reshape(-1, 2)
        radius = um_to_px(MATCH_UM, s.mpp)
        for i in np.flatnonzero(flags.image_key == key):
            xy = flags.xy_level0[i]
            if flags.kind[i] == "candidate":
                wrong[i] = bool(len(missed)) and np.linalg.norm(missed - xy, axis=1).min() <= radius
            elif len(cxy):
                wrong[i] = bad[np.argmin(np.linalg.norm(cxy - xy, axis=1))]
    out = {}
    groups = {
        "positive clicks": flags.kind == "positive_click",
        "negative clicks": flags.kind == "negative_click",
        "negatives (candidates)": flags.kind == "candidate",
        "all": np.ones(len(flags), bool),
    }
    for name, m in groups.items():
        f, w = flags.flagged & m, wrong & m
        tp = int((f & w).sum())
        out[name] = {
            "n": int(m.sum()),
            "wrong": int(w.sum()),
            "flagged": int(f.sum()),
            "precision": tp / f.sum() if f.sum() else None,
            "recall": tp / w.sum() if w.sum() else None,
        }
    return out


def _f(v) -> str:
    return "  n/a" if v is None else f"{v:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--slides", type=int, default=9)
    ap.add_argument("--size", default="3072x3072", help="slide size WxH (level-0 px)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("bench-accuracy"))
    ap.add_argument("--test-fraction", type=float, default=0.34)
    ap.add_argument("--val-fraction", type=float, default=0.2)
    ap.add_argument("--mitoses-per-mm2", type=float, default=80.0)
    ap.add_argument("--lookalikes-per-mm2", type=float, default=120.0)
    ap.add_argument("--hard-fraction", type=float, default=0.3)
    ap.add_argument("--workers", type=int, default=1, help="processes generating slides")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    ap.add_argument("--no-ablations", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    trainval, test = make_data(args.out, args)
    print(
        f"data: {len(trainval)} train+val slides, {len(test)} test slides, {args.size} px "
        f"({time.perf_counter() - t0:.0f} s)",
        flush=True,
    )
    models = train_all(args.out, args, str(device))
    t1 = time.perf_counter()
    scores = test_scores(models, test, device=device, threads=max(1, min(8, os.cpu_count() or 1)))
    flags = dmu_flags(args.out / "wsdal", trainval)
    cand = scores.pop("_candidates")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"\npreset {args.preset}, seed {args.seed}, device {device} ({name}); test: "
        f"{cand['n_truth']} true mitoses on {len(test)} slides ({cand['tissue_mm2']:.2f} mm² "
        f"tissue), candidate recall {cand['recall']:.3f}, {cand['per_mm2']:.0f} candidates/mm² "
        f"(evaluation {time.perf_counter() - t1:.0f} s)"
    )
    print(
        f"{'method':<26} {'F1':>6} {'prec':>6} {'recall':>6} {'TP':>5} {'FP':>5} {'FN':>5} "
        f"{'thresh':>6}"
    )
    for k, v in scores.items():
        print(
            f"{k:<26} {v['f1']:>6.3f} {v['precision']:>6.3f} {v['recall']:>6.3f} {v['tp']:>5} "
            f"{v['fp']:>5} {v['fn']:>5} {v['threshold']:>6.3f}"
        )
    gap = scores["wsdal"]["f1"] - scores["baseline"]["f1"]
    print(f"WS-DAL - baseline F1: {gap:+.3f}")
    print(
        f"\nDMU noisy flags vs injected noise: {'group':<24} {'n':>5} {'wrong':>5} "
        f"{'flagged':>7} {'prec':>6} {'recall':>6}"
    )
    for k, v in flags.items():
        print(
            f"{'':<35}{k:<24} {v['n']:>5} {v['wrong']:>5} {v['flagged']:>7} "
            f"{_f(v['precision']):>6} {_f(v['recall']):>6}"
        )
    result = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "device": f"{device} ({name})",
        "scores": scores,
        "candidates": cand,
        "dmu_flags": flags,
        "f1_gap": gap,
        "seconds": time.perf_counter() - t0,
    }
    (args.out / "results.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
