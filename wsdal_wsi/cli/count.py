"""``wsdal count OUT_DIR``: recount hotspots, regions and scores without re-running the model."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from wsdal_wsi.cli._app import app

__all__ = ["count", "hotspot_settings_from_options"]


def hotspot_settings_from_options(
    *,
    window: str,
    area_mm2: float | None,
    hpf_diameter_mm: float | None,
    min_tissue_fraction: float,
    grid_um: float,
):
    """The :class:`~wsdal_wsi.counting.HotspotSettings` the count options mean.

    ``--hpf-diameter-mm`` alone: the window is 10 HPF of that diameter.
    ``--area-mm2`` (alone or with ``--hpf-diameter-mm``): a window of that area,
    scored on the table row of the diameter (default 0.55 mm). Neither: 2 mm².
    """
    from wsdal_wsi.counting import HotspotSettings
    from wsdal_wsi.grading import DEFAULT_FIELD_DIAMETER_MM

    diameter = DEFAULT_FIELD_DIAMETER_MM if hpf_diameter_mm is None else hpf_diameter_mm
    if hpf_diameter_mm is not None and area_mm2 is None:
        area = None
    else:
        area = 2.0 if area_mm2 is None else area_mm2
    return HotspotSettings(
        window=window,
        area_mm2=area,
        field_diameter_mm=diameter,
        min_tissue_fraction=min_tissue_fraction,
        grid_um=grid_um,
    )


@app.command()
def count(
    out_dir: Path = typer.Argument(
        ..., help="A prediction output folder (made by 'wsdal predict ... --out OUT_DIR')."
    ),
    window: str = typer.Option(
        "circle", "--window", help="Counting-window shape: 'circle' or 'rect' (4:3, axis-aligned)."
    ),
    area_mm2: float | None = typer.Option(
        None, "--area-mm2", help="Window area in mm² (default 2 when no field diameter is given)."
    ),
    hpf_diameter_mm: float | None = typer.Option(
        None,
        "--hpf-diameter-mm",
        help=(
            "Microscope field diameter in mm (0.40, 0.44, 0.50, 0.55, 0.59, 0.63 or 0.69). "
            "Alone: the window is 10 HPF of this field. With --area-mm2: the Nottingham "
            "row the scaled count is scored on (default 0.55)."
        ),
    ),
    min_tissue_fraction: float = typer.Option(
        0.5,
        "--min-tissue-fraction",
        help="Smallest share of tissue in the window (0-1), so it cannot sit on glass.",
    ),
    threshold: float | None = typer.Option(
        None,
        "--threshold",
        help="Count only detections with probability >= this (not below the prediction's).",
    ),
    grid_um: float = typer.Option(
        10.0, "--grid-um", help="Spacing of candidate window centres in µm (finer is slower)."
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
    from wsdal_wsi.cli._console import RichProgress, out_console
    from wsdal_wsi.report import recount_folder

    settings = hotspot_settings_from_options(
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
    from rich.table import Table

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
