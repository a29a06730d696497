"""README promises only what the commands have: every option named beside a command exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from wsdal_wsi.cli import app

README = Path(__file__).resolve().parents[2] / "README.md"
runner = CliRunner()


def _named_options() -> dict[str, set[str]]:
    """``{command: {--option, ...}}`` for every README line that shows ``wsdal <command> ...``.

    The options counted are those after the command on the same line, up to the end of
    its code span (or of a code-block line).
    """
    text = README.read_text(encoding="utf-8")
    out: dict[str, set[str]] = {}
    for line in text.splitlines():
        for m in re.finditer(r"\bwsdal ([a-z][a-z-]*)\b", line):
            cmd = m.group(1)
            rest = line[m.end() :]
            if "`" in line[: m.start()] and "`" in rest:  # inside an inline code span
                rest = rest.split("`", 1)[0]
            rest = rest.split("#", 1)[0]  # a shell comment after a code-block command
            out.setdefault(cmd, set()).update(re.findall(r"(--[a-z][a-z0-9-]*)", rest))
    return out


NAMED = _named_options()


def test_the_readme_names_the_commands_and_their_options():
    for cmd in ("inspect", "train", "predict", "evaluate", "count", "demo"):
        assert cmd in NAMED, cmd
    for cmd in ("inspect", "train", "predict"):  # class roles and relink on every project command
        assert {"--positive", "--relink"} <= NAMED[cmd], (cmd, NAMED[cmd])


@pytest.mark.parametrize("command", sorted(NAMED))
def test_every_option_readme_names_exists_in_the_commands_help(command):
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "240", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    missing = [opt for opt in sorted(NAMED[command]) if opt not in result.stdout]
    assert not missing, f"README names {missing} for 'wsdal {command}', which has no such option"
