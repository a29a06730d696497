"""The prediction batch: every image of a source, resumable, failures recorded with the reason.

:func:`run_batch` is ``wsdal predict``. For each image of the source, in order:

- an image an earlier run finished with the same model and settings (its
  ``<key>.summary.json`` says so, and its files are there) is **skipped**; one
  whose detections are the same but whose hotspot settings or threshold
  changed is **recounted** without the model; ``force=True`` predicts all;
- any other image is **predicted** (:func:`wsdal_wsi.predict.image.predict_image`);
- an image that fails (slide missing, not opening, corrupt, no resolution, an
  output that cannot be written, or an unexpected error) is **failed**: its
  reason goes into ``batch.json`` and a failed ``<key>.summary.json``, a
  warning is logged, and the batch goes on.

``batch.json`` is rewritten after every image, so an interrupted batch (Ctrl-C,
a killed job) says where it stopped; running the same command again resumes it
(finished slides are skipped). At the end ``counts.csv``, ``counts.xlsx`` and
``index.html`` are written for the batch's images, and with ``write_qupath``
the results are put into the QuPath project (paquo).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wsdal_wsi.errors import ConfigError, QuPathUnavailableError, WsdalError
from wsdal_wsi.model import load_model, resolve_device
from wsdal_wsi.predict.image import (
    exchange_copies,
    predict_image,
    previous_result,
    slide_info_of,
)
from wsdal_wsi.predict.settings import PredictSettings, detection_key, file_sha256
from wsdal_wsi.predict.state import BatchState, ImageState, check_batch_file
from wsdal_wsi.progress import NULL_PROGRESS, Progress
from wsdal_wsi.provenance import provenance as make_provenance
from wsdal_wsi.provenance import utc_now_iso
from wsdal_wsi.qupath import paquo_adapter, write_to_qupath
from wsdal_wsi.report import (
    ModelInfo,
    SlideSummary,
    recount_slide,
    slide_files,
    write_batch_outputs,
    write_summary,
)

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
        One per image of the source (failed ones included), in source order.
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
        """The images that failed."""
        return [im for im in self.state.images if im.status == "failed"]


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
    """What every output records of the model: its path, SHA-256, threshold and resolution."""
    return ModelInfo(
        path=str(Path(model_path).resolve()),
        sha256=file_sha256(model_path),
        threshold=model.spec.threshold,
        target_mpp=model.spec.target_mpp,
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

    The unit of work a job scheduler distributes (see ``examples/ray_predict.py``):
    it writes the image's own files (``<key>.geojson``, ``.summary.json``, report,
    ...) and never raises for a slide that cannot be processed: the reason is in
    the returned (and written) failed summary. It does not touch ``batch.json``
    or the batch's spreadsheets; the caller writes those once with
    :func:`wsdal_wsi.report.write_batch_outputs`.

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
    out.mkdir(parents=True, exist_ok=True)
    try:
        return predict_image(
            record,
            model,
            out,
            model_info=model_info,
            settings=settings,
            classes=source.classes,
            copies=exchange_copies(source, record, out),
            source_info=source.describe(),
        )
    except WsdalError as exc:
        log.warning("%s: failed: %s", record.name, exc)
        summary = SlideSummary.failed(
            slide_info_of(record),
            str(exc),
            model=model_info,
            provenance=make_provenance(source={**source.describe(), "entry_id": record.entry_id}),
        )
        write_summary(slide_files(out, record.key).summary, summary)
        return summary


def _short(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


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
) -> BatchResult:
    """Predict every image of a source into ``out_dir`` (``wsdal predict``).

    Parameters
    ----------
    source : wsdal_wsi.qupath.Source
        From :func:`wsdal_wsi.qupath.open_source` (a QuPath project or a slide folder).
    model_path : path-like
        A model file (``wsdal train``'s ``RUN/model.pt``).
    out_dir : path-like
        The output folder (created). May be the slide folder itself: results
        GeoJSON files are merged into existing ones, never replacing objects
        that wsdal-wsi did not make.
    settings : PredictSettings
    force : bool
        Predict every image again, even those an earlier run finished.
    write_qupath : bool
        Put the results into the QuPath project with paquo after the batch
        (needs a QuPath installation; checked before any work).
    progress : Progress, optional
        A bar for the batch and one per slide.
    on_image_done : callable, optional
        Called with each image's :class:`ImageState` once it is recorded (a
        hook for callers; an exception it raises stops the batch, which stays
        resumable).

    Returns
    -------
    BatchResult

    Raises
    ------
    ModelFileError
        The model file is missing or not a model (exit 2).
    InputError
        ``out_dir`` holds a ``batch.json`` that is not ours; a bad option.
    QuPathUnavailableError
        ``write_qupath`` and no QuPath installation.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a folder")
    batch_path = check_batch_file(out)
    if write_qupath:
        check_write_qupath(source)
    device = resolve_device(settings.device)
    model = load_model(model_path, device=device)
    spec = model.spec
    model_info = describe_model(model_path, model)
    threshold = settings.threshold_for(spec)
    progress = progress or NULL_PROGRESS
    records = source.images(progress=progress)
    out.mkdir(parents=True, exist_ok=True)
    source_info = source.describe()
    state = _new_state(
        batch_path,
        records,
        source_info=source_info,
        model_info=model_info,
        settings={**settings.to_dict(), "threshold_used": threshold, "force": force},
    )
    state.save()
    summaries: list[SlideSummary] = []
    current: ImageState | None = None
    try:
        with progress.task("Slides", total=len(records)) as batch_task:
            for record, im in zip(records, state.images, strict=True):
                current = im
                batch_task.update(status=record.name)
                summaries.append(
                    _run_one(
                        record,
                        im,
                        model,
                        out,
                        state,
                        source=source,
                        settings=settings,
                        model_info=model_info,
                        threshold=threshold,
                        force=force,
                        source_info=source_info,
                        progress=progress,
                    )
                )
                state.save()
                batch_task.advance()
                if on_image_done is not None:
                    on_image_done(im)
                current = None
    except BaseException:
        state.status = "interrupted"
        if current is not None and current.status == "running":
            current.reason = "interrupted while running; re-run to resume"
        state.save()
        raise
    result = BatchResult(state=state, summaries=summaries)
    result.outputs = dict(write_batch_outputs(out, summaries))
    if write_qupath:
        result.qupath = _write_into_project(source, records, state)
    state.status = "finished"
    state.save()
    result.outputs["batch"] = state.path
    return result


def _new_state(
    path: Path,
    records: list[Any],
    *,
    source_info: dict[str, Any],
    model_info: ModelInfo,
    settings: dict[str, Any],
) -> BatchState:
    """A fresh ``batch.json`` state: the batch's header and one pending entry per image."""
    return BatchState(
        path=path,
        header={
            "provenance": make_provenance(),
            "source": source_info,
            "model": dataclasses.asdict(model_info),
            "settings": settings,
            "started": utc_now_iso(),
        },
        images=[
            ImageState(
                key=r.key,
                name=r.name,
                slide=str(r.slide_path) if r.slide_path else None,
                warnings=list(r.warnings),
            )
            for r in records
        ],
    )


def _write_into_project(source: Any, records: list[Any], state: BatchState) -> Any:
    """``--write-qupath``: the finished images' results into the project (paquo)."""
    done = [r for r, im in zip(records, state.images, strict=True) if im.ok]
    report = write_to_qupath(source, done)
    for key, reason in (getattr(report, "failed", None) or {}).items():
        for im in state.images:
            if im.key == key:
                im.warnings.append(f"not written into the QuPath project: {reason}")
    return report


def _run_one(
    record: Any,
    im: ImageState,
    model: Any,
    out: Path,
    state: BatchState,
    *,
    source: Any,
    settings: PredictSettings,
    model_info: ModelInfo,
    threshold: float,
    force: bool,
    source_info: dict[str, Any],
    progress: Progress,
) -> SlideSummary:
    """Process one image; record its outcome in ``im``; return its summary (ok or failed)."""
    t0 = time.perf_counter()
    im.started = utc_now_iso()
    im.status = "running"
    im.reason = None
    im.traceback = None
    state.save()
    files = slide_files(out, record.key)
    summary: SlideSummary | None = None
    try:
        copies = exchange_copies(source, record, out)
        previous = None
        if not force and record.mpp is not None:
            key = detection_key(
                model_sha256=model_info.sha256 or "",
                threshold=threshold,
                slide_mpp=record.mpp,
                target_mpp=model.spec.target_mpp,
                cascade=settings.cascade,
            )
            previous = previous_result(
                out, record, key=key, threshold=threshold, settings=settings, copies=copies
            )
        if previous is not None and previous[0] == "skip":
            summary = previous[1]
            im.status = "skipped"
        elif previous is not None:
            summary = recount_slide(
                out, previous[1], settings=settings.hotspot, threshold=threshold, progress=progress
            )
            im.status = "recounted"
        else:
            summary = predict_image(
                record,
                model,
                out,
                model_info=model_info,
                settings=settings,
                classes=source.classes,
                copies=copies,
                source_info=source_info,
                progress=progress,
            )
            im.status = "done"
    except WsdalError as exc:
        im.status, im.reason = "failed", str(exc)
    except Exception as exc:  # an unexpected error: record it with its traceback, go on
        im.status, im.reason = "failed", f"unexpected error: {_short(exc)}"
        im.traceback = traceback.format_exc()
    im.finished = utc_now_iso()
    im.timings = {"wall_s": round(time.perf_counter() - t0, 3)}
    if summary is None:
        log.warning("%s: failed: %s", record.name, im.reason)
        summary = SlideSummary.failed(
            slide_info_of(record),
            im.reason or "failed",
            model=model_info,
            provenance=make_provenance(source={**source_info, "entry_id": record.entry_id}),
            timings=im.timings,
        )
        try:
            write_summary(files.summary, summary)
            im.summary = files.summary.name
        except OSError as exc:  # the reason stays in batch.json
            im.warnings.append(f"could not write {files.summary}: {exc}")
        return summary
    im.summary = files.summary.name
    im.detections = summary.detections
    if summary.hotspot is not None:
        im.hotspot = summary.hotspot.count
        im.per_mm2 = round(summary.hotspot.per_mm2, 4)
        im.score = summary.hotspot.score.score
    if im.status == "done":
        im.timings.update(summary.timings)
    return summary
