"""Options shared by several commands, declared once: slide relinking, ``--mpp``, class roles.

Each function returns a fresh Typer option (a command's parameter default); the
meaning of the values is the library's (:meth:`ClassSettings.from_options`,
:func:`wsdal_wsi.slide.resolve_mpp`).
"""

from __future__ import annotations

from typing import Any

import typer

from wsdal_wsi.qupath.model import ClassSettings

__all__ = [
    "CLASSES_PANEL",
    "class_roles",
    "ignore_option",
    "mpp_option",
    "negative_option",
    "positive_option",
    "region_option",
    "relink_option",
    "unclassified_option",
]

#: The help panel the class options are listed under.
CLASSES_PANEL = "Classes"
_DEFAULT = ClassSettings()


def _names(values: tuple[str, ...]) -> str:
    return ", ".join(values)


def relink_option() -> Any:
    """``--relink OLD=NEW`` (repeatable)."""
    return typer.Option(
        [],
        "--relink",
        help="OLD=NEW: replace a slide path prefix of a project whose slides moved (repeatable).",
    )


def mpp_option() -> Any:
    """``--mpp``: the last fallback of a slide's resolution."""
    return typer.Option(
        None,
        "--mpp",
        help=(
            "Resolution in µm/px for slides that record none (in the file or as QuPath's "
            "pixel size); never replaces a slide's own."
        ),
    )


def positive_option(*, default_from: str = "") -> Any:
    """``--positive NAME`` (repeatable)."""
    return typer.Option(
        [],
        "--positive",
        help="Class of mitoses (repeatable; shell patterns such as 'Mitosis*' allowed; "
        f"default {default_from or _names(_DEFAULT.positive)}).",
        rich_help_panel=CLASSES_PANEL,
    )


def negative_option(*, default_from: str = "") -> Any:
    """``--negative NAME`` (repeatable)."""
    return typer.Option(
        [],
        "--negative",
        help="Class of look-alikes clicked as 'not a mitosis' (repeatable; default "
        f"{default_from or _names(_DEFAULT.negative)}).",
        rich_help_panel=CLASSES_PANEL,
    )


def region_option(*, default_from: str = "") -> Any:
    """``--region NAME`` (repeatable)."""
    return typer.Option(
        [],
        "--region",
        help="Class of areas annotated exhaustively, counted per region (repeatable; "
        f"default {default_from or _names(_DEFAULT.region)}).",
        rich_help_panel=CLASSES_PANEL,
    )


def ignore_option(*, default_from: str = "") -> Any:
    """``--ignore GLOB`` (repeatable; ``--ignored`` is the same)."""
    return typer.Option(
        [],
        "--ignore",
        "--ignored",
        help="Class of objects to leave out, e.g. pen marks (repeatable; default "
        f"{default_from or _names(_DEFAULT.ignored)}).",
        rich_help_panel=CLASSES_PANEL,
    )


def unclassified_option() -> Any:
    """``--unclassified-as positive|negative|ignore|CLASS``."""
    return typer.Option(
        None,
        "--unclassified-as",
        help="What unclassified clicks are: positive, negative, ignore, or a class name "
        "(e.g. Mitosis); by default they are unknown and not used.",
        rich_help_panel=CLASSES_PANEL,
    )


def class_roles(
    positive: list[str],
    negative: list[str],
    region: list[str],
    ignore: list[str],
    unclassified_as: str | None,
    *,
    base: ClassSettings | None = None,
) -> ClassSettings:
    """The :class:`ClassSettings` the class options mean (see ``ClassSettings.from_options``)."""
    return ClassSettings.from_options(
        positive=positive,
        negative=negative,
        region=region,
        ignored=ignore,
        unclassified_as=unclassified_as,
        base=base,
    )
