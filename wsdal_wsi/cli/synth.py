"""``wsdal synth OUT_DIR``: synthetic H&E slides with known truth and noisy annotations."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from wsdal_wsi.cli._app import app
from wsdal_wsi.cli._console import RichProgress
from wsdal_wsi.synth import AnnotationNoise, SynthParams, generate_dataset, parse_size

__all__ = ["synth"]

_CONTENT = "Content"
_LOOK = "Appearance"
_NOISE = "Annotation noise"
_RUN = "Run"


def _default_workers() -> int:
    return max(1, min(16, os.cpu_count() or 1))


@app.command()
def synth(
    out_dir: Path = typer.Argument(
        ..., help="Output folder (created): slides, annotations, truth/ and synth.json."
    ),
    slides: int = typer.Option(
        1, "--slides", min=1, max=10000, help="Number of slides.", rich_help_panel=_RUN
    ),
    size: str = typer.Option(
        "8192x8192",
        "--size",
        help="Level-0 size of each slide, WIDTHxHEIGHT in pixels (k = 1000: 20kx20k).",
        rich_help_panel=_CONTENT,
    ),
    seed: int = typer.Option(
        0,
        "--seed",
        min=0,
        help="Dataset seed: the same seed and settings give byte-identical slides and annotations.",
        rich_help_panel=_RUN,
    ),
    mpp: float = typer.Option(
        0.25,
        "--mpp",
        help="Resolution in µm/px written to the slides "
        "(0.25 = 40x, 0.5 = 20x); objects keep their size in µm.",
        rich_help_panel=_CONTENT,
    ),
    mitoses_per_mm2: float = typer.Option(
        20.0,
        "--mitoses-per-mm2",
        help="Mean mitotic figures per mm² of tissue (they lie in "
        "tumour nests, denser in hotspots).",
        rich_help_panel=_CONTENT,
    ),
    lookalikes_per_mm2: float = typer.Option(
        20.0,
        "--lookalikes-per-mm2",
        help="Mean look-alikes per mm² of tissue (apoptotic "
        "bodies, pyknotic nuclei, lymphocytes in clusters).",
        rich_help_panel=_CONTENT,
    ),
    tissue_fraction: float = typer.Option(
        0.6,
        "--tissue-fraction",
        help="Fraction (0.05-0.95) of the slide covered by tissue.",
        rich_help_panel=_CONTENT,
    ),
    tumour_fraction: float = typer.Option(
        0.6,
        "--tumour-fraction",
        help="Fraction (0.05-1) of the tissue that is tumour.",
        rich_help_panel=_CONTENT,
    ),
    hard_fraction: float = typer.Option(
        0.25,
        "--hard-fraction",
        help="Fraction (0-1) of ambiguous mitoses (atypical, small "
        "early prophase) and of borderline look-alikes.",
        rich_help_panel=_CONTENT,
    ),
    stain_variation: float = typer.Option(
        1.0,
        "--stain-variation",
        help="Slide-to-slide variation (0-2, unitless) of stain "
        "colour and intensity, blur and JPEG quality; 0 = every slide alike.",
        rich_help_panel=_LOOK,
    ),
    stain_shift: float = typer.Option(
        0.0,
        "--stain-shift",
        help="Shift (0-3, unitless) of every slide's stain away from the "
        "reference, as another lab or scanner: haematoxylin stronger and bluer, eosin "
        "paler; 1 lies outside the spread of --stain-variation 1. The same --seed gives "
        "the same slides, only recoloured (for stain-robustness tests).",
        rich_help_panel=_LOOK,
    ),
    blur_um: float = typer.Option(
        0.15, "--blur-um", help="Mean focus blur, Gaussian sigma in µm.", rich_help_panel=_LOOK
    ),
    jpeg_quality: int = typer.Option(
        90,
        "--jpeg-quality",
        min=50,
        max=100,
        help="Best JPEG quality of the tiles (50-100); "
        "slides vary below it with --stain-variation.",
        rich_help_panel=_LOOK,
    ),
    missed_fraction: float = typer.Option(
        0.15,
        "--missed-fraction",
        help="Fraction (0-1) of mitoses the pathologist does not click.",
        rich_help_panel=_NOISE,
    ),
    false_click_fraction: float = typer.Option(
        0.15,
        "--false-click-fraction",
        help="False Mitosis clicks on look-alikes, as a "
        "fraction of the true mitosis clicks (0-10).",
        rich_help_panel=_NOISE,
    ),
    click_offset_um: float = typer.Option(
        1.5,
        "--click-offset-um",
        help="RMS distance of a click from the figure's centre, µm.",
        rich_help_panel=_NOISE,
    ),
    negative_click_fraction: float = typer.Option(
        0.0,
        "--negative-click-fraction",
        help="Fraction (0-1) of look-alikes clicked as the negative class (0: no negative clicks).",
        rich_help_panel=_NOISE,
    ),
    missed_as_negative_fraction: float = typer.Option(
        0.0,
        "--missed-as-negative-fraction",
        help="Fraction (0-1) of missed mitoses clicked as "
        "the negative class instead (mistaken for a look-alike).",
        rich_help_panel=_NOISE,
    ),
    negative_class: str = typer.Option(
        "Mitosis-like",
        "--negative-class",
        help="Class name of the negative clicks.",
        rich_help_panel=_NOISE,
    ),
    regions: int = typer.Option(
        0,
        "--regions",
        min=0,
        max=100,
        help="Number of 'Region' areas marking exhaustively "
        "annotated parts; mitoses outside them are not clicked (0: whole slide annotated).",
        rich_help_panel=_NOISE,
    ),
    region_area_mm2: float = typer.Option(
        0.5,
        "--region-area-mm2",
        help="Area of each region, mm² (smaller where the slide is too small).",
        rich_help_panel=_NOISE,
    ),
    workers: int = typer.Option(
        _default_workers(),
        "--workers",
        min=1,
        max=256,
        help="Processes rendering in parallel "
        "(default: the CPU count, at most 16); the output does not depend on it.",
        rich_help_panel=_RUN,
    ),
    prefix: str = typer.Option(
        "synth_", "--prefix", help="Slide name prefix.", rich_help_panel=_RUN
    ),
) -> None:
    """Generate synthetic H&E whole-slide images with known mitoses and noisy annotations.

    Each slide is a pyramidal tiled JPEG TIFF (OpenSlide opens it at --mpp) with
    tumour nests, stroma, mitotic figures in every phase and look-alikes that are
    as dark as mitoses (apoptotic bodies, pyknotic nuclei, lymphocyte clusters).
    Beside it: <name>.geojson, the clicks a pathologist would make (QuPath
    'Points' of class Mitosis, with the noise set below); truth/<name>.geojson,
    every mitosis and look-alike; truth/<name>.noise.json, what each click truly
    hit and which mitoses were missed; synth.json, every setting and the seed.
    The folder is a slide-folder source for `wsdal train` and `wsdal evaluate`.
    """

    width_px, height_px = parse_size(size)
    params = SynthParams(
        width_px=width_px,
        height_px=height_px,
        mpp=mpp,
        mitoses_per_mm2=mitoses_per_mm2,
        lookalikes_per_mm2=lookalikes_per_mm2,
        tissue_fraction=tissue_fraction,
        tumour_fraction=tumour_fraction,
        hard_fraction=hard_fraction,
        stain_variation=stain_variation,
        stain_shift=stain_shift,
        blur_um=blur_um,
        jpeg_quality=jpeg_quality,
    )
    noise = AnnotationNoise(
        missed_fraction=missed_fraction,
        false_click_fraction=false_click_fraction,
        click_offset_um=click_offset_um,
        negative_click_fraction=negative_click_fraction,
        missed_as_negative_fraction=missed_as_negative_fraction,
        negative_class=negative_class,
        regions=regions,
        region_area_mm2=region_area_mm2,
    )
    with RichProgress() as progress:
        made = generate_dataset(
            out_dir,
            n_slides=slides,
            params=params,
            noise=noise,
            seed=seed,
            workers=workers,
            prefix=prefix,
            progress=progress,
        )
    typer.echo(f"{len(made)} synthetic slide(s) in {out_dir}:")
    for s in made:
        c = s.counts
        typer.echo(
            f"  {s.slide_path.name}  {s.width_px} x {s.height_px} px, {s.level_count} levels, "
            f"{s.tissue_area_mm2:.2f} mm² tissue, {c['mitoses']} mitoses, "
            f"{c['lookalikes']} look-alikes; clicks: {c['true_clicks']} true, "
            f"{c['false_clicks']} false, {c['missed']} missed, {c['negative_clicks']} negative"
        )
    typer.echo(f"Settings, seeds and counts: {Path(out_dir) / 'synth.json'}")
