"""The QuPath-project source: ``project.qpproj`` for the images and slides, and the
pathologist's annotations either straight from the project with paquo or from the
exchange folder that ``export_annotations.groovy`` writes.

Made by :func:`wsdal_wsi.qupath.factory.open_source`; see there.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from wsdal_wsi.errors import InputError, QuPathUnavailableError
from wsdal_wsi.qupath import paquo_adapter
from wsdal_wsi.qupath.geojson_read import QuPathObject
from wsdal_wsi.qupath.project import (
    QpProject,
    annotations_export_path,
    read_qpproj,
    results_exchange_path,
)
from wsdal_wsi.qupath.sources import AnnotationLoader, ImageRecord, Source, file_loader

__all__ = ["ProjectSource"]

log = logging.getLogger(__name__)


class ProjectSource(Source):
    """A QuPath project: project.qpproj for slides; annotations by paquo or from the export."""

    kind = "qupath-project"

    def __init__(
        self,
        qpproj: Path,
        *,
        backend: str,
        relink: Sequence[str] | Mapping[str, str] | None,
        **kwargs: Any,
    ):
        self.project: QpProject = read_qpproj(qpproj, relink=relink)
        super().__init__(self.project.directory, **kwargs)
        self.backend = "paquo" if backend in ("auto", "paquo") else "export"
        self._fallback = backend == "auto"
        self._paquo_objects: dict[str, list[QuPathObject]] | None = None
        if not self.project.images:
            raise InputError(f"{self.project.qpproj}: the project has no images")

    def _load_paquo(self) -> dict[str, list[QuPathObject]]:
        if self._paquo_objects is None:
            self._paquo_objects = paquo_adapter.read_project_annotations(self.project.qpproj)
        return self._paquo_objects

    def _entries(self) -> list[dict[str, Any]]:
        if self.backend == "paquo":
            try:
                self._load_paquo()
            except QuPathUnavailableError as exc:
                if not self._fallback:
                    raise
                log.warning("%s; reading the annotation exports instead", exc)
                self.backend = "export"
        entries = []
        for im in self.project.images:
            warnings: list[str] = []
            loader: AnnotationLoader | None = None
            if self.backend == "paquo":
                objects = self._load_paquo().get(im.entry_id)
                if objects is not None:
                    loader = _fixed_loader(objects)
                no_ann = "QuPath (paquo) did not give this image's objects"
            else:
                export = annotations_export_path(self.project.directory, im.entry_id)
                if export.is_file():
                    loader = file_loader(export)
                    stale = _stale_export(self.project.directory, im.entry_id, export)
                    if stale:
                        warnings.append(stale)
                no_ann = (
                    f"no annotation export ({export} is missing): run "
                    "qupath_scripts/export_annotations.groovy for the project (Run for project)"
                )
            if im.slide_path is not None and im.slide_how != "as stored":
                warnings.append(f"slide found by {im.slide_how}: {im.slide_path}")
            entries.append(
                {
                    "name": im.image_name,
                    "key": im.entry_id,
                    "slide_path": im.slide_path,
                    "slide_problem": None if im.slide_path else im.missing_message(),
                    "loader": loader,
                    "no_annotations": no_ann,
                    "entry_id": im.entry_id,
                    "project_mpp": im.mpp,
                    "warnings": warnings,
                    "server": im.server,
                }
            )
        return entries

    def exchange_results_path(self, record: ImageRecord) -> Path | None:
        """``<project>/wsdal/results/<entryID>.geojson``."""
        return results_exchange_path(self.project.directory, record.key)

    def input_files(self, record: ImageRecord) -> list[Path]:
        """The slide, ``project.qpproj`` and the image's annotation export."""
        return [
            *super().input_files(record),
            self.project.qpproj,
            annotations_export_path(self.project.directory, record.key),
        ]

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["qpproj"] = str(self.project.qpproj)
        out["qupath_version"] = self.project.version
        return out


def _fixed_loader(objects: list[QuPathObject]) -> AnnotationLoader:
    def load() -> tuple[list[QuPathObject], Path | None]:
        return objects, None

    return load


def _stale_export(project_dir: Path, entry_id: str, export: Path) -> str | None:
    data = project_dir / "data" / entry_id / "data.qpdata"
    try:
        if data.stat().st_mtime > export.stat().st_mtime + 1.0:
            return (
                f"the annotation export is older than the project data ({data} changed after "
                "it): run export_annotations.groovy again to include the latest clicks"
            )
    except OSError:
        return None
    return None
