"""Batch outputs of an output folder, rebuilding them (``wsdal report``), and recounting a
whole folder (``wsdal count``).

Every write of the batch files (``counts.csv``, ``counts.xlsx``, ``index.html``) by
these functions happens under the folder's lock (:func:`wsdal_wsi.lock.batch_writes`),
so they can run while the shards of a batch write into the same folder.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from wsdal_wsi.counting import HotspotSettings
from wsdal_wsi.errors import InputError, WsdalError
from wsdal_wsi.lock import FolderLock, batch_writes
from wsdal_wsi.progress import NULL_PROGRESS, Progress
from wsdal_wsi.report.html import write_index_html
from wsdal_wsi.report.layout import COUNTS_CSV, COUNTS_XLSX, INDEX_HTML, find_summaries
from wsdal_wsi.report.slide import check_threshold, recount_slide
from wsdal_wsi.report.spreadsheet import write_counts_csv, write_counts_xlsx
from wsdal_wsi.report.summary import SlideInfo, SlideSummary, read_summary

__all__ = [
    "RebuildResult",
    "RecountResult",
    "load_summaries",
    "rebuild_batch_outputs",
    "recount_folder",
    "write_batch_outputs",
]

log = logging.getLogger(__name__)


def write_batch_outputs(
    out_dir: str | os.PathLike[str], summaries: Sequence[SlideSummary]
) -> dict[str, Path]:
    """Write ``counts.csv``, ``counts.xlsx`` and ``index.html`` for ``summaries``.

    Returns
    -------
    dict
        ``{"csv": path, "xlsx": path, "html": path}``.
    """
    out = Path(out_dir)
    ordered = sorted(summaries, key=lambda s: (s.slide.name.lower(), s.key))
    paths = {"csv": out / COUNTS_CSV, "xlsx": out / COUNTS_XLSX, "html": out / INDEX_HTML}
    write_counts_csv(paths["csv"], ordered)
    write_counts_xlsx(paths["xlsx"], ordered)
    write_index_html(paths["html"], ordered)  # last: it links the other two
    return paths


def load_summaries(out_dir: str | os.PathLike[str]) -> list[SlideSummary | tuple[Path, str]]:
    """Every slide summary of a prediction output folder; unreadable ones as ``(path, reason)``.

    Raises
    ------
    InputError
        ``out_dir`` is not a folder, or holds no ``*.summary.json`` (not a
        prediction output).
    """
    out = Path(out_dir)
    if not out.is_dir():
        raise InputError(f"{out}: not a folder (expected a wsdal predict output folder)")
    paths = find_summaries(out)
    if not paths:
        raise InputError(
            f"{out}: not a wsdal prediction output folder (no *.summary.json files); "
            f"run 'wsdal predict SOURCE --model MODEL --out {out}' first"
        )
    loaded: list[SlideSummary | tuple[Path, str]] = []
    for p in paths:
        try:
            loaded.append(read_summary(p))
        except InputError as exc:
            loaded.append((p, str(exc)))
    return loaded


@dataclass
class RecountResult:
    """What :func:`recount_folder` did.

    Attributes
    ----------
    summaries : list of SlideSummary
        Every slide (recounted, previously failed, or failed now), in name order.
    recounted : list of str
        Keys of the slides recounted.
    failed_now : list of str
        Keys of the slides that could not be recounted (their summaries say why).
    outputs : dict of str to Path
        The batch files written.
    """

    summaries: list[SlideSummary] = field(default_factory=list)
    recounted: list[str] = field(default_factory=list)
    failed_now: list[str] = field(default_factory=list)
    outputs: dict[str, Path] = field(default_factory=dict)


def recount_folder(
    out_dir: str | os.PathLike[str],
    *,
    settings: HotspotSettings,
    threshold: float | None = None,
    progress: Progress | None = None,
) -> RecountResult:
    """Recount every slide of a prediction output folder and rewrite the batch outputs.

    Slides that failed at prediction stay failed (listed with their reason);
    a slide whose files are missing or broken is reported failed with the
    reason, and the others go on. The files of a slide that fails now are not
    changed.

    Parameters
    ----------
    out_dir : path-like
    settings : HotspotSettings
    threshold : float, optional
        A higher probability threshold than the prediction's (see
        :func:`wsdal_wsi.report.slide.recount_slide`).
    progress : Progress, optional

    Raises
    ------
    InputError
        Not a prediction output folder.
    ConfigError
        ``threshold`` below a slide's prediction threshold (checked before
        anything is written).
    OutputError
        A ``wsdal predict`` (or a count with other settings) is writing the
        folder; the folder cannot be written.
    """
    out = Path(out_dir)
    loaded = load_summaries(out)
    for item in loaded:
        if isinstance(item, SlideSummary) and item.ok:
            check_threshold(item, threshold)
    key = {
        "command": "wsdal count",
        "hotspot": settings.to_dict(),
        "threshold": threshold,
    }
    with FolderLock(out, settings=key, command="wsdal count") as lock:
        return _recount_locked(
            out,
            loaded,
            lock,
            settings=settings,
            threshold=threshold,
            progress=progress or NULL_PROGRESS,
        )


def _recount_locked(
    out: Path,
    loaded: list[SlideSummary | tuple[Path, str]],
    lock: FolderLock,
    *,
    settings: HotspotSettings,
    threshold: float | None,
    progress: Progress,
) -> RecountResult:
    """:func:`recount_folder` under the folder's lock."""
    result = RecountResult()
    with progress.task("Recounting slides", total=len(loaded)) as task:
        for item in loaded:
            if not isinstance(item, SlideSummary):
                path, reason = item
                key = path.name.removesuffix(".summary.json")
                result.summaries.append(SlideSummary.failed(SlideInfo(key, key), reason))
                result.failed_now.append(key)
            elif not item.ok:
                result.summaries.append(item)
            else:
                try:
                    with lock.slide(item.key):
                        new = recount_slide(out, item, settings=settings, threshold=threshold)
                except WsdalError as exc:
                    log.warning("%s: %s", item.key, exc)
                    result.summaries.append(
                        SlideSummary.failed(item.slide, f"count: {exc}", model=item.model)
                    )
                    result.failed_now.append(item.key)
                else:
                    result.summaries.append(new)
                    result.recounted.append(item.key)
            task.advance()
    result.summaries.sort(key=lambda s: (s.slide.name.lower(), s.key))
    with lock.batch_writes():
        result.outputs = write_batch_outputs(out, result.summaries)
    return result


@dataclass
class RebuildResult:
    """What :func:`rebuild_batch_outputs` did.

    Attributes
    ----------
    summaries : list of SlideSummary
        Every slide summary of the folder (finished and failed), in name order.
    unreadable : list of (Path, str)
        Summary files that could not be read, with the reason (left out).
    outputs : dict of str to Path
        The batch files written.
    """

    summaries: list[SlideSummary] = field(default_factory=list)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)
    outputs: dict[str, Path] = field(default_factory=dict)


def rebuild_batch_outputs(out_dir: str | os.PathLike[str]) -> RebuildResult:
    """Rewrite counts.csv, counts.xlsx and index.html from every ``*.summary.json`` of a folder.

    Nothing is recounted: each slide is shown as its summary says (``wsdal
    report OUT``), e.g. after the shards of a batch, or after slides were
    predicted one by one (:func:`wsdal_wsi.predict.predict_one`).

    Raises
    ------
    InputError
        Not a prediction output folder.
    """
    out = Path(out_dir)
    result = RebuildResult()
    for item in load_summaries(out):  # each written atomically: no lock needed to read
        if isinstance(item, SlideSummary):
            result.summaries.append(item)
        else:
            result.unreadable.append(item)
    result.summaries.sort(key=lambda s: (s.slide.name.lower(), s.key))
    with batch_writes(out):
        result.outputs = write_batch_outputs(out, result.summaries)
    return result
