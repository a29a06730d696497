"""Streaming whole-slide inference: tiles -> candidates -> patches -> p(mitosis) -> detections.

:func:`predict_slide` runs one slide (callable per slide, so an engine such as
Ray can spread slides over machines). The pipeline:

1. **Inference area**: the tissue mask dilated by one mask pixel (8 µm by
   default), so a figure at the very edge of the tissue is still looked at.
2. **Tiles** (:func:`wsdal_wsi.slide.tile_grid`) at the model's resolution,
   cores of ``tile_size_px`` on one global pixel lattice, read with a margin of
   ``max(half a patch, the candidate detector's context)`` so that the candidates
   and patches of a core are exactly those of the whole slide; every read has the
   same size (beyond the slide is white), so tiles batch on the device.
3. **Reading ahead** (:class:`~wsdal_wsi.predict.reader.TileStream`): reader
   threads decode the next tiles while the device works; a bounded queue keeps
   memory flat; pinned buffers and ``non_blocking`` copies on CUDA.
4. **On the device**: candidate detection (:func:`wsdal_wsi.detect.candidates.detect_candidates`),
   ownership (a candidate belongs to the tile whose core holds its pixel, and must
   lie in the inference area), and patch cropping by one gather from the tile
   tensor (no per-patch loop); patches of several tiles are pooled and classified
   in large batches (:meth:`wsdal_wsi.model.file.LoadedModel.predict_proba`, bf16
   on CUDA, channels-last everywhere). With a cascade in the model file, a small
   first stage scores every candidate and only those above its threshold reach
   the final network (:class:`~wsdal_wsi.predict.patches.PatchClassifier`).
5. **Detections**: candidates with p >= threshold, merged greedily within the
   model's ``merge_radius_um`` over the whole slide (one mitotic figure, one
   detection), in a canonical order so the result depends neither on the tile
   size nor on the batch size.

Coordinates: candidates are pixel centres of the global target-px lattice,
``level0 = (gx + 0.5) * level0_per_px`` (the training extractor's convention).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from wsdal_wsi.detect.candidates import CandidateParams, detect_candidates, merge_points
from wsdal_wsi.predict.patches import PatchClassifier, crop_patches
from wsdal_wsi.predict.plan import engine_options, plan_tiles, tile_decode_device
from wsdal_wsi.predict.reader import TileStream
from wsdal_wsi.progress import NULL_PROGRESS, Progress
from wsdal_wsi.slide import TissueMask, tissue_mask
from wsdal_wsi.stain import normalise_rgb, stain_normaliser
from wsdal_wsi.units import um_to_px

__all__ = ["NEAR_MISS_FRACTION", "SlidePrediction", "predict_slide"]

#: Near misses are the candidates scoring at least this fraction of the threshold (kept for
#: the hotspot's count interval and the review list). Greedy merging visits candidates by
#: descending score, so keeping them changes no detection. With the model's cascade only the
#: candidates its first stage lets through (its cut is the threshold's) can be near misses.
NEAR_MISS_FRACTION = 0.25

log = logging.getLogger(__name__)


@dataclass
class SlidePrediction:
    """The detections of one slide and how they were made.

    Attributes
    ----------
    points_level0 : numpy.ndarray
        ``(N, 2)`` float64 level-0 ``(x, y)`` of the detections, by descending score.
    scores : numpy.ndarray
        ``(N,)`` float64 p(mitosis) of each detection (>= ``threshold``).
    threshold : float
        The probability threshold applied.
    near_points_level0 : numpy.ndarray
        ``(M, 2)`` float64 level-0 ``(x, y)`` of the near misses: candidates scoring
        below the threshold but at least :data:`NEAR_MISS_FRACTION` of it, not within
        the merge radius of a higher-scoring candidate (so none beside a detection).
    near_scores : numpy.ndarray
        ``(M,)`` float64 p(mitosis) of the near misses.
    n_candidates : int
        Candidates classified (each once, in the inference area).
    n_full : int
        Candidates scored by the final network (all of them without a cascade).
    first_threshold : float or None
        The cascade's first-stage logit cut (None: no cascade used).
    n_above_threshold : int
        Candidates at or above the threshold, before merging.
    n_tiles : int
        Tiles read.
    tile_size_px, margin_px, read_px : int
        Core side, margin and read side of the tiles (px at ``target_mpp``).
    target_mpp : float
        The model's resolution (µm/px).
    batch_size : int
        Patches per classifier batch.
    reader_threads : int
    device : str
    tissue : TissueMask
        The tissue mask (as computed or given; not dilated).
    tissue_mp : float
        Tissue area in megapixels at ``target_mpp``.
    read_mp : float
        Pixels read, in megapixels at ``target_mpp`` (tiles x read size).
    timings : dict of str to float
        Seconds: ``tissue_s`` (mask, when computed here), ``read_s`` (summed over
        reader threads), ``read_wait_s`` (the device loop waiting for pixels),
        ``detect_s`` (candidates, ownership, cropping), ``classify_s``,
        ``merge_s``, ``total_s`` (wall time of the call), ``stain_s`` (the
        slide's stain estimate). On CUDA the device steps are host wall time up
        to their synchronisation points.
    stain : dict
        The slide's stain normalisation (:func:`wsdal_wsi.stain.stain_normaliser`):
        ``normalised``, the slide's ``estimate`` and the model's ``reference``, or
        the ``reason`` it was analysed as scanned.
    """

    points_level0: np.ndarray
    scores: np.ndarray
    threshold: float
    near_points_level0: np.ndarray
    near_scores: np.ndarray
    n_candidates: int
    n_full: int
    first_threshold: float | None
    n_above_threshold: int
    n_tiles: int
    tile_size_px: int
    margin_px: int
    read_px: int
    target_mpp: float
    batch_size: int
    reader_threads: int
    device: str
    tissue: TissueMask
    tissue_mp: float
    read_mp: float
    timings: dict[str, float] = field(default_factory=dict)
    tile_decoder: str | None = None
    stain: dict[str, Any] = field(default_factory=dict)

    def engine_info(self) -> dict[str, Any]:
        """JSON-able description of how the slide was run (for provenance and summaries)."""
        return {
            "tile_size_px": self.tile_size_px,
            "margin_px": self.margin_px,
            "batch_size": self.batch_size,
            "reader_threads": self.reader_threads,
            "device": self.device,
            "tile_decoder": self.tile_decoder,
            "n_tiles": self.n_tiles,
            "n_candidates": self.n_candidates,
            "cascade": self.first_threshold is not None,
            "n_full": self.n_full,
            "skipped_fraction": round(1.0 - self.n_full / self.n_candidates, 4)
            if self.n_candidates
            else 0.0,
            "n_above_threshold": self.n_above_threshold,
            "tissue_mp": round(self.tissue_mp, 3),
            "read_mp": round(self.read_mp, 3),
            "stain": self.stain,
        }


@torch.inference_mode()
def predict_slide(
    slide: Any,
    model: Any,
    *,
    tissue: TissueMask | None = None,
    threshold: float | None = None,
    tile_size_px: int | None = None,
    batch_size: int | None = None,
    reader_threads: int | None = None,
    tiles_per_step: int | None = None,
    cascade: bool = True,
    progress: Progress | None = None,
) -> SlidePrediction:
    """Find the mitoses of one slide (streaming, on the model's device).

    Parameters
    ----------
    slide : wsdal_wsi.slide.Slide
        An open slide with a known resolution.
    model : wsdal_wsi.model.file.LoadedModel
        The classifier; its device is where candidates, patches and
        classification run; its spec gives the patch size, resolution,
        threshold, candidate settings and merge radius.
    tissue : TissueMask, optional
        The slide's tissue mask (computed when not given).
    threshold : float, optional
        Probability threshold overriding the model's own.
    tile_size_px : int, optional
        Core side of the tiles (px at the model's resolution; default
        :func:`default_tile_size`). Results do not depend on it.
    batch_size : int, optional
        Patches per classifier batch (default: 2048 on CUDA, 256 on the CPU).
        Results do not depend on it (up to float rounding of probabilities).
    reader_threads : int, optional
        Threads decoding tiles ahead (default: :func:`default_reader_threads`).
    tiles_per_step : int, optional
        Tiles sent to the candidate detector at once (default 8 on CUDA, 1 on
        the CPU).
    cascade : bool
        Use the model's cascade, when it has one for the threshold (False: the
        final network scores every candidate, for comparison).
    progress : Progress, optional
        One bar, advanced per tile.

    Returns
    -------
    SlidePrediction

    Raises
    ------
    ResolutionError
        The slide has no resolution.
    SlideError
        The slide cannot be read.
    ConfigError
        A bad option value.
    """
    t_start = time.perf_counter()
    spec = model.spec
    device = torch.device(model.device)
    cuda = device.type == "cuda"
    tile_size_px, batch_size, reader_threads, tiles_per_step = engine_options(
        device,
        tile_size_px=tile_size_px,
        batch_size=batch_size,
        reader_threads=reader_threads,
        tiles_per_step=tiles_per_step,
    )
    thr = spec.decision_threshold(threshold)
    target_mpp = float(spec.target_mpp)
    slide.require_mpp()
    timings: dict[str, float] = {}

    tissue, stain, stain_record = _tissue_and_stain(slide, tissue, spec=spec, timings=timings)
    plan = plan_tiles(slide, spec, tissue=tissue, tile_size_px=tile_size_px)
    tile_decoder = _tile_decoder(slide, device)
    area, tiles, margin_px, read_px = plan.area, plan.tiles, plan.margin_px, plan.read_px
    f = slide.level0_per_px(target_mpp)
    classifier = PatchClassifier(
        model,
        batch_size=batch_size,
        threshold=thr,
        keep_from=NEAR_MISS_FRACTION * thr,
        cascade=cascade,
    )
    stream = TileStream(slide, tiles, read_px=read_px, target_mpp=target_mpp,
                        threads=reader_threads, depth=reader_threads + tiles_per_step,
                        pinned=cuda, held=tiles_per_step)  # fmt: skip
    step = _stepper(
        stream, classifier, area, spec=spec, level0_per_px=f, device=device, stain=stain
    )
    progress = progress or NULL_PROGRESS
    with progress.task(f"Predicting {slide.name}", total=len(tiles)) as task:
        detect_s = _stream_tiles(stream, step, classifier, tiles_per_step=tiles_per_step, task=task)
        gxy, prob = classifier.results()

    t0 = time.perf_counter()
    points, scores = _merge_detections(gxy, prob, spec=spec, level0_per_px=f)
    det = scores >= thr
    n_above = int(np.count_nonzero(prob >= thr))
    timings["merge_s"] = time.perf_counter() - t0
    timings["read_s"] = stream.read_s
    timings["read_wait_s"] = stream.wait_s
    timings["detect_s"] = detect_s
    timings["classify_s"] = classifier.seconds
    timings["total_s"] = time.perf_counter() - t_start
    tissue_mp = float(tissue.mask.sum()) * (tissue.downsample / f) ** 2 / 1e6
    return SlidePrediction(
        points_level0=points[det],
        scores=scores[det],
        threshold=thr,
        near_points_level0=points[~det],
        near_scores=scores[~det],
        n_candidates=classifier.n_classified,
        n_full=classifier.n_full,
        first_threshold=classifier.first_threshold,
        n_above_threshold=n_above,
        n_tiles=len(tiles),
        tile_size_px=tile_size_px,
        margin_px=margin_px,
        read_px=read_px,
        target_mpp=target_mpp,
        batch_size=batch_size,
        reader_threads=reader_threads,
        device=str(device),
        tissue=tissue,
        tissue_mp=tissue_mp,
        read_mp=len(tiles) * read_px * read_px / 1e6,
        timings={k: round(v, 4) for k, v in timings.items()},
        tile_decoder=tile_decoder,
        stain=stain_record,
    )


def _tissue_and_stain(
    slide: Any, tissue: TissueMask | None, *, spec: Any, timings: dict[str, float]
) -> tuple[TissueMask, np.ndarray | None, dict[str, Any]]:
    """The slide's tissue mask (computed when not given) and its stain matrix onto the
    model's reference with its record (:func:`wsdal_wsi.stain.stain_normaliser`);
    ``timings`` gets ``tissue_s`` (when computed) and ``stain_s``."""
    if tissue is None:
        t0 = time.perf_counter()
        tissue = tissue_mask(slide)
        timings["tissue_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    stain, record = stain_normaliser(
        slide, tissue, reference=spec.stain_estimate(), target_mpp=float(spec.target_mpp)
    )
    timings["stain_s"] = time.perf_counter() - t0
    return tissue, stain, record


def _stepper(
    stream: TileStream,
    classifier: PatchClassifier,
    area: Any,
    *,
    spec: Any,
    level0_per_px: float,
    device: torch.device,
    stain: np.ndarray | None,
) -> Callable[[list[Any]], float]:
    """:func:`_step` bound to one slide: its analysed area (``area.mask`` at
    ``area.downsample``) on the device, its stain matrix and the model's candidate and
    patch settings."""
    mask_h, mask_w = area.mask.shape
    return functools.partial(
        _step,
        stream=stream,
        classifier=classifier,
        area_dev=torch.from_numpy(np.ascontiguousarray(area.mask)).to(device),
        scale=level0_per_px / area.downsample,  # mask px per target px
        mask_wh=(mask_w, mask_h),
        device=device,
        target_mpp=float(spec.target_mpp),
        params=CandidateParams.from_dict(spec.candidate_params or {}),
        patch_px=int(spec.patch_size_px),
        stain=stain,
    )


def _tile_decoder(slide: Any, device: torch.device) -> str | None:
    """Decode the slide's raw JPEG tiles where :func:`tile_decode_device` says; the decoder used."""
    where = tile_decode_device(device)
    if where is not None and hasattr(slide, "decode_tiles_on"):
        why = slide.decode_tiles_on(where)
        if why is not None:
            log.info("%s: JPEG tiles decoded on the CPU (%s)", slide.name, why)
    info = slide.info() if hasattr(slide, "info") else {}
    return info.get("tile_decoder")


def _stream_tiles(
    stream: TileStream,
    step: Callable[[list[Any]], float],
    classifier: PatchClassifier,
    *,
    tiles_per_step: int,
    task: Any,
) -> float:
    """Feed the read tiles to ``step`` in groups of ``tiles_per_step``; flush the classifier.

    Returns the seconds ``step`` spent detecting and cropping (classification excluded).
    """
    detect_s = 0.0
    tile_iter = iter(stream)
    try:
        group: list[Any] = []
        for item in tile_iter:
            group.append(item)
            if len(group) == tiles_per_step:
                detect_s += step(group)
                task.advance(len(group))
                task.update(status=f"{classifier.n_classified:,} candidates")
                group = []
        if group:
            detect_s += step(group)
            task.advance(len(group))
        classifier.flush()
        task.update(status=f"{classifier.n_classified:,} candidates")
    finally:
        tile_iter.close()  # type: ignore[attr-defined]
    return detect_s


def _merge_detections(
    gxy: np.ndarray, prob: np.ndarray, *, spec: Any, level0_per_px: float
) -> tuple[np.ndarray, np.ndarray]:
    """Merge the kept candidates (detections and near misses) greedily by score.

    Parameters
    ----------
    gxy : ndarray
        ``(N, 2)`` int64 global pixel indices at the model's resolution.
    prob : ndarray
        ``(N,)`` float32 p(mitosis).
    spec : ModelSpec
        Gives the merge radius (µm) and the model's resolution.
    level0_per_px : float
        Level-0 px per px at the model's resolution.

    Returns
    -------
    points_level0 : ndarray
        ``(K, 2)`` float64 level-0 ``(x, y)`` (pixel centres).
    scores : ndarray
        ``(K,)`` float64 p(mitosis).
    """
    # Canonical order (row-major on the global lattice) before merging, so ties in
    # probability are broken by position, never by tile or batch order.
    order = np.lexsort((gxy[:, 0], gxy[:, 1])) if len(gxy) else np.zeros(0, np.int64)
    gxy, prob = gxy[order], prob[order]
    target_mpp = float(spec.target_mpp)
    radius_px = um_to_px(spec.merge_radius_um, target_mpp) if spec.merge_radius_um > 0 else 0.0
    keep = merge_points(gxy.astype(np.float64), prob.astype(np.float64), radius_px=radius_px)
    points = (gxy[keep].astype(np.float64) + 0.5) * level0_per_px
    return points, prob[keep].astype(np.float64)


def _step(
    group: Sequence[Any],
    *,
    stream: TileStream,
    classifier: PatchClassifier,
    area_dev: torch.Tensor,
    scale: float,
    mask_wh: tuple[int, int],
    device: torch.device,
    target_mpp: float,
    params: CandidateParams,
    patch_px: int,
    stain: np.ndarray | None = None,
) -> float:
    """Detect, own and crop the candidates of a group of read tiles; queue their patches.

    With a ``stain`` matrix the tiles are mapped by it first (candidates and patches
    both see the normalised pixels). Returns the seconds spent (the classifier's
    time is counted by itself).
    """
    t0 = time.perf_counter()
    before = classifier.seconds
    if len(group) == 1:
        batch = group[0].pixels.to(device, non_blocking=True)[None]
    else:
        batch = torch.empty((len(group), *group[0].pixels.shape), dtype=torch.uint8, device=device)
        for i, item in enumerate(group):
            batch[i].copy_(item.pixels, non_blocking=True)
    if stain is not None:
        batch = normalise_rgb(batch, stain)
    found = detect_candidates(batch.permute(0, 3, 1, 2), mpp=target_mpp, params=params)
    # detect_candidates synchronises (nonzero), so the copies are done: free the buffers.
    for item in group:
        stream.release(item.pixels)
    b_parts, x_parts, y_parts, g_parts = [], [], [], []
    for i, (item, cand) in enumerate(zip(group, found, strict=True)):
        if cand.shape[0] == 0:
            continue
        x = cand[:, 0].long()
        y = cand[:, 1].long()
        ox, oy = item.tile.origin_px
        cx0, cy0, cx1, cy1 = item.tile.core_px
        gx, gy = x + ox, y + oy
        own = (gx >= cx0) & (gx < cx1) & (gy >= cy0) & (gy < cy1)
        # In the inference area: the mask pixel holding the candidate's centre.
        col = torch.floor((gx.double() + 0.5) * scale).long()
        row = torch.floor((gy.double() + 0.5) * scale).long()
        inside = (col >= 0) & (row >= 0) & (col < mask_wh[0]) & (row < mask_wh[1])
        own &= inside
        own &= area_dev[row.clamp(0, mask_wh[1] - 1), col.clamp(0, mask_wh[0] - 1)]
        b_parts.append(torch.full_like(x, i)[own])
        x_parts.append(x[own])
        y_parts.append(y[own])
        g_parts.append(torch.stack([gx[own], gy[own]], dim=1))
    if b_parts:
        b, x, y = torch.cat(b_parts), torch.cat(x_parts), torch.cat(y_parts)
        patches = crop_patches(batch, b, x, y, patch_px)
        classifier.add(patches, torch.cat(g_parts))
    return time.perf_counter() - t0 - (classifier.seconds - before)
