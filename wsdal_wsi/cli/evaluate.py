"""``wsdal evaluate PRED TRUTH``: MIDOG matching and micro-averaged precision, recall, F1."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from wsdal_wsi.cli._app import app
from wsdal_wsi.cli._console import RichProgress, err_console, out_console
from wsdal_wsi.cli._options import CLASSES_PANEL, unclassified_option
from wsdal_wsi.evaluation.folders import evaluate_folders
from wsdal_wsi.qupath import ClassSettings

if TYPE_CHECKING:
    from rich.table import Table

    from wsdal_wsi.evaluation.folders import FolderEvaluation

__all__ = ["evaluate", "format_table"]


#: How the table marks an image found on one side only (explained in its caption).
_SIDE_MARK = {"both": "", "truth only": " *", "predictions only": " **"}


def _ratio(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3f}"


def format_table(result: FolderEvaluation) -> Table:
    """The rich table of ``wsdal evaluate``: one row per image, then the total."""

    caption = f"total: TP, FP, FN summed over {len(result.images)} images (micro-average)"
    one_sided = [i for i in result.images if i.side != "both"]
    if one_sided:
        caption += (
            f"; {len(one_sided)} on one side only, counted as MIDOG does: "
            "* no predictions (false negatives), ** no ground truth (false positives)"
        )
    table = Table(
        title=f"Mitosis detection, one-to-one matching within {result.radius_um:g} µm",
        title_justify="left",
        caption=caption,
        caption_justify="left",
    )
    table.add_column("image")
    for name in ("truth", "pred", "TP", "FP", "FN", "precision", "recall", "F1"):
        table.add_column(name, justify="right")
    table.add_column("µm/px", justify="right")
    for image in result.images:
        table.add_row(
            image.key + _SIDE_MARK[image.side],
            str(image.n_truth),
            str(image.n_pred),
            str(image.tp),
            str(image.fp),
            str(image.fn),
            _ratio(image.precision),
            _ratio(image.recall),
            _ratio(image.f1),
            "-" if image.mpp is None else f"{image.mpp:.4g}",
        )
    precision, recall, f1 = result.prf()
    table.add_section()
    table.add_row(
        "total",
        str(sum(i.n_truth for i in result.images)),
        str(sum(i.n_pred for i in result.images)),
        str(result.tp),
        str(result.fp),
        str(result.fn),
        _ratio(precision),
        _ratio(recall),
        _ratio(f1),
        "",
        style="bold",
    )
    return table


@app.command()
def evaluate(
    pred: Path = typer.Argument(
        ...,
        metavar="PRED",
        help=(
            "Predictions: a 'wsdal predict' output folder, or any folder of QuPath GeoJSON "
            "files (<slide stem>.geojson), or one GeoJSON file."
        ),
    ),
    truth: Path = typer.Argument(
        ...,
        metavar="TRUTH",
        help=(
            "Ground truth: a folder of QuPath GeoJSON files paired with PRED by slide stem "
            "(a slide folder with annotations beside the slides, a synthetic dataset's truth/), "
            "or one GeoJSON file."
        ),
    ),
    radius_um: float = typer.Option(
        7.5, "--radius-um", help="A detection within this distance (µm) of a mitosis is a hit."
    ),
    mpp: float | None = typer.Option(
        None,
        "--mpp",
        help=(
            "Level-0 resolution (µm/px) of every image; default: what the files' provenance "
            "or a slide beside them says."
        ),
    ),
    positive: list[str] = typer.Option(
        [],
        "--positive",
        "--class",
        help="Class of mitoses in the ground truth (repeatable; shell patterns such as "
        f"'Mitosis*' allowed; default {', '.join(ClassSettings().positive)}).",
        rich_help_panel=CLASSES_PANEL,
    ),
    unclassified_as: str | None = unclassified_option(),
    paired_only: bool = typer.Option(
        False,
        "--paired-only",
        help="Leave out the images found on one side only (by default they count: truth "
        "without predictions as false negatives, predictions without truth as false "
        "positives, as MIDOG counts them).",
    ),
    as_json: bool = typer.Option(
        False,
        "--json",
        help='Print {"tp", "fp", "fn", "precision", "recall", "f1", "images": [...]} as JSON.',
    ),
) -> None:
    """Score detections against ground-truth mitoses as MIDOG does.

    Each ground-truth point of class Mitosis, in turn, takes the nearest unused
    detection within --radius-um; unmatched detections are false positives,
    unmatched mitoses false negatives. TP, FP and FN are summed over all images
    before precision, recall and F1 (micro-averaging). An image found on one side
    only counts as MIDOG counts it: its mitoses without predictions are false
    negatives, its predictions without ground truth false positives
    (--paired-only leaves it out). Exits 2 on a missing folder, no paired image,
    a malformed file or an image without a known resolution.
    """

    with RichProgress(transient=True) as progress:
        result = evaluate_folders(
            pred,
            truth,
            radius_um=radius_um,
            mpp=mpp,
            classes=ClassSettings.from_options(positive=positive, unclassified_as=unclassified_as),
            count_unpaired=not paired_only,
            progress=progress,
        )
    counted = {i.pred_path or i.truth_path: i for i in result.images if i.side != "both"}
    for paths, what, points, how in (
        (result.pred_only, "no ground truth for", "detections", "false positives"),
        (result.truth_only, "no predictions for", "mitoses", "false negatives"),
    ):
        for path in paths:
            image = counted.get(path)
            note = (
                f"its {points} ({image.n_pred + image.n_truth}) count as {how}"
                if image is not None
                else "not counted (--paired-only)"
            )
            err_console.print(f"Note: {what} {path}: {note}", markup=False, soft_wrap=True)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
    else:
        out_console.print(format_table(result))
