from typer.testing import CliRunner

from wsdal_wsi import __version__
from wsdal_wsi.cli import app

runner = CliRunner()


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.stdout


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "Usage" in result.stdout


def test_unknown_command_is_a_usage_error():
    result = runner.invoke(app, ["no-such-command"])
    assert result.exit_code == 2


def test_log_messages_go_to_stderr_not_stdout():
    import logging

    import typer

    from wsdal_wsi.cli._app import _root

    _root(verbose=True, version=False)
    logger = logging.getLogger("wsdal_wsi.test")
    sub = typer.Typer()

    @sub.command()
    def emit() -> None:
        logger.warning("a warning for the log")

    result = runner.invoke(sub, [])
    assert "a warning for the log" not in result.stdout
    assert "a warning for the log" in result.stderr


def test_help_paragraphs_are_reflowed_but_lists_and_b_blocks_kept():
    from wsdal_wsi.cli._app import reflow_help

    doc = """Summary line.

    First paragraph
    goes on here.

    - a list item
    - another

    \b
    kept
    as is
    """
    assert reflow_help(doc) == (
        "Summary line.\n\nFirst paragraph goes on here.\n\n- a list item\n- another"
        "\n\n\b\nkept\nas is"
    )
    assert reflow_help(None) is None
    # every registered command's help is reflowed: no line break inside a paragraph
    for command in app.registered_commands:
        for para in command.callback.__doc__.split("\n\n"):
            assert "\n" not in para or para.startswith("\b") or "- " in para


def test_command_help_is_not_wrapped_ragged(monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")
    result = runner.invoke(app, ["predict", "--help"])
    assert result.exit_code == 0
    # wide enough for a whole paragraph on one line: no break from the source left
    line = next(ln for ln in result.stdout.splitlines() if "Writes, per slide" in ln)
    assert "batch.json" in line
