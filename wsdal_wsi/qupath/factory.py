"""Opening a source: the kind (project, slide folder, one slide) chosen from the path."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from wsdal_wsi.errors import ConfigError, InputError, QuPathUnavailableError
from wsdal_wsi.qupath import paquo_adapter
from wsdal_wsi.qupath.model import ClassSettings
from wsdal_wsi.qupath.project import find_qpproj
from wsdal_wsi.qupath.project_source import ProjectSource
from wsdal_wsi.qupath.sources import SLIDE_EXTENSIONS, SlideFolderSource, Source, is_slide_file
from wsdal_wsi.units import check_mpp

__all__ = ["open_source"]


def open_source(
    path: str | os.PathLike[str],
    *,
    classes: ClassSettings = ClassSettings(),
    relink: Sequence[str] | Mapping[str, str] | None = None,
    mpp: float | None = None,
    backend: str = "auto",
    check_slides: bool = True,
) -> Source:
    """Open a source of images and annotations, choosing its kind from ``path``.

    Parameters
    ----------
    path : path-like
        A QuPath project (``project.qpproj`` or its folder), a slide folder, or
        one slide file.
    classes : ClassSettings
        What each class means (unknown classes are reported once per run).
    relink : sequence of "OLD=NEW" or mapping, optional
        Slide path prefixes to replace (projects whose slides moved).
    mpp : float, optional
        Resolution (µm/px) for the slides that record none, in the file or as
        QuPath's pixel size (``--mpp``); never replaces a slide's own.
    backend : {"auto", "paquo", "export"}
        For projects: read the objects with paquo (needs QuPath), or from the
        exchange folder written by ``export_annotations.groovy``. ``"auto"``
        uses paquo where a QuPath installation is found.
    check_slides : bool
        Open each slide to check it and read its resolution.

    Raises
    ------
    InputError
        The path does not exist or is none of the above; a folder without slides.
    ProjectError
        A malformed ``project.qpproj``.
    ConfigError
        A bad ``mpp``, ``relink`` or ``backend``.
    QuPathUnavailableError
        ``backend="paquo"`` and no QuPath installation is found.
    """
    if backend not in ("auto", "paquo", "export"):
        raise ConfigError(f"backend must be 'auto', 'paquo' or 'export', got {backend!r}")
    if mpp is not None:
        mpp = check_mpp(mpp, what="--mpp")
    p = Path(path).expanduser()
    if not p.exists():
        raise InputError(f"{p}: no such file or folder")
    common = {"classes": classes, "mpp": mpp, "check_slides": check_slides}
    qpproj = find_qpproj(p)
    if qpproj is not None:
        chosen = backend
        if backend != "export":
            found = paquo_adapter.qupath_available()
            if backend == "paquo" and not found:
                raise QuPathUnavailableError(paquo_adapter.UNAVAILABLE_MESSAGE)
            chosen = backend if found else "export"
        return ProjectSource(qpproj, backend=chosen, relink=relink, **common)
    if relink:
        raise ConfigError("--relink applies to QuPath projects only (a project.qpproj)")
    if p.is_dir():
        return SlideFolderSource(p, **common)
    if is_slide_file(p):
        return SlideFolderSource(p.parent, only=p, **common)
    if p.suffix.lower() == ".json" and _looks_like_coco(p):
        raise InputError(
            f"{p}: this is a COCO annotation database; convert it to a slide folder first: "
            f"wsdal import-coco {p} --images <slide folder> --out <new folder>"
        )
    raise InputError(
        f"{p}: not a QuPath project (project.qpproj), a folder of slides, or a slide "
        f"(known slide extensions: {', '.join(SLIDE_EXTENSIONS)})"
    )


def _looks_like_coco(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    return b'"images"' in head
