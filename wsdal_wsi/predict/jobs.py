"""One image of a batch as a unit of work: what it needs, what became of it, where it ran.

A batch turns every image of its source into an :class:`ImageJob` (picklable: it
carries the source's record, not the source, so a worker on another machine never
opens the source again). The batch itself decides, without the model, whether an
earlier run already did the image (:func:`reuse_previous`: skip or recount); every
other job is predicted by an executor: :class:`LocalExecutor` in this process, one
after the other, or :class:`wsdal_wsi.predict.ray_executor.RayExecutor` on a Ray
cluster, one task per slide. Both run :func:`predict_job`, so a slide's results do
not depend on where it ran. A failure, expected or not, becomes a failed
:class:`ImageOutcome` with its reason (and a failed ``<key>.summary.json``), never an
exception that stops the batch.
"""

from __future__ import annotations

import logging
import time
import traceback as tb
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from wsdal_wsi.errors import WsdalError
from wsdal_wsi.model import load_model, resolve_device
from wsdal_wsi.model.file import ModelSpec
from wsdal_wsi.predict.image import predict_image, previous_result, slide_info_of
from wsdal_wsi.predict.settings import PredictSettings, detection_key
from wsdal_wsi.progress import Progress
from wsdal_wsi.provenance import provenance as make_provenance
from wsdal_wsi.qupath import ClassSettings
from wsdal_wsi.report import ModelInfo, SlideSummary, recount_slide, slide_files, write_summary

__all__ = [
    "Executor",
    "ImageJob",
    "ImageOutcome",
    "LocalExecutor",
    "failed_outcome",
    "predict_job",
    "reuse_previous",
]

log = logging.getLogger(__name__)


@dataclass
class ImageJob:
    """Everything needed to predict one image, anywhere (picklable).

    Attributes
    ----------
    index : int
        Position of the image in the batch (source order).
    record : wsdal_wsi.qupath.ImageRecord
        The image: its slide path, resolution fallbacks and annotations.
    out_dir : Path
        The batch's output folder.
    model_info : ModelInfo
        The model's path, SHA-256, own threshold and resolution.
    settings : PredictSettings
    threshold : float
        The probability threshold applied (``--threshold``, else the model's).
    target_mpp : float
        The model's resolution (µm/px).
    classes : ClassSettings
        Roles of the annotation classes (which areas are counted as regions).
    copies : list of Path
        More results GeoJSON files to keep in step (a project's exchange file).
    source_info : dict
        The source's description (recorded in every output's provenance).
    """

    index: int
    record: Any
    out_dir: Path
    model_info: ModelInfo
    settings: PredictSettings
    threshold: float
    target_mpp: float
    classes: ClassSettings
    copies: list[Path]
    source_info: dict[str, Any]

    @property
    def name(self) -> str:
        """The image's name as the user knows it."""
        return self.record.name


@dataclass
class ImageOutcome:
    """What became of one image.

    Attributes
    ----------
    status : str
        ``done`` (predicted now), ``skipped``, ``recounted`` or ``failed``.
    summary : SlideSummary
        Its summary (a failed one says why).
    reason : str or None
        Why it failed.
    traceback : str or None
        For an unexpected error.
    wall_s : float
        Seconds spent on it.
    warnings : list of str
        Things to know that did not stop it.
    """

    status: str
    summary: SlideSummary
    reason: str | None = None
    traceback: str | None = None
    wall_s: float = 0.0
    warnings: list[str] = field(default_factory=list)


def failed_outcome(
    job: ImageJob, reason: str, *, wall_s: float = 0.0, traceback: str | None = None
) -> ImageOutcome:
    """A failed outcome for ``job``, its failed ``<key>.summary.json`` written (if it can be)."""
    log.warning("%s: failed: %s", job.name, reason)
    timings = {"wall_s": round(wall_s, 3)}
    summary = SlideSummary.failed(
        slide_info_of(job.record),
        reason,
        model=job.model_info,
        provenance=make_provenance(source={**job.source_info, "entry_id": job.record.entry_id}),
        timings=timings,
    )
    outcome = ImageOutcome("failed", summary, reason=reason, traceback=traceback, wall_s=wall_s)
    path = slide_files(job.out_dir, job.record.key).summary
    try:
        write_summary(path, summary)
    except (OSError, WsdalError) as exc:  # a full disk: the reason stays in batch.json
        outcome.warnings.append(f"could not write {path}: {exc}")
    return outcome


def _short(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _guarded(job: ImageJob, work: Callable[[], ImageOutcome | None]) -> ImageOutcome | None:
    """Run ``work``; an error becomes a failed outcome with its reason (and traceback)."""
    t0 = time.perf_counter()
    try:
        outcome = work()
    except WsdalError as exc:
        return failed_outcome(job, str(exc), wall_s=time.perf_counter() - t0)
    except Exception as exc:  # an unexpected error: record it with its traceback, go on
        return failed_outcome(
            job,
            f"unexpected error: {_short(exc)}",
            wall_s=time.perf_counter() - t0,
            traceback=tb.format_exc(),
        )
    if outcome is not None:
        outcome.wall_s = time.perf_counter() - t0
    return outcome


def reuse_previous(
    job: ImageJob, *, force: bool, progress: Progress | None = None
) -> ImageOutcome | None:
    """Skip or recount an image an earlier run finished; None when it must be predicted.

    ``skipped``: finished with the same model, threshold, resolution and hotspot
    settings, its files all there. ``recounted``: same detections, other hotspot
    settings or threshold (counted again from its files, without the model).
    """

    def work() -> ImageOutcome | None:
        record = job.record
        if force or record.mpp is None:
            return None
        key = detection_key(
            model_sha256=job.model_info.sha256 or "",
            threshold=job.threshold,
            slide_mpp=record.mpp,
            target_mpp=job.target_mpp,
            cascade=job.settings.cascade,
        )
        previous = previous_result(
            job.out_dir,
            record,
            key=key,
            threshold=job.threshold,
            settings=job.settings,
            copies=job.copies,
        )
        if previous is None:
            return None
        if previous[0] == "skip":
            return ImageOutcome("skipped", previous[1])
        summary = recount_slide(
            job.out_dir,
            previous[1],
            settings=job.settings.hotspot,
            threshold=job.threshold,
            review_n=job.settings.review_n,
            progress=progress,
        )
        return ImageOutcome("recounted", summary)

    return _guarded(job, work)


def predict_job(job: ImageJob, model: Any, *, progress: Progress | None = None) -> ImageOutcome:
    """Predict one image and write all its outputs; a failure becomes a failed outcome.

    Parameters
    ----------
    job : ImageJob
    model : wsdal_wsi.model.file.LoadedModel
    progress : Progress, optional
        A bar for the slide's tiles.
    """

    def work() -> ImageOutcome:
        summary = predict_image(
            job.record,
            model,
            job.out_dir,
            model_info=job.model_info,
            settings=job.settings,
            classes=job.classes,
            copies=job.copies,
            source_info=job.source_info,
            progress=progress,
        )
        return ImageOutcome("done", summary)

    outcome = _guarded(job, work)
    assert outcome is not None  # work() never returns None
    return outcome


class Executor(Protocol):
    """Where the images of a batch are predicted.

    Attributes
    ----------
    parallel : bool
        Images finish out of order and in parallel (the batch then writes its
        spreadsheets and index as they finish, not only at the end).
    """

    parallel: bool

    def prepare(self, model_path: Path) -> ModelSpec:
        """Load or ship the model; return its spec (before any image: a bad model raises here)."""

    def run(
        self,
        jobs: Sequence[ImageJob],
        *,
        progress: Progress,
        on_start: Callable[[ImageJob], None],
    ) -> Iterator[tuple[ImageJob, ImageOutcome]]:
        """Predict ``jobs``; yield each with its outcome as it finishes."""

    def describe(self) -> dict[str, Any]:
        """JSON-able description for ``batch.json``."""

    def close(self) -> None:
        """Free what :meth:`prepare` took (idempotent)."""


class LocalExecutor:
    """Predict the images in this process, one after the other (plain ``wsdal predict``).

    Parameters
    ----------
    device : str
        ``auto``, ``cuda``, ``cuda:N`` or ``cpu``.
    """

    parallel = False

    def __init__(self, device: str = "auto") -> None:
        self.device = resolve_device(device)
        self.model: Any = None

    def prepare(self, model_path: Path) -> ModelSpec:
        self.model = load_model(model_path, device=self.device)
        return self.model.spec

    def run(
        self,
        jobs: Sequence[ImageJob],
        *,
        progress: Progress,
        on_start: Callable[[ImageJob], None],
    ) -> Iterator[tuple[ImageJob, ImageOutcome]]:
        for job in jobs:
            on_start(job)
            yield job, predict_job(job, self.model, progress=progress)

    def describe(self) -> dict[str, Any]:
        return {"kind": "local", "device": str(self.device)}

    def close(self) -> None:
        self.model = None
