"""``wsdal demo``: synth -> train -> predict -> counts -> evaluate, on synthetic slides."""

from __future__ import annotations

import math
import os
from pathlib import Path

import typer
from rich.text import Text

from wsdal_wsi.cli._app import app
from wsdal_wsi.cli._console import RichProgress, err_console, out_console

__all__ = ["QUICK_ENV", "demo"]

#: Environment variable that makes ``wsdal demo`` use the quick configuration (CI).
QUICK_ENV = "WSDAL_DEMO_QUICK"


@app.command()
def demo(
    out: Path = typer.Option(
        Path("wsdal-demo"), "--out", "-o", help="Run folder (created; re-running continues it)."
    ),
    device: str = typer.Option("auto", "--device", help="auto, cuda or cpu."),
    quick: bool = typer.Option(
        False,
        "--quick",
        help=f"A tiny configuration for CI (seconds of training; its F1 means nothing). "
        f"Also set by {QUICK_ENV}=1.",
    ),
) -> None:
    """Run the whole path on synthetic slides and show where every output is.

    Makes training and test slides with known mitoses and noisy clicks, trains
    WS-DAL with the demo preset (a few minutes on a laptop CPU), predicts the test
    slides, counts them (hotspot, Nottingham score, counts.xlsx, index.html) and
    scores the detections against the ground truth (F1). Each step is kept: running
    the command again reuses what is finished.
    """
    # torch-heavy: imported when the command runs, so `wsdal --help` stays fast
    from wsdal_wsi.demo import DEMO, QUICK, run_demo

    quick = quick or os.environ.get(QUICK_ENV, "").strip().lower() in ("1", "true", "yes")
    config = QUICK if quick else DEMO
    if quick:
        import torch

        # The quick network is tiny: per-op overhead, where extra threads only contend.
        torch.set_num_threads(1)
    test_w, test_h = config.test_size_px or config.size_px
    err_console.print(
        f"wsdal demo ({config.name}): {config.train_slides} training slides of "
        f"{config.size_px[0]} x {config.size_px[1]} px and {config.test_slides} test slides of "
        f"{test_w} x {test_h} px, preset {config.preset}, in {out}",
        markup=False,
    )
    with RichProgress(transient=True) as progress:
        result = run_demo(out, config=config, device=device, progress=progress)
    rows = [
        ("Report", result.index_html),
        ("Counts", result.counts_xlsx),
        ("Counts CSV", result.counts_csv),
        ("QuPath GeoJSON", result.predict_dir / "<slide>.geojson"),
        ("Model", result.model),
        ("Training run", result.train_dir),
        ("Test slides", result.data_dir / "test"),
        ("Ground truth", result.data_dir / "test" / "truth"),
        ("Evaluation", result.evaluation),
        ("Run folder", result.run_dir),
    ]
    for label, path in rows:
        out_console.print(Text(f"{label:>15}: {path}"), soft_wrap=True)
        if label == "QuPath GeoJSON":  # the files themselves, under their pattern
            for gj in result.geojson:
                out_console.print(Text(f"{'':>15}  {gj.name}"), soft_wrap=True)

    def fmt(v: float) -> str:
        return "-" if math.isnan(v) else f"{v:.3f}"

    out_console.print(
        Text(
            f"F1 {fmt(result.f1)} (precision {fmt(result.precision)}, recall "
            f"{fmt(result.recall)}; TP {result.tp}, FP {result.fp}, FN {result.fn}) against the "
            "synthetic ground truth of the test slides, matched within 7.5 µm"
        ),
        soft_wrap=True,
    )
    if result.seconds:
        steps = ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items())
        out_console.print(Text(f"Time: {steps}"))
    if result.reused:
        out_console.print(Text(f"Reused finished steps: {', '.join(result.reused)}"))
    if quick:
        out_console.print(
            Text("(quick configuration: a few seconds of training; the F1 is not meaningful)")
        )
