"""Ctrl-C in the middle of ``wsdal train``, then the command it prints: the same model as a
run never interrupted (tiny preset)."""

from __future__ import annotations

import json
import shlex
import signal
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from wsdal_wsi.cli import app

from .conftest import cli_process

runner = CliRunner()
OPTIONS = ("--preset", "tiny", "--device", "cpu", "--seed", "5")


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "model.pt", map_location="cpu", weights_only=True)["state_dict"]


@pytest.mark.slow
def test_ctrl_c_mid_train_then_the_printed_command_gives_the_same_model(train_data, tmp_path):
    whole = tmp_path / "whole"
    done = runner.invoke(app, ["train", str(train_data), "--out", str(whole), *OPTIONS])
    assert done.exit_code == 0, done.output

    run = tmp_path / "run"
    proc = cli_process("train", str(train_data), "--out", str(run), *OPTIONS)
    try:  # Ctrl-C once DMU has a checkpoint: in the middle of a stage, after another
        end = time.monotonic() + 120
        while not (run / "dmu" / "checkpoint.pt").is_file():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < end, "training never reached DMU"
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and not (run / "model.pt").exists()
    assert (run / "ns" / "done.json").is_file() and not (run / "csdgl" / "done.json").exists()
    (line,) = [ln for ln in stderr.splitlines() if ln.startswith("Interrupted")]
    command = shlex.split(line.removeprefix("Interrupted. Resume with: "))
    assert command[:2] == ["wsdal", "train"] and command[-1] == "--resume"

    resumed = runner.invoke(app, command[1:])
    assert resumed.exit_code == 0, resumed.output
    ns = json.loads((run / "ns" / "done.json").read_text())
    assert ns == json.loads((whole / "ns" / "done.json").read_text()) | {"finished": ns["finished"]}
    a, b = _weights(run), _weights(whole)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "the resumed model differs"
    for name in ("threshold.json", "dmu/table.csv", "dle/done.json"):
        left, right = (run / name).read_text(), (whole / name).read_text()
        if name.endswith(".json"):
            left, right = (
                {k: v for k, v in json.loads(t).items() if k != "finished"} for t in (left, right)
            )
        assert left == right, name
