"""kill -9 in the middle of a prediction batch, then the same command: the outputs are
complete, valid, and those of a batch never interrupted."""

from __future__ import annotations

import csv
import json
import signal
import time
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from wsdal_wsi.cli import app
from wsdal_wsi.qupath import read_objects
from wsdal_wsi.report import read_summary, slide_files

from .conftest import cli_process, copy_slides

runner = CliRunner()
ARGS = ("--device", "cpu", "--tile-size", "512")


def _wait_for(condition, proc, *, timeout_s: float = 90.0) -> None:
    end = time.monotonic() + timeout_s
    while not condition():
        assert proc.poll() is None, f"the batch ended before the kill: {proc.communicate()}"
        assert time.monotonic() < end, "the batch never reached the point of the kill"
        time.sleep(0.02)


def _statuses(out: Path) -> list[str]:
    try:
        doc = json.loads((out / "batch.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):  # not written yet (never half-written: atomic)
        return []
    return [im["status"] for im in doc["images"]]


def _detections(path: Path) -> list[tuple]:
    return sorted(
        (o.points[0], o.measurements.get("WS-DAL probability"))
        for o in read_objects(path)
        if o.object_type == "detection"
    )


def _assert_complete(out: Path, keys: list[str]) -> None:
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    state = json.loads((out / "batch.json").read_text(encoding="utf-8"))
    assert state["status"] == "finished"
    for key in keys:
        files = slide_files(out, key)
        summary = read_summary(files.summary)
        assert summary.ok and summary.detections == len(_detections(files.geojson))
        for png in (files.report, files.tissue, files.gallery):
            with Image.open(png) as im:
                im.load()
    with open(out / "counts.csv", encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["Slide"] for r in rows} >= {f"{k}.tiff" for k in keys}


@pytest.mark.slow
def test_kill_9_mid_batch_then_resume(train_data, tiny_model, tmp_path):
    slides = copy_slides(train_data, tmp_path / "slides")
    keys = sorted(p.stem for p in slides.glob("*.tiff"))
    out = tmp_path / "OUT"
    cmd = ("predict", str(slides), "--model", str(tiny_model), "--out", str(out), *ARGS)
    proc = cli_process(*cmd)
    try:  # killed while the second slide is being predicted
        _wait_for(lambda: _statuses(out)[:2] == ["done", "running"], proc)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert _statuses(out)[:2] == ["done", "running"]  # batch.json says where it stopped
    # a temporary file a killed writer can leave behind: the next run clears it
    (out / f".{keys[1]}.geojson.k1ll3d0x.tmp").write_text('{"type": "Feature')

    resumed = runner.invoke(app, list(cmd))
    assert resumed.exit_code == 0, resumed.output
    assert _statuses(out) == ["skipped", "done", "done"]
    _assert_complete(out, keys)

    # the same outputs as a batch that was never interrupted
    clean = tmp_path / "CLEAN"
    whole = runner.invoke(app, ["predict", str(slides), "--model", str(tiny_model),
                                "--out", str(clean), *ARGS])  # fmt: skip
    assert whole.exit_code == 0, whole.output
    for key in keys:
        a, b = slide_files(out, key), slide_files(clean, key)
        assert _detections(a.geojson) == _detections(b.geojson)
        sa, sb = read_summary(a.summary), read_summary(b.summary)
        assert _counts(sa) == _counts(sb)


def _counts(summary) -> tuple:
    hotspot = summary.hotspot
    return (
        summary.detections,
        None if hotspot is None else (hotspot.count, hotspot.centre_level0),
        [(r.label, r.mitoses) for r in summary.regions],
    )
