"""``wsdal predict --ray``: a real local Ray (127.0.0.1), one task per slide.

The module starts Ray itself, on the loopback address with 2 CPUs, as ``--ray
local`` does, and stops it after its tests (one start for all: a start and its
workers' first imports take seconds).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from wsdal_wsi.cli import app
from wsdal_wsi.errors import ConfigError
from wsdal_wsi.predict import PredictSettings, RayExecutor, RayUnavailableError, run_batch
from wsdal_wsi.predict import ray_executor as ray_executor_mod
from wsdal_wsi.qupath import open_source

KEYS = ("synth_000", "synth_001", "synth_002")
runner = CliRunner()


def test_task_resources_are_checked_before_any_work():
    with pytest.raises(ConfigError, match="--gpus-per-slide must be between 0 and 1"):
        RayExecutor("local", gpus_per_slide=2)
    with pytest.raises(ConfigError, match="--cpus-per-slide must be a positive integer"):
        RayExecutor("local", cpus_per_slide=0)


def test_without_ray_installed_the_error_says_how_to_get_it(monkeypatch, tiny_model_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` sees without the package
    with pytest.raises(RayUnavailableError, match=r'pip install "wsdal-wsi\[ray\]"'):
        RayExecutor("auto").prepare(tiny_model_path)


@pytest.fixture(scope="module")
def local_ray():
    """Ray started in this process on 127.0.0.1 with 2 CPUs (as ``--ray local`` starts it),
    stopped after the module; ``--ray local`` and :class:`RayExecutor` use it."""
    before = os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
    ray, started = ray_executor_mod._connect("local", num_cpus=2)
    assert started
    yield ray
    ray.shutdown()
    if before is None:
        os.environ.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)


@pytest.mark.slow
def test_a_slide_whose_worker_dies_is_retried_once_then_failed_and_a_rerun_resumes(
    local_ray, scaleout_batch, builders, tmp_path, monkeypatch
):
    ref = scaleout_batch
    attempts = tmp_path / "attempts.txt"
    real = ray_executor_mod._predict_remote

    def dying(job, model_refs, cpus):  # runs on a Ray worker (a local function: shipped by value)
        if job.record.key == "synth_001":
            with open(attempts, "a") as fh:
                fh.write("x")
            os._exit(1)  # the worker process dies, as on a segfault or the OOM killer
        return real(job, model_refs, cpus)

    monkeypatch.setattr(ray_executor_mod, "_predict_remote", dying)
    out = tmp_path / "OUT"
    settings = PredictSettings(device="cpu", tile_size_px=512)
    result = run_batch(open_source(ref.folder), ref.model, out, settings=settings,
                       executor=RayExecutor("local"))  # fmt: skip
    assert attempts.read_text() == "xx"  # the task ran twice: once, and once retried
    status = {im.key: im for im in result.state.images}
    assert status["synth_001"].status == "failed"
    assert "the Ray worker predicting it died, and again when retried" in status["synth_001"].reason
    assert [status[k].status for k in ("synth_000", "synth_002")] == ["done", "done"]
    assert status["broken"].status == "failed" and "truncated" in status["broken"].reason
    assert result.state.header["executor"]["cluster"]["CPU"] == 2
    assert "died" in (out / "index.html").read_text(encoding="utf-8")
    assert local_ray.is_initialized()  # the caller's Ray is left running

    monkeypatch.setattr(ray_executor_mod, "_predict_remote", real)
    again = run_batch(open_source(ref.folder), ref.model, out, settings=settings,
                      executor=RayExecutor("local"))  # fmt: skip
    assert {im.key: im.status for im in again.state.images} == {
        "broken": "failed", "synth_000": "skipped", "synth_001": "done", "synth_002": "skipped"
    }  # fmt: skip
    assert builders.detections_of(out / "synth_001.geojson") == builders.detections_of(
        Path(ref.out) / "synth_001.geojson"
    )
    assert builders.counts_rows(out / "counts.csv") == builders.counts_rows(ref.out / "counts.csv")


@pytest.mark.slow
def test_ray_local_predicts_as_the_sequential_run_and_records_a_failed_slide(
    local_ray, scaleout_batch, builders, tmp_path
):
    ref = scaleout_batch
    out = tmp_path / "OUT"
    args = ["predict", str(ref.folder), "--model", str(ref.model), "--out", str(out),
            *builders.SCALEOUT_ARGS, "--ray", "local"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output  # broken.tiff failed, on a worker
    for key in KEYS:
        assert builders.detections_of(out / f"{key}.geojson") == builders.detections_of(
            ref.out / f"{key}.geojson"
        )
    rows = builders.counts_rows(out / "counts.csv")
    assert rows == builders.counts_rows(ref.out / "counts.csv")
    (broken,) = [r for r in rows if r["Key"] == "broken"]
    assert broken["Status"] == "failed" and "truncated" in broken["Reason"]
    assert "broken.tiff" in (out / "index.html").read_text(encoding="utf-8")
    state = json.loads((out / "batch.json").read_text(encoding="utf-8"))
    ray_info = state["executor"]
    assert ray_info["kind"] == "ray" and ray_info["node_addresses"] == ["127.0.0.1"]
    assert ray_info["cluster"]["CPU"] == 2 and ray_info["gpus_per_slide"] == 0  # CPU cluster
    assert ray_info["cpus_per_slide"] == 1
    assert "Ray local: 1 node(s), 2 CPUs, 0 GPUs" in result.stdout
