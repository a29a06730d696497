"""A training run: settings, patch store, stages in order, threshold, model file.

Run folder::

    RUN/config.json        resolved settings (source, method, preset with every value, seed, ...)
    RUN/store/             the patch store (extracted once)
    RUN/ns/ RUN/dmu/ RUN/audit/ RUN/dle/ RUN/csdgl/    (method wsdal)
    RUN/baseline/                                       (method baseline)
    RUN/threshold.json     the decision threshold and the validation F1
    RUN/cascade/           the cascade's first stage, distilled from the final model
    RUN/model.pt           the model file (``wsdal predict --model RUN/model.pt``)
    RUN/summary.json       stage statistics, threshold, held-out metrics, where the model is

``--resume`` continues a run: a stage with ``done.json`` is not redone, a stage
with a checkpoint continues from its last finished epoch. A run folder is
refused without ``--resume`` when it already holds a run, and with it when the
settings differ.

Launched by torchrun with several processes, :func:`train_run` joins them
(:func:`~wsdal_wsi.train.distributed.distributed_session`): rank 0 checks the run
folder and extracts the patch store while the others wait, every stage trains one
network with DistributedDataParallel, DLE and the label audit run on rank 0, each
stage's files are read by all after a barrier, and only rank 0 writes.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision

from wsdal_wsi import __version__
from wsdal_wsi.atomic import write_json_atomic
from wsdal_wsi.errors import ConfigError, InputError, TrainingError
from wsdal_wsi.model.cascade import CascadeSpec
from wsdal_wsi.model.device import resolve_device
from wsdal_wsi.model.file import ModelSpec, save_model
from wsdal_wsi.model.torch_files import read_torch_file
from wsdal_wsi.progress import Progress
from wsdal_wsi.provenance import provenance
from wsdal_wsi.qupath.model import ClassSettings
from wsdal_wsi.train.audit import write_audit
from wsdal_wsi.train.audit_lookalike import click_lookalike
from wsdal_wsi.train.baseline import train_ce
from wsdal_wsi.train.cascade import run_cascade
from wsdal_wsi.train.common import SampleSet, StageContext, StageDir
from wsdal_wsi.train.context import require_both_classes, resolve_init_weights, stage_context
from wsdal_wsi.train.csdgl import run_csdgl
from wsdal_wsi.train.distributed import barrier, distributed_session, is_main_process, on_main
from wsdal_wsi.train.dle import kept_samples, run_dle
from wsdal_wsi.train.dmu import read_dmu_table, run_dmu
from wsdal_wsi.train.dmu_outcomes import dmu_removed
from wsdal_wsi.train.extract import extract_store
from wsdal_wsi.train.ns import initial_training_set, run_ns
from wsdal_wsi.train.presets import Preset
from wsdal_wsi.train.settings import (
    METHODS,
    STAGES,
    RunSettings,
    check_run_config,
    load_json,
    read_run_config,
)
from wsdal_wsi.train.store import PatchStore
from wsdal_wsi.train.threshold import choose_threshold, heldout_metrics

__all__ = [
    "METHODS",
    "STAGES",
    "RunSettings",
    "read_run_config",
    "train_ablation",
    "train_from_store",
    "train_run",
]

log = logging.getLogger(__name__)

ABLATIONS = ("ns", "ns_dmu", "ns_dmu_dle")
CLASS_NAMES = ("Non-mitosis", "Mitosis")


def train_from_store(
    store: PatchStore,
    out_dir: str | Path,
    settings: RunSettings,
    *,
    device: str | torch.device = "auto",
    resume: bool = False,
    stop_after: str | None = None,
    progress: Progress | None = None,
    cache_bytes: int | None = None,
) -> dict[str, Any]:
    """Train on a ready patch store (the stages, threshold and model file).

    Parameters
    ----------
    store : PatchStore
    out_dir : path
        The run folder.
    settings : RunSettings
    device : str
        ``auto``, ``cuda`` or ``cpu``.
    resume : bool
        Continue a run in ``out_dir``.
    stop_after : str, optional
        Stop after this stage (``ns``, ``dmu``, ``dle``), e.g. to inspect it.
    progress : Progress, optional
    cache_bytes : int, optional
        Device cache budget of the patch batches.

    Returns
    -------
    dict
        The run summary (also ``RUN/summary.json``); ``"model"`` is None when
        stopped early.
    """
    out_dir = Path(out_dir)
    if stop_after is not None and stop_after not in STAGES:
        raise ConfigError(f"stop_after must be one of {', '.join(STAGES)}, got {stop_after!r}")
    on_main(lambda: _record_store(out_dir, settings, store, resume=resume))
    preset = settings.preset
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed patch sizes: let cuDNN pick its kernels
    pre = resolve_init_weights(settings.pretrained, preset.width, settings.init_model)
    if settings.init_model:
        init = f"the earlier model {pre} (fine-tuning)"
    elif pre:
        init = f"ImageNet/pretrained weights from {pre}"
    else:
        init = "random init (no local ImageNet weights)"
    log.info("training on %s; trunk initialisation: %s", dev, init)
    ctx = stage_context(store, dev, settings, pre, progress, cache_bytes)
    stages: dict[str, Any] = {}
    if settings.method == "baseline":
        samples = initial_training_set(store, neg_per_pos=preset.ns.neg_per_pos, seed=settings.seed)
        model, stages["baseline"] = train_ce(ctx, out_dir / "baseline", samples, preset.baseline)
        arch_kwargs = stages["baseline"]["arch_kwargs"]
    else:
        model, arch_kwargs = _wsdal_stages(ctx, out_dir, settings, stages, stop_after=stop_after)
        if model is None:
            return _partial(out_dir, settings, stages, stop_after, store=store)
    barrier()
    return _finish(
        ctx,
        out_dir,
        settings,
        model,
        arch_kwargs,
        stages,
        init=init,
        model_path=out_dir / "model.pt",
    )


def _record_store(out_dir: Path, settings: RunSettings, store: PatchStore, *, resume: bool) -> None:
    """Check the run folder (config.json) and record where its patch store is."""
    check_run_config(out_dir, settings, resume=resume)
    cfg = read_run_config(out_dir) or {}
    root = str(Path(store.root).resolve())
    if cfg.get("store") != root:
        write_json_atomic(out_dir / "config.json", {**cfg, "store": root})


def _wsdal_stages(
    ctx: StageContext,
    out_dir: Path,
    settings: RunSettings,
    stages: dict[str, Any],
    *,
    stop_after: str | None,
) -> tuple[Any, dict[str, Any] | None]:
    """NS, DMU (+ label audit), DLE, CSDGL into ``stages``; ``(model, arch_kwargs)``, or
    ``(None, None)`` when stopped after ``stop_after``. Each stage's files are read by
    every process after a barrier; DLE and the audit run on rank 0 only."""
    preset, store = settings.preset, ctx.store
    stages["ns"] = run_ns(ctx, out_dir / "ns", preset.ns)
    barrier()
    if stop_after == "ns":
        return None, None
    ns_set = SampleSet.load(out_dir / "ns" / "train_set.csv")
    stages["dmu"] = run_dmu(ctx, out_dir / "dmu", ns_set, preset.dmu)
    barrier()
    table = read_dmu_table(out_dir / "dmu")
    run_info = {"run": str(out_dir), "preset": preset.name}
    look = partial(click_lookalike, ctx, out_dir / "dmu", table, settings=preset.audit)
    audit = partial(write_audit, settings=preset.audit, run_info=run_info, click_lookalike=look)
    stages["audit"] = on_main(lambda: audit(out_dir / "audit", table, store))
    if stop_after == "dmu":
        return None, None
    feats = np.load(out_dir / "dmu" / "features.npy").astype(np.float32)
    stages["dle"] = on_main(
        lambda: run_dle(out_dir / "dle", table, feats, preset.dle, seed=settings.seed)
    )
    if stop_after == "dle":
        return None, None
    kept, subclass = kept_samples(out_dir / "dle")
    require_both_classes(kept, "CSDGL (after DMU/DLE removed noisy samples)")
    model, stages["csdgl"] = run_csdgl(
        ctx,
        out_dir / "csdgl",
        kept,
        subclass,
        preset.csdgl,
        n_per_class=preset.dle.levels + 1,
        dmu_dir=out_dir / "dmu",
    )
    return model, stages["csdgl"]["arch_kwargs"]


def train_run(
    source: str | Path,
    out_dir: str | Path,
    settings: RunSettings,
    *,
    device: str = "auto",
    resume: bool = False,
    stop_after: str | None = None,
    progress: Progress | None = None,
    cache_bytes: int | None = None,
    relink: Sequence[str] | None = None,
) -> dict[str, Any]:
    """``wsdal train``: extract the patch store of ``source`` once, then train.

    ``settings.source`` is set from ``source``. The store lives in ``RUN/store``;
    an incomplete one (an interrupted extraction) is extracted again. ``relink``
    ("OLD=NEW" slide path prefixes) finds the slides of a moved project; it does
    not change the run's settings.

    Returns
    -------
    dict
        The run summary (see :func:`train_from_store`).
    """
    out_dir = Path(out_dir)
    source = Path(source)
    if not source.exists():
        raise InputError(f"{source}: no such file or folder")
    settings = dataclasses.replace(settings, source=str(source.resolve()))
    # a wrong --init or --pretrained is refused before the slides are read
    start = resolve_init_weights(settings.pretrained, settings.preset.width, settings.init_model)
    if settings.pretrained and not settings.init_model:  # its content, too (safely)
        read_torch_file(start, what="ResNet-18 weights file")
    root = out_dir / "store"
    with distributed_session(device) as dev:

        def prepare() -> None:  # rank 0 only: the others wait for the store
            check_run_config(out_dir, settings, resume=resume)
            if not PatchStore.is_complete(root):
                extract_store(
                    source,
                    root,
                    settings=settings.preset.extract,
                    val_fraction=settings.val_fraction,
                    seed=settings.seed,
                    mpp=settings.mpp,
                    classes=settings.classes,
                    relink=relink,
                    device=dev,
                    progress=progress,
                )

        on_main(prepare)
        return train_from_store(
            PatchStore(root),
            out_dir,
            settings,
            device=dev,
            resume=True,
            stop_after=stop_after,
            progress=progress,
            cache_bytes=cache_bytes,
        )


def _skipped_images(store: PatchStore) -> list[dict[str, str]]:
    """The images the extraction left out, each ``{"key", "reason"}`` (``store.json``)."""
    return list(store.meta.get("settings", {}).get("skipped", []))


def _partial(
    out_dir: Path,
    settings: RunSettings,
    stages: dict[str, Any],
    stopped_after: str,
    *,
    store: PatchStore,
) -> dict[str, Any]:
    summary = {
        "method": settings.method,
        "preset": settings.preset.name,
        "skipped_images": _skipped_images(store),
        "stages": stages,
        "model": None,
        "stopped_after": stopped_after,
    }
    if is_main_process():
        write_json_atomic(out_dir / "summary.json", summary)
    return summary


def _finish(
    ctx: StageContext,
    out_dir: Path,
    settings: RunSettings,
    model: torch.nn.Module,
    arch_kwargs: dict[str, Any],
    stages: dict[str, Any],
    *,
    init: str,
    model_path: Path,
) -> dict[str, Any]:
    preset = settings.preset
    thr_path = model_path.parent / "threshold.json"
    thr = load_json(thr_path)
    if thr is None:
        thr = choose_threshold(
            model,
            ctx,
            match_radius_um=preset.match_radius_um,
            merge_radius_um=preset.merge_radius_um,
            n_se=preset.threshold_se,
        )
        thr["heldout"] = heldout_metrics(model, ctx)
        if is_main_process():
            write_json_atomic(thr_path, thr)
    store = ctx.store
    spec = ModelSpec(
        arch="proj_resnet18",
        arch_kwargs=arch_kwargs,
        patch_size_px=store.patch_px,
        target_mpp=store.target_mpp,
        mean=ctx.mean,
        std=ctx.std,
        threshold=float(thr["threshold"]),
        class_names=CLASS_NAMES,
        candidate_params=dict(store.meta.get("settings", {}).get("candidate_params", {})),
        stain_reference=dict(
            (store.meta.get("settings", {}).get("stain") or {}).get("reference") or {}
        ),
        merge_radius_um=preset.merge_radius_um,
        annotation_classes=settings.classes.to_dict(),
        calibration=dict(thr.get("calibration") or {}),
        provenance=provenance(
            data={
                "source": settings.source,
                "store": str(store.root),
                "images": [
                    {"key": im["key"], "split": im["split"], "slide": im["slide"]}
                    for im in store.images
                ],
                "counts": store.meta.get("counts", {}),
            },
            method=settings.method,
            preset=preset.to_dict(),
            seed=settings.seed,
            init=init,
            stages=stages,
            threshold=thr,
            versions={
                "wsdal-wsi": __version__,
                "torch": torch.__version__,
                "torchvision": torchvision.__version__,
                "numpy": np.__version__,
            },
        ),
    )
    cascade = _cascade(ctx, model_path.parent / "cascade", model, stages, thr, preset)
    if is_main_process():
        save_model(model_path, model, spec, cascade=cascade)
    summary = {
        "method": settings.method,
        "preset": preset.name,
        "device": str(ctx.device),
        "init": init,
        "skipped_images": _skipped_images(store),
        "stages": stages,
        "threshold": thr["threshold"],
        "val_f1": thr["f1"],
        "threshold_info": {k: v for k, v in thr.items() if k != "heldout"},
        "heldout": thr["heldout"],
        "calibration": thr.get("calibration") or {},
        "model": str(model_path),
        "processes": ctx.world,
    }
    if is_main_process():
        write_json_atomic(model_path.parent / "summary.json", summary)
    barrier()  # the model file is there for every process when this returns
    return summary


def _cascade(
    ctx: StageContext,
    out_dir: Path,
    model: torch.nn.Module,
    stages: dict[str, Any],
    thr: dict[str, Any],
    preset: Preset,
) -> tuple[torch.nn.Module, CascadeSpec] | None:
    """The cascade stage (into ``stages["cascade"]``): its first stage and spec, or None."""
    first, stages["cascade"] = run_cascade(
        ctx,
        out_dir,
        model,
        threshold=float(thr["threshold"]),
        merge_radius_um=preset.merge_radius_um,
        settings=preset.cascade,
    )
    if first is None:
        return None
    info = {k: v for k, v in stages["cascade"].items() if k != "table"}
    return first, _cascade_spec(stages["cascade"], info)


def _cascade_spec(done: dict[str, Any], info: dict[str, Any]) -> CascadeSpec:
    return CascadeSpec(
        arch=done["arch"],
        arch_kwargs=done["arch_kwargs"],
        table=tuple(done["table"]),
        keep_fraction=float(done["settings"]["keep_fraction"]),
        provenance=info,
    )


def train_ablation(
    run_dir: str | Path,
    variant: str,
    *,
    device: str = "auto",
    progress: Progress | None = None,
    cache_bytes: int | None = None,
) -> dict[str, Any]:
    """Train a cross-entropy model on an intermediate sample set of a finished WS-DAL run.

    ``variant``: ``ns`` (the NS set), ``ns_dmu`` (the NS set without what DMU
    removes: :func:`~wsdal_wsi.train.dmu_outcomes.dmu_removed`), ``ns_dmu_dle``
    (DLE's kept set). Trained with the baseline's settings into
    ``RUN/ablation-<variant>/`` (with its own threshold and ``model.pt``), so each
    stage's contribution can be measured.

    Returns
    -------
    dict
        The ablation's summary (as :func:`train_from_store`'s).
    """
    run_dir = Path(run_dir)
    if variant not in ABLATIONS:
        raise ConfigError(f"ablation must be one of {', '.join(ABLATIONS)}, got {variant!r}")
    cfg = load_json(run_dir / "config.json")
    if cfg is None or cfg.get("method") != "wsdal":
        raise TrainingError(f"{run_dir}: not a WS-DAL run folder")
    settings = RunSettings(
        method="wsdal",
        preset=Preset.from_dict(cfg["preset"]),
        seed=int(cfg["seed"]),
        val_fraction=float(cfg["val_fraction"]),
        source=cfg.get("source"),
        mpp=cfg.get("mpp"),
        pretrained=cfg.get("pretrained"),
        init_model=cfg.get("init_model"),
        classes=ClassSettings.from_dict(cfg.get("classes") or {}),
    )
    need = {"ns": "ns", "ns_dmu": "dmu", "ns_dmu_dle": "dle"}[variant]
    if StageDir(run_dir / need).done is None:
        raise TrainingError(f"{run_dir}: stage {need} has not finished")
    store = PatchStore(cfg.get("store") or run_dir / "store")
    ns_set = SampleSet.load(run_dir / "ns" / "train_set.csv")
    if variant == "ns":
        samples = ns_set
    elif variant == "ns_dmu":
        t = read_dmu_table(run_dir / "dmu")
        bad = dmu_removed(t, keep_negative_clicks=settings.preset.dle.keep_negative_clicks)
        samples = ns_set.subset(~bad)
    else:
        samples, _ = kept_samples(run_dir / "dle")
    require_both_classes(samples, f"ablation {variant}")
    dev = resolve_device(device)
    preset = settings.preset
    pre = resolve_init_weights(settings.pretrained, preset.width)
    init = f"pretrained weights from {pre}" if pre else "random init (no local ImageNet weights)"
    ctx = stage_context(store, dev, settings, pre, progress, cache_bytes)
    out = run_dir / f"ablation-{variant}"
    model, stats = train_ce(ctx, out, samples, preset.baseline, name=f"ablation-{variant}")
    return _finish(
        ctx,
        out,
        settings,
        model,
        stats["arch_kwargs"],
        {variant: stats},
        init=init,
        model_path=out / "model.pt",
    )
