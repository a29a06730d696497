"""Fuzzed GeoJSON sidecars: every malformed document is read, or refused with one
``Error:`` line naming the file and exit code 2, through the CLI; never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer.main
import typer.testing
from typer.testing import CliRunner

from wsdal_wsi.cli import app
from wsdal_wsi.qupath import points_feature, write_features

from ..qupath.conftest import make_tiff
from .geojson_fuzz import documents

runner = CliRunner()
CASES = documents()


def test_the_generator_makes_enough_cases():
    assert len(CASES) >= 200 and len({name for name, _ in CASES}) == len(CASES)


@pytest.fixture(scope="module")
def slide(tmp_path_factory) -> Path:
    """A small slide (512 px, 0.25 µm/px) with room for a sidecar beside it."""
    return make_tiff(tmp_path_factory.mktemp("fuzz") / "s.tiff")


@pytest.fixture(scope="module")
def prediction(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fuzz_pred") / "s.geojson"
    write_features(path, [points_feature([[100, 120], [50, 400]], "Mitosis")])
    return path


def _read_or_refused(result, sidecar: Path, what: str) -> str:
    """``"read"`` or ``"refused"``; fails on anything else (a traceback, another exit code)."""
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{what}: {type(result.exception).__name__}: {result.exception}"
    )
    assert "Traceback" not in result.output, what
    if result.exit_code == 2:
        errors = [ln for ln in result.stderr.splitlines() if ln.startswith("Error: ")]
        assert len(errors) == 1 and str(sidecar) in errors[0], f"{what}: {result.stderr[-300:]}"
        return "refused"
    assert result.exit_code == 0, f"{what}: exit {result.exit_code}: {result.output[-300:]}"
    return "read"


def test_every_malformed_sidecar_is_read_or_refused_with_exit_2(slide, prediction, monkeypatch):
    command = typer.main.get_command(app)  # built once: Typer rebuilds it on every invoke
    monkeypatch.setattr(typer.testing, "_get_command", lambda _app: command)
    sidecar = slide.with_suffix(".geojson")
    outcomes = {"read": 0, "refused": 0}
    for name, data in CASES:
        sidecar.write_bytes(data)
        # the sidecar of a slide given as SOURCE: read for training, or the source is unusable
        result = runner.invoke(app, ["inspect", str(slide), "--json"])
        outcome = _read_or_refused(result, sidecar, f"inspect, case {name!r}")
        outcomes[outcome] += 1
        if outcome == "read":
            (image,) = json.loads(result.stdout)["images"]
            assert image["annotation_file"] == str(sidecar)
        # the same file as ground truth of wsdal evaluate
        result = runner.invoke(
            app, ["evaluate", str(prediction), str(sidecar), "--mpp", "0.25", "--json"]
        )
        assert _read_or_refused(result, sidecar, f"evaluate, case {name!r}") == outcome, name
    assert outcomes["read"] >= 30 and outcomes["refused"] >= 200, outcomes
