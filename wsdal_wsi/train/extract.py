"""Reading a source's slides once into a patch store.

Per usable image of the source (:func:`wsdal_wsi.qupath.open_source`):

1. the **annotated area**: the union of its region annotations (classes
   ``Region*``) when it has any, else its tissue mask; ignored areas are cut out;
2. **candidates** (:func:`wsdal_wsi.detect.candidates.detect_candidates`) on a tile grid
   over that area, at the target resolution, batched on ``device``; those inside
   the area are kept (a seeded random subset of ``max_candidates_per_image``
   beyond it in training images; validation images, where the threshold is
   chosen, keep up to ``max_val_candidates_per_image``); a candidate within
   ``clear_radius_px`` of a positive, ignored or unknown-class point gets label -1
   (not a usable negative), else 0;
3. **patches**, ``context_px`` square at the target resolution, centred on every
   positive click and ``n_jitter`` jittered copies of it (shift up to
   ``jitter_px``, uniform in a disc), every negative-class click, and every kept
   candidate, read with ``read_threads`` threads.

**Clicks are snapped to the candidate under them** (``snap_um``, ours; the method
says "the annotated point"): a click's patch, and the centre of its jittered
copies, is the nearest candidate found within ``snap_um`` of it (any candidate
found in the area, before the subset), or the click itself when there is none.
Inference only ever sees patches centred on candidates (haematoxylin peaks),
while a pathologist's click lies a micrometre or two off the nucleus' peak. Left
unsnapped, every positive was off-centre and every negative exactly centred, and
the networks learnt the centring instead of the nucleus: on the accuracy
benchmark, the same validation mitosis scored 0.74 centred on its click and 0.41
centred on its candidate (2 µm away), higher on the click in 94 % of the pairs,
and negative-class clicks (off-centre look-alikes) scored 0.48 against 0.2 for
the same kind of look-alike centred on a candidate. The store keeps the
annotated point (``x_level0``, ``y_level0``: the audit and the validation
matching use it) and the patch centre (``centre_x_level0``, ``centre_y_level0``).

**Stains** (``stain_normalise``, :mod:`wsdal_wsi.stain`): before step 1, every
usable image's stains are estimated; their median is the *reference* (recorded in
the store, and from there in the model file), and steps 2 and 3 read each image
mapped onto it. An image whose stains cannot be estimated is read as it is (its
reason recorded); with none estimable there is no reference and the model
predicts on slides as they are.

Images are split into train / validation **by slide** (``val_fraction``, seeded).
Images that cannot be used (missing slide, no resolution, no annotations) are
skipped, each with its reason in ``store.json``; when none is left the extraction
fails with the reasons.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wsdal_wsi.detect.candidates import CandidateParams
from wsdal_wsi.errors import ConfigError, StainError, TrainingError, WsdalError
from wsdal_wsi.progress import NULL_PROGRESS, Progress, ProgressTask
from wsdal_wsi.provenance import provenance
from wsdal_wsi.qupath import ClassSettings, open_source
from wsdal_wsi.slide import open_slide, tile_grid, tissue_mask
from wsdal_wsi.stain import StainNormalisedSlide, median_estimate, slide_stains, stain_matrix
from wsdal_wsi.train.presets import ExtractSettings
from wsdal_wsi.train.sampling import (
    area_candidates,
    candidate_rows,
    click_rows,
    kept_candidates,
    points_xy,
    snap,
)
from wsdal_wsi.train.store import PatchStore, StoreWriter
from wsdal_wsi.units import um_to_px

__all__ = ["extract_store", "split_by_slide"]

log = logging.getLogger(__name__)

#: Patches read from a slide at once (bytes of uint8 RGB): 256 MiB, about 9,000 patches
#: of 96 px. Bounds the memory of an extraction whatever the number of clicks.
PATCH_CHUNK_BYTES = 256 << 20


def split_by_slide(keys: Sequence[str], *, val_fraction: float, seed: int) -> dict[str, str]:
    """Assign each image key to ``train`` or ``val`` (seeded; at least one of each
    when there are two images or more and ``val_fraction > 0``)."""
    keys = sorted(keys)
    n = len(keys)
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    n_val = round(val_fraction * n)
    if val_fraction > 0 and n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    else:
        n_val = 0
    order = np.random.default_rng((seed, 23)).permutation(n)
    val = {keys[i] for i in order[:n_val]}
    return {k: ("val" if k in val else "train") for k in keys}


def _read_patches(
    slide: Any,
    xy: np.ndarray,
    *,
    context_px: int,
    level0_per_px: float,
    target_mpp: float,
    threads: int,
    task: ProgressTask,
) -> np.ndarray:
    """``(N, C, C, 3)`` uint8 patches centred on level-0 points ``xy``."""
    half = context_px / 2 * level0_per_px
    out = np.empty((len(xy), context_px, context_px, 3), np.uint8)

    def read(i: int) -> None:
        loc = (float(xy[i, 0] - half), float(xy[i, 1] - half))
        out[i] = slide.read_region(loc, (context_px, context_px), target_mpp=target_mpp)
        task.advance()

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        list(pool.map(read, range(len(xy))))
    return out


def extract_store(
    source: str | Path,
    root: str | Path,
    *,
    settings: ExtractSettings,
    candidate_params: Any = None,
    classes: Any = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    mpp: float | None = None,
    relink: Sequence[str] | None = None,
    device: str | torch.device = "cpu",
    progress: Progress | None = None,
) -> PatchStore:
    """Extract the patch store of a source.

    Parameters
    ----------
    source : path
        A QuPath project, a slide folder with sidecar GeoJSON, or one slide.
    root : path
        The store folder (replaced if incomplete).
    settings : ExtractSettings
    candidate_params : CandidateParams, optional
        Default ``CandidateParams()``; recorded in the store (and the model file).
    classes : ClassSettings, optional
        What each annotation class means (default ``ClassSettings()``).
    val_fraction : float
        Fraction of the images held out for validation (by slide).
    seed : int
    mpp : float, optional
        Resolution for slides without one.
    relink : sequence of "OLD=NEW", optional
        Slide path prefixes to replace (a project whose slides moved).
    device : str or torch.device
        Where candidates are detected.
    progress : Progress, optional

    Returns
    -------
    PatchStore

    Raises
    ------
    TrainingError
        No usable image, or no positive click in any training image.
    """

    progress = progress or NULL_PROGRESS
    params = candidate_params if candidate_params is not None else CandidateParams()
    classes = classes if classes is not None else ClassSettings()
    dev = torch.device(device)
    src = open_source(source, classes=classes, mpp=mpp, relink=relink or None)
    records = src.images(progress=progress)
    skipped = [{"key": r.key, "reason": "; ".join(r.problems)} for r in records if not r.usable]
    usable = [r for r in records if r.usable]
    for s in skipped:
        log.warning("skipping image %s: %s", s["key"], s["reason"])
    for r in usable:
        if r.dropped_points:
            log.warning(
                "%s: %d point(s) outside the slide, left out of training",
                r.annotation_path or r.name,
                r.dropped_points,
            )
    if not usable:
        reasons = "; ".join(f"{s['key']}: {s['reason']}" for s in skipped) or "the source is empty"
        raise TrainingError(f"{source}: no image can be used for training ({reasons})")
    split = split_by_slide([r.key for r in usable], val_fraction=val_fraction, seed=seed)
    if len(usable) == 1 and val_fraction > 0:
        log.warning("only one usable image: no validation slide, the threshold will be 0.5")
    t = settings.target_mpp
    writer = StoreWriter(
        root, context_px=settings.context_px, patch_px=settings.patch_px, target_mpp=t
    )
    rng = np.random.default_rng((seed, 29))
    margin_px = math.ceil(params.context_um() / t) + 1
    totals = {"tiles": 0, "patches": 0}
    matrices, stains = _training_stains(usable, settings=settings, progress=progress)
    with (
        progress.task("Candidates (tiles)", total=0) as tile_task,
        progress.task("Reading patches", total=0) as patch_task,
    ):
        for rec in sorted(usable, key=lambda r: r.key):
            try:
                info = _extract_image(
                    rec,
                    writer,
                    split[rec.key],
                    settings=settings,
                    params=params,
                    classes=classes,
                    device=dev,
                    rng=rng,
                    margin_px=margin_px,
                    open_slide=open_slide,
                    tile_grid=tile_grid,
                    tissue_mask=tissue_mask,
                    tile_task=tile_task,
                    patch_task=patch_task,
                    totals=totals,
                    stain=matrices.get(rec.key),
                )
            except WsdalError as exc:
                log.warning("skipping image %s: %s", rec.key, exc)
                skipped.append({"key": rec.key, "reason": str(exc)})
                continue
            writer.add_image(info)
    n_pos = sum(int(im["n_positive"]) for im in writer.images if im["split"] == "train")
    if n_pos == 0:
        raise TrainingError(
            f"{source}: no positive click (classes {list(classes.positive)}) in any training "
            "image; check the class names (--positive-class) or the annotations"
        )
    return writer.finish(
        settings={
            "extract": asdict(settings),
            "candidate_params": params.to_dict(),
            "stain": stains,
            "classes": classes.to_dict(),
            "val_fraction": val_fraction,
            "seed": seed,
            "source": str(source),
            "skipped": skipped,
        },
        provenance=provenance(source=str(source)),
    )


def _training_stains(
    usable: Sequence[Any], *, settings: ExtractSettings, progress: Progress
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Each image's stain matrix onto the images' median stains, and the store's record
    (no matrix when ``settings.stain_normalise`` is off).

    Returns
    -------
    matrices : dict
        Image key to ``(3, 3)`` stain matrix (images whose stains could not be
        estimated are absent: they are read as scanned).
    record : dict
        JSON-able: ``reference`` (the median estimate, or None with a ``reason``)
        and per image its ``estimate`` or the ``reason`` it has none.
    """
    if not settings.stain_normalise:
        return {}, {"reference": None, "reason": "stain_normalise is off"}
    target_mpp = settings.target_mpp
    estimates: dict[str, Any] = {}
    images: dict[str, dict[str, Any]] = {}
    with progress.task("Stains", total=len(usable)) as task:
        for rec in sorted(usable, key=lambda r: r.key):
            try:
                with open_slide(rec.slide_path, mpp=rec.mpp) as slide:
                    est = slide_stains(slide, tissue_mask(slide), target_mpp=target_mpp)
            except StainError as exc:
                log.warning("%s; read without stain normalisation", exc)
                images[rec.key] = {"reason": str(exc)}
            except WsdalError as exc:  # the extraction skips the image, with this reason
                images[rec.key] = {"reason": str(exc)}
            else:
                estimates[rec.key] = est
                images[rec.key] = {"estimate": est.to_dict()}
            task.advance()
    if not estimates:
        log.warning("no training image's stains could be estimated: no stain normalisation")
        return {}, {"reference": None, "reason": "no image's stains could be estimated",
                    "images": images}  # fmt: skip
    reference = median_estimate(list(estimates.values()))
    matrices = {key: stain_matrix(est, reference) for key, est in estimates.items()}
    return matrices, {"reference": reference.to_dict(), "images": images}


def _extract_image(
    rec: Any,
    writer: StoreWriter,
    split: str,
    *,
    settings: ExtractSettings,
    params: Any,
    classes: Any,
    device: torch.device,
    rng: np.random.Generator,
    margin_px: int,
    open_slide: Any,
    tile_grid: Any,
    tissue_mask: Any,
    tile_task: ProgressTask,
    patch_task: ProgressTask,
    totals: dict[str, int],
    stain: np.ndarray | None = None,
) -> dict[str, Any]:
    """Write one image's patches to ``writer``; return its ``images.csv`` row.

    ``rng`` draws the candidate subset, then the jitter; ``totals`` counts the
    tiles and patches so far (the totals of the progress tasks); ``stain``, the
    ``(3, 3)`` stain matrix every read is mapped by (None: read as scanned).
    """
    ann = rec.annotations
    with open_slide(rec.slide_path, mpp=rec.mpp) as scanned:
        slide = scanned if stain is None else StainNormalisedSlide(scanned, stain)
        mpp = slide.require_mpp()
        f = slide.level0_per_px(settings.target_mpp)
        pos_pts = ann.points_with_role("positive", classes)
        neg_pts = ann.points_with_role("negative", classes)
        pos, neg = points_xy(pos_pts), points_xy(neg_pts)
        # no usable negative candidate near these
        avoid = points_xy(
            p for p in ann.points if classes.role(p.class_name) in ("ignored", "unknown")
        )
        regions = list(ann.areas_with_role("region", classes))
        ignored = list(ann.areas_with_role("ignored", classes))
        cand, in_area, area_mm2 = area_candidates(
            slide,
            regions,
            ignored,
            mpp=mpp,
            margin_px=margin_px,
            settings=settings,
            params=params,
            device=device,
            tile_grid=tile_grid,
            tissue_mask=tissue_mask,
            task=tile_task,
            totals=totals,
        )
        n_found = len(cand)
        snap_level0 = um_to_px(settings.snap_um, mpp) if settings.snap_um > 0 else 0.0
        pos_c, n_snap_pos = snap(pos, cand, snap_level0)
        neg_c, n_snap_neg = snap(neg, cand, snap_level0)
        cand, label = kept_candidates(
            cand,
            np.concatenate([pos, avoid]),
            split=split,
            key=rec.key,
            settings=settings,
            level0_per_px=f,
            rng=rng,
        )
        base = {"image_key": rec.key, "slide": str(rec.slide_path), "split": split}
        rows = itertools.chain(
            click_rows(
                pos,
                pos_c,
                neg,
                neg_c,
                base=base,
                in_area=in_area,
                writer=writer,
                settings=settings,
                level0_per_px=f,
                rng=rng,
                pos_trusted=np.array([p.correction is not None for p in pos_pts], bool),
                neg_trusted=np.array([p.correction is not None for p in neg_pts], bool),
            ),
            candidate_rows(cand, label, base=base),
        )
        totals["patches"] += len(pos) * (1 + settings.n_jitter) + len(neg) + len(cand)
        patch_task.update(total=totals["patches"], status=rec.key)
        _write_patches(slide, writer, rows, settings=settings, level0_per_px=f, task=patch_task)
    return {
        "key": rec.key,
        "slide": str(rec.slide_path),
        "mpp": mpp,
        "split": split,
        "has_regions": bool(regions),
        "n_positive": len(pos),
        "n_negative_clicks": len(neg),
        "n_trusted": sum(ann.corrections().values()),
        "n_candidates": len(cand),
        "area_mm2": round(float(area_mm2), 6),
        "n_candidates_found": n_found,
        "n_snapped": n_snap_pos + n_snap_neg,
    }


def _write_patches(
    slide: Any,
    writer: StoreWriter,
    rows: Iterable[tuple[np.ndarray, np.ndarray, dict[str, Any]]],
    *,
    settings: ExtractSettings,
    level0_per_px: float,
    task: ProgressTask,
) -> None:
    """Read the patch of each row ``(point, centre, record)`` and append them to ``writer``,
    the records completed with the level-0 point and patch centre.

    Rows are taken and read :data:`PATCH_CHUNK_BYTES` of patches at a time, so memory
    stays flat however many clicks an image has.
    """
    chunk = max(1, PATCH_CHUNK_BYTES // (3 * settings.context_px**2))
    it = iter(rows)
    while group := list(itertools.islice(it, chunk)):
        pts = np.array([p for p, _, _ in group], np.float64).reshape(-1, 2)
        ctr = np.array([c for _, c, _ in group], np.float64).reshape(-1, 2)
        recs = [r for _, _, r in group]
        for r, p, c in zip(recs, pts, ctr, strict=True):
            r["x_level0"], r["y_level0"] = float(p[0]), float(p[1])
            r["centre_x_level0"], r["centre_y_level0"] = float(c[0]), float(c[1])
        patches = _read_patches(
            slide,
            ctr,
            context_px=settings.context_px,
            level0_per_px=level0_per_px,
            target_mpp=settings.target_mpp,
            threads=settings.read_threads,
            task=task,
        )
        writer.append(patches, recs)
