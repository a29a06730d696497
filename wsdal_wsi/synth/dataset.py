"""Synthetic slides and datasets on disk: :func:`generate_slide`, :func:`generate_dataset`.

A dataset folder is usable directly as a slide-folder source::

    OUT/synth.json                 settings, seed, version, per-slide counts (provenance)
    OUT/<name>.tiff                pyramidal tiled JPEG BigTIFF
    OUT/<name>.geojson             the (noisy) pathologist annotations
    OUT/truth/<name>.geojson       every mitosis and look-alike (the ground truth)
    OUT/truth/<name>.noise.json    every click with what lies under it; every missed mitosis

Everything is deterministic in the seed: slide ``i`` of a dataset uses the
seed derived from ``(seed, i)``, so the first slides of a larger dataset are the
slides of a smaller one, and a slide can be made again alone with
:func:`generate_slide` and the seed recorded in ``synth.json``. Output does not
depend on the number of worker processes.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import tempfile
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from wsdal_wsi.atomic import atomic_path, write_json_atomic
from wsdal_wsi.errors import ConfigError, InputError
from wsdal_wsi.progress import NULL_PROGRESS, Progress
from wsdal_wsi.provenance import provenance
from wsdal_wsi.synth.annotate import (
    Annotations,
    simulate_annotations,
    write_annotations,
    write_noise,
    write_truth,
)
from wsdal_wsi.synth.fields import TextureBank
from wsdal_wsi.synth.layout import make_bank, tissue_value, tumour_value
from wsdal_wsi.synth.objects import KIND_NAMES, Objects, slide_rng
from wsdal_wsi.synth.params import AnnotationNoise, SynthParams
from wsdal_wsi.synth.plan import SlidePlan, make_plan
from wsdal_wsi.synth.pyramid import write_pyramid
from wsdal_wsi.synth.records import (
    MANIFEST_NAME,
    MANIFEST_VERSION,
    SynthDataset,
    SynthSlide,
    load_dataset,
)
from wsdal_wsi.synth.render import ChunkRenderer, chunk_grid, iter_bands

__all__ = [
    "MANIFEST_NAME",
    "SynthDataset",
    "SynthSlide",
    "generate_dataset",
    "generate_slide",
    "load_dataset",
    "slide_seed",
]


def slide_seed(seed: int, index: int) -> int:
    """The seed of slide ``index`` of a dataset made with ``seed`` (63-bit)."""
    state = np.random.SeedSequence([int(seed), int(index)]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


@contextlib.contextmanager
def _pool(workers: int) -> Iterator[Executor | None]:
    """A process pool of ``workers`` (None for 1), BLAS limited to one thread per worker."""
    if workers <= 1:
        yield None
        return
    # Workers: one BLAS thread each, and glibc keeps freed large blocks for reuse
    # (rendering makes many short-lived multi-MB arrays; mapping them fresh each time
    # costs page faults that double the rendering time).
    env = {
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "MALLOC_MMAP_THRESHOLD_": str(256 << 20),
        "MALLOC_TRIM_THRESHOLD_": str(512 << 20),
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # workers start on the first submits and inherit it
    try:
        pool = ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("spawn")
        )
        try:
            yield pool
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _check_workers(workers: Any) -> int:
    if (
        isinstance(workers, bool)
        or not isinstance(workers, (int, np.integer))
        or not 1 <= workers <= 256
    ):
        raise ConfigError(f"workers must be an integer in [1, 256], got {workers!r}")
    return int(workers)


def _slide_description(name: str, seed: int, params: SynthParams) -> str:
    return (
        f"wsdal-wsi synthetic slide {name}; seed={seed}; mpp={params.mpp}; "
        f"size={params.width_px}x{params.height_px}; not a real tissue image"
    )


def _render_slide(
    slide_path: Path,
    plan: SlidePlan,
    bank: TextureBank,
    *,
    executor: Executor | None,
    progress: Progress,
) -> int:
    """Render ``plan`` into the pyramidal TIFF ``slide_path``; return its level count."""
    params = plan.params
    name = plan.name
    n_chunks = sum(len(b) for b in chunk_grid(params.width_px, params.height_px))
    with (
        progress.task(f"Rendering {name}", total=n_chunks) as task,
        tempfile.TemporaryDirectory(prefix=".synth-", dir=slide_path.parent) as tmp,
    ):
        plan_path = None
        renderer = None
        if executor is not None:
            # Workers map the fields from disk instead of each holding a copy.
            plan.fields.to_memmap(Path(tmp) / "fields.npy")
            plan.slow.to_memmap(Path(tmp) / "slow.npy")
            plan_path = Path(tmp) / "plan.pickle"
            with open(plan_path, "wb") as fh:
                pickle.dump(plan, fh, protocol=pickle.HIGHEST_PROTOCOL)
        else:
            renderer = ChunkRenderer(plan, bank=bank)
        bands = iter_bands(
            plan_path,
            renderer,
            width_px=params.width_px,
            height_px=params.height_px,
            tile_px=params.tile_px,
            quality=plan.look.jpeg_quality,
            executor=executor,
            task=task,
        )
        with atomic_path(slide_path) as tmp_tiff:
            shapes = write_pyramid(
                tmp_tiff,
                bands,
                width_px=params.width_px,
                height_px=params.height_px,
                mpp=params.mpp,
                tile_px=params.tile_px,
                quality=plan.look.jpeg_quality,
                description=_slide_description(name, plan.seed, params),
                tmp_dir=tmp,
            )
    return len(shapes)


def _annotate(plan: SlidePlan, bank: TextureBank, noise: AnnotationNoise) -> Annotations:
    """Simulate the pathologist's annotations of ``plan`` (from the slide's "annotate" stream)."""
    params = plan.params

    def in_tumour(xy: np.ndarray) -> np.ndarray:
        return (tissue_value(plan.fields, bank, xy, params.mpp) > 6.0) & (
            tumour_value(plan.fields, bank, xy, params.mpp) > 0.0
        )

    return simulate_annotations(
        plan.objects,
        noise,
        rng=slide_rng(plan.seed, "annotate"),
        size_px=params.size_px,
        mpp=params.mpp,
        in_tumour=in_tumour,
    )


def _counts(objects: Objects, summary: dict[str, Any]) -> dict[str, Any]:
    """Per-slide counts: objects by kind, ambiguous mitoses, and the noise summary."""
    kinds = np.bincount(objects.kind.astype(np.int64), minlength=len(KIND_NAMES))
    return {
        "mitoses": int(kinds[0]),
        "apoptotic_bodies": int(kinds[1]),
        "pyknotic_nuclei": int(kinds[2]),
        "lymphocytes": int(kinds[3]),
        "lookalikes": int(kinds[1:].sum()),
        "ambiguous_mitoses": int((objects.hard & (objects.kind == 0)).sum()),
        **{k: v for k, v in summary.items() if k not in ("mitoses",)},
    }


def _generate(
    out_dir: Path,
    *,
    name: str,
    params: SynthParams,
    noise: AnnotationNoise,
    seed: int,
    executor: Executor | None,
    progress: Progress,
    settings: dict[str, Any],
) -> SynthSlide:
    """Make one slide, its truth and its noisy annotations in ``out_dir``."""
    bank = make_bank(params, seed)
    plan = make_plan(params, seed=seed, name=name, bank=bank)
    slide_path = out_dir / f"{name}.tiff"
    prov = provenance(slide=slide_path.name, settings=settings, seed=seed)
    level_count = _render_slide(slide_path, plan, bank, executor=executor, progress=progress)
    ann = _annotate(plan, bank, noise)
    truth_dir = out_dir / "truth"
    truth_path = truth_dir / f"{name}.geojson"
    noise_path = truth_dir / f"{name}.noise.json"
    ann_path = out_dir / f"{name}.geojson"
    write_truth(truth_path, plan.objects, seed=seed, provenance={**prov, "content": "ground truth"})
    write_annotations(
        ann_path,
        ann,
        seed=seed,
        provenance={**prov, "content": "simulated pathologist annotations"},
    )
    summary = write_noise(
        noise_path,
        ann,
        plan.objects,
        noise=noise,
        provenance={**prov, "content": "injected annotation noise"},
    )
    return SynthSlide(
        name=name,
        seed=seed,
        slide_path=slide_path,
        annotation_path=ann_path,
        truth_path=truth_path,
        noise_path=noise_path,
        width_px=params.width_px,
        height_px=params.height_px,
        mpp=params.mpp,
        level_count=level_count,
        tissue_area_mm2=plan.tissue_area_mm2,
        counts=_counts(plan.objects, summary),
        look=plan.look.to_dict(),
    )


def _prepare_out(out_dir: str | os.PathLike[str]) -> Path:
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    try:
        (out / "truth").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{out}: cannot create the output folder ({exc})") from exc
    return out


def generate_slide(
    out_dir: str | os.PathLike[str],
    *,
    name: str = "synth",
    params: SynthParams = SynthParams(),
    noise: AnnotationNoise = AnnotationNoise(),
    seed: int = 0,
    workers: int = 1,
    progress: Progress | None = None,
) -> SynthSlide:
    """Generate one synthetic slide with its truth and noisy annotations.

    Parameters
    ----------
    out_dir : path-like
        Output folder (created); writes ``<name>.tiff``, ``<name>.geojson``,
        ``truth/<name>.geojson``, ``truth/<name>.noise.json``.
    name : str
        File stem.
    params : SynthParams
        Content and appearance.
    noise : AnnotationNoise
        Annotation noise.
    seed : int
        The slide's seed (same seed and settings: byte-identical slide and
        annotation features).
    workers : int
        Processes rendering tile rows in parallel (1: this process).
    progress : Progress, optional
        Progress reporter (one bar per slide, advanced per chunk).
    """
    seed = _check_seed(seed)
    workers = _check_workers(workers)
    if not name or any(ch in name for ch in '/\\:*?"<>|'):
        raise ConfigError(f"slide name must be a plain file name, got {name!r}")
    out = _prepare_out(out_dir)
    settings = {"params": params.to_dict(), "noise": noise.to_dict()}
    with _pool(workers) as executor:
        return _generate(
            out,
            name=name,
            params=params,
            noise=noise,
            seed=seed,
            executor=executor,
            progress=progress or NULL_PROGRESS,
            settings=settings,
        )


def generate_dataset(
    out_dir: str | os.PathLike[str],
    *,
    n_slides: int,
    params: SynthParams = SynthParams(),
    noise: AnnotationNoise = AnnotationNoise(),
    seed: int = 0,
    workers: int = 1,
    prefix: str = "synth_",
    progress: Progress | None = None,
) -> list[SynthSlide]:
    """Generate a dataset folder of ``n_slides`` synthetic slides and its ``synth.json``.

    Parameters
    ----------
    out_dir : path-like
        Output folder (created; existing files of the same names are replaced).
    n_slides : int
        Number of slides (named ``<prefix>000``, ``<prefix>001``...).
    params, noise : SynthParams, AnnotationNoise
        Content and annotation-noise settings (every slide draws its own look).
    seed : int
        Dataset seed; slide ``i`` uses :func:`slide_seed` ``(seed, i)``.
    workers : int
        Processes rendering in parallel (the output does not depend on it).
    prefix : str
        Slide name prefix.
    progress : Progress, optional
        Progress reporter.

    Returns
    -------
    list of SynthSlide
        One record per slide, in order.
    """
    seed = _check_seed(seed)
    workers = _check_workers(workers)
    if (
        isinstance(n_slides, bool)
        or not isinstance(n_slides, (int, np.integer))
        or not 1 <= n_slides <= 10_000
    ):
        raise ConfigError(f"n_slides must be an integer in [1, 10000], got {n_slides!r}")
    out = _prepare_out(out_dir)
    progress = progress or NULL_PROGRESS
    settings = {"params": params.to_dict(), "noise": noise.to_dict(), "dataset_seed": seed}
    slides: list[SynthSlide] = []
    with _pool(workers) as executor:
        for i in range(int(n_slides)):
            slides.append(
                _generate(
                    out,
                    name=f"{prefix}{i:03d}",
                    params=params,
                    noise=noise,
                    seed=slide_seed(seed, i),
                    executor=executor,
                    progress=progress,
                    settings=settings,
                )
            )
    manifest = {
        "wsdal": provenance(settings=settings, workers=workers),
        "format": "wsdal-wsi synthetic dataset",
        "manifest_version": MANIFEST_VERSION,
        "seed": seed,
        "n_slides": int(n_slides),
        "params": params.to_dict(),
        "noise": noise.to_dict(),
        "classes": {
            "positive": "Mitosis",
            "negative": noise.negative_class,
            "truth": list(KIND_NAMES),
            "region": "Region",
        },
        "slides": [s.to_dict(relative_to=out) for s in slides],
    }
    write_json_atomic(out / MANIFEST_NAME, manifest)
    return slides
