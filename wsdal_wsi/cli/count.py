"""``wsdal count OUT_DIR``: recount hotspots, regions and scores without re-running the model."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from wsdal_wsi.cli._app import app
from wsdal_wsi.cli._console import RichProgress, out_console
from wsdal_wsi.counting import HotspotSettings
from wsdal_wsi.report import recount_folder

_DEFAULT = HotspotSettings()

__all__ = ["count"]


@app.command()
def count(
    out_dir: Path = typer.Argument(
        ..., help="A prediction output folder (made by 'wsdal predict ... --out OUT_DIR')."
    ),
    window: str | None = typer.Option(
        None,
        "--window",
        help="Counting-window shape: 'circle' or 'rect' (4:3, axis-aligned) "
        f"[default: {_DEFAULT.window}].",
    ),
    area_mm2: float | None = typer.Option(
        None,
        "--area-mm2",
        help=f"Window area in mm² (default {_DEFAULT.area_mm2:g} when no field diameter is given).",
    ),
    hpf_diameter_mm: float | None = typer.Option(
        None,
        "--hpf-diameter-mm",
        help=(
            "Microscope field diameter in mm (0.40, 0.44, 0.50, 0.55, 0.59, 0.63 or 0.69). "
            "Alone: the window is 10 HPF of this field. With --area-mm2: the Nottingham "
            f"row the scaled count is scored on (default {_DEFAULT.field_diameter_mm:g})."
        ),
    ),
    min_tissue_fraction: float | None = typer.Option(
        None,
        "--min-tissue-fraction",
        help="Smallest share of tissue in the window (0-1), so it cannot sit on glass "
        f"[default: {_DEFAULT.min_tissue_fraction:g}].",
    ),
    threshold: float | None = typer.Option(
        None,
        "--threshold",
        help="Count only detections with probability >= this (not below the prediction's).",
    ),
    grid_um: float | None = typer.Option(
        None,
        "--grid-um",
        help="Spacing of candidate window centres in µm (finer is slower) "
        f"[default: {_DEFAULT.grid_um:g}].",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the per-slide results as JSON."),
) -> None:
    """Recount the hotspot, region counts and mitotic scores of a prediction output folder.

    Uses the saved detections, tissue masks and regions (the model is not run
    again), then rewrites each slide's summary, the hotspot and region-count
    annotations in its GeoJSON (detections are kept), its PNG report, and
    counts.csv, counts.xlsx and index.html. Exits 2 when OUT_DIR is not a
    prediction output or an option is invalid, 1 when a slide could not be
    recounted (the others are).
    """
    settings = HotspotSettings.from_options(
        window=window,
        area_mm2=area_mm2,
        hpf_diameter_mm=hpf_diameter_mm,
        min_tissue_fraction=min_tissue_fraction,
        grid_um=grid_um,
    )
    with RichProgress(transient=True) as progress:
        result = recount_folder(out_dir, settings=settings, threshold=threshold, progress=progress)
    if as_json:
        data = [
            {
                "slide": s.slide.name,
                "key": s.key,
                "status": s.status,
                "reason": s.reason,
                "detections": s.detections,
                "hotspot": None if s.hotspot is None else s.hotspot.count,
                "hotspot_per_mm2": None if s.hotspot is None else s.hotspot.per_mm2,
                "score": None if s.hotspot is None else s.hotspot.score.score,
            }
            for s in result.summaries
        ]
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        _print_table(result, settings, out_console)
    if result.failed_now:
        typer.echo(
            f"{len(result.failed_now)} slide(s) could not be recounted: "
            + ", ".join(result.failed_now),
            err=True,
        )
        raise typer.Exit(1)


def _print_table(result, settings, console) -> None:
    table = Table(title=f"Hotspot: {settings.describe()}", title_justify="left")
    for name, justify in (
        ("Slide", "left"),
        ("Status", "left"),
        ("Detections", "right"),
        ("Hotspot", "right"),
        ("Per mm²", "right"),
        ("Score", "right"),
        ("Reason", "left"),
    ):
        table.add_column(name, justify=justify)
    for s in result.summaries:
        hs = s.hotspot
        table.add_row(
            s.slide.name,
            s.status,
            "" if s.detections is None else str(s.detections),
            "" if hs is None else str(hs.count),
            "" if hs is None else f"{hs.per_mm2:.2f}",
            "" if hs is None else str(hs.score.score),
            s.reason or "",
        )
    console.print(table)
    for label, path in result.outputs.items():
        console.print(f"{label:>5}: {path}", soft_wrap=True)
