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
