"""Where results go: QuPath GeoJSON always; straight into a QuPath project with paquo on request.

The rule that keeps the pathologist's work safe, everywhere: an object whose
name starts with ``"WS-DAL"`` was made by wsdal-wsi and is replaced on a re-run;
every other object is left exactly as it was. So writing results into a file
that already holds a pathologist's objects (a slide folder used as the output
folder, where ``<stem>.geojson`` is the sidecar) keeps them, and writing twice
never duplicates anything.

- :func:`~wsdal_wsi.qupath.results.write_results_geojson`: one GeoJSON file, atomically.
- :class:`GeoJsonSink`: per image, ``<out>/<key>.geojson``; for QuPath projects
  also ``<project>/wsdal/results/<entryID>.geojson`` for ``import_results.groovy``.
- :func:`write_to_qupath`: the exchange files into the project with paquo
  (``--write-qupath``), with a zip backup first and a check of the save.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wsdal_wsi.errors import ConfigError
from wsdal_wsi.qupath.model import AreaAnnotation
from wsdal_wsi.qupath.paquo_adapter import write_results_paquo
from wsdal_wsi.qupath.results import ResultsReport, write_results_geojson

__all__ = ["GeoJsonSink", "write_to_qupath"]


class GeoJsonSink:
    """Per-image results as QuPath GeoJSON for a source.

    Parameters
    ----------
    source : Source
        From :func:`~wsdal_wsi.qupath.open_source`.
    out_dir : path-like
        ``<out_dir>/<key>.geojson`` for every image.
    """

    def __init__(self, source: Any, out_dir: str | os.PathLike[str]):
        self.source = source
        self.out_dir = Path(out_dir)

    def paths(self, record: Any) -> list[Path]:
        """The files written for ``record``: the output folder's, then the project exchange one."""
        paths = [self.source.results_path(record, self.out_dir)]
        exchange = self.source.exchange_results_path(record)
        if exchange is not None and exchange.resolve() != paths[0].resolve():
            paths.append(exchange)
        return paths

    def write(
        self,
        record: Any,
        *,
        detections: np.ndarray | Iterable[Sequence[float]],
        areas: Sequence[AreaAnnotation] = (),
        provenance: Mapping[str, Any] | None = None,
    ) -> list[ResultsReport]:
        """Write one image's results (replacing this tool's earlier objects only).

        ``detections`` is iterated once per file written: give an array or a
        sequence, not a one-shot iterator.
        """
        if not isinstance(detections, (np.ndarray, Sequence)):
            raise ConfigError("GeoJsonSink.write needs detections as an array or a sequence")
        return [
            write_results_geojson(p, detections=detections, areas=areas, provenance=provenance)
            for p in self.paths(record)
        ]


def write_to_qupath(source: Any, records: Iterable[Any], *, backup_dir: Path | None = None) -> Any:
    """Put the exchange results of ``records`` into the QuPath project with paquo.

    Call after :class:`GeoJsonSink` wrote them. Needs a QuPath installation
    (:class:`~wsdal_wsi.errors.QuPathUnavailableError` otherwise, saying what
    to do instead).

    Returns
    -------
    PaquoWriteReport
        Per image: objects written, replaced, or why it failed (slide unreachable).
    """
    if getattr(source, "kind", None) != "qupath-project":
        raise ConfigError(
            f"--write-qupath needs a QuPath project as the source, "
            f"got a {source.kind} ({source.path})"
        )
    results = {}
    for record in records:
        path = source.exchange_results_path(record)
        if path is not None and path.is_file():
            results[record.key] = path
    return write_results_paquo(source.project.qpproj, results, backup_dir=backup_dir)
