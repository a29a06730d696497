"""Sources of images and their annotations: the records every command works from.

:func:`wsdal_wsi.qupath.factory.open_source` chooses the kind from the path:

- a **QuPath project** (``project.qpproj`` or its folder): images and slide paths
  from ``project.qpproj``; the annotations either straight from the project with
  paquo (where a QuPath installation is found) or from the exchange folder that
  ``qupath_scripts/export_annotations.groovy`` writes
  (``<project>/wsdal/annotations/<entryID>.geojson``);
- a **slide folder**: each slide (a file with a known slide extension) with a
  sidecar ``<slide stem>.geojson`` (QuPath's "Export objects as GeoJSON");
- a **single slide** file (with its sidecar, if any).

Every source gives a list of :class:`ImageRecord`: the slide, whether it opens,
its resolution, its annotations, and every problem found, in words. Nothing is
guessed: an image without an annotation export, or a slide that is missing,
is reported as such.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wsdal_wsi.errors import InputError, ResolutionError, SlideError, WsdalError
from wsdal_wsi.progress import NULL_PROGRESS, Progress
from wsdal_wsi.qupath.annotations import annotations_from_objects
from wsdal_wsi.qupath.geojson_read import QuPathObject, read_objects
from wsdal_wsi.qupath.model import ClassSettings, ImageAnnotations
from wsdal_wsi.qupath.plausibility import density_warning, drop_points_outside
from wsdal_wsi.qupath.server_builder import ServerInfo
from wsdal_wsi.slide import open_slide

__all__ = [
    "SIDECAR_SUFFIXES",
    "SLIDE_EXTENSIONS",
    "ImageRecord",
    "SlideFolderSource",
    "Source",
    "file_loader",
    "is_slide_file",
]

log = logging.getLogger(__name__)

#: File extensions taken for slides in a slide folder (lower case).
SLIDE_EXTENSIONS = (
    ".svs",
    ".tif",
    ".tiff",
    ".ndpi",
    ".vms",
    ".vmu",
    ".scn",
    ".mrxs",
    ".svslide",
    ".bif",
    ".dcm",
)
#: Sidecar annotation files looked for beside a slide, in this order.
SIDECAR_SUFFIXES = (".geojson", ".json", ".geojson.gz")


def is_slide_file(path: Path) -> bool:
    """True for a visible file with a known slide extension."""
    return (
        path.is_file() and not path.name.startswith(".") and path.suffix.lower() in SLIDE_EXTENSIONS
    )


@dataclass
class ImageRecord:
    """One image of a source, as the tool sees it before any work.

    Attributes
    ----------
    name : str
        The name shown to the user (QuPath's image name, or the slide file name).
    key : str
        Unique and file-safe: the entry ID for projects, the slide stem for
        folders. Every per-image output file is named by it.
    slide_path : Path or None
        The slide file, or ``None`` when it is missing.
    annotations : ImageAnnotations or None
        ``None`` when there is no annotation file/export (or it is malformed).
    problems : list of str
        What makes the image unusable for training: slide missing or not
        opening, no resolution, no annotations, malformed annotation file.
    entry_id : str or None
        QuPath's entry ID (projects only).
    mpp : float or None
        Level-0 resolution (µm/px) to use, as the slide resolves it
        (:func:`wsdal_wsi.slide.resolve_mpp`: the slide's own, else the pixel
        size set in QuPath, else ``--mpp``); None until the slide is checked.
    mpp_source : str or None
        Where ``mpp`` comes from.
    readable : bool
        The slide opens.
    warnings : list of str
        Things to know that do not block use: unknown classes, objects left
        out, a stale annotation export.
    annotation_path : Path or None
        The annotation file read (sidecar or export), if any.
    dimensions : (int, int) or None
        Level-0 (w, h) of the slide, when it opens.
    project_mpp : float or None
        The pixel size set in QuPath for the image (projects), a fallback.
    user_mpp : float or None
        The ``--mpp`` the source was opened with, the last fallback.
    dropped_points : int
        Points of the annotation file outside the slide, left out of
        ``annotations`` (a warning says so).
    server : ServerInfo or None
        For a QuPath project: how QuPath reads the image (its ``serverBuilder``),
        which decides whether QuPath's coordinates are the slide's level-0 (x, y).
    """

    name: str
    key: str
    slide_path: Path | None
    annotations: ImageAnnotations | None
    problems: list[str]
    entry_id: str | None = None
    mpp: float | None = None
    mpp_source: str | None = None
    readable: bool = False
    warnings: list[str] = field(default_factory=list)
    annotation_path: Path | None = None
    dimensions: tuple[int, int] | None = None
    project_mpp: float | None = None
    user_mpp: float | None = None
    dropped_points: int = 0
    server: ServerInfo | None = None

    def open_slide(self, *, fast_tiles: bool = True):
        """Open the image's slide with its resolution fallbacks (a :class:`~wsdal_wsi.slide.Slide`).

        Raises
        ------
        SlideError
            The slide is missing or does not open, or QuPath's coordinates of
            the image are not the slide's level-0 (x, y) (the message says why).
        """
        slide = self._open_unchecked(fast_tiles=fast_tiles)
        problem = self.frame_problem(slide)
        if problem is not None:
            slide.close()
            raise SlideError(f"{self.name}: {problem}")
        return slide

    def _open_unchecked(self, *, fast_tiles: bool = True):
        if self.slide_path is None:
            reason = "; ".join(p for p in self.problems if "slide" in p.lower()) or "slide missing"
            raise SlideError(f"{self.name}: {reason}")
        if self.server is not None and self.server.problem is not None:
            raise SlideError(f"{self.name}: {self.server.problem}")
        return open_slide(
            self.slide_path,
            mpp=self.user_mpp,
            project_mpp=self.project_mpp,
            fast_tiles=fast_tiles,
        )

    def frame_problem(self, slide: Any) -> str | None:
        """Why QuPath's coordinates of this image do not fit the open ``slide``, or None."""
        if self.server is None:
            return None
        return self.server.slide_problem(slide.properties, slide.dimensions)

    @property
    def usable(self) -> bool:
        """True when the image can be used for training (no problems)."""
        return not self.problems

    def to_dict(self, *, classes: ClassSettings | None = None) -> dict[str, Any]:
        """JSON-able summary (the per-image form of ``wsdal inspect --json``)."""
        ann = self.annotations
        return {
            "name": self.name,
            "key": self.key,
            "entry_id": self.entry_id,
            "slide": str(self.slide_path) if self.slide_path else None,
            "readable": self.readable,
            "mpp": self.mpp,
            "mpp_source": self.mpp_source,
            "dimensions": list(self.dimensions) if self.dimensions else None,
            "annotation_file": str(self.annotation_path) if self.annotation_path else None,
            "points": ann.points_per_class() if ann else {},
            "areas": ann.areas_per_class() if ann else {},
            "corrections": ann.corrections() if ann else {},
            "usable": self.usable,
            "dropped_points": self.dropped_points,
            "problems": list(self.problems),
            "warnings": list(self.warnings),
        }


# An annotation loader returns (objects, annotation file) or raises WsdalError.
AnnotationLoader = Callable[[], tuple[list[QuPathObject], Path | None]]


class Source:
    """A set of images with annotations. Made by :func:`open_source`.

    Attributes
    ----------
    kind : str
        ``"qupath-project"`` or ``"slide-folder"``.
    path : Path
    classes : ClassSettings
    backend : str or None
        For projects: ``"paquo"`` or ``"export"``.
    """

    kind: str = "source"
    backend: str | None = None
    #: One image given by itself (a single slide as SOURCE): a slide that does not open,
    #: has no resolution, or a malformed annotation file is an error of the source
    #: itself (raised), not a problem of one image among others (recorded).
    strict: bool = False

    def __init__(
        self, path: Path, *, classes: ClassSettings, mpp: float | None, check_slides: bool
    ):
        self.path = path
        self.classes = classes
        self.mpp = mpp
        self.check_slides = check_slides
        self._records: list[ImageRecord] | None = None
        self.unknown_classes: dict[str, int] = {}

    # -- to implement -------------------------------------------------------------
    def _entries(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    # -- public ---------------------------------------------------------------------
    def images(self, *, progress: Progress | None = None) -> list[ImageRecord]:
        """Every image with its slide check, annotations and problems (computed once)."""
        if self._records is not None:
            return self._records
        progress = progress or NULL_PROGRESS
        entries = self._entries()
        records = []
        unknown: Counter[str] = Counter()
        unknown_images: Counter[str] = Counter()
        with progress.task("Checking images", total=len(entries)) as task:
            for entry in entries:
                record = self._record(**entry)
                if record.annotations is not None:
                    for cls, n in record.annotations.unknown_classes(self.classes).items():
                        unknown[cls] += n
                        unknown_images[cls] += 1
                records.append(record)
                task.advance()
        self.unknown_classes = dict(unknown)
        if unknown:
            listed = ", ".join(
                f"{cls!r} ({n} objects on {unknown_images[cls]} images)"
                for cls, n in unknown.items()
            )
            log.warning(
                "%s: classes with no role, not used: %s. Give them a role with the class options "
                "(positive, negative, region, ignored) if they matter.",
                self.path,
                listed,
            )
        self._records = records
        return records

    def results_path(self, record: ImageRecord, out_dir: str | os.PathLike[str]) -> Path:
        """Where the results GeoJSON of ``record`` goes: ``<out_dir>/<key>.geojson``."""
        return Path(out_dir) / f"{record.key}.geojson"

    def exchange_results_path(self, record: ImageRecord) -> Path | None:
        """Projects: ``<project>/wsdal/results/<entryID>.geojson`` (import_results.groovy)."""
        return None

    def input_files(self, record: ImageRecord) -> list[Path]:
        """The user's files this source reads for ``record``: no output may replace one."""
        return [p for p in (record.slide_path, record.annotation_path) if p is not None]

    def describe(self) -> dict[str, Any]:
        """JSON-able description of the source."""
        return {
            "kind": self.kind,
            "path": str(self.path),
            "backend": self.backend,
            "classes": self.classes.to_dict(),
        }

    # -- shared ---------------------------------------------------------------------
    def _record(
        self,
        *,
        name: str,
        key: str,
        slide_path: Path | None,
        slide_problem: str | None,
        loader: AnnotationLoader | None,
        no_annotations: str,
        entry_id: str | None = None,
        project_mpp: float | None = None,
        warnings: Sequence[str] = (),
        server: ServerInfo | None = None,
    ) -> ImageRecord:
        record = ImageRecord(
            name=name,
            key=key,
            slide_path=slide_path,
            annotations=None,
            problems=[],
            entry_id=entry_id,
            warnings=list(warnings),
            project_mpp=project_mpp,
            user_mpp=self.mpp,
            server=server,
        )
        if slide_path is None:
            record.problems.append(slide_problem or "slide missing")
        elif server is not None and server.problem is not None:
            record.problems.append(server.problem)
        elif self.check_slides:
            self._check_slide(record)
        if loader is None:
            record.problems.append(no_annotations)
        else:
            try:
                objects, record.annotation_path = loader()
            except WsdalError as exc:
                if self.strict:
                    raise
                record.problems.append(f"annotations unreadable: {exc}")
            else:
                ann, notes = annotations_from_objects(objects, classes=self.classes)
                record.annotations = self._checked_points(record, ann)
                ann = record.annotations
                record.warnings.extend(notes)
                unknown = ann.unknown_classes(self.classes)
                if unknown:
                    listed = ", ".join(f"{c!r} ({n})" for c, n in unknown.items())
                    record.warnings.append(f"unknown classes, not used: {listed}")
                if not ann.points_with_role("positive", self.classes):
                    record.warnings.append(
                        f"no points of a positive class ({', '.join(self.classes.positive)})"
                    )
        return record

    def _checked_points(self, record: ImageRecord, ann: ImageAnnotations) -> ImageAnnotations:
        """``ann`` without the points outside the slide; warnings for those and for an
        implausible density of positive points (needs the slide checked)."""
        if record.dimensions is None:
            return ann
        where = str(record.annotation_path or record.name)
        ann, outside, record.dropped_points = drop_points_outside(
            ann, record.dimensions, source=where
        )
        if outside:
            record.warnings.append(outside)
        if record.mpp is not None:
            dense = density_warning(
                ann, record.dimensions, record.mpp, classes=self.classes, source=where
            )
            if dense:
                record.warnings.append(dense)
        return ann

    def _check_slide(self, record: ImageRecord) -> None:
        try:
            with record._open_unchecked() as slide:
                record.readable = True
                record.dimensions = tuple(slide.dimensions)  # type: ignore[assignment]
                record.mpp, record.mpp_source = slide.mpp, slide.mpp_source
                frame = record.frame_problem(slide)
        except WsdalError as exc:
            if self.strict:
                raise
            record.problems.append(f"slide does not open: {exc}")
            return
        if frame is not None:
            record.problems.append(frame)
        if record.mpp is None:
            problem = (
                "no resolution (µm/px): the slide records none; give it with --mpp "
                "(e.g. 0.25 for a 40x scan) or set the pixel size in QuPath"
            )
            if self.strict:
                raise ResolutionError(f"{record.slide_path}: {problem}")
            record.problems.append(problem)


class SlideFolderSource(Source):
    """Slides in a folder, each with a sidecar ``<stem>.geojson`` (not recursive)."""

    kind = "slide-folder"

    def __init__(self, path: Path, *, only: Path | None = None, **kwargs: Any):
        super().__init__(path, **kwargs)
        self.strict = only is not None
        if only is not None:
            slides = [only]
        else:
            try:
                slides = sorted(p for p in path.iterdir() if is_slide_file(p))
            except OSError as exc:
                raise InputError(f"{path}: cannot list the folder ({exc})") from exc
        if not slides:
            raise InputError(
                f"{path}: no slides found "
                f"(looked for files ending in {', '.join(SLIDE_EXTENSIONS)})"
            )
        self.slides = slides

    def input_files(self, record: ImageRecord) -> list[Path]:
        """The slide and every sidecar beside it (read or not)."""
        out = super().input_files(record)
        if record.slide_path is not None:
            stem = record.slide_path.stem
            out += [record.slide_path.with_name(stem + s) for s in SIDECAR_SUFFIXES]
        return out

    def _entries(self) -> list[dict[str, Any]]:
        stems = Counter(p.stem for p in self.slides)
        entries = []
        for slide in self.slides:
            clash = stems[slide.stem] > 1
            sidecars = [slide.with_name(slide.stem + s) for s in SIDECAR_SUFFIXES]
            found = [s for s in sidecars if s.is_file()]
            warnings = []
            loader = None
            if clash:
                warnings.append(
                    f"another slide shares the name {slide.stem!r}: key is the file name"
                )
            if len(found) > 1:
                warnings.append(f"several sidecars; using {found[0].name}")
            if found and not clash:
                loader = file_loader(found[0])
            no_ann = (
                f"two slides share the name {slide.stem!r}, so the sidecar is ambiguous: rename one"
                if clash
                else f"no annotations: expected {sidecars[0].name} beside the slide"
            )
            entries.append(
                {
                    "name": slide.name,
                    "key": slide.name if clash else slide.stem,
                    "slide_path": slide,
                    "slide_problem": None,
                    "loader": loader,
                    "no_annotations": no_ann,
                    "warnings": warnings,
                }
            )
        return entries


def file_loader(path: Path) -> AnnotationLoader:
    def load() -> tuple[list[QuPathObject], Path | None]:
        return read_objects(path), path

    return load
