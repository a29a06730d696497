"""Accuracy benchmark: WS-DAL against the cross-entropy baseline on noisy synthetic clicks.

1. One synthetic set (``wsdal_wsi.synth``, generated once with ``--data-seed``) with
   realistic annotation noise: 15 % of the mitoses missed, false ``Mitosis`` clicks on
   look-alikes worth 15 % of the true clicks, ``Mitosis-like`` clicks on some look-alikes;
   split **by slide** into train, validation (``--val-slides``: where each model's
   F1-maximising threshold is chosen, against the noisy clicks) and test
   (``--test-slides``: scored against the true mitoses).
2. One patch store for every method and seed (extracted once), so the runs differ only by
   the method and the training seed. For every training seed (``--seeds``): ``baseline``
   and ``wsdal`` with the same preset, and the stage ablations (cross-entropy on the NS
   set, on the NS set without DMU's noisy samples, on DLE's kept set) from that seed's
   WS-DAL run. ``--jobs`` trains seeds in parallel processes.
3. Test slides, as inference would run: tissue tiles -> candidates -> 80 px patches (found
   once, cached in ``test_candidates.npz``) -> each model's p(mitosis) -> its validation
   threshold -> merge within its merge radius -> MIDOG one-to-one matching within 7.5 µm
   against the **true** mitoses; micro-averaged F1 / precision / recall. Also, as a
   diagnostic of the ranking alone, the F1 at the best threshold *on the test slides*
   ("oracle F1": not achievable in practice) and how many false positives lie on
   look-alikes.
4. DMU's noisy flags against the injected noise, per annotation (a click with its jittered
   copies is one): positive clicks on look-alikes, negative clicks on mitoses, negatives
   (random or mined candidates) within 7.5 µm of a missed mitosis.
5. Mean, standard deviation and range over the seeds per method; the WS-DAL - baseline gap
   per seed (paired: same seed, same data); the cost of every training run (wall and CPU
   seconds of the process that ran it).

CPU here (2 cores; about 40 minutes: 2,016 s of training and 160 s of evaluation)::

    nice python benchmarks/accuracy.py --preset demo --slides 14 --size 3072x3072 \\
        --test-slides 5 --val-slides 3 --seeds 0,1,2 --jobs 2 --out bench-accuracy

GPU, one seed in about 5 minutes on an H100 (16 CPU cores for the slides)::

    python benchmarks/accuracy.py --preset fast --device cuda --slides 16 \\
        --size 4096x4096 --workers 16 --seeds 0

Everything lands in ``--out``; a rerun with the same options reuses the data, the store, the
test candidates and every finished training stage (``results.json`` is rewritten).
``--tag`` puts the runs in their own folder (same data and store), e.g. to compare
``--set dmu.lr=3e-4`` variants of the WS-DAL preset.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import os
import resource
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch

# the tables (this script's folder is on sys.path when it runs as a script)
from accuracy_report import report

from wsdal_wsi.detect.candidates import CandidateParams, detect_candidates, merge_points
from wsdal_wsi.evaluation import match_points, prf, threshold_sweep
from wsdal_wsi.model.device import resolve_device
from wsdal_wsi.model.file import load_model
from wsdal_wsi.qupath import read_points
from wsdal_wsi.slide import open_slide, tile_grid, tissue_mask
from wsdal_wsi.synth import REALISTIC_NOISE, SynthParams, generate_dataset, load_dataset, parse_size
from wsdal_wsi.train.audit import flag_annotations
from wsdal_wsi.train.dmu import read_dmu_table
from wsdal_wsi.train.extract import extract_store
from wsdal_wsi.train.presets import get_preset
from wsdal_wsi.train.run import RunSettings, train_ablation, train_from_store
from wsdal_wsi.train.store import PatchStore
from wsdal_wsi.units import um_to_px

MATCH_UM = 7.5
ABLATIONS = (("ns", "NS only"), ("ns_dmu", "NS + DMU"), ("ns_dmu_dle", "NS + DMU + DLE"))
LOOKALIKES = ("Apoptotic body", "Pyknotic nucleus", "Lymphocyte")


# ----------------------------------------------------------------------------- data


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
    noise = REALISTIC_NOISE
    if not (data / "synth.json").is_file():
        generate_dataset(
            data,
            n_slides=args.slides,
            params=params,
            noise=noise,
            seed=args.data_seed,
            workers=args.workers,
        )
    ds = load_dataset(data)
    if len(ds.slides) != args.slides:
        raise SystemExit(f"{data} holds {len(ds.slides)} slides, not --slides {args.slides}")
    if args.test_slides + args.val_slides >= len(ds.slides):
        raise SystemExit("--test-slides + --val-slides must leave training slides")
    order = np.random.default_rng((args.data_seed, 5)).permutation(len(ds.slides))
    test = [ds.slides[i] for i in sorted(order[: args.test_slides])]
    trainval = [ds.slides[i] for i in sorted(order[args.test_slides :])]
    folder = out / "trainval"
    folder.mkdir(parents=True, exist_ok=True)
    for s in trainval:
        for src in (s.slide_path, s.annotation_path):
            link = folder / src.name
            if not link.exists():
                os.symlink(src.resolve(), link)
    return trainval, test


def make_store(out: Path, args, n_trainval: int, device: str) -> PatchStore:
    """The patch store of the train+val slides (extracted once, ``--val-slides`` for val)."""
    preset = get_preset(args.preset)
    store_dir = out / "store"
    if PatchStore.is_complete(store_dir):
        return PatchStore(store_dir)
    t0, c0 = time.perf_counter(), time.process_time()
    store = extract_store(
        out / "trainval",
        store_dir,
        settings=preset.extract,
        val_fraction=args.val_slides / n_trainval,
        seed=args.data_seed,
        device=resolve_device(device),
    )
    _write_json(
        out / "store_cost.json",
        {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0},
    )
    return store


def test_candidates(out: Path, test: list, spec, *, device: torch.device, threads: int) -> dict:
    """Candidates and their patches on the test slides (found once, cached)."""
    path = out / "test_candidates.npz"
    if path.is_file():
        z = np.load(path, allow_pickle=False)
        return {k: z[k] for k in z.files}
    params = CandidateParams.from_dict(spec.candidate_params)
    t, p_px = spec.target_mpp, spec.patch_size_px
    half = p_px // 2
    margin = max(math.ceil(params.context_um() / t) + 1, half + 1)
    xy_l, patch_l, slide_l, truth_l, truth_slide_l, look_l, look_slide_l = ([] for _ in range(7))
    mpp_l, area = [], 0.0
    for si, s in enumerate(test):
        truth = read_points(s.truth_path, classes=["Mitosis"]).xy
        look = read_points(s.truth_path, classes=list(LOOKALIKES)).xy
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
                    xy_l.append(tile.to_level0(pts + 0.5))
                    patch_l.append(crops.cpu().numpy())
                    slide_l.append(np.full(len(pts), si))
        truth_l.append(truth)
        truth_slide_l.append(np.full(len(truth), si))
        look_l.append(look)
        look_slide_l.append(np.full(len(look), si))
        mpp_l.append(mpp)
    cache = {
        "xy": np.concatenate(xy_l),
        "patches": np.concatenate(patch_l),
        "slide": np.concatenate(slide_l),
        "truth": np.concatenate(truth_l).reshape(-1, 2),
        "truth_slide": np.concatenate(truth_slide_l),
        "look": np.concatenate(look_l).reshape(-1, 2),
        "look_slide": np.concatenate(look_slide_l),
        "mpp": np.array(mpp_l),
        "tissue_mm2": np.array(area),
    }
    np.savez(path, **cache)
    return cache


# ----------------------------------------------------------------------------- training


def _overrides(pairs: list[str]) -> dict:
    out = {}
    for p in pairs:
        key, _, value = p.partition("=")
        try:
            out[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            out[key.strip()] = value.strip()
    return out


def _timed(costs: dict, name: str, fn, *a, **kw):
    """Run ``fn``; record its wall and CPU seconds under ``name`` unless it only reloaded."""
    t0, c0 = time.perf_counter(), time.process_time()
    summary = fn(*a, **kw)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if name not in costs or wall > 5.0:  # a reload of a finished run takes ~1 s
        costs[name] = {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1)}
    return summary


def train_seed(out: str, run_dir: str, args_d: dict, seed: int, device: str) -> dict:
    """Train baseline, WS-DAL and the ablations for one seed; return model files and costs.

    Runs in a worker process with ``args_d["threads"]`` torch threads.
    """
    torch.set_num_threads(max(1, int(args_d["threads"])))
    out_p, run_p = Path(out), Path(run_dir)
    store = PatchStore(out_p / "store")
    preset = get_preset(args_d["preset"])
    if args_d["set"]:
        preset = preset.replace(**_overrides(args_d["set"]))
    cost_path = run_p / "costs.json"
    costs = json.loads(cost_path.read_text()) if cost_path.is_file() else {}
    models: dict[str, str] = {}
    info: dict[str, dict] = {}
    for method in args_d["methods"]:
        s = RunSettings(
            method=method,
            preset=preset,
            seed=seed,
            val_fraction=store.meta["settings"]["val_fraction"],
            source=str(out_p / "trainval"),
        )
        summary = _timed(
            costs, method, train_from_store, store, run_p / method, s, device=device, resume=True
        )
        models[method] = summary["model"]
        info[method] = {"threshold": summary["threshold"], "val_f1": summary["val_f1"]}
        _write_json(cost_path, costs)
        print(
            f"seed {seed} {method}: threshold {summary['threshold']:.3f}, validation F1 "
            f"{summary['val_f1']}, {costs[method]}",
            flush=True,
        )
    if "wsdal" in args_d["methods"] and not args_d["no_ablations"]:
        for name, label in ABLATIONS:
            summary = _timed(
                costs, f"ablation {name}", train_ablation, run_p / "wsdal", name, device=device
            )
            models[f"ablation: {label}"] = summary["model"]
            info[f"ablation: {label}"] = {
                "threshold": summary["threshold"],
                "val_f1": summary["val_f1"],
            }
            _write_json(cost_path, costs)
            print(f"seed {seed} ablation {label}: {costs[f'ablation {name}']}", flush=True)
    return {"models": models, "costs": costs, "info": info}


# ----------------------------------------------------------------------------- scoring


def score_model(model, cache: dict, *, merge: bool = True) -> dict:
    """Whole-slide test metrics of one model on the cached test candidates."""
    patches = torch.from_numpy(cache["patches"])
    prob = model.predict_proba(patches, batch_size=512).float().cpu().numpy()
    tp = fp = fn = fp_look = 0
    sweep_images = []
    for si, mpp in enumerate(cache["mpp"]):
        m = cache["slide"] == si
        xy, p = cache["xy"][m], prob[m]
        truth = cache["truth"][cache["truth_slide"] == si]
        look = cache["look"][cache["look_slide"] == si]
        radius = um_to_px(MATCH_UM, float(mpp))
        keep = p >= model.spec.threshold
        kept = merge_points(xy[keep], p[keep], radius_px=um_to_px(model.spec.merge_radius_um, mpp))
        det = xy[keep][kept]
        res = match_points(det, truth, radius_px=radius)
        tp, fp, fn = tp + res.tp, fp + res.fp, fn + res.fn
        if res.fp and len(look):
            unmatched = np.ones(len(det), bool)
            unmatched[res.pred_index] = False
            d = np.linalg.norm(det[unmatched][:, None] - look[None], axis=2).min(axis=1)
            fp_look += int(np.sum(d <= radius))
        # greedy merging keeps a point or not by the points above it only: merging all
        # candidates once gives, at every threshold, the detections inference makes
        surv = merge_points(xy, p, radius_px=um_to_px(model.spec.merge_radius_um, mpp))
        sweep_images.append((xy[surv], p[surv].astype(np.float64), truth, radius))
    p_, r_, f_ = prf(tp, fp, fn)
    sweep = threshold_sweep(sweep_images)
    best = int(np.argmax(sweep.f1)) if sweep.thresholds.size else 0
    return {
        "f1": f_,
        "precision": p_,
        "recall": r_,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "fp_on_lookalikes": fp_look,
        "threshold": model.spec.threshold,
        "oracle_f1": float(sweep.f1[best]) if sweep.thresholds.size else 0.0,
        "oracle_threshold": float(sweep.thresholds[best]) if sweep.thresholds.size else None,
    }


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
            "correct_flags": tp,
            "precision": tp / f.sum() if f.sum() else None,
            "recall": tp / w.sum() if w.sum() else None,
        }
    return out


def _write_json(path: Path, obj) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=float))
    os.replace(tmp, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--slides", type=int, default=14)
    ap.add_argument("--size", default="3072x3072", help="slide size WxH (level-0 px)")
    ap.add_argument("--test-slides", type=int, default=5)
    ap.add_argument("--val-slides", type=int, default=3)
    ap.add_argument("--data-seed", type=int, default=0, help="synthetic data, split and store")
    ap.add_argument("--seeds", default="0,1,2", help="training seeds, comma-separated")
    ap.add_argument("--methods", default="baseline,wsdal")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="STAGE.FIELD=VALUE",
        help="preset override for every method (repeatable)",
    )
    ap.add_argument("--tag", default="runs", help="folder of the training runs inside --out")
    ap.add_argument("--out", type=Path, default=Path("bench-accuracy"))
    ap.add_argument("--mitoses-per-mm2", type=float, default=80.0)
    ap.add_argument("--lookalikes-per-mm2", type=float, default=120.0)
    ap.add_argument("--hard-fraction", type=float, default=0.3)
    ap.add_argument("--workers", type=int, default=1, help="processes generating slides")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads per training job")
    ap.add_argument("--jobs", type=int, default=1, help="seeds trained in parallel processes")
    ap.add_argument("--no-ablations", action="store_true")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    torch.set_num_threads(max(1, args.threads))
    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    trainval, test = make_data(out, args)
    store = make_store(out, args, len(trainval), str(device))
    n_val = sum(1 for im in store.images if im["split"] == "val")
    print(
        f"data: {len(trainval) - n_val} train, {n_val} validation, {len(test)} test slides, "
        f"{args.size} px; store {len(store)} patches {store.meta['counts']} "
        f"({time.perf_counter() - t0:.0f} s)",
        flush=True,
    )
    runs = out / args.tag
    args_d = {
        "preset": args.preset,
        "set": args.set,
        "methods": methods,
        "no_ablations": args.no_ablations,
        "threads": args.threads,
    }
    jobs = [(str(out), str(runs / f"seed{s}"), args_d, s, str(device)) for s in seeds]
    t1 = time.perf_counter()
    if args.jobs > 1 and len(seeds) > 1:
        with ProcessPoolExecutor(min(args.jobs, len(seeds)), mp_context=get_context("spawn")) as ex:
            trained = list(ex.map(train_seed, *zip(*jobs, strict=True)))
    else:
        trained = [train_seed(*j) for j in jobs]
    train_wall = time.perf_counter() - t1
    t2 = time.perf_counter()
    first = load_model(next(iter(trained[0]["models"].values())), device=device)
    cache = test_candidates(out, test, first.spec, device=device, threads=2)
    radius = um_to_px(MATCH_UM, float(cache["mpp"][0]))
    hits = 0
    for si in range(len(cache["mpp"])):
        res = match_points(
            cache["xy"][cache["slide"] == si],
            cache["truth"][cache["truth_slide"] == si],
            radius_px=radius,
        )
        hits += res.tp
    cand = {
        "recall": hits / max(1, len(cache["truth"])),
        "n_truth": len(cache["truth"]),
        "n_candidates": len(cache["xy"]),
        "per_mm2": len(cache["xy"]) / max(float(cache["tissue_mm2"]), 1e-9),
        "tissue_mm2": float(cache["tissue_mm2"]),
    }
    per_seed: dict = {}
    for s, tr in zip(seeds, trained, strict=True):
        scores = {
            k: score_model(load_model(p, device=device), cache) for k, p in tr["models"].items()
        }
        per_seed[s] = {"scores": scores, "costs": tr["costs"], "info": tr["info"]}
        if "wsdal" in methods:
            per_seed[s]["dmu_flags"] = dmu_flags(runs / f"seed{s}" / "wsdal", trainval)
    eval_s = time.perf_counter() - t2
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"\npreset {args.preset}{' ' + ' '.join(args.set) if args.set else ''}, seeds {seeds}, "
        f"device {device} ({name}), torch threads per job {args.threads}, jobs {args.jobs}; "
        f"test: {cand['n_truth']} true mitoses on {len(test)} slides "
        f"({cand['tissue_mm2']:.2f} mm² tissue), candidate recall {cand['recall']:.3f}, "
        f"{cand['per_mm2']:.0f} candidates/mm²; training {train_wall:.0f} s, "
        f"evaluation {eval_s:.0f} s"
    )
    agg = report(per_seed, seeds)
    _write_json(
        runs / "results.json",
        {
            "args": {k: str(v) for k, v in vars(args).items()},
            "device": f"{device} ({name})",
            "load_average_at_end": os.getloadavg(),
            "candidates": cand,
            "per_seed": per_seed,
            "aggregate": agg,
            "store_cost": json.loads((out / "store_cost.json").read_text())
            if (out / "store_cost.json").is_file()
            else None,
            "seconds": {
                "total": time.perf_counter() - t0,
                "training": train_wall,
                "evaluation": eval_s,
            },
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        },
    )


if __name__ == "__main__":
    main()
