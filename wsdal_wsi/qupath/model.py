"""The annotation model: what a pathologist marked on one image (pure, no I/O).

Per image there are *points* (one click per cell, with a class) and *areas*
(polygons with a class: exhaustively annotated regions, regions to ignore, the
hotspot). Everything is in **level-0 pixels** of the slide, x to the right,
y down.

What a class *means* to the tool is decided by :class:`ClassSettings`: positive
(mitosis), negative (look-alikes the pathologist marked as "not a mitosis"),
region (an area that was annotated exhaustively), ignored (an area to leave
out). A class none of these match is *unknown*: it is kept in the model and
reported, never silently dropped.

The objects this tool writes itself (detections, hotspot, region counts) carry
a name starting with :data:`TOOL_NAME_PREFIX`; that is how a re-run recognises
and replaces them without touching anything the pathologist made. The same
rule is used by the GeoJSON sink, the paquo sink and
``qupath_scripts/import_results.groovy``.
"""

from __future__ import annotations

import fnmatch
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

from wsdal_wsi.errors import ConfigError

__all__ = [
    "CORRECTION_ROLES",
    "DETECTION_CLASS",
    "PROBABILITY_MEASUREMENT",
    "QUESTION_CLASSES",
    "TOOL_NAME_PREFIX",
    "AreaAnnotation",
    "ClassSettings",
    "ImageAnnotations",
    "PointAnnotation",
    "Role",
    "correction_of",
    "is_answered",
    "is_area_geometry",
    "is_tool_name",
    "point_role",
    "tool_name",
]

#: Every object wsdal-wsi writes has a name starting with this (and nothing else does).
TOOL_NAME_PREFIX = "WS-DAL"

#: The class of the detections wsdal-wsi writes.
DETECTION_CLASS = "Mitosis"

#: The measurement holding a detection's probability (0..1).
PROBABILITY_MEASUREMENT = "WS-DAL probability"

#: What a class means to the tool.
Role = Literal["positive", "negative", "region", "ignored", "unknown"]


def is_tool_name(name: str | None) -> bool:
    """Return True if an object with this name was made by wsdal-wsi.

    The rule, shared with ``import_results.groovy`` and the paquo sink: the
    object's name starts with ``"WS-DAL"`` (:data:`TOOL_NAME_PREFIX`).
    """
    return isinstance(name, str) and name.startswith(TOOL_NAME_PREFIX)


def tool_name(label: str | None = None) -> str:
    """Return the name of a tool-made object: ``"WS-DAL"`` or ``"WS-DAL <label>"``.

    A label that already starts with the prefix is returned unchanged.
    """
    if not label:
        return TOOL_NAME_PREFIX
    if is_tool_name(label):
        return label
    return f"{TOOL_NAME_PREFIX} {label}"


#: The classes of the tool's questions to the pathologist (review list, label audit).
QUESTION_CLASSES = ("WS-DAL check", "WS-DAL review")

#: A pathologist's answer to one of the tool's objects, found in an export after review:
#: ``confirmed`` (a detection kept or relabelled as a mitosis, or locked), ``false_positive``
#: (a detection relabelled as a look-alike), ``answered_positive`` / ``answered_negative``
#: (a ``WS-DAL check`` or ``WS-DAL review`` question relabelled as a mitosis / look-alike).
Correction = Literal["confirmed", "false_positive", "answered_positive", "answered_negative"]
CORRECTION_ROLES: dict[str, Role] = {
    "confirmed": "positive",
    "false_positive": "negative",
    "answered_positive": "positive",
    "answered_negative": "negative",
}


@dataclass(frozen=True)
class PointAnnotation:
    """One click: a cell at level-0 pixel ``(x, y)`` of class ``class_name``.

    Attributes
    ----------
    x, y : float
        Level-0 pixel coordinates (x to the right, y down).
    class_name : str or None
        The QuPath class (``"Mitosis"``, ``"Mitosis-like"``, ...); ``None``
        for an unclassified point.
    correction : str or None
        For a tool object the pathologist answered (:data:`Correction`), what the
        answer was: its role is the answer's, whatever its class name, and training
        trusts it (never removes it as noise). None for an ordinary click.
    """

    x: float
    y: float
    class_name: str | None
    correction: str | None = None


@dataclass(frozen=True)
class AreaAnnotation:
    """A polygon annotation (a region, an area to ignore, the hotspot).

    Attributes
    ----------
    geometry : shapely Polygon or MultiPolygon
        In level-0 pixels.
    class_name : str or None
        The QuPath class; ``None`` when unclassified.
    name : str or None
        The object's name in QuPath.
    measurements : mapping of str to float
        QuPath measurements (e.g. counts written by the tool).
    """

    geometry: Polygon | MultiPolygon
    class_name: str | None
    name: str | None = None
    measurements: Mapping[str, float] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.geometry, (Polygon, MultiPolygon)):
            raise TypeError(
                f"AreaAnnotation geometry must be a Polygon or MultiPolygon, "
                f"got {type(self.geometry).__name__}"
            )


def _sort_key_point(p: PointAnnotation) -> tuple:
    return (p.class_name or "", p.x, p.y)


def _sort_key_area(a: AreaAnnotation) -> tuple:
    return (a.class_name or "", a.name or "", a.geometry.wkb)


@dataclass(frozen=True)
class ImageAnnotations:
    """Everything annotated on one image.

    Attributes
    ----------
    points : tuple of PointAnnotation
    areas : tuple of AreaAnnotation
    """

    points: tuple[PointAnnotation, ...] = ()
    areas: tuple[AreaAnnotation, ...] = ()

    def points_per_class(self) -> dict[str, int]:
        """Number of points per class name (unclassified: ``"Unclassified"``)."""
        return dict(Counter(p.class_name or "Unclassified" for p in self.points))

    def areas_per_class(self) -> dict[str, int]:
        """Number of areas per class name (unclassified: ``"Unclassified"``)."""
        return dict(Counter(a.class_name or "Unclassified" for a in self.areas))

    def points_xy(self, *, classes: Iterable[str] | None = None) -> np.ndarray:
        """Level-0 ``(x, y)`` of the points, optionally of the given classes only.

        Returns
        -------
        numpy.ndarray
            ``(N, 2)`` float64, level-0 pixels.
        """
        wanted = None if classes is None else set(classes)
        xy = [(p.x, p.y) for p in self.points if wanted is None or p.class_name in wanted]
        return np.asarray(xy, dtype=np.float64).reshape(-1, 2)

    def points_with_role(self, role: Role, classes: ClassSettings) -> tuple[PointAnnotation, ...]:
        """The points whose role is ``role``: a correction's answer, else its class's."""
        return tuple(p for p in self.points if point_role(p, classes) == role)

    def corrections(self) -> dict[str, int]:
        """How many of each kind of correction the points hold (answered tool objects)."""
        return dict(Counter(p.correction for p in self.points if p.correction))

    def areas_with_role(self, role: Role, classes: ClassSettings) -> tuple[AreaAnnotation, ...]:
        """The areas whose class has ``role`` under ``classes``."""
        return tuple(a for a in self.areas if classes.role(a.class_name) == role)

    def sorted(self) -> ImageAnnotations:
        """The same annotations in a canonical order (for comparisons)."""
        return ImageAnnotations(
            points=tuple(sorted(self.points, key=_sort_key_point)),
            areas=tuple(sorted(self.areas, key=_sort_key_area)),
        )

    def unknown_classes(self, classes: ClassSettings) -> dict[str, int]:
        """Classes (points and areas) that ``classes`` gives no role: name -> count."""
        counts: Counter[str] = Counter()
        for obj in (*self.points, *self.areas):
            if (
                getattr(obj, "correction", None) is None
                and classes.role(obj.class_name) == "unknown"
            ):
                counts[obj.class_name or "Unclassified"] += 1
        return dict(counts)


def _as_patterns(value: object, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = (value,)
    try:
        items = tuple(value)  # type: ignore[arg-type]
    except TypeError:
        raise ConfigError(
            f"ClassSettings.{what} must be a list of class names, got {value!r}"
        ) from None
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise ConfigError(f"ClassSettings.{what}: bad class name {item!r}")
        if ":" in item and not any(ch in item for ch in "*?["):
            # QuPath derived classes are shown as "A: B"; that is allowed, but an
            # empty part is not.
            if any(not part.strip() for part in item.split(":")):
                raise ConfigError(f"ClassSettings.{what}: bad class name {item!r}")
    return items


#: ``--unclassified-as`` words that give unclassified objects a role directly.
UNCLASSIFIED_ROLES: dict[str, Role] = {
    "positive": "positive",
    "negative": "negative",
    "ignore": "ignored",
    "ignored": "ignored",
}


@dataclass(frozen=True)
class ClassSettings:
    """What each QuPath class means to the tool.

    Each field is a tuple of class names or shell-style patterns (``*``, ``?``,
    ``[...]``, case-sensitive, matched against the whole class name; a derived
    QuPath class is named ``"Parent: Child"``). A class is looked up in the
    order positive, negative, region, ignored; the first match wins.

    Attributes
    ----------
    positive : tuple of str
        Classes of mitotic figures (default ``("Mitosis",)``).
    negative : tuple of str
        Classes of look-alikes marked as "not a mitosis" (default
        ``("Non-mitosis", "Mitosis-like", "Imposter")``).
    region : tuple of str
        Classes of areas that were annotated exhaustively (default ``("Region*",)``).
    ignored : tuple of str
        Classes of objects to leave out (default ``("Ignore*",)``).
    unclassified_as : str or None
        What unclassified points and areas are: a role (``"positive"``,
        ``"negative"``, ``"ignore"``), or a class name whose role they take (e.g.
        ``"Mitosis"`` when the pathologist clicked without choosing a class);
        ``None`` keeps them unclassified, which counts as unknown.
    """

    positive: tuple[str, ...] = ("Mitosis",)
    negative: tuple[str, ...] = ("Non-mitosis", "Mitosis-like", "Imposter")
    region: tuple[str, ...] = ("Region*",)
    ignored: tuple[str, ...] = ("Ignore*",)
    unclassified_as: str | None = None

    def __post_init__(self) -> None:
        seen: dict[str, str] = {}
        for what in ("positive", "negative", "region", "ignored"):
            items = _as_patterns(getattr(self, what), what)
            object.__setattr__(self, what, items)
            for item in items:
                if item in seen and seen[item] != what:
                    raise ConfigError(
                        f"class {item!r} is both {seen[item]} and {what}; give each class one role"
                    )
                seen[item] = what
        if self.unclassified_as is not None and (
            not isinstance(self.unclassified_as, str) or not self.unclassified_as.strip()
        ):
            raise ConfigError(
                f"ClassSettings.unclassified_as: bad class name {self.unclassified_as!r}"
            )

    def resolve(self, class_name: str | None) -> str | None:
        """The class name to use for an object (applies :attr:`unclassified_as` when it
        names a class; an unclassified object given a role stays unclassified)."""
        if class_name is None and self.unclassified_as not in UNCLASSIFIED_ROLES:
            return self.unclassified_as
        return class_name

    def role(self, class_name: str | None) -> Role:
        """Return the role of ``class_name``: positive, negative, region, ignored or unknown."""
        if class_name is None and self.unclassified_as in UNCLASSIFIED_ROLES:
            return UNCLASSIFIED_ROLES[self.unclassified_as]
        name = self.resolve(class_name)
        if name is None:
            return "unknown"
        for what in ("positive", "negative", "region", "ignored"):
            for pattern in getattr(self, what):
                if fnmatch.fnmatchcase(name, pattern):
                    return what  # type: ignore[return-value]
        return "unknown"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (run configs, model files, provenance blocks)."""
        return {
            "positive": list(self.positive),
            "negative": list(self.negative),
            "region": list(self.region),
            "ignored": list(self.ignored),
            "unclassified_as": self.unclassified_as,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClassSettings:
        """Inverse of :meth:`to_dict` (missing keys take the defaults)."""
        known = ("positive", "negative", "region", "ignored", "unclassified_as")
        return cls(**{k: data[k] for k in known if k in data})

    @classmethod
    def from_options(
        cls,
        *,
        positive: Sequence[str] = (),
        negative: Sequence[str] = (),
        region: Sequence[str] = (),
        ignored: Sequence[str] = (),
        unclassified_as: str | None = None,
        base: ClassSettings | None = None,
    ) -> ClassSettings:
        """The settings the class options of a command mean.

        A role given (a non-empty list) replaces that role's classes; a role not
        given keeps ``base``'s (a model's or a run's own settings), else the default.
        ``unclassified_as`` likewise.
        """
        start = base if base is not None else cls()
        kw: dict[str, Any] = start.to_dict()
        for name, value in (
            ("positive", positive),
            ("negative", negative),
            ("region", region),
            ("ignored", ignored),
        ):
            if value:
                kw[name] = tuple(value)
        if unclassified_as is not None:
            kw["unclassified_as"] = unclassified_as
        return cls(**kw)


def point_role(point: PointAnnotation, classes: ClassSettings) -> Role:
    """A point's role: its correction's answer if it has one, else its class's role."""
    if point.correction is not None:
        return CORRECTION_ROLES[point.correction]
    return classes.role(point.class_name)


def is_answered(
    *, object_type: str, class_name: str | None, is_locked: bool, is_point: bool
) -> bool:
    """Whether the pathologist changed one of the tool's objects (the class-free rule).

    A point detection relabelled from :data:`DETECTION_CLASS` or locked, or a point
    annotation no longer of a question class (:data:`QUESTION_CLASSES`). These objects
    hold answers: ``import_results.groovy``, the paquo sink and the GeoJSON sink keep
    them (and do not write a new object with the same id), ``export_annotations.groovy``
    and the paquo reader pass them on; :func:`correction_of` says what they mean.
    """
    if not is_point or class_name is None:
        return False
    if object_type == "detection":
        return class_name != DETECTION_CLASS or is_locked
    if object_type == "annotation":
        return class_name not in QUESTION_CLASSES and not class_name.startswith(TOOL_NAME_PREFIX)
    return False


def correction_of(
    *, object_type: str, class_name: str | None, is_locked: bool, classes: ClassSettings
) -> str | None:
    """What a tool object in a pathologist's export says, if anything (:data:`Correction`).

    The rule (shared with ``export_annotations.groovy``, ``import_results.groovy`` and the
    paquo adapter, which keep and export exactly these objects): a detection still of
    class :data:`DETECTION_CLASS` and not locked is unreviewed, as is a question
    (:data:`QUESTION_CLASSES`) still of its class. A locked detection, or one relabelled
    to a positive class, is ``confirmed``; relabelled to a negative class, a
    ``false_positive``; a question relabelled to a positive or negative class is answered.
    Anything else (the hotspot, region counts, an unknown class) says nothing.
    """
    role = classes.role(class_name)
    if class_name in QUESTION_CLASSES:
        return None
    if object_type == "detection":
        if class_name == DETECTION_CLASS:
            return "confirmed" if is_locked else None
        return {"positive": "confirmed", "negative": "false_positive"}.get(role)
    if object_type == "annotation":
        return {"positive": "answered_positive", "negative": "answered_negative"}.get(role)
    return None


def is_area_geometry(geometry: BaseGeometry) -> bool:
    """True for geometries that make an :class:`AreaAnnotation` (Polygon, MultiPolygon)."""
    return isinstance(geometry, (Polygon, MultiPolygon))
