"""``wsdal train SOURCE --out RUN_DIR``: train WS-DAL (or the baseline) from point annotations."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import typer

from wsdal_wsi.cli._app import app
from wsdal_wsi.cli._console import RichProgress, err_console
from wsdal_wsi.cli._options import (
    ignore_option,
    mpp_option,
    negative_option,
    positive_option,
    region_option,
    relink_option,
    unclassified_option,
)
from wsdal_wsi.errors import WsdalError
from wsdal_wsi.train.presets import DEFAULT_PRESET
from wsdal_wsi.train.settings import RunSettings, resolve_run_settings

_DEFAULT = RunSettings()

__all__ = ["format_summary", "resume_command", "train"]


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def format_summary(summary: dict[str, Any]) -> str:
    """The closing summary of ``wsdal train`` (plain text)."""
    st = summary.get("stages", {})
    lines = [f"Method       {summary['method']} (preset {summary['preset']})"]
    if "device" in summary:
        procs = summary.get("processes", 1)
        on = f"{summary['device']} x {procs} processes (DDP)" if procs > 1 else summary["device"]
        lines.append(f"Device       {on}; trunk: {summary.get('init', '?')}")
    for i, im in enumerate(summary.get("skipped_images", [])):
        label = f"Skipped ({len(summary['skipped_images'])})" if i == 0 else ""
        lines.append(f"{label:<12} {im['key']}: {im['reason']}")
    if "ns" in st:
        ns = st["ns"]
        lines.append(
            f"NS           {ns['n_positive_patches']} positive patches, "
            f"{ns['n_random_negatives']} random + {ns['n_negative_clicks']} clicked negatives, "
            f"{ns['n_mined']} mined hard negatives (of {ns['n_candidates_scored']} candidates)"
        )
    if "dmu" in st:
        o = st["dmu"]["outcomes"]
        lines.append(
            "DMU          mitosis labels: "
            + ", ".join(f"{k} {v}" for k, v in o["label1"].items())
            + "; non-mitosis labels: "
            + ", ".join(f"{k} {v}" for k, v in o["label0"].items())
            + f"; never learned {st['dmu']['never_learned']}"
        )
    if "audit" in st:
        lines.append(
            f"Label audit  {st['audit']['n_flagged']} annotations to review "
            "(RUN/audit/<image>.geojson, class 'WS-DAL review')"
        )
    if "dle" in st:
        d = st["dle"]
        counted = [c for c in d.get("classes", {}).values() if "unvalidated" in c]
        why = f"{d['dropped_noisy']} noisy dropped"
        if counted:  # runs before the count was recorded print without it
            failed = sum(c["unvalidated"] for c in counted)
            dropped = sum(c.get("unvalidated_dropped", 0) for c in counted)
            why += f"; {failed} hard samples not validated, {dropped} of them dropped"
        lines.append(f"DLE          kept {d['n_kept']} of {d['n_in']} samples ({why})")
    if "csdgl" in st:
        lines.append(
            f"CSDGL        {st['csdgl']['epochs']} epochs on {st['csdgl']['n']} samples, "
            f"final loss {_fmt(st['csdgl']['final_loss'])}"
        )
    if "baseline" in st:
        lines.append(
            f"Baseline     {st['baseline']['epochs']} epochs of cross-entropy on "
            f"{st['baseline']['n']} samples, final loss {_fmt(st['baseline']['final_loss'])}"
        )
    if summary.get("model"):
        info = summary.get("threshold_info", {})
        best = info.get("best_threshold")
        at_best = (
            f" (the best, {_fmt(info.get('best_f1'))}, at {_fmt(best)})"
            if best is not None and best != summary["threshold"]
            else ""
        )
        lines.append(
            f"Threshold    {_fmt(summary['threshold'])} ({info.get('method', '')}); "
            f"validation F1 {_fmt(summary.get('val_f1'))}{at_best}"
        )
        held = summary.get("heldout", {})
        lines.append(
            f"Held-out     {held.get('n', 0)} patches of validation slides: "
            f"AUC {_fmt(held.get('auc'))}, accuracy {_fmt(held.get('accuracy'))}"
        )
        cal = summary.get("calibration") or {}
        if cal.get("n"):
            lines.append(
                f"Calibration  ECE {_fmt(cal.get('ece_before'))} -> {_fmt(cal.get('ece_after'))} "
                f"on {cal['n']} validation candidates ({cal.get('n_positive', 0)} mitoses)"
            )
        lines.append(f"Model        {summary['model']}")
    else:
        lines.append(f"Stopped after {summary.get('stopped_after')} (continue with --resume)")
    return "\n".join(lines)


@app.command()
def train(
    ctx: typer.Context,
    source: Path = typer.Argument(
        ...,
        help="Annotated images: a QuPath project (project.qpproj or its folder), a folder of "
        "slides with QuPath GeoJSON sidecars, or one slide.",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder (created)."),
    preset: str | None = typer.Option(
        None,
        "--preset",
        help="paper (upstream schedule, GPU hours), fast (about an hour on a GPU), "
        "demo (minutes on a CPU, narrow ResNet-18), tiny (seconds, for tests) "
        f"[default: {DEFAULT_PRESET}].",
    ),
    method: str | None = typer.Option(
        None,
        "--method",
        help="wsdal (NS, DMU, DLE, CSDGL) or baseline (plain cross-entropy) "
        f"[default: {_DEFAULT.method}].",
    ),
    device: str = typer.Option("auto", "--device", help="auto, cuda or cpu."),
    val_fraction: float | None = typer.Option(
        None,
        "--val-fraction",
        help="Fraction of the slides held out to choose the threshold "
        f"[default: {_DEFAULT.val_fraction:g}].",
    ),
    stain_jitter: float | None = typer.Option(
        None,
        "--stain-jitter",
        help="Stain augmentation (0-0.5): HED jitter amplitude of every training view of "
        "every stage; raise it when slides will come from other labs or scanners, 0 "
        "for none [default: the preset's, 0.1].",
    ),
    stain_normalise: bool | None = typer.Option(
        None,
        "--stain-normalise/--no-stain-normalise",
        help="Map every slide onto the training slides' median stains (Macenko), in "
        "training and in prediction, so that slides from other labs or scanners look "
        "like the training slides [default: the preset's, on].",
    ),
    seed: int | None = typer.Option(
        None,
        "--seed",
        min=0,
        help=f"Seed of the split, sampling and weights [default: {_DEFAULT.seed}].",
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Continue the run in --out after its last finished stage/epoch."
    ),
    mpp: float | None = mpp_option(),
    relink: list[str] = relink_option(),
    pretrained: Path | None = typer.Option(
        None,
        "--pretrained",
        help="ResNet-18 weights (torchvision layout) to start from; by default ImageNet "
        "weights are used only if already in the torch hub cache.",
    ),
    init: Path | None = typer.Option(
        None,
        "--init",
        help="An earlier model (RUN/model.pt) to fine-tune from instead of starting over, "
        "e.g. after a review round in QuPath (same preset).",
    ),
    stop_after: str | None = typer.Option(
        None, "--stop-after", help="Stop after stage ns, dmu or dle (inspect it, then --resume)."
    ),
    positive: list[str] = positive_option(),
    negative: list[str] = negative_option(),
    region: list[str] = region_option(),
    ignore: list[str] = ignore_option(),
    unclassified_as: str | None = unclassified_option(),
) -> None:
    """Train a mitosis classifier from one click per mitosis (WS-DAL) and write RUN/model.pt.

    With --resume, options not given are taken from the run's config.json. On several
    GPUs: torchrun --standalone --nproc-per-node N -m wsdal_wsi train ... trains every
    stage with DistributedDataParallel (rank 0 prints and writes).
    """
    # torch-heavy: imported when the command runs, so `wsdal --help` stays fast
    from wsdal_wsi.train.distributed import launched_rank
    from wsdal_wsi.train.run import train_run

    settings = resolve_run_settings(
        out,
        resume=resume,
        preset=preset,
        method=method,
        seed=seed,
        val_fraction=val_fraction,
        stain_jitter=stain_jitter,
        stain_normalise=stain_normalise,
        mpp=mpp,
        pretrained=pretrained,
        init_model=init,
        positive=positive,
        negative=negative,
        region=region,
        ignored=ignore,
        unclassified_as=unclassified_as,
    )
    if launched_rank() != 0:  # another torchrun process: rank 0 prints, and says what failed
        try:
            train_run(source, out, settings, device=device, resume=resume, stop_after=stop_after)
        except WsdalError as exc:
            raise typer.Exit(exc.exit_code) from None
        return
    err_console.print(f"Training {settings.method} with preset {settings.preset.name} into {out}")
    try:
        with RichProgress() as progress:
            summary = train_run(
                source,
                out,
                settings,
                device=device,
                resume=resume,
                stop_after=stop_after,
                progress=progress,
                relink=relink or None,
            )
    except KeyboardInterrupt:
        typer.echo(f"Interrupted. Resume with: {resume_command(ctx)}", err=True)
        raise typer.Exit(130) from None
    typer.echo(format_summary(summary))


def resume_command(ctx: typer.Context) -> str:
    """The command that resumes an interrupted ``wsdal train``: the arguments and the options
    the user gave (not the defaults), and ``--resume``, quoted for a POSIX shell."""
    args = ["wsdal", ctx.info_name or "train"]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if param.param_type_name == "argument":
            args.append(str(value))
            continue
        source = ctx.get_parameter_source(param.name)
        if param.name == "resume" or source is None or source.name != "COMMANDLINE":
            continue
        flag = max(param.opts, key=len)  # the long name
        if getattr(param, "is_flag", False):
            args += [flag] if value else []
            continue
        for v in value if getattr(param, "multiple", False) else [value]:
            args += [flag, str(v)]
    return shlex.join([*args, "--resume"])
