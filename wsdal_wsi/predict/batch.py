"""The prediction batch: every image of a source, resumable, failures recorded with the reason.

:func:`run_batch` is ``wsdal predict``. For each image of the source (or of its
shard, ``--shard K/N``):

- an image an earlier run finished with the same model and settings (its
  ``<key>.summary.json`` says so, and its files are there) is **skipped**; one
  whose detections are the same but whose hotspot settings or threshold
  changed is **recounted** without the model; ``force=True`` predicts all;
- any other image is **predicted** by the executor: in this process
  (:class:`~wsdal_wsi.predict.jobs.LocalExecutor`) or on a Ray cluster
  (:class:`~wsdal_wsi.predict.ray_executor.RayExecutor`), with the same code;
- an image that fails (slide missing, not opening, corrupt, no resolution, an
  output that cannot be written, a worker that died twice, or an unexpected
  error) is **failed**: its reason goes into ``batch.json`` and a failed
  ``<key>.summary.json``, a warning is logged, and the batch goes on.

``batch.json`` is rewritten after every image, so an interrupted batch (Ctrl-C,
a killed job) says where it stopped; running the same command again resumes it
(finished slides are skipped). ``counts.csv``, ``counts.xlsx`` and ``index.html``
are written at the end (and every few seconds as slides finish, for a parallel
executor or a shard), and with ``write_qupath`` the results are put into the QuPath
project (paquo). The batch holds OUT's folder lock (:class:`wsdal_wsi.lock.FolderLock`)
throughout: shared with the runs of the same settings (the other shards of the same
batch, or the same command started twice), refused to runs with other settings; each
slide is written under its own lock by one run; each shard rebuilds the batch files
from the summaries of every finished image, so the last shard to finish leaves them
complete.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wsdal_wsi.atomic import make_dirs, remove_stale_temp_files
from wsdal_wsi.errors import ConfigError, OutputError, QuPathUnavailableError
from wsdal_wsi.lock import FolderLock
from wsdal_wsi.model.file import ModelSpec
from wsdal_wsi.predict.image import exchange_copies
from wsdal_wsi.predict.jobs import Executor, ImageJob, LocalExecutor, predict_job
from wsdal_wsi.predict.ledger import BatchLedger, new_batch_state
from wsdal_wsi.predict.outputs import check_outputs_apart, folder_settings
from wsdal_wsi.predict.settings import PredictSettings, file_sha256
from wsdal_wsi.predict.shard import Shard
from wsdal_wsi.predict.state import BatchState, ImageState, check_batch_file
from wsdal_wsi.progress import NULL_PROGRESS, Progress
from wsdal_wsi.qupath import paquo_adapter, write_to_qupath
from wsdal_wsi.report import ModelInfo, SlideSummary

__all__ = ["BatchResult", "check_write_qupath", "describe_model", "predict_one", "run_batch"]

log = logging.getLogger(__name__)


@dataclass
class BatchResult:
    """What :func:`run_batch` did.

    Attributes
    ----------
    state : BatchState
        The final ``batch.json`` content (per-image status and reason).
    summaries : list of SlideSummary
        One per image of the source (failed ones included), in source order; for a
        shard, one per image of the shard.
    outputs : dict of str to Path
        ``csv``, ``xlsx``, ``html`` (batch outputs) and ``batch`` (``batch.json``).
    qupath : object or None
        The paquo write report (``--write-qupath``).
    """

    state: BatchState
    summaries: list[SlideSummary] = field(default_factory=list)
    outputs: dict[str, Path] = field(default_factory=dict)
    qupath: Any = None

    @property
    def failed(self) -> list[ImageState]:
        """The images of this run that failed (a shard: of its own images)."""
        owned = self.state.owned
        return [
            im
            for im in self.state.images
            if im.status == "failed" and (owned is None or im.key in owned)
        ]


def check_write_qupath(source: Any) -> None:
    """Raise unless ``--write-qupath`` can work: a QuPath project and a QuPath installation.

    Raises
    ------
    ConfigError
        The source is not a QuPath project.
    QuPathUnavailableError
        paquo finds no QuPath installation.
    """
    if source.kind != "qupath-project":
        raise ConfigError(
            f"--write-qupath needs a QuPath project as the source, got a {source.kind} "
            f"({source.path})"
        )
    if not paquo_adapter.qupath_available():
        raise QuPathUnavailableError(
            "--write-qupath: " + paquo_adapter.UNAVAILABLE_MESSAGE + ". The results are also "
            "in <project>/wsdal/results/ for import_results.groovy (run without --write-qupath)"
        )


def describe_model(model_path: str | os.PathLike[str], model: Any) -> ModelInfo:
    """What every output records of the model: its path, SHA-256, threshold and resolution.

    ``model`` is a loaded model or its :class:`~wsdal_wsi.model.file.ModelSpec`.
    """
    spec = model if isinstance(model, ModelSpec) else model.spec
    return ModelInfo(
        path=str(Path(model_path).resolve()),
        sha256=file_sha256(model_path),
        threshold=spec.threshold,
        target_mpp=spec.target_mpp,
        calibration=dict(spec.calibration),
    )


def _make_job(
    index: int,
    record: Any,
    source: Any,
    out: Path,
    *,
    model_info: ModelInfo,
    settings: PredictSettings,
    spec: ModelSpec,
) -> ImageJob:
    return ImageJob(
        index=index,
        record=record,
        out_dir=out,
        model_info=model_info,
        settings=settings,
        threshold=settings.threshold_for(spec),
        target_mpp=spec.target_mpp,
        classes=source.classes,
        copies=exchange_copies(source, record, out),
        source_info=source.describe(),
    )


def predict_one(
    source: Any,
    record: Any,
    model: Any,
    out_dir: str | os.PathLike[str],
    *,
    model_info: ModelInfo,
    settings: PredictSettings = PredictSettings(),
) -> SlideSummary:
    """Predict one image of ``source`` into ``out_dir``; a failure becomes a failed summary.

    The unit of work for a caller that schedules slides itself: it writes the
    image's own files (``<key>.geojson``, ``.summary.json``, report, ...) and never
    raises for a slide that cannot be processed: the reason is in the returned
    (and written) failed summary. It does not touch ``batch.json`` or the batch's
    spreadsheets; rebuild those with :func:`wsdal_wsi.report.rebuild_batch_outputs`
    (``wsdal report OUT``). ``wsdal predict --ray`` and ``--shard`` do all of this.

    Parameters
    ----------
    source : wsdal_wsi.qupath.Source
    record : wsdal_wsi.qupath.ImageRecord
        One of ``source.images()``.
    model : wsdal_wsi.model.file.LoadedModel
    out_dir : path-like
    model_info : ModelInfo
        From :func:`describe_model`.
    settings : PredictSettings
    """
    out = Path(out_dir)
    make_dirs(out)
    job = _make_job(
        0, record, source, out, model_info=model_info, settings=settings, spec=model.spec
    )
    return predict_job(job, model).summary


def run_batch(
    source: Any,
    model_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    settings: PredictSettings = PredictSettings(),
    force: bool = False,
    write_qupath: bool = False,
    progress: Progress | None = None,
    on_image_done: Callable[[ImageState], None] | None = None,
    shard: Shard | None = None,
    executor: Executor | None = None,
) -> BatchResult:
    """Predict every image of a source into ``out_dir`` (``wsdal predict``).

    Parameters
    ----------
    source : wsdal_wsi.qupath.Source
        From :func:`wsdal_wsi.qupath.open_source` (a QuPath project or a slide folder).
    model_path : path-like
        A model file (``wsdal train``'s ``RUN/model.pt``).
    out_dir : path-like
        The output folder (created). It may hold earlier results (their
        GeoJSON files are merged, never replacing objects that wsdal-wsi did
        not make), but none of its outputs may be one of the source's files (a
        slide folder with its sidecars, a project's annotation exports).
    settings : PredictSettings
    force : bool
        Predict every image again, even those an earlier run finished.
    write_qupath : bool
        Put the results into the QuPath project with paquo after the batch
        (needs a QuPath installation; checked before any work; not with ``shard``).
    progress : Progress, optional
        A bar for the batch and, in this process, one per slide.
    on_image_done : callable, optional
        Called with each image's :class:`ImageState` once it is recorded (a
        hook for callers; an exception it raises stops the batch, which stays
        resumable).
    shard : Shard, optional
        Predict only this shard's images (every N-th by key); other shards of
        the same batch may write into ``out_dir`` at the same time.
    executor : Executor, optional
        Where images are predicted (default: :class:`LocalExecutor` on
        ``settings.device``; :class:`~wsdal_wsi.predict.ray_executor.RayExecutor`
        for a Ray cluster).

    Returns
    -------
    BatchResult

    Raises
    ------
    ModelFileError
        The model file is missing or not a model (exit 2).
    InputError
        ``out_dir`` holds a ``batch.json`` that is not ours; a bad option.
    OutputError
        ``out_dir`` cannot be written (read-only, under a plain file, full
        disk), an output would replace an input, or another run writes the
        folder with other settings.
    QuPathUnavailableError
        ``write_qupath`` and no QuPath installation.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out}: exists and is not a folder")
    batch_path = check_batch_file(out)
    if write_qupath:
        if shard is not None:
            raise ConfigError(
                "--write-qupath cannot be used with --shard (several processes would write "
                "into one project): when the shards are done, run the same command once "
                "without --shard and with --write-qupath (finished slides are skipped)"
            )
        check_write_qupath(source)
    executor = executor or LocalExecutor(settings.device)
    progress = progress or NULL_PROGRESS
    try:
        spec = executor.prepare(Path(model_path))
        model_info = describe_model(model_path, spec)
        records = source.images(progress=progress)
        threshold = settings.threshold_for(spec)
        check_outputs_apart(source, records, out)
        make_dirs(out)
        key = folder_settings(
            source, model_sha256=model_info.sha256, threshold=threshold, settings=settings
        )
        with FolderLock(out, settings=key, command="wsdal predict") as lock:
            if lock.alone:
                for p in remove_stale_temp_files(out):
                    log.info("removed %s, left by a run that was killed", p)
            state = new_batch_state(
                batch_path,
                records,
                source_info=source.describe(),
                model_info=model_info,
                settings={**settings.to_dict(), "threshold_used": threshold, "force": force},
                executor=executor.describe(),
                shard=shard,
            )
            mine = {r.key for r in (shard.select(records, key=_key) if shard else records)}
            jobs = [
                _make_job(i, r, source, out, model_info=model_info, settings=settings, spec=spec)
                for i, r in enumerate(records)
                if r.key in mine
            ]
            state.owned = mine if shard is not None else None
            state.lock = lock
            state.save()
            run = BatchLedger(
                state, out, records, lock, shard=shard, live=executor.parallel or shard is not None
            )
            try:
                run.go(jobs, executor, force=force, progress=progress, on_image_done=on_image_done)
                summaries, outputs = run.finish()
                result = BatchResult(state=state, summaries=summaries, outputs=outputs)
                if write_qupath:
                    result.qupath = _write_into_project(source, records, state)
                state.status = "finished"
                state.save()
            except BaseException:  # Ctrl-C, a full disk, a hook's exception: resumable
                run.interrupted()
                raise
            result.outputs["batch"] = state.path
            return result
    finally:
        executor.close()


def _key(record: Any) -> str:
    return record.key


def _write_into_project(source: Any, records: list[Any], state: BatchState) -> Any:
    """``--write-qupath``: the finished images' results into the project (paquo)."""
    done = [r for r, im in zip(records, state.images, strict=True) if im.ok]
    report = write_to_qupath(source, done)
    for key, reason in (getattr(report, "failed", None) or {}).items():
        for im in state.images:
            if im.key == key:
                im.warnings.append(f"not written into the QuPath project: {reason}")
    return report
