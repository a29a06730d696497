"""``wsdal predict SOURCE --model MODEL --out OUT_DIR``: find the mitoses of every slide."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from wsdal_wsi.cli._app import app
from wsdal_wsi.cli._console import RichProgress, err_console, out_console
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
from wsdal_wsi.counting import HotspotSettings
from wsdal_wsi.errors import ConfigError
from wsdal_wsi.qupath import ClassSettings, open_source

_DEFAULT = HotspotSettings()

__all__ = ["predict", "print_batch_table"]

_RUN = "Run"
_COUNT = "Hotspot and counting"
_SCALE = "Many slides on many machines"


@app.command()
def predict(
    source: Path = typer.Argument(
        ...,
        help="A QuPath project (project.qpproj or its folder), a folder of slides, or one slide.",
    ),
    model: Path = typer.Option(
        ..., "--model", "-m", help="Model file (wsdal train's RUN/model.pt)."
    ),
    out: Path = typer.Option(
        ...,
        "--out",
        "-o",
        help="Output folder (created): per-slide GeoJSON, summary and report, counts.csv, "
        "counts.xlsx, index.html, batch.json.",
    ),
    device: str = typer.Option("auto", "--device", help="auto, cuda or cpu.", rich_help_panel=_RUN),
    mpp: float | None = mpp_option(),
    relink: list[str] = relink_option(),
    threshold: float | None = typer.Option(
        None,
        "--threshold",
        help="Probability threshold for a detection (default: the model's own; recorded).",
        rich_help_panel=_RUN,
    ),
    tile_size: int | None = typer.Option(
        None,
        "--tile-size",
        help="Tile side in px at the model's resolution (default 2048 on CUDA, 1024 on the "
        "CPU; results do not depend on it).",
        rich_help_panel=_RUN,
    ),
    batch_size: int | None = typer.Option(
        None,
        "--batch-size",
        help="Patches per classifier batch (default 2048 on CUDA, 256 on the CPU).",
        rich_help_panel=_RUN,
    ),
    reader_threads: int | None = typer.Option(
        None,
        "--reader-threads",
        help="Threads decoding tiles ahead of the device (default: cores - 1 on CUDA, "
        "1 on a small CPU).",
        rich_help_panel=_RUN,
    ),
    no_cascade: bool = typer.Option(
        False,
        "--no-cascade",
        help="Score every candidate with the final network, not only those the model's "
        "cascade lets through (for comparison; slower).",
        rich_help_panel=_RUN,
    ),
    window: str | None = typer.Option(
        None,
        "--window",
        help=f"Hotspot window: 'circle' or 'rect' (4:3) [default: {_DEFAULT.window}].",
        rich_help_panel=_COUNT,
    ),
    area_mm2: float | None = typer.Option(
        None,
        "--area-mm2",
        help=f"Hotspot window area in mm² (default {_DEFAULT.area_mm2:g} when no field "
        "diameter is given).",
        rich_help_panel=_COUNT,
    ),
    hpf_diameter_mm: float | None = typer.Option(
        None,
        "--hpf-diameter-mm",
        help="Microscope field diameter in mm (0.40-0.69). Alone: the window is 10 HPF of it. "
        "With --area-mm2: the Nottingham row the count is scored on "
        f"(default {_DEFAULT.field_diameter_mm:g}).",
        rich_help_panel=_COUNT,
    ),
    min_tissue_fraction: float | None = typer.Option(
        None,
        "--min-tissue-fraction",
        help="Smallest share of tissue in the hotspot window (0-1) "
        f"[default: {_DEFAULT.min_tissue_fraction:g}].",
        rich_help_panel=_COUNT,
    ),
    ray: str | None = typer.Option(
        None,
        "--ray",
        help="Predict on a Ray cluster, one task per slide: 'local' (start one on this "
        "machine), 'auto' (the cluster started here with 'ray start --head') or HOST:PORT. "
        'Needs pip install "wsdal-wsi[ray]".',
        rich_help_panel=_SCALE,
    ),
    gpus_per_slide: float | None = typer.Option(
        None,
        "--gpus-per-slide",
        help="With --ray: GPUs per slide task, 0-1; fractions share a GPU (default: 1 where "
        "the cluster has GPUs, else 0).",
        rich_help_panel=_SCALE,
    ),
    cpus_per_slide: int | None = typer.Option(
        None,
        "--cpus-per-slide",
        help="With --ray: CPUs per slide task, its torch threads and tile readers (default: "
        "the cluster's CPUs per GPU, up to 16; 1 without GPUs).",
        rich_help_panel=_SCALE,
    ),
    shard: str | None = typer.Option(
        None,
        "--shard",
        help="K/N: predict only every N-th slide (sorted by key), starting at K (0 to N-1), "
        "e.g. $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT. N shards may write into one "
        "--out at once; each rebuilds the batch files when it ends.",
        rich_help_panel=_SCALE,
    ),
    review: int = typer.Option(
        0,
        "--review",
        min=0,
        help="Write, per slide, this many WS-DAL check objects: the least certain detections "
        "and near misses, hotspot first, for the pathologist to answer in QuPath.",
        rich_help_panel=_COUNT,
    ),
    force: bool = typer.Option(
        False, "--force", help="Predict every slide again, even those finished by an earlier run."
    ),
    positive: list[str] = positive_option(default_from="the model's"),
    negative: list[str] = negative_option(default_from="the model's"),
    region: list[str] = region_option(default_from="the model's"),
    ignore: list[str] = ignore_option(default_from="the model's"),
    unclassified_as: str | None = unclassified_option(),
    write_qupath: bool = typer.Option(
        False,
        "--write-qupath",
        help="Also put the results into the QuPath project with paquo (needs QuPath; "
        "a backup of the project is made first).",
    ),
) -> None:
    """Find the mitoses of every slide of a QuPath project or folder; count them for grading.

    Writes, per slide, OUT/<key>.geojson (detections, hotspot and region counts as
    QuPath objects; for projects also <project>/wsdal/results/<entryID>.geojson for
    import_results.groovy), <key>.summary.json and <key>.report.png; for the
    batch counts.csv, counts.xlsx, index.html and batch.json. A slide that fails is
    recorded with the reason and the others go on. Running the command again skips
    the slides already finished with the same model and settings (--force redoes
    them) and resumes an interrupted batch. With --ray the slides are spread over a
    Ray cluster; with --shard K/N this process does one N-th of them (job arrays).
    Exit code: 0 all slides done, 1 some failed, 2 bad input (missing model or
    source, bad option).
    """
    # torch-heavy: imported when the command runs, so `wsdal --help` stays fast
    from wsdal_wsi.model import read_spec
    from wsdal_wsi.predict import (
        PredictSettings,
        RayExecutor,
        Shard,
        check_write_qupath,
        run_batch,
    )

    spec = read_spec(model)  # a missing or broken model file: exit 2 before any work
    classes = class_roles(
        positive,
        negative,
        region,
        ignore,
        unclassified_as,
        base=ClassSettings.from_dict(spec.annotation_classes) if spec.annotation_classes else None,
    )
    hotspot = HotspotSettings.from_options(
        window=window,
        area_mm2=area_mm2,
        hpf_diameter_mm=hpf_diameter_mm,
        min_tissue_fraction=min_tissue_fraction,
    )
    settings = PredictSettings(
        device=device,
        tile_size_px=tile_size,
        batch_size=batch_size,
        reader_threads=reader_threads,
        threshold=threshold,
        hotspot=hotspot,
        cascade=not no_cascade,
        review_n=review,
    )
    if ray is None and (gpus_per_slide is not None or cpus_per_slide is not None):
        raise ConfigError("--gpus-per-slide and --cpus-per-slide apply to --ray only")
    executor = (
        RayExecutor(ray, gpus_per_slide=gpus_per_slide, cpus_per_slide=cpus_per_slide)
        if ray is not None
        else None
    )
    shard_of = Shard.parse(shard) if shard is not None else None
    src = open_source(source, classes=classes, relink=relink or None, mpp=mpp)
    if write_qupath:
        check_write_qupath(src)
    with RichProgress() as progress:
        result = run_batch(
            src,
            model,
            out,
            settings=settings,
            force=force,
            write_qupath=write_qupath,
            progress=progress,
            shard=shard_of,
            executor=executor,
        )
    print_batch_table(result, out_console)
    _print_where_it_ran(result.state, shard_of)
    for label in ("html", "xlsx", "csv", "batch"):
        if label in result.outputs:
            out_console.print(f"{label:>5}: {result.outputs[label]}", soft_wrap=True)
    if src.kind == "qupath-project":
        out_console.print(
            f"QuPath: {src.path / 'wsdal' / 'results'} (run qupath_scripts/import_results.groovy)",
            soft_wrap=True,
            markup=False,
        )
    to_review = sum(s.review for s in result.summaries if s.ok)
    if to_review:
        out_console.print(
            f"{to_review} decisions await review (WS-DAL check objects; answer them in QuPath "
            "by changing their class to a mitosis or look-alike class)",
            markup=False,
        )
    borderline = [
        s.slide.name for s in result.summaries if s.hotspot_range and s.hotspot_range.borderline
    ]
    if borderline:
        out_console.print(
            f"Borderline score (count it yourself): {', '.join(borderline)}",
            markup=False,
            soft_wrap=True,
        )
    if result.qupath is not None:
        out_console.print(f"QuPath project updated; backup: {result.qupath.backup}", markup=False)
    if result.failed:
        err_console.print(
            f"{len(result.failed)} of {len(result.summaries)} slide(s) failed (reasons above "
            "and in batch.json); the others are done. Re-run to retry the failed ones.",
            markup=False,
            soft_wrap=True,
        )
        raise typer.Exit(1)


def _print_where_it_ran(state, shard) -> None:
    ex = state.header.get("executor") or {}
    if ex.get("kind") == "ray":
        cluster = ex.get("cluster") or {}
        out_console.print(
            f"Ray {ex.get('address')}: {cluster.get('nodes', '?')} node(s), "
            f"{cluster.get('CPU', 0):g} CPUs, {cluster.get('GPU', 0):g} GPUs; per slide "
            f"{ex.get('gpus_per_slide', 0):g} GPU(s), {ex.get('cpus_per_slide')} CPU(s)",
            markup=False,
            soft_wrap=True,
        )
    if shard is not None:
        out_console.print(
            f"Shard {shard}: {len(state.owned or ())} of the {len(state.images)} slides above "
            "are this shard's (the others as their shards left them); the batch files cover "
            "every slide finished so far by any shard (wsdal report OUT rebuilds them)",
            markup=False,
            soft_wrap=True,
        )


def print_batch_table(result, console) -> None:
    """Print the closing table of ``wsdal predict``: one row per slide."""
    table = Table(title="WS-DAL prediction", title_justify="left")
    for name, justify in (
        ("Slide", "left"),
        ("Status", "left"),
        ("Detections", "right"),
        ("Hotspot", "right"),
        ("Per mm²", "right"),
        ("Score", "right"),
        ("Time (s)", "right"),
    ):
        table.add_column(name, justify=justify, overflow="fold")
    for im in result.state.images:
        table.add_row(
            Text(im.name),
            im.status,
            "" if im.detections is None else f"{im.detections:,}",
            "" if im.hotspot is None else str(im.hotspot),
            "" if im.per_mm2 is None else f"{im.per_mm2:.2f}",
            "" if im.score is None else str(im.score),
            f"{im.timings.get('wall_s', 0):.1f}",
        )
    console.print(table)
    for im in result.state.images:
        if im.status == "failed":
            console.print(Text(f"Failed: {im.name}: {im.reason}"), soft_wrap=True)
