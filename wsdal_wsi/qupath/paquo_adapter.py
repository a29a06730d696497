"""The thin layer over paquo: the only module of wsdal-wsi that imports paquo.

paquo drives a real QuPath through Java; it needs a QuPath installation (found
through ``PAQUO_QUPATH_DIR``, a ``.paquo.toml`` or standard folders). paquo is
imported only when one of these functions is called, and its failures become
our errors: no QuPath -> :class:`~wsdal_wsi.errors.QuPathUnavailableError`
saying what to do; a project paquo cannot read -> :class:`ProjectError`.

Reading gives the same objects as the exchange-folder route (the pathologist's
annotations, not the tool's own objects), so both routes build the same model.
Writing (:func:`write_results_paquo`) does what ``import_results.groovy`` does:
in each image, remove the objects wsdal-wsi made before (name starting with
``"WS-DAL"``), add the new ones from the results GeoJSON, and never touch any
other object; it zips the project first and checks the save afterwards.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import logging
import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wsdal_wsi.atomic import atomic_path, make_dirs
from wsdal_wsi.errors import ProjectError, QuPathUnavailableError, WsdalError
from wsdal_wsi.qupath.geojson_read import QuPathObject, objects_from_features, read_objects
from wsdal_wsi.qupath.geojson_write import class_color
from wsdal_wsi.qupath.model import is_tool_name

__all__ = [
    "UNAVAILABLE_MESSAGE",
    "PaquoWriteReport",
    "backup_project",
    "qupath_available",
    "read_project_annotations",
    "write_results_paquo",
]

log = logging.getLogger(__name__)

UNAVAILABLE_MESSAGE = (
    "no QuPath installation found (paquo needs one to open a project directly). Either "
    "install QuPath and point paquo at it: `paquo get_qupath --install-path DIR 0.6.0`, then "
    "set PAQUO_QUPATH_DIR to the folder it prints; or work without QuPath on this machine: "
    "run qupath_scripts/export_annotations.groovy in QuPath (Run for project), use "
    "--backend export, and bring results back with qupath_scripts/import_results.groovy"
)


def qupath_available() -> bool:
    """True if paquo finds a QuPath installation. Does not start Java."""
    try:
        from paquo._config import settings, to_kwargs
        from paquo.jpype_backend import find_qupath
    except Exception as exc:  # paquo missing or broken: no QuPath for us
        log.debug("paquo not importable: %s", exc)
        return False
    try:
        find_qupath(**to_kwargs(settings))
    except (ValueError, OSError) as exc:
        log.debug("no QuPath found by paquo: %s", exc)
        return False
    return True


def _paquo(module: str) -> Any:
    """Import a paquo module (starting Java), turning failures into QuPathUnavailableError."""
    try:
        return importlib.import_module(module)
    except ValueError as exc:
        if "no valid qupath installation" in str(exc).lower():
            raise QuPathUnavailableError(UNAVAILABLE_MESSAGE) from exc
        raise QuPathUnavailableError(f"paquo could not start QuPath ({exc})") from exc
    except Exception as exc:  # JVM start failures come as many types
        raise QuPathUnavailableError(
            f"paquo could not start QuPath ({type(exc).__name__}: {exc}); check PAQUO_QUPATH_DIR "
            "and that the QuPath installation runs"
        ) from exc


def read_project_annotations(qpproj: str | os.PathLike[str]) -> dict[str, list[QuPathObject]]:
    """Read every image's annotations (not the tool's own objects) from a project, read-only.

    Returns
    -------
    dict
        entry ID -> objects, in the form :func:`~wsdal_wsi.qupath.geojson_read.read_objects` gives.
    """
    projects = _paquo("paquo.projects")
    qpproj = Path(qpproj)
    out: dict[str, list[QuPathObject]] = {}
    try:
        with projects.QuPathProject(qpproj, mode="r") as qp:
            for entry in qp.images:
                features = [
                    f
                    for f in entry.hierarchy.to_geojson()
                    if not is_tool_name((f.get("properties") or {}).get("name"))
                ]
                where = f"{qpproj} image {entry.image_name!r} (entry {entry.entry_id})"
                out[str(entry.entry_id)] = objects_from_features(features, source=where)
    except WsdalError:
        raise
    except Exception as exc:
        raise ProjectError(f"{qpproj}: paquo could not read the project ({exc})") from exc
    return out


def backup_project(project_dir: Path, *, backup_dir: Path | None = None) -> Path:
    """Zip ``project.qpproj``, ``classifiers/`` and ``data/`` of a project before changing it.

    Returns the zip path (``<project>/wsdal/backups/project-<UTC time>.zip`` by default).
    """
    project_dir = Path(project_dir)
    backup_dir = backup_dir or project_dir / "wsdal" / "backups"
    make_dirs(backup_dir)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    target = backup_dir / f"project-{stamp}.zip"
    with atomic_path(target) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for item in ["project.qpproj", "classifiers", "data"]:
            root = project_dir / item
            if root.is_file():
                zf.write(root, item)
            elif root.is_dir():
                for f in sorted(root.rglob("*")):
                    if f.is_file():
                        zf.write(f, f.relative_to(project_dir).as_posix())
    return target


@dataclass
class PaquoWriteReport:
    """What :func:`write_results_paquo` did.

    Attributes
    ----------
    backup : Path
        The zip made before any change.
    written : dict
        entry ID -> number of tool objects now in the image.
    removed : dict
        entry ID -> number of earlier tool objects removed.
    failed : dict
        entry ID -> reason (slide unreachable, no such entry, save not found).
    """

    backup: Path
    written: dict[str, int] = field(default_factory=dict)
    removed: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


def _float_measurements(obj: QuPathObject) -> dict[str, float]:
    return {str(k): float(v) for k, v in obj.measurements.items()}


def write_results_paquo(
    qpproj: str | os.PathLike[str],
    results: Mapping[str, str | os.PathLike[str]],
    *,
    backup_dir: Path | None = None,
) -> PaquoWriteReport:
    """Put results GeoJSON files into a QuPath project, replacing only the tool's objects.

    Parameters
    ----------
    qpproj : path-like
        ``project.qpproj`` (or its folder).
    results : mapping of entry ID -> results GeoJSON path
        Files written by :func:`~wsdal_wsi.qupath.geojson_write.write_results_geojson`.
        Only their tool-made objects are added.
    backup_dir : Path, optional
        Where the project zip goes (default ``<project>/wsdal/backups``).

    Returns
    -------
    PaquoWriteReport
        Per image: objects written, earlier ones removed, or why it failed. An
        image whose slide is unreachable is reported as failed: QuPath cannot
        save it (relink its slide first).
    """
    projects = _paquo("paquo.projects")
    classes_mod = _paquo("paquo.classes")
    qpproj = Path(qpproj)
    project_dir = qpproj if qpproj.is_dir() else qpproj.parent
    report = PaquoWriteReport(backup=backup_project(project_dir, backup_dir=backup_dir))
    payload = {str(k): [o for o in read_objects(v) if o.tool_made] for k, v in results.items()}
    try:
        with projects.QuPathProject(project_dir, mode="r+") as qp:
            known = {pc.name: pc for pc in qp.path_classes}
            wanted = {o.class_name for objs in payload.values() for o in objs if o.class_name}
            for name in sorted(wanted - set(known)):
                known[name] = classes_mod.QuPathPathClass(name, color=class_color(name))
            qp.path_classes = list(known.values())
            entries = {str(e.entry_id): e for e in qp.images}
            for entry_id, objects in payload.items():
                entry = entries.get(entry_id)
                if entry is None:
                    report.failed[entry_id] = "no image with this entry ID in the project"
                    continue
                if not entry.is_readable():
                    report.failed[entry_id] = (
                        f"slide not reachable ({entry.uri}): QuPath cannot save this image; "
                        "relink the slide in QuPath (File > Project > Relink images) first"
                    )
                    continue
                report.removed[entry_id] = _replace_objects(entry, objects, known)
                report.written[entry_id] = len(objects)
            qp.save()
    except WsdalError:
        raise
    except Exception as exc:
        raise ProjectError(
            f"{qpproj}: writing results with paquo failed ({exc}); the project backup is "
            f"{report.backup}"
        ) from exc
    _verify_saved(project_dir, report, projects)
    return report


def _replace_objects(entry: Any, objects: list[QuPathObject], classes: Mapping[str, Any]) -> int:
    hierarchy = entry.hierarchy
    old_det = [d for d in hierarchy.detections if is_tool_name(d.name)]
    old_ann = [a for a in hierarchy.annotations if is_tool_name(a.name)]
    with hierarchy.no_autoflush():
        if old_det:
            hierarchy.detections.__isub__(old_det)
        if old_ann:
            hierarchy.annotations.__isub__(old_ann)
        for obj in objects:
            pc = classes.get(obj.class_name) if obj.class_name else None
            add = (
                hierarchy.add_detection
                if obj.object_type == "detection"
                else hierarchy.add_annotation
            )
            new = add(roi=obj.geometry, path_class=pc, measurements=_float_measurements(obj))
            new.name = obj.name
    return len(old_det) + len(old_ann)


def _verify_saved(project_dir: Path, report: PaquoWriteReport, projects: Any) -> None:
    """Re-open the project read-only and check each written image holds what was written."""
    with projects.QuPathProject(project_dir, mode="r") as qp:
        entries = {str(e.entry_id): e for e in qp.images}
        for entry_id, n in list(report.written.items()):
            h = entries[entry_id].hierarchy
            found = sum(1 for o in (*h.detections, *h.annotations) if is_tool_name(o.name))
            if found != n:
                report.failed[entry_id] = (
                    f"saved project holds {found} WS-DAL objects, expected {n}: the save did not "
                    "reach the disk (is the slide reachable?)"
                )
                del report.written[entry_id]
