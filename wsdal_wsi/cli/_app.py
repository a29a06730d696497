"""The Typer application and the one place where errors become exit codes."""

from __future__ import annotations

import inspect
import logging
from typing import Any

import typer
from rich.logging import RichHandler
from typer.core import TyperGroup

from wsdal_wsi import __version__
from wsdal_wsi.cli._console import err_console
from wsdal_wsi.errors import WsdalError

__all__ = ["app", "main"]


class WsdalGroup(TyperGroup):
    """Command group that turns :class:`WsdalError` into a message and an exit code.

    Every ``wsdal`` command runs inside :meth:`invoke`, so an expected failure
    prints ``Error: <message>`` to stderr and exits with the error's
    ``exit_code`` (2 for bad input), never with a traceback.
    """

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except WsdalError as exc:
            typer.echo(f"Error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("Interrupted. Re-run the same command to resume.", err=True)
            raise typer.Exit(130) from None


def reflow_help(doc: str | None) -> str | None:
    """A docstring with each paragraph on one line, for the help screen.

    Paragraphs are separated by blank lines; one that starts with ``\\b`` (click's
    "do not rewrap" marker) or holds a list (lines starting ``- `` or ``* ``) keeps
    its line breaks.
    """
    if not doc:
        return doc
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    out = []
    for para in paragraphs:
        lines = para.split("\n")
        listed = any(line.lstrip().startswith(("- ", "* ")) for line in lines)
        out.append(para if para.startswith("\b") or listed else " ".join(lines))
    return "\n\n".join(out)


app = typer.Typer(
    cls=WsdalGroup,
    name="wsdal",
    help=(
        "Find mitotic figures in H&E whole-slide images with WS-DAL, trained from one "
        "click per mitosis in QuPath; write detections, hotspot counts and the Nottingham "
        "mitotic score back to QuPath and to spreadsheets."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"wsdal-wsi {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show informational log messages."),
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version."
    ),
) -> None:
    """wsdal: mitosis detection for whole-slide images."""

    root = logging.getLogger("wsdal_wsi")
    root.handlers.clear()
    # Log to stderr, so stdout stays clean for --json output.
    handler = RichHandler(console=err_console, show_time=False, show_path=False, markup=False)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    root.propagate = False


def main() -> None:
    """Console-script entry point (``wsdal``)."""
    app()
