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
``"WS-DAL"``), add the new ones from the results GeoJSON through QuPath's own
GeoJSON reader (so ids, locks, ellipses and derived classes are QuPath's, as
with the script), and never touch any other object. It zips the project first,
saves only when every image was updated, and checks the save afterwards.

Checked against paquo 0.9.0 with QuPath 0.5.1 / 0.6.0 by reading their source
(no QuPath runs here; the tests that need one are skipped without it).
"""

from __future__ import annotations

import datetime as _dt
import importlib
import logging
import os
import uuid
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wsdal_wsi.atomic import atomic_path, make_dirs
from wsdal_wsi.errors import ProjectError, QuPathUnavailableError, WsdalError
from wsdal_wsi.qupath.geojson_read import QuPathObject, load_geojson, objects_from_features
from wsdal_wsi.qupath.geojson_write import class_color
from wsdal_wsi.qupath.model import is_tool_name
from wsdal_wsi.qupath.project import class_id
from wsdal_wsi.qupath.results import answered_id

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
    """Read every image's annotations from a project, read-only.

    The tool's own objects are left out, except those the pathologist answered
    (:func:`~wsdal_wsi.qupath.model.is_answered`: a detection relabelled or locked, a
    question relabelled), detections included (``hierarchy.to_geojson()`` gives
    annotations only).

    Returns
    -------
    dict
        entry ID -> objects, in the form :func:`~wsdal_wsi.qupath.geojson_read.read_objects` gives.
    """
    projects = _paquo("paquo.projects")
    qpproj = Path(qpproj)
    out: dict[str, list[QuPathObject]] = {}
    try:
        with projects.QuPathProject(_qpproj_file(qpproj), mode="r") as qp:
            for entry in qp.images:
                h = entry.hierarchy
                features = [
                    f
                    for f in (*h.to_geojson(), *(d.to_geojson() for d in h.detections))
                    if not is_tool_name((f.get("properties") or {}).get("name"))
                    or answered_id(f) is not None
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


def _qpproj_file(path: str | os.PathLike[str]) -> Path:
    """The ``project.qpproj`` file of a project folder (or the file itself).

    paquo is always given the file: it takes a folder whose name has a dot
    (``study.v2``) for a file and refuses it ("requires '.qpproj' suffix").
    """
    p = Path(path)
    return p / "project.qpproj" if p.is_dir() else p


def _read_payload(
    results: Mapping[str, str | os.PathLike[str]],
) -> tuple[dict[str, list[dict[str, Any]]], set[str]]:
    """The tool's features of each results file (raw, as written), and the classes they use."""
    payload: dict[str, list[dict[str, Any]]] = {}
    wanted: set[str] = set()
    for entry_id, path in results.items():
        features = load_geojson(path)
        objects = objects_from_features(features, source=str(path))
        tool = [(f, o) for f, o in zip(features, objects, strict=True) if o.tool_made]
        payload[str(entry_id)] = [f for f, _ in tool]
        wanted |= {class_id(o.class_name) for _, o in tool if o.class_name}
    return payload, wanted


def write_results_paquo(
    qpproj: str | os.PathLike[str],
    results: Mapping[str, str | os.PathLike[str]],
    *,
    backup_dir: Path | None = None,
) -> PaquoWriteReport:
    """Put results GeoJSON files into a QuPath project, replacing only the tool's objects.

    The objects go in through QuPath's own GeoJSON reader, as in
    ``import_results.groovy``, so they keep the file's ``id``, ``isLocked``,
    ``isEllipse``, name, measurements and (derived) class: both routes give
    the same objects. Nothing is saved unless every image was updated in
    memory first: an error leaves the project on disk as it was (paquo's own
    context manager would save a half-done write).

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

    Raises
    ------
    ProjectError
        paquo failed; the message says whether anything was saved and names
        the backup.
    """
    projects = _paquo("paquo.projects")
    classes_mod = _paquo("paquo.classes")
    qpproj = _qpproj_file(qpproj)
    payload, wanted = _read_payload(results)
    report = PaquoWriteReport(backup=backup_project(qpproj.parent, backup_dir=backup_dir))
    saved: list[str] = []
    try:
        # not `with`: paquo's __exit__ saves even when an exception is raised
        qp = projects.QuPathProject(qpproj, mode="r+")
        _add_path_classes(qp, classes_mod, wanted)
        touched = _replace_in_memory(qp, payload, report)
        for entry_id, entry in touched.items():
            entry.save()
            saved.append(entry_id)
        qp.save(images=False)  # the class list and project.qpproj
    except WsdalError:
        raise
    except Exception as exc:
        done = f"images {', '.join(saved)} were saved before it" if saved else "nothing was saved"
        raise ProjectError(
            f"{qpproj}: writing results with paquo failed ({exc}); {done}; the project backup "
            f"is {report.backup}"
        ) from exc
    _verify_saved(qpproj, report, projects, payload)
    return report


def _path_class(classes_mod: Any, full_id: str) -> Any:
    """A paquo class for ``"Tumor: Mitosis"``: derived classes are built from their parents
    (paquo refuses ':' in a name)."""
    names = [part.strip() for part in full_id.split(":")]
    path_class = None
    for depth, name in enumerate(names, start=1):
        color = class_color(full_id) if depth == len(names) else None
        path_class = classes_mod.QuPathPathClass(name, color=color, parent=path_class)
    return path_class


def _add_path_classes(qp: Any, classes_mod: Any, wanted: set[str]) -> None:
    """Add the classes the results use to the project's list, keyed by full id (``.id``)."""
    known = {str(pc.id): pc for pc in qp.path_classes}
    missing = sorted(wanted - set(known))
    if missing:
        # always a longer list: QuPath's setPathClasses ignores one of the same length
        qp.path_classes = [*known.values(), *(_path_class(classes_mod, c) for c in missing)]


def _replace_in_memory(
    qp: Any, payload: Mapping[str, list[dict[str, Any]]], report: PaquoWriteReport
) -> dict[str, Any]:
    """Replace the tool's objects of each image (nothing saved); the entries changed."""
    entries = {str(e.entry_id): e for e in qp.images}
    touched: dict[str, Any] = {}
    for entry_id, features in payload.items():
        entry = entries.get(entry_id)
        if entry is None:
            report.failed[entry_id] = "no image with this entry ID in the project"
            continue
        try:
            readable = entry.is_readable()
        except NotImplementedError:  # paquo 0.9.0: entry.uri of a multi-file image
            report.failed[entry_id] = (
                "the image is made of several files (channels or z-slices), which paquo cannot "
                "save; bring the results in with qupath_scripts/import_results.groovy"
            )
            continue
        if not readable:
            report.failed[entry_id] = (
                f"slide not reachable ({entry.uri}): QuPath cannot save this image; "
                "relink the slide in QuPath (File > Project > Relink images) first"
            )
            continue
        report.removed[entry_id] = _replace_objects(entry, features)
        report.written[entry_id] = len(features)
        touched[entry_id] = entry
    return touched


def _replace_objects(entry: Any, features: list[dict[str, Any]]) -> int:
    """Remove the tool's earlier objects, except those the pathologist answered, and add
    ``features`` (but not one with the id of an answered object: its answer stays)."""
    hierarchy = entry.hierarchy

    def answered(obj: Any) -> bool:
        return answered_id(obj.to_geojson()) is not None

    old_det = [d for d in hierarchy.detections if is_tool_name(d.name) and not answered(d)]
    old_ann = [a for a in hierarchy.annotations if is_tool_name(a.name) and not answered(a)]
    keep = {
        str(o.java_object.getID())
        for o in (*hierarchy.detections, *hierarchy.annotations)
        if is_tool_name(o.name) and answered(o)
    }
    with hierarchy.no_autoflush():
        if old_det:
            hierarchy.detections.__isub__(old_det)
        if old_ann:
            hierarchy.annotations.__isub__(old_ann)
    new = [f for f in features if str(f.get("id")) not in keep]
    if new:  # QuPath's GsonTools: id, isLocked, isEllipse and "names" classes kept
        hierarchy.load_geojson(new, raise_on_skip=True)
    return len(old_det) + len(old_ann)


def _uuids(features: list[dict[str, Any]]) -> set[str]:
    """The ids QuPath keeps (valid UUIDs, in ``UUID.toString()`` form)."""
    out = set()
    for feature in features:
        try:
            out.add(str(uuid.UUID(str(feature.get("id")))))
        except ValueError:
            continue  # QuPath gives such an object a new random id
    return out


def _verify_saved(
    qpproj: Path,
    report: PaquoWriteReport,
    projects: Any,
    payload: Mapping[str, list[dict[str, Any]]],
) -> None:
    """Re-open the project read-only: each written image holds the objects written, by id."""
    with projects.QuPathProject(qpproj, mode="r") as qp:
        entries = {str(e.entry_id): e for e in qp.images}
        for entry_id, n in list(report.written.items()):
            h = entries[entry_id].hierarchy
            found = {
                str(o.java_object.getID())
                for o in (*h.detections, *h.annotations)
                if is_tool_name(o.name)
            }
            missing = _uuids(payload[entry_id]) - found
            if len(found) < n or missing:
                report.failed[entry_id] = (
                    f"saved project holds {len(found)} WS-DAL objects, expected {n}"
                    f"{f' ({len(missing)} ids not found)' if missing else ''}: the save did not "
                    "reach the disk (is the slide reachable?)"
                )
                del report.written[entry_id]
