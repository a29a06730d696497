"""``wsdal demo --quick``: the whole path (synth, train, predict, counts, evaluate), resumable."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from wsdal_wsi.cli import app
from wsdal_wsi.cli.demo import QUICK_ENV

runner = CliRunner()


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny networks are per-op overhead; two threads on a shared 2-core CPU are slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
def test_quick_demo_runs_the_whole_path_and_resumes(tmp_path, monkeypatch):
    run = tmp_path / "demo"
    result = runner.invoke(app, ["demo", "--quick", "--out", str(run), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    out = result.stdout.replace("\n", "")
    for path in (
        run / "predict" / "index.html",
        run / "predict" / "counts.xlsx",
        run / "predict" / "test_000.geojson",
        run / "train" / "model.pt",
        run / "evaluation.json",
    ):
        assert path.is_file(), path
        assert path.name in out
    assert "F1 " in result.stdout and "against the synthetic ground truth" in result.stdout
    banner = " ".join(result.stderr.split())
    assert "2 training slides of 1280 x 1280 px and 1 test slides of 1280 x 1280 px" in banner
    # Again, quick through the environment: every step is reused.
    monkeypatch.setenv(QUICK_ENV, "1")
    again = runner.invoke(app, ["demo", "--out", str(run), "--device", "cpu"])
    assert again.exit_code == 0, again.output
    assert "Reused finished steps: synth, train, predict" in again.stdout
    # The full demo in the quick demo's folder is refused (it would mix two runs).
    monkeypatch.delenv(QUICK_ENV)
    other = runner.invoke(app, ["demo", "--out", str(run), "--device", "cpu"])
    assert other.exit_code == 2 and "holds a demo made with other settings" in other.stderr


def test_demo_refuses_a_folder_that_is_not_a_demo(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    result = runner.invoke(app, ["demo", "--quick", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "not empty and not a demo run folder" in result.stderr
    assert (tmp_path / "mine.txt").read_text() == "keep me"
