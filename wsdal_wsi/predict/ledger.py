"""The bookkeeping of a running batch: ``batch.json`` lines, summaries, batch files.

:class:`BatchLedger` is what :func:`~wsdal_wsi.predict.batch.run_batch` records
into while images are reused or predicted: each image's line in ``batch.json``
(rewritten after every image), the slide summaries, and ``counts.csv``,
``counts.xlsx`` and ``index.html``, written under the folder's lock at the end and,
for a parallel executor or a shard, every :data:`LIVE_OUTPUTS_EVERY_S` seconds as
images finish. A shard writes the batch files from the summary of every image of
the batch found in OUT (its own and the other shards').

Each image is reused or predicted under its slide lock
(:meth:`wsdal_wsi.lock.FolderLock.slide`), held from the moment the ledger takes
it (one at a time in this process; all at once for a parallel executor) until its
outcome is recorded: an image another run (same settings, same
folder) is writing is put off, waited for at the end, and then usually found
finished.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from wsdal_wsi.errors import InputError, WsdalError
from wsdal_wsi.lock import FolderLock
from wsdal_wsi.predict.jobs import Executor, ImageJob, ImageOutcome, reuse_previous
from wsdal_wsi.predict.shard import Shard
from wsdal_wsi.predict.state import BatchState, ImageState
from wsdal_wsi.progress import Progress, ProgressTask
from wsdal_wsi.provenance import provenance as make_provenance
from wsdal_wsi.provenance import utc_now_iso
from wsdal_wsi.report import (
    ModelInfo,
    SlideSummary,
    read_summary,
    slide_files,
    write_batch_outputs,
)

__all__ = ["LIVE_OUTPUTS_EVERY_S", "BatchLedger", "fill_image_state", "new_batch_state"]

log = logging.getLogger(__name__)

#: Seconds between two writes of the batch files while a parallel batch or a shard runs.
LIVE_OUTPUTS_EVERY_S = 10.0


class BatchLedger:
    """The bookkeeping of one batch: each image's line in ``batch.json``, the summaries,
    the batch files (written as images finish when ``live``)."""

    def __init__(
        self,
        state: BatchState,
        out: Path,
        records: Sequence[Any],
        lock: FolderLock,
        *,
        shard: Shard | None,
        live: bool,
    ) -> None:
        self.state, self.out, self.records, self.lock = state, out, records, lock
        self.held: dict[int, contextlib.ExitStack] = {}
        self.shard, self.live = shard, live
        self.summaries: dict[int, SlideSummary] = {}
        self.last_write = time.monotonic()

    def start(self, job: ImageJob) -> None:
        """An image is about to be predicted in this process."""
        im = self.state.images[job.index]
        im.started, im.status, im.reason, im.traceback = utc_now_iso(), "running", None, None
        self.state.save()

    def record(self, job: ImageJob, outcome: ImageOutcome, task: ProgressTask) -> ImageState:
        """Record an image's outcome; rewrite ``batch.json`` (and the batch files, when due)."""
        im = self.state.images[job.index]
        fill_image_state(im, outcome, summary_file=slide_files(self.out, job.record.key).summary)
        self.summaries[job.index] = outcome.summary
        self.state.save()
        self.release(job)
        task.advance()
        if self.live and time.monotonic() - self.last_write >= LIVE_OUTPUTS_EVERY_S:
            self.write_outputs()
        return im

    def go(
        self,
        jobs: Sequence[ImageJob],
        executor: Executor,
        *,
        force: bool,
        progress: Progress,
        on_image_done: Callable[[ImageState], None] | None,
    ) -> None:
        """Reuse what earlier runs did, predict the rest with ``executor``.

        Whatever stops it, the caller records with :meth:`interrupted`.
        """
        state = self.state
        try:
            with progress.task("Slides", total=len(jobs)) as task:

                def take(some: Sequence[ImageJob], *, wait: bool) -> list[ImageJob]:
                    """Hold, then reuse where possible; return the jobs left to predict."""
                    todo = []
                    for job in some:
                        if not self.hold(job, wait=wait):
                            busy = state.images[job.index]
                            busy.reason = "another run is writing it; coming back to it"
                            deferred.append(job)
                            continue
                        task.update(status=job.name)
                        outcome = reuse_previous(job, force=force, progress=progress)
                        if outcome is None:
                            todo.append(job)
                        else:
                            self._done(job, outcome, task, on_image_done)
                    return todo

                def predict(todo: Sequence[ImageJob]) -> None:
                    for job, outcome in executor.run(todo, progress=progress, on_start=self.start):
                        task.update(status=job.name)
                        self._done(job, outcome, task, on_image_done)

                deferred: list[ImageJob] = []
                if executor.parallel:  # all at once: the executor spreads them
                    predict(take(jobs, wait=False))
                else:  # one by one: another run sharing OUT takes the next free slide
                    for job in jobs:
                        predict(take([job], wait=False))
                later, deferred = deferred, []
                for job in later:  # one at a time: wait for the other run, then look again
                    predict(take([job], wait=True))
        finally:
            for job_index in list(self.held):
                self.held.pop(job_index).close()

    def interrupted(self) -> None:
        """Record in ``batch.json`` that the batch stopped before its end (where it can)."""
        state = self.state
        state.status = "interrupted"
        for im in state.images:
            if im.status == "running" and (state.owned is None or im.key in state.owned):
                im.reason = "interrupted while running; re-run to resume"
        with contextlib.suppress(WsdalError):  # a full disk: the error that stopped us says so
            state.save()

    def _done(
        self,
        job: ImageJob,
        outcome: ImageOutcome,
        task: ProgressTask,
        on_image_done: Callable[[ImageState], None] | None,
    ) -> None:
        im = self.record(job, outcome, task)
        if on_image_done is not None:
            on_image_done(im)

    def hold(self, job: ImageJob, *, wait: bool) -> bool:
        """Take the image's slide lock (kept until its outcome is recorded); False if busy."""
        stack = contextlib.ExitStack()
        if not stack.enter_context(self.lock.slide(job.record.key, wait=wait)):
            stack.close()
            return False
        self.held[job.index] = stack
        return True

    def release(self, job: ImageJob) -> None:
        """Let go of the image's slide lock (if held)."""
        stack = self.held.pop(job.index, None)
        if stack is not None:
            stack.close()

    def all_summaries(self) -> list[SlideSummary]:
        """For a shard: the summary of every image of the batch that has one in OUT."""
        found = []
        for i, record in enumerate(self.records):
            if i in self.summaries:
                found.append(self.summaries[i])
                continue
            path = slide_files(self.out, record.key).summary
            if path.is_file():
                try:
                    found.append(read_summary(path))
                except InputError as exc:  # being replaced by another shard, or damaged
                    log.warning("%s; left out of the batch files for now", exc)
        return found

    def write_outputs(self) -> dict[str, Path]:
        """Write counts.csv, counts.xlsx and index.html (under OUT's lock)."""
        with self.lock.batch_writes():
            if self.shard is None:
                summaries = [self.summaries[i] for i in sorted(self.summaries)]
            else:
                summaries = self.all_summaries()
            outputs = write_batch_outputs(self.out, summaries)
        self.last_write = time.monotonic()
        return dict(outputs)

    def finish(self) -> tuple[list[SlideSummary], dict[str, Path]]:
        """This process's summaries (batch order) and the batch files, written a last time."""
        outputs = self.write_outputs()
        return [self.summaries[i] for i in sorted(self.summaries)], outputs


def fill_image_state(im: ImageState, outcome: ImageOutcome, *, summary_file: Path) -> None:
    """Copy an outcome into the image's line of ``batch.json``."""
    im.status, im.reason, im.traceback = outcome.status, outcome.reason, outcome.traceback
    im.finished = utc_now_iso()
    im.started = im.started or im.finished
    im.timings = {"wall_s": round(outcome.wall_s, 3)}
    im.warnings.extend(outcome.warnings)
    summary = outcome.summary
    im.summary = summary_file.name if summary_file.is_file() else None
    if outcome.status == "failed":
        return
    im.detections = summary.detections
    if summary.hotspot is not None:
        im.hotspot = summary.hotspot.count
        im.per_mm2 = round(summary.hotspot.per_mm2, 4)
        im.score = summary.hotspot.score.score
    if outcome.status == "done":
        im.timings.update(summary.timings)


def new_batch_state(
    path: Path,
    records: list[Any],
    *,
    source_info: dict[str, Any],
    model_info: ModelInfo,
    settings: dict[str, Any],
    executor: dict[str, Any],
    shard: Shard | None,
) -> BatchState:
    """A fresh ``batch.json`` state: the batch's header and one pending entry per image."""
    header = {
        "provenance": make_provenance(),
        "source": source_info,
        "model": dataclasses.asdict(model_info),
        "settings": settings,
        "executor": executor,
        "started": utc_now_iso(),
    }
    if shard is not None:
        header["shards"] = shard.count
    return BatchState(
        path=path,
        header=header,
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
