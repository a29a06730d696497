"""Benchmark: candidate recall, candidates per mm², and detector speed.

Candidates are the cost of inference: every one is a patch the classifier
scores. This prints, for the candidate settings (``CandidateParams()`` unless
overridden with ``--set name=value``):

1. **Real crops** (``real-mitoses/AtNorM-Br/{Normal,Atypical}/*.png``: 746 TCGA
   breast-cancer crops, 128 x 128 px at about 0.25 µm/px, each centred on a
   mitosis): recall (a candidate within 7.5 µm of the centre), candidates per
   crop and per mm² (a crop is 0.001 mm² of tumour around a mitosis).
2. **Synthetic slides** (``wsdal_wsi.synth``; a dataset folder given with
   ``--synth DIR``, or generated into a temporary folder): candidates found tile
   by tile exactly as inference does (``tile_grid`` cores of 1024 px with a 40 px
   margin, ``Slide.read_region``), recall against every ground-truth mitosis in
   ``truth/<name>.geojson`` (a candidate within 7.5 µm), candidates per mm² of
   tissue and of tumour (the generator's own tumour map).
3. **Speed** of :func:`detect_candidates` alone on batches of 1104 x 1104 tiles
   (a 1024 px core plus 40 px margins) of real-looking pixels, in megapixels per
   second, with ``torch.set_num_threads(--threads)``; and on CUDA when present.

Usage::

    python benchmarks/candidates.py [--shared-data DIR] [--synth DIR] [--threads 2]
        [--set threshold_od=0.2 --set merge_radius_um=5]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from wsdal_wsi.detect.candidates import CandidateParams, detect_candidates
from wsdal_wsi.units import px2_to_mm2, um_to_px

REPO = Path(__file__).resolve().parents[1]
RADIUS_UM = 7.5
CROP_MPP = 0.25


def parse_params(items: list[str]) -> CandidateParams:
    """``name=value`` overrides of :class:`CandidateParams`."""
    values = CandidateParams().to_dict()
    for item in items:
        name, _, raw = item.partition("=")
        values[name] = json.loads(raw)
    return CandidateParams.from_dict(values)


def load_crops(folder: Path) -> tuple[np.ndarray, list[str]]:
    from PIL import Image

    files = sorted(folder.glob("*/*.png"))
    images = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    return np.stack(images), [f.parent.name for f in files]


def crops_row(images: np.ndarray, groups: list[str], params: CandidateParams) -> dict:
    n, h, w, _ = images.shape
    rgb = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    t0 = time.perf_counter()
    found = []
    for start in range(0, n, 256):
        found.extend(detect_candidates(rgb[start : start + 256], mpp=CROP_MPP, params=params))
    seconds = time.perf_counter() - t0
    radius = um_to_px(RADIUS_UM, CROP_MPP)
    # Candidates are pixel indices; the crop centre (w/2, h/2) in the continuous
    # frame is index (w/2 - 0.5, h/2 - 0.5).
    cx, cy = w / 2 - 0.5, h / 2 - 0.5
    hit = np.array(
        [
            bool(len(c)) and bool((np.hypot(c[:, 0] - cx, c[:, 1] - cy) <= radius).any())
            for c in (f.numpy() for f in found)
        ]
    )
    counts = np.array([len(f) for f in found])
    crop_mm2 = px2_to_mm2(h * w, CROP_MPP)
    per_group = {
        g: float(hit[[k for k, gg in enumerate(groups) if gg == g]].mean())
        for g in sorted(set(groups))
    }
    return {
        "crops": n,
        "recall": float(hit.mean()),
        "recall_by_group": per_group,
        "missed": int((~hit).sum()),
        "per_crop": float(counts.mean()),
        "per_mm2": float(counts.mean() / crop_mm2),
        "mp_per_s": n * h * w / seconds / 1e6,
    }


def ensure_synth(folder: str | None, tmp: Path) -> Path:
    if folder:
        return Path(folder)
    from wsdal_wsi.synth import AnnotationNoise, SynthParams, generate_dataset

    out = tmp / "synth"
    params = SynthParams(
        width_px=4096,
        height_px=4096,
        mitoses_per_mm2=80.0,
        lookalikes_per_mm2=80.0,
        tissue_fraction=0.7,
    )
    print(f"generating 4 synthetic slides of 4096 x 4096 px into {out} ...", flush=True)
    generate_dataset(out, n_slides=4, params=params, noise=AnnotationNoise(), seed=7)
    return out


def tumour_predicate(dataset: Path, name: str):
    """The generator's own tumour map for a slide, or None if it cannot be rebuilt."""
    try:
        from wsdal_wsi.synth import SynthParams, load_dataset
        from wsdal_wsi.synth.layout import make_bank, tissue_value, tumour_value
        from wsdal_wsi.synth.plan import make_plan

        ds = load_dataset(dataset)
        record = next(s for s in ds.slides if s.name == name)
        params = SynthParams(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in ds.manifest["params"].items()}
        )
        bank = make_bank(params, record.seed)
        plan = make_plan(params, seed=record.seed, name=name, bank=bank)
    except Exception as exc:  # a benchmark: report and carry on without the tumour map
        print(f"  (no tumour map for {name}: {exc})")
        return None

    def in_tumour(xy: np.ndarray) -> np.ndarray:
        return (tissue_value(plan.fields, bank, xy, params.mpp) > 6.0) & (
            tumour_value(plan.fields, bank, xy, params.mpp) > 0.0
        )

    return in_tumour


def synth_rows(dataset: Path, params: CandidateParams, *, target_mpp: float = 0.25) -> list[dict]:
    from scipy.spatial import cKDTree

    from wsdal_wsi.evaluation.folders import read_mitosis_points
    from wsdal_wsi.slide import open_slide, tile_grid, tissue_mask

    rows = []
    for slide_path in sorted(dataset.glob("*.tiff")):
        name = slide_path.stem
        truth = read_mitosis_points(dataset / "truth" / f"{name}.geojson", role="truth")
        with open_slide(slide_path) as slide:
            mpp = slide.require_mpp()
            tissue = tissue_mask(slide)
            tiles = tile_grid(slide, target_mpp=target_mpp, tissue=tissue)
            found = []
            pixels = 0
            seconds = 0.0
            for tile in tiles:
                image = slide.read_region(tile.location_level0, tile.size_px, target_mpp=target_mpp)
                rgb = torch.from_numpy(image).permute(2, 0, 1)[None].contiguous()
                t0 = time.perf_counter()
                (cand,) = detect_candidates(rgb, mpp=target_mpp, params=params)
                seconds += time.perf_counter() - t0
                pixels += image.shape[0] * image.shape[1]
                xy = cand[:, :2].numpy().astype(np.float64) + 0.5
                found.append(tile.to_level0(xy[tile.in_core(xy)]))
            cand_xy = np.concatenate(found) if found else np.zeros((0, 2))
            tissue_mm2 = tissue.area_mm2(mpp)
            in_tumour = tumour_predicate(dataset, name)
            tumour_mm2 = tumour_count = None
            if in_tumour is not None:
                step = um_to_px(8.0, mpp)
                w, h = slide.dimensions
                gx, gy = np.meshgrid(np.arange(step / 2, w, step), np.arange(step / 2, h, step))
                grid = np.column_stack([gx.ravel(), gy.ravel()])
                tumour_mm2 = float(in_tumour(grid).mean()) * px2_to_mm2(w * h, mpp)
                tumour_count = int(in_tumour(cand_xy).sum()) if len(cand_xy) else 0
        radius = um_to_px(RADIUS_UM, mpp)
        if len(truth) and len(cand_xy):
            dist, _ = cKDTree(cand_xy).query(truth, k=1)
            hits = int((dist <= radius).sum())
        else:
            hits = 0
        rows.append(
            {
                "slide": name,
                "mitoses": len(truth),
                "found": hits,
                "candidates": len(cand_xy),
                "tissue_mm2": tissue_mm2,
                "per_mm2_tissue": len(cand_xy) / tissue_mm2 if tissue_mm2 else float("nan"),
                "per_mm2_tumour": (tumour_count / tumour_mm2 if tumour_mm2 else float("nan")),
                "mp_per_s": pixels / seconds / 1e6 if seconds else float("nan"),
            }
        )
    return rows


def speed_rows(crops: np.ndarray | None, params: CandidateParams, threads: int) -> list[dict]:
    """MP/s of detect_candidates on batches of 1104 x 1104 tiles."""
    rng = np.random.default_rng(0)
    size = 1104
    if crops is not None:  # a mosaic of real crops: realistic candidate density
        k = size // crops.shape[1] + 1
        picks = rng.integers(0, len(crops), (4, k, k))
        tiles = np.stack(
            [
                np.concatenate([np.concatenate(list(crops[row]), axis=1) for row in p], axis=0)[
                    :size, :size
                ]
                for p in picks
            ]
        )
    else:
        tiles = rng.integers(0, 256, (4, size, size, 3), dtype=np.uint8)
    rgb = torch.from_numpy(tiles).permute(0, 3, 1, 2).contiguous()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    for device in devices:
        x = rgb.to(device)
        for batch in (1, 4):
            xb = x[:batch]
            detect_candidates(xb, mpp=0.25, params=params)  # warm-up
            if device == "cuda":
                torch.cuda.synchronize()
            times = []
            for _ in range(3 if device == "cpu" else 20):
                t0 = time.perf_counter()
                out = detect_candidates(xb, mpp=0.25, params=params)
                if device == "cuda":
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - t0)
            rows.append(
                {
                    "device": device if device == "cpu" else torch.cuda.get_device_name(),
                    "threads": threads if device == "cpu" else None,
                    "batch": batch,
                    "tile": f"{size}x{size}",
                    "mp_per_s": batch * size * size / min(times) / 1e6,
                    "candidates_per_tile": sum(len(o) for o in out) / batch,
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--shared-data",
        default=os.environ.get("WSDAL_SHARED_DATA", str(REPO.parent / "shared" / "data")),
    )
    parser.add_argument("--synth", default=None, help="an existing synthetic dataset folder")
    parser.add_argument("--no-synth", action="store_true", help="skip the synthetic slides")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], help="CandidateParams name=value")
    parser.add_argument(
        "--sweep",
        default=None,
        help="also print the crops' recall / candidates for values of one setting, "
        "e.g. threshold_od=0.14,0.16,0.18,0.2",
    )
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    params = parse_params(args.set)
    print(f"CandidateParams: {json.dumps(params.to_dict())}")
    print(f"torch {torch.__version__}, {args.threads} CPU threads, load average {os.getloadavg()}")

    crops_dir = Path(args.shared_data) / "real-mitoses" / "AtNorM-Br"
    crops = None
    if crops_dir.is_dir():
        crops, groups = load_crops(crops_dir)
        r = crops_row(crops, groups, params)
        print("\n## Real crops (AtNorM-Br, 0.25 µm/px)")
        print("| crops | recall | missed | recall by group | candidates / crop | per mm² | MP/s |")
        print("|---:|---:|---:|---|---:|---:|---:|")
        by_group = ", ".join(f"{g} {v:.4f}" for g, v in r["recall_by_group"].items())
        print(
            f"| {r['crops']} | {r['recall']:.4f} | {r['missed']} | {by_group} | "
            f"{r['per_crop']:.2f} | {r['per_mm2']:.0f} | {r['mp_per_s']:.1f} |"
        )
        if args.sweep:
            name, _, values = args.sweep.partition("=")
            print(f"\n### Sweep of {name} on the real crops")
            print(f"| {name} | recall | recall (Atypical) | candidates / crop | per mm² |")
            print("|---:|---:|---:|---:|---:|")
            for value in values.split(","):
                swept = parse_params([*args.set, f"{name}={value}"])
                r = crops_row(crops, groups, swept)
                atypical = r["recall_by_group"].get("Atypical", float("nan"))
                print(
                    f"| {value} | {r['recall']:.4f} | {atypical:.4f} "
                    f"| {r['per_crop']:.2f} | {r['per_mm2']:.0f} |"
                )
    else:
        print(f"\n(real crops not found at {crops_dir}; skipped)")

    if not args.no_synth:
        with tempfile.TemporaryDirectory() as tmp:
            dataset = ensure_synth(args.synth, Path(tmp))
            rows = synth_rows(dataset, params)
        print(f"\n## Synthetic slides ({dataset})")
        print(
            "| slide | mitoses | with a candidate | recall | candidates | per mm² tissue "
            "| per mm² tumour | MP/s (detector) |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            rec = r["found"] / r["mitoses"] if r["mitoses"] else float("nan")
            print(
                f"| {r['slide']} | {r['mitoses']} | {r['found']} | {rec:.4f} | {r['candidates']} "
                f"| {r['per_mm2_tissue']:.0f} | {r['per_mm2_tumour']:.0f} | {r['mp_per_s']:.1f} |"
            )
        total_m = sum(r["mitoses"] for r in rows)
        total_f = sum(r["found"] for r in rows)
        total_c = sum(r["candidates"] for r in rows)
        total_t = sum(r["tissue_mm2"] for r in rows)
        print(
            f"| **all** | {total_m} | {total_f} | {total_f / max(total_m, 1):.4f} | {total_c} "
            f"| {total_c / total_t:.0f} | | |"
        )

    print("\n## Speed of detect_candidates (tiles of real-crop mosaics)")
    print("| device | threads | batch | tile | MP/s | candidates / tile |")
    print("|---|---:|---:|---|---:|---:|")
    for r in speed_rows(crops, params, args.threads):
        print(
            f"| {r['device']} | {r['threads'] or ''} | {r['batch']} | {r['tile']} | "
            f"{r['mp_per_s']:.1f} | {r['candidates_per_tile']:.0f} |"
        )


if __name__ == "__main__":
    main()
