"""``wsdal inspect SOURCE`` and ``wsdal import-coco DB.json``: the QuPath side of the tool."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import typer
from rich.logging import RichHandler

from wsdal_wsi.cli._app import app
from wsdal_wsi.cli._console import RichProgress, err_console
from wsdal_wsi.cli._options import (
    class_roles,
    ignore_option,
    mpp_option,
    negative_option,
    positive_option,
    region_option,
    relink_option,
    unclassified_option,
)
from wsdal_wsi.errors import ConfigError
from wsdal_wsi.qupath import open_source
from wsdal_wsi.qupath.coco import import_coco

__all__ = ["format_inspection", "import_coco_command", "inspect"]


def _logs_to_stderr() -> None:
    """Send the package's log messages to stderr, so stdout stays pure (``--json``).

    (The root handler set up in ``cli/_app.py`` writes to rich's default console,
    which is stdout; this keeps these commands' output parseable regardless.)
    """

    for handler in logging.getLogger("wsdal_wsi").handlers:
        if isinstance(handler, RichHandler):
            handler.console = err_console


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{cls} {n}" for cls, n in sorted(counts.items())) or "none"


def _total_corrections(records: list[Any]) -> dict[str, int]:
    total: dict[str, int] = {}
    for r in records:
        for kind, n in (r.annotations.corrections() if r.annotations else {}).items():
            total[kind] = total.get(kind, 0) + n
    return total


def format_inspection(doc: dict[str, Any]) -> str:
    """The human-readable text of ``wsdal inspect`` for its JSON document."""
    src = doc["source"]
    how = {
        "paquo": "objects read from the project with paquo (QuPath)",
        "export": "annotations from the export_annotations.groovy exports",
        None: "sidecar GeoJSON beside each slide",
    }[src.get("backend")]
    summary = doc["summary"]
    lines = [
        f"Source   {src['path']} ({src['kind']}; {how})",
        f"Images   {summary['usable']} of {summary['images']} usable",
    ]
    if summary["missing_slides"]:
        lines.append(
            f"Slides missing ({len(summary['missing_slides'])}): "
            + ", ".join(summary["missing_slides"])
        )
    if summary.get("corrections"):
        lines.append(
            f"Answers  {_counts(summary['corrections'])} (the pathologist's review of the "
            "tool's objects; trusted in training)"
        )
    if summary["unknown_classes"]:
        lines.append(f"Unknown classes (not used): {_counts(summary['unknown_classes'])}")
    for im in doc["images"]:
        lines.append("")
        lines.append(
            f"{im['name']}  [{'usable' if im['usable'] else 'NOT USABLE'}]  key {im['key']}"
        )
        if im["slide"] is None:
            lines.append("  slide     missing")
        else:
            state = "opens" if im["readable"] else "does not open"
            if im["readable"]:
                mpp = im["mpp"]
                state += (
                    f", {mpp:.4g} µm/px ({im['mpp_source']})" if mpp else ", resolution unknown"
                )
            lines.append(f"  slide     {im['slide']} ({state})")
        lines.append(f"  points    {_counts(im['points'])}")
        lines.append(f"  areas     {_counts(im['areas'])}")
        if im.get("corrections"):
            lines.append(f"  answers   {_counts(im['corrections'])} (trusted in training)")
        lines.extend(f"  problem   {p}" for p in im["problems"])
        lines.extend(f"  warning   {w}" for w in im["warnings"])
    return "\n".join(lines)


@app.command()
def inspect(
    source: Path = typer.Argument(
        ...,
        help="A QuPath project (project.qpproj or its folder), a folder of slides with "
        "<slide>.geojson sidecars, or one slide.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document instead."),
    relink: list[str] = relink_option(),
    mpp: float | None = mpp_option(),
    backend: str = typer.Option(
        "auto",
        "--backend",
        help="QuPath projects: 'paquo' (read the project with QuPath), 'export' (read the "
        "export_annotations.groovy exports), or 'auto' (paquo where QuPath is found).",
    ),
    positive: list[str] = positive_option(),
    negative: list[str] = negative_option(),
    region: list[str] = region_option(),
    ignore: list[str] = ignore_option(),
    unclassified_as: str | None = unclassified_option(),
) -> None:
    """Show what the tool sees before training: slides, resolution, clicks, problems.

    Per image: the slide path, whether it opens, its resolution (µm/px), the
    points and areas per class, and every problem (slide missing, no resolution,
    no annotation export, unknown classes).

    Exit code 0 when every image is usable, 1 when some are not, 2 when the
    source itself cannot be read.
    """

    _logs_to_stderr()
    classes = class_roles(positive, negative, region, ignore, unclassified_as)
    src = open_source(source, classes=classes, relink=relink, mpp=mpp, backend=backend)
    with RichProgress(transient=True) as progress:
        records = src.images(progress=progress)
    doc = {
        "source": src.describe(),
        "classes": classes.to_dict(),
        "summary": {
            "images": len(records),
            "usable": sum(r.usable for r in records),
            "unknown_classes": src.unknown_classes,
            "missing_slides": [r.name for r in records if r.slide_path is None],
            "corrections": _total_corrections(records),
        },
        "images": [r.to_dict() for r in records],
    }
    if as_json:
        typer.echo(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        typer.echo(format_inspection(doc))
    if not all(r.usable for r in records):
        raise typer.Exit(1)


def _category_map(values: list[str]) -> dict[int, str]:

    out = {}
    for value in values:
        key, sep, name = value.partition("=")
        if not sep or not key.strip().isdigit() or not name.strip():
            raise ConfigError(f"--category must be ID=CLASS (e.g. 2=Mitosis-like), got {value!r}")
        out[int(key)] = name.strip()
    return out


@app.command("import-coco")
def import_coco_command(
    database: Path = typer.Argument(..., help="COCO JSON database (e.g. MIDOGpp.json)."),
    images: Path = typer.Option(..., "--images", help="Folder holding the slides/images."),
    out: Path = typer.Option(
        ..., "--out", help="Slide folder to make (may be the --images folder itself)."
    ),
    bbox_format: str = typer.Option(
        "auto",
        "--bbox-format",
        help="Box form: 'xyxy' ([x1, y1, x2, y2], MIDOG), 'xywh' (standard COCO), or 'auto'.",
    ),
    link: str = typer.Option(
        "symlink",
        "--link",
        help="How slides get into --out: 'symlink', 'copy', or 'none'.",
    ),
    category: list[str] = typer.Option(
        [],
        "--category",
        help="ID=CLASS: class of a category (repeatable; default 1=Mitosis, 2=Mitosis-like).",
    ),
) -> None:
    """Make a slide folder with sidecar GeoJSON from a MIDOG-style COCO database.

    One <slide>.geojson per image, with a QuPath "Points" annotation per class
    (the box centres). Slides missing from --images still get their sidecar and are listed; the exit
    code is then 1.
    """

    _logs_to_stderr()
    with RichProgress(transient=True) as progress:
        report = import_coco(
            database,
            images_dir=images,
            out_dir=out,
            category_classes=_category_map(category),
            bbox_format=bbox_format,
            link=link,
            progress=progress,
        )
    totals: dict[str, int] = {}
    for counts in report.counts.values():
        for cls, n in counts.items():
            totals[cls] = totals.get(cls, 0) + n
    typer.echo(
        f"Wrote {len(report.sidecars)} sidecars to {out} (boxes read as {report.bbox_format}); "
        f"points: {_counts(totals)}; slides linked: {report.linked}"
    )
    for note in report.notes:
        typer.echo(f"note: {note}", err=True)
    for name, why in report.skipped.items():
        typer.echo(f"skipped {name}: {why}", err=True)
    if report.missing_slides:
        shown = ", ".join(report.missing_slides[:10])
        more = (
            f" and {len(report.missing_slides) - 10} more"
            if len(report.missing_slides) > 10
            else ""
        )
        typer.echo(
            f"{len(report.missing_slides)} slides not found in {images} (sidecars written anyway): "
            f"{shown}{more}",
            err=True,
        )
    if report.missing_slides or report.skipped:
        raise typer.Exit(1)
