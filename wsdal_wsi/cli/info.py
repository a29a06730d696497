"""``wsdal info SLIDE``: what a slide file is, how big, and at what resolution."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from wsdal_wsi.cli._app import app
from wsdal_wsi.slide import open_slide

__all__ = ["format_info", "info"]


def _number(value: float) -> str:
    return f"{value:.6g}"


def format_info(data: dict[str, Any]) -> str:
    """The human-readable text of ``wsdal info`` for a :meth:`Slide.info` dict."""
    width, height = data["dimensions"]
    lines = [
        f"Slide        {data['path']}",
        f"Format       {data['vendor']}",
    ]
    size = f"{width} x {height} px (level 0)"
    if data.get("size_mm"):
        mm_w, mm_h = data["size_mm"]
        size += f", {mm_w:.2f} x {mm_h:.2f} mm"
    lines.append(f"Size         {size}")
    lines.append(f"Levels       {data['level_count']}")
    for index, ((w, h), downsample) in enumerate(
        zip(data["level_dimensions"], data["level_downsamples"], strict=True)
    ):
        lines.append(f"  level {index:<4} {w} x {h} px, downsample {_number(downsample)}")
    if data.get("mpp") is not None:
        resolution = f"{_number(data['mpp'])} µm/px ({data['mpp_source']})"
        user_mpp = data.get("user_mpp")
        if user_mpp is not None and data["mpp_source"] != "user (--mpp)":
            resolution += f"; --mpp {_number(user_mpp)} not used: the slide records its own"
    else:
        resolution = "unknown: pass --mpp (e.g. --mpp 0.25 for a 40x scan, 0.5 for 20x)"
    lines.append(f"Resolution   {resolution}")
    power = data.get("objective_power")
    lines.append(f"Objective    {_number(power) + 'x' if power is not None else 'unknown'}")
    if data.get("reader"):
        lines.append(f"Read with    {data['reader']}")
    if data.get("associated_images"):
        lines.append(f"Associated   {', '.join(data['associated_images'])}")
    return "\n".join(lines)


@app.command()
def info(
    slide: Path = typer.Argument(
        ..., help="Slide file (any format OpenSlide opens: .svs, .tif, .ndpi, .mrxs, ...)."
    ),
    mpp: float | None = typer.Option(
        None,
        "--mpp",
        help="Resolution in µm/px for a slide that does not record one (never replaces its own).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the information as JSON."),
) -> None:
    """Show a slide's format, size, pyramid levels, resolution (µm/px) and objective power.

    Exits with code 2 and a one-line message when the file is missing or is not a
    slide. A slide that does not record its resolution is shown as "unknown: pass
    --mpp"; commands that need the resolution refuse it until --mpp is given.
    """

    with open_slide(slide, mpp=mpp) as opened:
        data = opened.info()
    if as_json:
        typer.echo(json.dumps(data, indent=2))
    else:
        typer.echo(format_info(data))
