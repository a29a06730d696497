"""Which points of an image become patches: the annotated area, its candidates, the clicks
snapped to the candidate under them and jittered, and the negatives clear of positives.

See :mod:`wsdal_wsi.train.extract` for the whole extraction; these are its sampling steps.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import shapely
import torch
from scipy.spatial import cKDTree
from shapely.geometry import box
from shapely.ops import unary_union

from wsdal_wsi.detect.candidates import detect_candidates
from wsdal_wsi.progress import ProgressTask
from wsdal_wsi.train.presets import ExtractSettings
from wsdal_wsi.train.store import StoreWriter

__all__ = [
    "area_candidates",
    "area_test",
    "candidate_rows",
    "click_rows",
    "find_candidates",
    "kept_candidates",
    "points_xy",
    "snap",
]

log = logging.getLogger(__name__)

#: Tile side (px at the target resolution) and tiles per detector call for candidates.
_TILE_PX = 1024
_TILE_BATCH = 4


def area_test(areas: list[Any], ignored: list[Any]):
    """A vectorised point-in-area test ``(N, 2) -> (N,) bool`` of polygons minus holes."""

    inside = unary_union([a.geometry for a in areas]) if areas else None
    out = unary_union([a.geometry for a in ignored]) if ignored else None

    def test(xy: np.ndarray) -> np.ndarray:
        ok = np.ones(len(xy), bool)
        if inside is not None:
            ok &= shapely.contains_xy(inside, xy[:, 0], xy[:, 1])
        if out is not None:
            ok &= ~shapely.contains_xy(out, xy[:, 0], xy[:, 1])
        return ok

    return test, inside


def find_candidates(
    slide: Any,
    tiles: list[Any],
    *,
    target_mpp: float,
    params: Any,
    device: torch.device,
    threads: int,
    task: ProgressTask,
) -> np.ndarray:
    """Level-0 ``(N, 2)`` candidates in the cores of ``tiles``."""
    found: list[np.ndarray] = []

    def read(tile: Any) -> np.ndarray:
        return slide.read_region(tile.location_level0, tile.size_px, target_mpp=target_mpp)

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for start in range(0, len(tiles), _TILE_BATCH):
            group = tiles[start : start + _TILE_BATCH]
            images = list(pool.map(read, group))
            shapes = {im.shape for im in images}
            batches = [images] if len(shapes) == 1 else [[im] for im in images]
            tiles_iter = iter(group)
            for batch in batches:
                rgb = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).to(device)
                for tile, pts in zip(
                    [next(tiles_iter) for _ in batch],
                    detect_candidates(rgb, mpp=target_mpp, params=params),
                    strict=True,
                ):
                    xy = pts[:, :2].cpu().numpy().astype(np.float64) + 0.5  # pixel centres
                    found.append(tile.to_level0(xy[tile.in_core(xy)]))
            task.advance(len(group))
    return np.concatenate(found) if found else np.zeros((0, 2))


def snap(points: np.ndarray, cand: np.ndarray, radius_level0: float) -> tuple[np.ndarray, int]:
    """Each of ``points (N, 2)`` moved to the nearest of ``cand (M, 2)`` within the radius.

    Returns the ``(N, 2)`` level-0 patch centres and how many points moved.
    """
    out = np.array(points, np.float64).reshape(-1, 2)
    if not len(out) or not len(cand) or radius_level0 <= 0:
        return out, 0
    d, j = cKDTree(cand).query(out, k=1)
    near = d <= radius_level0
    out[near] = cand[j[near]]
    return out, int(np.sum(near))


def points_xy(points: Any) -> np.ndarray:
    """Level-0 ``(N, 2)`` coordinates of annotation points."""
    return np.array([(p.x, p.y) for p in points]).reshape(-1, 2)


def area_candidates(
    slide: Any,
    regions: list[Any],
    ignored: list[Any],
    *,
    mpp: float,
    margin_px: int,
    settings: ExtractSettings,
    params: Any,
    device: torch.device,
    tile_grid: Any,
    tissue_mask: Any,
    task: ProgressTask,
    totals: dict[str, int],
) -> tuple[np.ndarray, Any, float]:
    """The annotated area (the regions, else the tissue, less ``ignored``) and its candidates:
    the level-0 ``(N, 2)`` candidates found in it, its test ``(N, 2) -> (N,) bool`` and mm²."""
    t = settings.target_mpp
    in_area, region_geom = area_test(regions, ignored)
    if regions:
        tiles = [
            tl
            for tl in tile_grid(slide, target_mpp=t, tile_size_px=_TILE_PX, margin_px=margin_px)
            if box(*tl.core_level0).intersects(region_geom)
        ]
        area_mm2 = region_geom.area * mpp * mpp / 1e6
    else:
        mask = tissue_mask(slide)
        tiles = tile_grid(
            slide, target_mpp=t, tile_size_px=_TILE_PX, margin_px=margin_px, tissue=mask
        )
        base = in_area

        def in_area(xy: np.ndarray, _b=base, _m=mask) -> np.ndarray:
            return _b(xy) & _m.contains(xy)

        area_mm2 = mask.area_mm2(mpp)
    totals["tiles"] += len(tiles)
    task.update(total=totals["tiles"])
    cand = find_candidates(
        slide,
        tiles,
        target_mpp=t,
        params=params,
        device=device,
        threads=settings.read_threads,
        task=task,
    )
    cand = cand[in_area(cand)] if len(cand) else cand
    return cand, in_area, area_mm2


def kept_candidates(
    cand: np.ndarray,
    near: np.ndarray,
    *,
    split: str,
    key: str,
    settings: ExtractSettings,
    level0_per_px: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """The candidates ``(N, 2)`` kept (at most the split's cap, a seeded subset in order)
    and their ``(K,)`` int64 labels: -1 within ``clear_radius_px`` of a point of
    ``near (P, 2)`` (positive, ignored or unknown-class), else 0 (a usable negative)."""
    cap = (
        settings.max_val_candidates_per_image
        if split == "val"
        else settings.max_candidates_per_image
    )
    if len(cand) > cap:
        log.info("%s: keeping %d of %d candidates", key, cap, len(cand))
        cand = cand[np.sort(rng.choice(len(cand), cap, replace=False))]
    label = np.zeros(len(cand), np.int64)
    if len(near) and len(cand):
        d, _ = cKDTree(near).query(cand, k=1)
        label[d < settings.clear_radius_px * level0_per_px] = -1
    return cand, label


def click_rows(
    pos: np.ndarray,
    pos_c: np.ndarray,
    neg: np.ndarray,
    neg_c: np.ndarray,
    *,
    base: dict[str, Any],
    in_area: Any,
    writer: StoreWriter,
    settings: ExtractSettings,
    level0_per_px: float,
    rng: np.random.Generator,
    pos_trusted: np.ndarray | None = None,
    neg_trusted: np.ndarray | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray, dict[str, Any]]]:
    """Patch rows ``(point, centre, record)`` of the clicks, one at a time (lazily: a
    file of millions of clicks never holds all its rows at once).

    Each positive click of ``pos (N, 2)`` centred on ``pos_c (N, 2)``, then its
    ``n_jitter`` copies (centred up to ``jitter_px`` from it, uniform in a disc),
    then each negative-class click of ``neg (M, 2)`` centred on ``neg_c (M, 2)``;
    all level-0. ``pos_trusted (N,)`` / ``neg_trusted (M,)`` bool mark the pathologist's
    answers (the store's ``trusted`` column; default none). ``rng`` is drawn from as the
    rows are taken.
    """
    pos_t = np.zeros(len(pos), bool) if pos_trusted is None else np.asarray(pos_trusted, bool)
    neg_t = np.zeros(len(neg), bool) if neg_trusted is None else np.asarray(neg_trusted, bool)
    for p, c, t in zip(pos, pos_c, pos_t, strict=True):
        cid = writer.new_click_id()
        inside = bool(in_area(p[None])[0])
        common = {**base, "label": 1, "click_id": cid, "in_area": inside, "trusted": bool(t)}
        yield p, c, {**common, "source": "click"}
        for _ in range(settings.n_jitter):
            r = settings.jitter_px * level0_per_px * math.sqrt(rng.uniform())
            a = rng.uniform(0, 2 * math.pi)
            j = c + r * np.array([math.cos(a), math.sin(a)])
            yield j, j, {**common, "source": "jitter"}
    for p, c, t in zip(neg, neg_c, neg_t, strict=True):
        cid = writer.new_click_id()
        inside = bool(in_area(p[None])[0])
        rec = {**base, "label": 0, "source": "negative_click", "click_id": cid,
               "in_area": inside, "trusted": bool(t)}  # fmt: skip
        yield p, c, rec


def candidate_rows(
    cand: np.ndarray, label: np.ndarray, *, base: dict[str, Any]
) -> list[tuple[np.ndarray, np.ndarray, dict[str, Any]]]:
    """Patch rows ``(point, centre, record)`` of the kept candidates ``(N, 2)``."""
    return [
        (p, p, {**base, "label": int(lab), "source": "candidate", "in_area": True})
        for p, lab in zip(cand, label, strict=True)
    ]
