"""A QuPath project read without QuPath: ``project.qpproj`` and the exchange folder.

``project.qpproj`` is JSON: the images (``entryID``, ``imageName``) and, in each
image's ``serverBuilder``, the slide's URI (``file:/...``) and its metadata
(size, pixel calibration), read by :mod:`~wsdal_wsi.qupath.server_builder`
(which also says when QuPath's coordinates are not the file's: a rotated,
cropped or transformed image, a scene of a multi-scene file). The objects
themselves live in ``data/<id>/data.qpdata`` (Java serialisation, not readable
from Python); ``export_annotations.groovy`` exports them to the exchange folder,
which this module reads::

    <project>/wsdal/annotations/<entryID>.geojson    written by export_annotations.groovy
    <project>/wsdal/results/<entryID>.geojson        written by wsdal, read by import_results.groovy

Slides are found the way QuPath finds them, and where it cannot, the way the
user says: the stored path; ``relink`` prefixes (``--relink OLD=NEW``); and, for
a project moved together with its slides, the stored path re-based from the
project's old folder (recorded in the file's ``"uri"``) onto its new one.
"""

from __future__ import annotations

import json
import logging
import ntpath
import os
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from wsdal_wsi.errors import ConfigError, ProjectError
from wsdal_wsi.qupath.server_builder import ServerInfo, parse_server_builder

__all__ = [
    "ANNOTATIONS_DIR",
    "EXCHANGE_DIR",
    "RESULTS_DIR",
    "QpImage",
    "QpProject",
    "annotations_export_path",
    "class_id",
    "find_qpproj",
    "parse_relink",
    "read_class_colors",
    "read_qpproj",
    "results_exchange_path",
    "uri_to_path",
]

log = logging.getLogger(__name__)

#: The exchange folder inside a QuPath project (shared with the Groovy scripts).
EXCHANGE_DIR = "wsdal"
#: Sub-folder of the exchange folder written by export_annotations.groovy.
ANNOTATIONS_DIR = "annotations"
#: Sub-folder of the exchange folder read by import_results.groovy.
RESULTS_DIR = "results"

_WINDOWS_DRIVE = re.compile(r"^/?([A-Za-z]):[/\\]")


def annotations_export_path(project_dir: Path, entry_id: str) -> Path:
    """``<project>/wsdal/annotations/<entryID>.geojson``."""
    return Path(project_dir) / EXCHANGE_DIR / ANNOTATIONS_DIR / f"{entry_id}.geojson"


def results_exchange_path(project_dir: Path, entry_id: str) -> Path:
    """``<project>/wsdal/results/<entryID>.geojson``."""
    return Path(project_dir) / EXCHANGE_DIR / RESULTS_DIR / f"{entry_id}.geojson"


def class_id(name: str) -> str:
    """A class's full id as QuPath spells it: ``"Tumor:Mitosis "`` -> ``"Tumor: Mitosis"``.

    QuPath's ``PathClass.toString()`` joins the names of a derived class with
    ``": "``; ``PathClass.fromString`` splits on ``":"`` and strips each name.
    """
    return ": ".join(part.strip() for part in name.split(":"))


def read_class_colors(project_dir: str | os.PathLike[str]) -> dict[str, tuple[int, int, int]]:
    """The project's class list: full class id -> ``(r, g, b)``; empty when there is none.

    Reads ``<project>/classifiers/classes.json`` as QuPath 0.5/0.6 write it
    (``DefaultProject.writePathClasses``)::

        {"pathClasses": [{"name": "Tumor", "color": -3670016},
                         {"name": "Tumor: Mitosis", "color": -65536}]}

    (colours are packed ARGB integers). A file that cannot be read is logged
    and treated as absent: the colours are only a default for QuPath.
    """
    path = Path(project_dir) / "classifiers" / "classes.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        log.warning("%s: cannot read the class list (%s); using default colours", path, exc)
        return {}
    entries = doc.get("pathClasses") if isinstance(doc, dict) else None
    out: dict[str, tuple[int, int, int]] = {}
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        name, color = entry.get("name"), entry.get("color")
        if isinstance(name, str) and name.strip() and isinstance(color, int):
            rgb = color & 0xFFFFFF
            out[class_id(name)] = ((rgb >> 16) & 255, (rgb >> 8) & 255, rgb & 255)
    return out


def uri_to_path(uri: str) -> str | None:
    """Turn a QuPath image URI into a path string with ``/`` separators.

    ``file:/data/a.svs``, ``file:///data/a%20b.svs`` -> ``/data/a.svs``,
    ``/data/a b.svs``; ``file:/C:/data/a.svs`` -> ``C:/data/a.svs``;
    ``file:////server/share/a.svs`` -> ``//server/share/a.svs``; a plain path is
    returned as it is (``\\`` turned into ``/``). Non-file URIs (``http:``,
    ``omero``...) give ``None``.
    """
    if not isinstance(uri, str) or not uri.strip():
        return None
    uri = uri.strip()
    parsed = urlparse(uri)
    if len(parsed.scheme) == 1:  # "C:\\data\\a.svs" parsed as scheme "c"
        return uri.replace("\\", "/")
    if parsed.scheme == "":
        return uri.replace("\\", "/")
    if parsed.scheme.lower() != "file":
        return None
    path = unquote(parsed.path)
    if parsed.netloc and parsed.netloc.lower() != "localhost":
        return f"//{parsed.netloc}{path}"
    if path.startswith("//"):  # file:////server/share
        return "//" + path.lstrip("/")
    m = _WINDOWS_DRIVE.match(path)
    if m:
        return path.lstrip("/")
    return path


def parse_relink(values: Sequence[str] | Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    """Parse ``--relink OLD=NEW`` values into (old, new) prefix pairs.

    Raises
    ------
    ConfigError
        A value without ``=`` or with an empty side.
    """
    if not values:
        return ()
    items = list(values.items()) if isinstance(values, Mapping) else []
    if not isinstance(values, Mapping):
        for value in values:
            if not isinstance(value, str) or "=" not in value:
                raise ConfigError(
                    f"--relink must be OLD=NEW (a path prefix each side), got {value!r}"
                )
            old, new = value.split("=", 1)
            items.append((old, new))
    out = []
    for old, new in items:
        if not old.strip() or not new.strip():
            raise ConfigError(f"--relink needs both sides non-empty, got {old!r}={new!r}")
        out.append((_norm(old).rstrip("/") or "/", _norm(new).rstrip("/") or "/"))
    return tuple(out)


def _norm(path: str) -> str:
    return path.strip().replace("\\", "/")


def _apply_relink(path: str, relink: tuple[tuple[str, str], ...]) -> str | None:
    for old, new in relink:
        if path == old or path.startswith(old.rstrip("/") + "/"):
            return new + path[len(old) :] if old != "/" else new + path
    return None


@dataclass(frozen=True)
class QpImage:
    """One image of a ``project.qpproj``.

    Attributes
    ----------
    entry_id : str
        QuPath's entry ID (the name of ``data/<id>/`` and of the exchange files).
    image_name : str
    uri : str or None
        The slide URI as stored.
    slide_path : Path or None
        The slide file found, or ``None`` when missing.
    slide_how : str
        How it was found: ``"as stored"``, ``"relinked (--relink)"``,
        ``"project moved (relative to the project)"``; or why not.
    tried : tuple of str
        The paths looked at (for the message when the slide is missing).
    width, height : int or None
        Level-0 size recorded by QuPath.
    mpp : float or None
        Pixel size recorded by QuPath in µm (set in QuPath or read from the slide).
    server : ServerInfo
        What the image's ``serverBuilder`` says (reader, scene, wrappers), and
        why QuPath's coordinates cannot be used with the slide file, if so.
    """

    entry_id: str
    image_name: str
    uri: str | None
    slide_path: Path | None
    slide_how: str
    tried: tuple[str, ...]
    width: int | None = None
    height: int | None = None
    mpp: float | None = None
    server: ServerInfo = field(default_factory=ServerInfo)

    def missing_message(self) -> str:
        """A sentence saying where the slide was looked for and how to fix it."""
        if self.uri is None:
            return self.server.problem or "the project records no slide file for this image"
        if not self.tried:
            return f"the slide is not a local file ({self.uri}); wsdal reads local slides only"
        where = "; ".join(self.tried)
        return (
            f"slide not found (looked at: {where}); if the slides moved, "
            "give --relink OLD=NEW (the old and new folder)"
        )


@dataclass(frozen=True)
class QpProject:
    """A ``project.qpproj`` read without QuPath.

    Attributes
    ----------
    qpproj : Path
        The ``project.qpproj`` file.
    directory : Path
        The project folder.
    version : str or None
        The QuPath version that wrote it.
    images : tuple of QpImage
    """

    qpproj: Path
    directory: Path
    version: str | None
    images: tuple[QpImage, ...]


def find_qpproj(path: str | os.PathLike[str]) -> Path | None:
    """``path`` if it is a ``.qpproj`` file, else ``path/project.qpproj`` if present, else None."""
    p = Path(path)
    if p.is_file() and p.suffix.lower() == ".qpproj":
        return p
    if p.is_dir() and (p / "project.qpproj").is_file():
        return p / "project.qpproj"
    return None


def _calibration_mpp(meta: Mapping[str, Any]) -> float | None:
    cal = meta.get("pixelCalibration")
    if not isinstance(cal, dict):
        return None
    values = []
    for key in ("pixelWidth", "pixelHeight"):
        item = cal.get(key)
        if not isinstance(item, dict):
            return None
        unit, value = item.get("unit"), item.get("value")
        if unit not in ("µm", "um", "\u00b5m", "microns", "micron"):
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            return None
        values.append(float(value))
    return sum(values) / 2.0


def _relative_to(path: str, folder: str) -> str | None:
    """``path`` relative to ``folder`` (both POSIX, or both Windows with a drive), else None."""
    if _WINDOWS_DRIVE.match(path) and _WINDOWS_DRIVE.match(folder):
        try:
            return ntpath.relpath(path, folder).replace("\\", "/")
        except ValueError:  # different drives
            return None
    if path.startswith("/") and folder.startswith("/"):
        return posixpath.relpath(path, folder)
    return None


def _locate(
    stored: str | None,
    *,
    project_dir: Path,
    old_project_dir: str | None,
    relink: tuple[tuple[str, str], ...],
) -> tuple[Path | None, str, tuple[str, ...]]:
    if stored is None:
        return None, "not a local file", ()
    tried: list[str] = []
    relinked = _apply_relink(stored, relink)
    if relinked is not None:
        tried.append(relinked)
        if Path(relinked).is_file() or Path(relinked).is_dir():
            return Path(relinked), "relinked (--relink)", tuple(tried)
    candidate = stored if (stored.startswith("/") or _WINDOWS_DRIVE.match(stored)) else None
    if candidate is None:  # relative path: relative to the project folder
        candidate = posixpath.normpath(posixpath.join(project_dir.as_posix(), stored))
    tried.append(candidate)
    if Path(candidate).is_file() or Path(candidate).is_dir():
        return Path(candidate), "as stored", tuple(tried)
    if old_project_dir and old_project_dir != project_dir.as_posix():
        rel = _relative_to(stored, old_project_dir)
        if rel is not None:
            moved = posixpath.normpath(posixpath.join(project_dir.as_posix(), rel))
            tried.append(moved)
            if Path(moved).is_file() or Path(moved).is_dir():
                return Path(moved), "project moved (relative to the project)", tuple(tried)
    return None, "missing", tuple(tried)


def read_qpproj(
    path: str | os.PathLike[str],
    *,
    relink: Sequence[str] | Mapping[str, str] | None = None,
) -> QpProject:
    """Read a QuPath project file and find each image's slide.

    Parameters
    ----------
    path : path-like
        ``project.qpproj`` or the project folder.
    relink : sequence of "OLD=NEW", or mapping OLD -> NEW, optional
        Path prefixes to replace in the stored slide paths (slides moved).

    Raises
    ------
    ProjectError
        No ``project.qpproj``, not JSON, or not the structure QuPath writes.
    ConfigError
        A malformed ``relink``.
    """
    pairs = parse_relink(relink)
    qpproj = find_qpproj(path)
    if qpproj is None:
        raise ProjectError(f"{path}: no QuPath project here (expected a project.qpproj file)")
    qpproj = qpproj.resolve()
    try:
        doc = json.loads(qpproj.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise ProjectError(
            f"{qpproj}: not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg})"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProjectError(f"{qpproj}: cannot read ({exc})") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("images", []), list):
        raise ProjectError(f"{qpproj}: not a QuPath project file (no 'images' list)")
    old_uri = doc.get("uri")
    old_qpproj = uri_to_path(old_uri) if isinstance(old_uri, str) else None
    old_dir = posixpath.dirname(old_qpproj) if old_qpproj else None
    project_dir = qpproj.parent
    images = []
    seen: set[str] = set()
    for i, entry in enumerate(doc.get("images", [])):
        if not isinstance(entry, dict) or "entryID" not in entry:
            raise ProjectError(f"{qpproj}: image {i} has no entryID")
        entry_id = str(entry["entryID"])
        if entry_id in seen:
            raise ProjectError(f"{qpproj}: entryID {entry_id} appears twice")
        seen.add(entry_id)
        server = parse_server_builder(entry.get("serverBuilder"))
        uri = server.uri
        stored = uri_to_path(uri) if uri is not None else None
        slide, how, tried = _locate(
            stored, project_dir=project_dir, old_project_dir=old_dir, relink=pairs
        )
        name = entry.get("imageName")
        if not isinstance(name, str) or not name:
            name = posixpath.basename(stored) if stored else f"image {entry_id}"
        images.append(
            QpImage(
                entry_id=entry_id,
                image_name=name,
                uri=uri,
                slide_path=slide,
                slide_how=how,
                tried=tried,
                width=server.width,
                height=server.height,
                mpp=_calibration_mpp(server.metadata),
                server=server,
            )
        )
    version = doc.get("version")
    return QpProject(
        qpproj=qpproj,
        directory=project_dir,
        version=version if isinstance(version, str) else None,
        images=tuple(images),
    )
