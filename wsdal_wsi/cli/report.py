"""``wsdal report OUT_DIR``: rebuild counts.csv, counts.xlsx and index.html from the summaries."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.text import Text

from wsdal_wsi.cli._app import app
from wsdal_wsi.cli._console import err_console, out_console
from wsdal_wsi.report import rebuild_batch_outputs

__all__ = ["report"]


@app.command()
def report(
    out_dir: Path = typer.Argument(
        ..., help="A prediction output folder (made by 'wsdal predict ... --out OUT_DIR')."
    ),
) -> None:
    """Rebuild the batch files of a prediction output folder from every slide summary in it.

    Writes counts.csv, counts.xlsx and index.html from the <key>.summary.json of
    every finished (or failed) slide, without recounting anything: after the
    shards of a batch (wsdal predict --shard K/N), or to see a batch that is still
    running. Safe while shards are writing (it takes the folder's lock). Exit code
    1 when a summary could not be read (it is left out and named), 2 when OUT_DIR
    is not a prediction output.
    """
    result = rebuild_batch_outputs(out_dir)
    ok = sum(s.ok for s in result.summaries)
    failed = len(result.summaries) - ok
    out_console.print(
        f"{len(result.summaries)} slide(s): {ok} finished, {failed} failed", markup=False
    )
    for label, path in result.outputs.items():
        out_console.print(f"{label:>5}: {path}", soft_wrap=True, markup=False)
    for path, reason in result.unreadable:
        err_console.print(Text(f"Left out: {path}: {reason}"), soft_wrap=True)
    if result.unreadable:
        raise typer.Exit(1)
